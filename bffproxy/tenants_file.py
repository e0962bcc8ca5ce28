"""The tenants file (``BFFPROXY_TENANTS_FILE``): several tenants, each with its own Strapi, in one TOML file.

Each ``[tenants.<name>]`` table holds the single-tenant settings' names in lower case without the
``BFFPROXY_`` prefix (``strapi_url``, ``collections``, ``cache_ttl`` ...), how requests are matched
to it (``hosts``, ``path_prefix``) and two sub-tables, ``policies`` and ``cors``. A secret may be
named by environment variable instead (``strapi_api_token_env = "ACME_STRAPI_TOKEN"``), so the file
itself holds none. Settings a tenant does not give fall back to the top-level ``BFFPROXY_*`` values.

This module only reads the file and checks its shape: every key is on an allow-list, every host and
prefix belongs to one tenant. The values themselves are checked by the same validators as the
single-tenant settings (tenants.py runs them per tenant). Every error is one line naming the file,
the tenant and the key.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .settings import ConfigError

# File key -> the config key it sets (the BFFPROXY_* variable without its prefix).
SETTINGS = {
    "strapi_url": "STRAPI_URL",
    "strapi_api_token": "STRAPI_API_TOKEN",
    "strapi_jwt_secret": "STRAPI_JWT_SECRET",
    "webhook_secret": "WEBHOOK_SECRET",
    "collections": "COLLECTIONS",
    "single_types": "SINGLE_TYPES",
    "cache_ttl": "CACHE_TTL",
    "cache_ttls": "CACHE_TTLS",
    "relations": "RELATIONS",
    "role_cacheable": "ROLE_CACHEABLE",
    "login_rate_limit": "LOGIN_RATE_LIMIT",
    "strapi_admin_email": "STRAPI_ADMIN_EMAIL",
    "strapi_admin_password": "STRAPI_ADMIN_PASSWORD",
    "policies": "POLICIES",
    "query_params": "QUERY_PARAMS",
    "cache_control": "CACHE_CONTROL",
    "models": "MODELS",
    "author_fields": "AUTHOR_FIELDS",
}
# Settings that may instead name the environment variable holding them: ``<key>_env``.
SECRETS = frozenset({"strapi_api_token", "strapi_jwt_secret", "webhook_secret", "strapi_admin_password"})
MATCHING = frozenset({"hosts", "path_prefix", "cors"})
CORS_KEYS = frozenset({"origins", "allow_credentials", "max_age", "allow_headers", "expose_headers"})
TOP_LEVEL = frozenset({"default_tenant", "tenants"})

_TENANT_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
_HOST_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_PREFIX_SEGMENT = re.compile(r"[A-Za-z0-9._~-]+")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ORIGIN = re.compile(r"(https?)://(\*\.)?([a-z0-9.-]+)(:[0-9]{1,5})?")
# First path segments bffproxy routes itself: a prefix equal to one would hide those routes.
RESERVED_PREFIXES = frozenset(
    {"api", "webhooks", "admin", "healthz", "readyz", "uploads", "events", "metrics"}
)


@dataclass(frozen=True)
class CorsSpec:
    """A tenant's CORS settings as written in its ``[tenants.<name>.cors]`` table, checked."""

    origins: tuple[str | re.Pattern[str], ...]
    allow_credentials: bool = False
    max_age: int | None = None
    allow_headers: tuple[str, ...] = ()
    expose_headers: tuple[str, ...] = ()


@dataclass(frozen=True)
class TenantSpec:
    """One ``[tenants.<name>]`` table: its settings (config keys), how it is matched, its CORS."""

    name: str
    settings: dict[str, Any] = field(default_factory=dict)
    hosts: tuple[str, ...] = ()
    path_prefix: str | None = None
    cors: CorsSpec | None = None


@dataclass(frozen=True)
class TenantsFile:
    """The whole file: its tenants in the order written, and the tenant that takes unmatched requests."""

    path: str
    tenants: tuple[TenantSpec, ...]
    default: str | None = None


