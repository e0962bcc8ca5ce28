"""Which tenant a request is for, decided once at the WSGI layer, before the fast path and Flask.

Order of precedence, first match wins (README "Tenants"):

1. ``BFFPROXY_TENANT_HEADER`` (e.g. ``X-Tenant``), only when the operator enables it because nginx
   sets it: when the request carries it, it alone decides (an unknown name is a 404, never another
   tenant).
2. A tenant's ``path_prefix`` (``/t/acme/api/articles``): the prefix moves from ``PATH_INFO`` to
   ``SCRIPT_NAME``, so every route below sees ``/api/articles``.
3. The ``Host`` header (after werkzeug's ProxyFix when ``BFFPROXY_TRUSTED_PROXIES`` is set): an
   exact host, else the longest ``*.domain`` wildcard that matches (as nginx's ``server_name``).
4. ``default_tenant`` of the tenants file, when set.

No match leaves ``environ["bffproxy.tenant"]`` None: Flask answers ``404 unknown_tenant`` in the
JSON envelope and nothing else runs. Each step is a dict look-up (per path segment, per host
label), never a scan of the tenants.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any, Protocol

ENVIRON_KEY = "bffproxy.tenant"

WsgiApp = Any


class Routable(Protocol):
    """What routing needs to know of a tenant."""

    name: str
    hosts: tuple[str, ...]
    path_prefix: str | None


BAD_HOST = "bffproxy.bad_host"
_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?")
_IPV6 = re.compile(r"\[[0-9a-f:.]{2,45}\]")


def request_host(environ: dict[str, Any]) -> str | None:
    """The request's host name: lower case, without port or trailing dot; None when it is not one.

    An absolute-form request line (``GET http://beta.test/... HTTP/1.1``) names the host, whatever the
    Host header says (RFC 9112 3.2.2). A Host that is not a host name (empty labels, a label over 63
    characters, ``,``, ``/``, ``@``) is None, so no wildcard ever routes arbitrary text.
    """
    target = str(environ.get("RAW_URI") or "")
    if target.startswith(("http://", "https://")):
        host = target.split("://", 1)[1].split("/", 1)[0].split("?", 1)[0]
    else:
        host = str(environ.get("HTTP_HOST") or environ.get("SERVER_NAME") or "")
    host = host.strip().lower()
    if host.startswith("["):  # [::1]:8080
        end = host.find("]") + 1
        return host[:end] if end and _IPV6.fullmatch(host[:end]) and host[end:][:1] in ("", ":") else None
    name, colon, port = host.rpartition(":")
    if colon and port.isdigit():
        host = name
    host = host[:-1] if host.endswith(".") else host
    if host and (len(host) > 253 or not all(_LABEL.fullmatch(label) for label in host.split("."))):
        return None
    return host


class TenantMatcher:
    """The tenant of a request by header, path prefix, host and default, each a dict look-up."""

    def __init__(self, tenants: Iterable[Any], default: str | None = None, header: str | None = None) -> None:
        listed = list(tenants)
        self.by_name = {tenant.name: tenant for tenant in listed}
        self.exact = {h: t for t in listed for h in t.hosts if not h.startswith("*.")}
        self.wildcards = {h[2:]: t for t in listed for h in t.hosts if h.startswith("*.")}
        self.prefixes = {t.path_prefix: t for t in listed if t.path_prefix}
        self.prefix_depth = max((p.count("/") for p in self.prefixes), default=0)
        self.default = self.by_name.get(default) if default else None
        self.header = f"HTTP_{header.upper().replace('-', '_')}" if header else None
        # One tenant and nothing to match on (no file, today's setup): every request with a proper
        # Host is that tenant's. Not with a tenant header: an unknown name must still be a 404.
        rules = self.exact or self.wildcards or self.prefixes or self.header
        self.only = listed[0] if len(listed) == 1 and not rules else None

    def match(self, environ: dict[str, Any]) -> tuple[Any | None, str]:
        """(the tenant or None, the path prefix to strip or ''); a bad Host is marked for a 400."""
        host = request_host(environ)
        if host is None:
            environ[BAD_HOST] = True
            return None, ""
        if self.only is not None:
            return self.only, ""
        if self.header is not None and self.header in environ:
            return self.by_name.get(str(environ[self.header]).strip()), ""
        prefixed = self._by_prefix(environ.get("PATH_INFO", ""))
        if prefixed is not None:
            return prefixed, prefixed.path_prefix
        return self._by_host(host) or self.default, ""

    def _by_prefix(self, path: str) -> Any | None:
        """The tenant whose prefix is made of the path's first segments, if any."""
        if not self.prefixes:
            return None
        end = 0
        for _ in range(self.prefix_depth):
            end = path.find("/", end + 1)
            candidate = self.prefixes.get(path if end == -1 else path[:end])
            if candidate is not None or end == -1:
                return candidate
        return None

    def _by_host(self, host: str) -> Any | None:
        """The tenant of an exact host, else of the longest wildcard domain that matches."""
        tenant = self.exact.get(host)
        while tenant is None and "." in host:
            host = host.split(".", 1)[1]
            tenant = self.wildcards.get(host)
        return tenant


class TenantRouting:
    """WSGI middleware: put the request's tenant in ``environ`` and strip its path prefix."""

    def __init__(self, wsgi_app: WsgiApp, matcher: TenantMatcher) -> None:
        self.wsgi_app = wsgi_app
        self.matcher = matcher

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        tenant, prefix = self.matcher.match(environ)
        environ[ENVIRON_KEY] = tenant
        if prefix:
            environ["SCRIPT_NAME"] = environ.get("SCRIPT_NAME", "") + prefix
            environ["PATH_INFO"] = environ.get("PATH_INFO", "")[len(prefix) :]
        return self.wsgi_app(environ, start_response)
