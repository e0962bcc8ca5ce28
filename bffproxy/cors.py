"""CORS on every answer, per tenant: Flask-CORS's rules, applied at the WSGI layer.

Browser apps of each tenant call bffproxy from their own origins, so the CORS headers must be on
every answer: fresh hits from the WSGI fast path (which Flask's ``after_request``, and so the
``flask_cors.CORS`` extension, never sees), 304s, errors, bodies refused before Flask, streams. So
this middleware wraps all of them and asks Flask-CORS's own functions (``serialize_options``,
``get_cors_headers``) which headers an answer gets; nothing here decides an origin by hand.

* A tenant without a ``cors`` table gets no CORS headers at all (same-origin only), as today.
* An allowed origin gets ``Access-Control-Allow-Origin`` (its own value, or ``*`` when the tenant
  allows every origin without credentials), the exposed headers, and credentials if configured.
* A preflight (``OPTIONS`` with ``Origin`` and ``Access-Control-Request-Method``) is answered here,
  204, and never reaches a view or Strapi; a disallowed origin's gets no allow headers, so the
  browser blocks the request.
* Every answer of a tenant with CORS carries ``Vary: Origin``: the same URL answers differently
  per origin, so caches in front (nginx, a CDN, the browser) must keep them apart.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from flask_cors.core import DEFAULT_OPTIONS, get_cors_headers, serialize_options
from werkzeug.datastructures import EnvironHeaders

from .tenants_file import CorsSpec

# Request headers a browser app may send to bffproxy (besides the CORS-safelisted ones).
ALLOW_HEADERS = (
    "Authorization",
    "Content-Type",
    "Idempotency-Key",
    "If-None-Match",
    "If-Match",
    "Last-Event-ID",
    "X-Request-ID",
    "Strapi-Response-Format",
)
# Response headers a browser app may read (besides the CORS-safelisted ones).
EXPOSE_HEADERS = ("ETag", "Age", "X-Cache", "X-Request-ID", "Retry-After", "Idempotent-Replayed", "Location")
METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS")
PREFLIGHT_VARY = "Origin, Access-Control-Request-Method, Access-Control-Request-Headers"
REMEMBERED = 1024  # (tenant, origin, method) answers a worker keeps

WsgiApp = Any
Options = Any  # flask_cors.core._ComputedCorsOptions (private name)


def options_for(spec: CorsSpec) -> Options:
    """Flask-CORS's computed options for one tenant's ``cors`` table."""
    return serialize_options(
        {
            **DEFAULT_OPTIONS,
            "origins": list(spec.origins),
            "methods": list(METHODS),
            "allow_headers": list(dict.fromkeys((*ALLOW_HEADERS, *spec.allow_headers))),
            "expose_headers": list(dict.fromkeys((*EXPOSE_HEADERS, *spec.expose_headers))),
            "supports_credentials": spec.allow_credentials,
            "max_age": spec.max_age,
            "send_wildcard": not spec.allow_credentials,  # '*' for everyone only without credentials
            "always_send": False,  # no Origin, no CORS headers
            "vary_header": False,  # Vary: Origin is added to every answer below, not only some
        }
    )


def with_vary(headers: list[tuple[str, str]], value: str) -> list[tuple[str, str]]:
    """``headers`` whose Vary also names ``value``'s fields (one Vary header, no field twice)."""
    for index, (name, current) in enumerate(headers):
        if name.lower() == "vary":
            present = {field.strip().lower() for field in current.split(",")}
            missing = [field for field in value.split(", ") if field.lower() not in present]
            if missing:
                headers[index] = (name, ", ".join([current, *missing]))
            return headers
    headers.append(("Vary", value))
    return headers


def _computed(options: Options, environ: dict[str, Any], method: str) -> tuple[tuple[str, str], ...]:
    found = get_cors_headers(options, EnvironHeaders(environ), method)
    return tuple((name, str(value)) for name, value in found.items(multi=True))


class Cors:
    """WSGI middleware: the tenant's CORS headers on every answer, preflights answered here."""

    def __init__(self, wsgi_app: WsgiApp, options_of: Callable[[dict[str, Any]], Options | None]) -> None:
        self.wsgi_app = wsgi_app
        self.options_of = options_of  # the CORS options of the request's tenant (None: no CORS)
        self._remembered: dict[tuple[int, str, str], tuple[tuple[str, str], ...]] = {}

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        options = self.options_of(environ)
        if options is None:
            return self.wsgi_app(environ, start_response)  # type: ignore[no-any-return]
        method = environ.get("REQUEST_METHOD", "")
        if (
            method == "OPTIONS"
            and "HTTP_ORIGIN" in environ
            and "HTTP_ACCESS_CONTROL_REQUEST_METHOD" in environ
        ):
            return self.preflight(environ, options, start_response)
        cors = self.headers_for(environ, options, method)

        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            return start_response(status, with_vary(headers + cors, "Origin"), exc_info)

        return self.wsgi_app(environ, start)  # type: ignore[no-any-return]

    def headers_for(self, environ: dict[str, Any], options: Options, method: str) -> list[tuple[str, str]]:
        """The CORS headers Flask-CORS gives this request (none without an allowed Origin).

        Outside a preflight they depend only on the tenant's options, the Origin and the method, so
        they are remembered (a browser app sends one origin): a hit pays a dict look-up, not
        Flask-CORS's matching (about 14 us a call, measured by bench/tenants.py).
        """
        origin = environ.get("HTTP_ORIGIN")
        if origin is None:
            return []
        if method == "OPTIONS":
            return list(_computed(options, environ, method))
        key = (id(options), origin, method)
        found = self._remembered.get(key)
        if found is None:
            found = _computed(options, environ, method)
            if len(self._remembered) >= REMEMBERED:
                self._remembered.clear()  # many origins (a client making them up): start again
            self._remembered[key] = found
        return list(found)

    def preflight(self, environ: dict[str, Any], options: Options, start_response: Any) -> Iterable[bytes]:
        """Answer a preflight: 204 with the allow headers for an allowed origin, none for another."""
        headers = self.headers_for(environ, options, "OPTIONS")
        headers = with_vary([*headers, ("Content-Length", "0")], PREFLIGHT_VARY)
        start_response("204 No Content", headers)
        return [b""]