class _Reader:
    """Reads one file; ``fail`` raises the one-line error naming the file, tenant and key."""

    def __init__(self, path: str, environ: Mapping[str, str]) -> None:
        self.path = path
        self.environ = environ

    def fail(self, message: str, tenant: str | None = None, key: str | None = None) -> ConfigError:
        where = f"tenant {tenant!r}" if tenant else ""
        if key:
            where = f"{where}, key {key!r}" if where else f"key {key!r}"
        return ConfigError(f"BFFPROXY_TENANTS_FILE {self.path}: {where + ': ' if where else ''}{message}")

    def load(self) -> dict[str, Any]:
        try:
            with open(self.path, "rb") as handle:
                return tomllib.load(handle)
        except OSError as exc:
            raise self.fail(f"cannot be read: {exc.strerror or exc}") from None
        except tomllib.TOMLDecodeError as exc:
            raise self.fail(f"is not valid TOML: {exc}") from None


def read_tenants_file(path: str, environ: Mapping[str, str] | None = None) -> TenantsFile:
    """Parse and check the tenants file (names, hosts, prefixes, CORS); ConfigError at the first fault."""
    reader = _Reader(path, os.environ if environ is None else environ)
    document = reader.load()
    for key in document:
        if key not in TOP_LEVEL:
            raise reader.fail(f"unknown top-level key (allowed: {', '.join(sorted(TOP_LEVEL))})", key=key)
    tables = document.get("tenants")
    if not isinstance(tables, dict) or not tables:
        raise reader.fail("needs at least one [tenants.<name>] table")
    tenants = tuple(_tenant(reader, name, table) for name, table in tables.items())
    default = document.get("default_tenant")
    if default is not None and (not isinstance(default, str) or default not in tables):
        raise reader.fail(f"names no tenant of this file: {default!r}", key="default_tenant")
    _check_unique_matches(reader, tenants)
    return TenantsFile(path, tenants, default)


def _tenant(reader: _Reader, name: str, table: Any) -> TenantSpec:
    """One tenant's table, every key checked against the allow-lists."""
    if not _TENANT_NAME.fullmatch(name):
        raise reader.fail("a tenant name is lower-case letters, digits, '-' or '_' (at most 63)", tenant=name)
    if not isinstance(table, dict):
        raise reader.fail("must be a table", tenant=name)
    settings: dict[str, Any] = {}
    for key, value in table.items():
        if key in MATCHING:
            continue
        if key.endswith("_env") and key[:-4] in SECRETS:
            secret = key[:-4]
            if secret in table:
                raise reader.fail(f"give either {secret} or {key}, not both", name, key)
            settings[SETTINGS[secret]] = _from_environment(reader, name, key, value)
        elif key in SETTINGS:
            settings[SETTINGS[key]] = _setting_value(reader, name, key, value)
        else:
            raise reader.fail("unknown key", name, key)
    return TenantSpec(
        name=name,
        settings=settings,
        hosts=_hosts(reader, name, table.get("hosts", [])),
        path_prefix=_path_prefix(reader, name, table.get("path_prefix")),
        cors=_cors(reader, name, table["cors"]) if "cors" in table else None,
    )


def _from_environment(reader: _Reader, tenant: str, key: str, value: Any) -> str:
    """The secret held by the environment variable ``value`` names."""
    if not isinstance(value, str) or not _ENV_NAME.fullmatch(value):
        raise reader.fail("must name an environment variable", tenant, key)
    secret = reader.environ.get(value)
    if not secret:
        raise reader.fail(f"the environment variable {value} is not set", tenant, key)
    return secret


def _setting_value(reader: _Reader, tenant: str, key: str, value: Any) -> Any:
    """A setting's value in the form the single-tenant validators read: scalars, names, tables."""
    if isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return ",".join(value)
    if isinstance(value, dict):
        return {str(name): _table_value(reader, tenant, key, item) for name, item in value.items()}
    raise reader.fail("must be a string, a number, a list of strings or a table", tenant, key)


def _table_value(reader: _Reader, tenant: str, key: str, value: Any) -> str:
    """One value of a table setting (``cache_ttls``, ``relations``, ``policies`` ...) as a string."""
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return ",".join(value)
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise reader.fail("table values must be strings, numbers or lists of strings", tenant, key)
    return str(value)


def _hosts(reader: _Reader, tenant: str, value: Any) -> tuple[str, ...]:
    """Host names, lower case, each optionally ``*.`` + a domain; no port (the port is ignored)."""
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise reader.fail("must be a list of host names", tenant, "hosts")
    hosts = []
    for raw in value:
        host = raw.strip().lower().rstrip(".")
        bare = host[2:] if host.startswith("*.") else host
        labels = bare.split(".")
        if not bare or not all(_HOST_LABEL.fullmatch(label) for label in labels):
            raise reader.fail(
                f"{raw!r} is not a host name (a leading '*.' is the only wildcard)", tenant, "hosts"
            )
        hosts.append(host)
    return tuple(dict.fromkeys(hosts))


def _path_prefix(reader: _Reader, tenant: str, value: Any) -> str | None:
    """``/t/acme``: whole segments, no trailing slash, not one of bffproxy's own first segments."""
    if value is None:
        return None
    if not isinstance(value, str) or not value.startswith("/") or value.endswith("/"):
        raise reader.fail("must start with '/' and not end with one, e.g. \"/t/acme\"", tenant, "path_prefix")
    segments = value[1:].split("/")
    if not all(_PREFIX_SEGMENT.fullmatch(segment) for segment in segments) or "." in segments:
        raise reader.fail(f"{value!r} has a segment that is not plain text", tenant, "path_prefix")
    if ".." in segments or segments[0] in RESERVED_PREFIXES:
        raise reader.fail(f"{value!r} would hide bffproxy's own /{segments[0]} routes", tenant, "path_prefix")
    return value


def _cors(reader: _Reader, tenant: str, table: Any) -> CorsSpec:
    """The ``cors`` table: origins (exact, ``*``, or ``https://*.example.com``), credentials, max age."""
    if not isinstance(table, dict):
        raise reader.fail("must be a table", tenant, "cors")
    for key in table:
        if key not in CORS_KEYS:
            raise reader.fail(f"unknown key (allowed: {', '.join(sorted(CORS_KEYS))})", tenant, f"cors.{key}")
    raw_origins = table.get("origins")
    if (
        not isinstance(raw_origins, list)
        or not raw_origins
        or not all(isinstance(o, str) for o in raw_origins)
    ):
        raise reader.fail("must be a non-empty list of origins", tenant, "cors.origins")
    origins = tuple(_origin(reader, tenant, origin) for origin in raw_origins)
    credentials = table.get("allow_credentials", False)
    if not isinstance(credentials, bool):
        raise reader.fail("must be true or false", tenant, "cors.allow_credentials")
    if credentials and "*" in origins:
        raise reader.fail(
            "cannot be true with the origin '*' (browsers refuse it)", tenant, "cors.allow_credentials"
        )
    max_age = table.get("max_age")
    if max_age is not None and (isinstance(max_age, bool) or not isinstance(max_age, int) or max_age < 0):
        raise reader.fail("must be a whole number of seconds", tenant, "cors.max_age")
    return CorsSpec(
        origins,
        credentials,
        max_age,
        _header_names(reader, tenant, "cors.allow_headers", table.get("allow_headers", [])),
        _header_names(reader, tenant, "cors.expose_headers", table.get("expose_headers", [])),
    )


class _Environment(_Reader):
    """Errors in the top-level ``BFFPROXY_CORS_*`` settings name their variable."""

    def fail(self, message: str, tenant: str | None = None, key: str | None = None) -> ConfigError:
        return ConfigError(f"BFFPROXY_{(key or '').upper().replace('.', '_')}: {message}")


def cors_from_settings(config: Mapping[str, Any]) -> CorsSpec | None:
    """The top-level CORS settings (``BFFPROXY_CORS_ORIGINS`` ...) as a CorsSpec; None without origins."""
    origins = _listed(config.get("CORS_ORIGINS"))
    if not origins:
        return None
    table: dict[str, Any] = {"origins": origins}
    credentials = str(config.get("CORS_ALLOW_CREDENTIALS", "")).strip().lower()
    if credentials:
        table["allow_credentials"] = {"true": True, "1": True, "yes": True, "on": True}.get(
            credentials, False if credentials in ("false", "0", "no", "off") else credentials
        )
    max_age = str(config.get("CORS_MAX_AGE", "")).strip()
    if max_age:
        table["max_age"] = int(max_age) if max_age.isdigit() else max_age
    for key in ("allow_headers", "expose_headers"):
        table[key] = _listed(config.get(f"CORS_{key.upper()}"))
    return _cors(_Environment("", {}), "", table)


def _listed(value: Any) -> list[str]:
    """A comma-separated setting (or a list) as a list of its non-empty items."""
    items = value if isinstance(value, list | tuple) else str(value or "").split(",")
    return [str(item).strip() for item in items if str(item).strip()]


def _origin(reader: _Reader, tenant: str, raw: str) -> str | re.Pattern[str]:
    """An exact origin, ``*``, or a wildcard first label (``https://*.acme.com``) as an anchored pattern."""
    origin = raw.strip().lower()
    if origin == "*":
        return origin
    match = _ORIGIN.fullmatch(origin)
    if match is None or not all(_HOST_LABEL.fullmatch(label) for label in match.group(3).split(".")):
        raise reader.fail(
            f"{raw!r} is not an origin like https://app.example.com[:port]", tenant, "cors.origins"
        )
    if match.group(2) is None:
        return origin
    if match.group(3).count(".") < 1:  # '*.com' would let every site of a top-level domain in
        raise reader.fail(
            f"{raw!r}: a wildcard needs a domain of two labels or more below it", tenant, "cors.origins"
        )
    scheme, domain, port = match.group(1), re.escape(match.group(3)), re.escape(match.group(4) or "")
    return re.compile(
        rf"{scheme}://[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)*\.{domain}{port}\Z"
    )


def _header_names(reader: _Reader, tenant: str, key: str, value: Any) -> tuple[str, ...]:
    """Header names (tokens), as written."""
    token = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
    if not isinstance(value, list) or not all(isinstance(v, str) and token.fullmatch(v) for v in value):
        raise reader.fail("must be a list of header names", tenant, key)
    return tuple(value)


def _check_unique_matches(reader: _Reader, tenants: tuple[TenantSpec, ...]) -> None:
    """No host, wildcard or prefix may match for two tenants: a request never picks one at random."""
    owners: dict[str, str] = {}
    prefixes: dict[str, str] = {}
    for tenant in tenants:
        for host in tenant.hosts:
            other = owners.setdefault(host, tenant.name)
            if other != tenant.name:
                raise reader.fail(f"{host!r} is also a host of tenant {other!r}", tenant.name, "hosts")
        if tenant.path_prefix is not None:
            for prefix, other in prefixes.items():
                if _nested(prefix, tenant.path_prefix) or _nested(tenant.path_prefix, prefix):
                    raise reader.fail(
                        f"{tenant.path_prefix!r} overlaps {prefix!r} of tenant {other!r}",
                        tenant.name,
                        "path_prefix",
                    )
            prefixes[tenant.path_prefix] = tenant.name
    for host, owner in owners.items():
        for pattern, other in owners.items():
            if other != owner and pattern.startswith("*.") and _wildcard_covers(pattern[2:], host):
                raise reader.fail(
                    f"{host!r} is also matched by {pattern!r} of tenant {other!r}", owner, "hosts"
                )


def _nested(outer: str, inner: str) -> bool:
    """True when ``inner`` is ``outer`` or lies under it."""
    return inner == outer or inner.startswith(outer + "/")


def _wildcard_covers(domain: str, host: str) -> bool:
    """True when ``*.<domain>`` matches ``host`` (itself maybe a wildcard) or something it matches."""
    bare = host[2:] if host.startswith("*.") else host
    return bare.endswith("." + domain) or (host.startswith("*.") and bare == domain)


def stage(source: str, directory: str, owner: int) -> str:
    """Copy the operator's tenants file, read once, to ``directory`` for validation; the copy's path.

    gunicorn's arbiter validates this copy on start and on every reload (HUP), then promotes it
    (:func:`promote`) and points its workers at it: exactly the bytes that passed reach a worker,
    even if the operator saves again meanwhile, and a file broken on disk never does. ``owner`` (the
    arbiter's pid) keeps two instances sharing a cache directory on their own copies.
    """
    with open(source, "rb") as handle:
        content = handle.read()
    staged = os.path.join(directory, f"tenants.{owner}.staged.toml")
    descriptor = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # it may hold secrets
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(content)
    return staged


def promote(staged: str) -> str:
    """Make a staged copy that passed validation the active one; the active copy's path."""
    active = staged.replace(".staged.toml", ".active.toml")
    os.replace(staged, active)  # atomic: a worker starting now reads the old copy or the new one
    return active
