"""Tenants: each one isolated Strapi with its own settings, resolved once per request into ``g.tenant``.

Without ``BFFPROXY_TENANTS_FILE`` there is one tenant, ``default``, whose settings are the top-level
``BFFPROXY_*`` ones (today's single-tenant setup, unchanged). With it, each ``[tenants.<name>]``
table of the file (tenants_file.py) is a tenant whose settings are its own values over the
top-level ones, checked by the same validators: :func:`~.settings.validate_tenant` and each
module's ``configure_tenant``, run in the order create_app gives.

Every cache key, generation, lock, idempotency record, rate-limit bucket and audit line carries the
tenant's name, and every tenant-scoped setting is read from :func:`tenant_config`, never from
``current_app.config``, so nothing is shared between tenants but the process.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from flask import Flask, current_app, g, request

from .cors import options_for
from .errors import BadRequest, NotFound
from .reads import ReadRouter, extra_read_params
from .relation_paths import ModelledCollection
from .schemas import spec_for
from .settings import ConfigError
from .strapi import StrapiClient
from .tenant_routing import BAD_HOST, ENVIRON_KEY, TenantMatcher
from .tenants_file import SETTINGS as FILE_KEYS
from .tenants_file import CorsSpec, TenantSpec, cors_from_settings, read_tenants_file

DEFAULT_TENANT = "default"

# Blueprints that answer on any host: health probes (load balancers use an address, not a tenant's
# host), the admin API (its calls name their tenant) and the metrics (every tenant's, by label).
TENANTLESS = frozenset({"health", "admin", "metrics"})

# Validates one tenant's settings in place (a ConfigError names the setting).
TenantSettings = Callable[[dict[str, Any]], None]


class UnknownTenant(NotFound):
    code = "unknown_tenant"


class InvalidHost(BadRequest):
    code = "invalid_host"


@dataclass(frozen=True)
class Tenant:
    """One isolated Strapi: its name, client, exposed collections, read router and settings."""

    name: str
    strapi: StrapiClient
    collections: tuple[str, ...]
    router: ReadRouter
    config: Mapping[str, Any] = field(default_factory=dict)
    hosts: tuple[str, ...] = ()
    path_prefix: str | None = None
    cors: Any = None  # Flask-CORS's computed options, or None: no CORS headers

    def exposes(self, collection: str) -> bool:
        """True when ``collection`` is configured for this tenant."""
        return collection in self.collections


class TenantRegistry:
    """All tenants of this app by name, and the matcher that routes requests to them."""

    def __init__(self, tenants: list[Tenant], default: str | None = None, header: str | None = None) -> None:
        self._tenants = {tenant.name: tenant for tenant in tenants}
        # The tenant of unmatched requests (None: they are 404); the only one without a file.
        self.default: Tenant | None = self._tenants.get(default) if default else None
        self.matcher = TenantMatcher(tenants, default, header)

    def __iter__(self) -> Iterator[Tenant]:
        return iter(self._tenants.values())

    def __len__(self) -> int:
        return len(self._tenants)

    def get(self, name: str) -> Tenant | None:
        """The tenant called ``name``, or None."""
        return self._tenants.get(name)

    def named(self, name: str | None) -> Tenant:
        """The tenant called ``name`` (the default when None); UnknownTenant otherwise (CLI, admin)."""
        tenant = self.default if name is None else self._tenants.get(name)
        if tenant is None:
            known = ", ".join(self._tenants)
            if name is None:
                raise UnknownTenant(
                    f"Name a tenant (tenants: {known}).", details={"tenants": list(self._tenants)}
                )
            raise UnknownTenant(
                f"There is no tenant {name!r} (tenants: {known}).", details={"tenants": list(self._tenants)}
            )
        return tenant


def build_tenant(app: Flask, name: str, config: Mapping[str, Any], spec: TenantSpec | None = None) -> Tenant:
    """A tenant from its checked settings: its Strapi client (process-wide timeouts) and read router."""
    client = StrapiClient(
        config["STRAPI_URL"],
        api_token=config["STRAPI_API_TOKEN"],
        connect_timeout=app.config["STRAPI_CONNECT_TIMEOUT"],
        read_timeout=app.config["STRAPI_READ_TIMEOUT"],
        retries=app.config["STRAPI_RETRIES"],
        retry_after_max=app.config["STRAPI_RETRY_AFTER_MAX"],
        pool_size=app.config["STRAPI_POOL_SIZE"],
        tenant=name,
    )
    collections = config["COLLECTIONS"]
    router = ReadRouter(
        collections, extra_read_params(config), content_model(collections), config["SINGLE_TYPES"]
    )
    cors: CorsSpec | None = (
        spec.cors if spec is not None and spec.cors is not None else cors_from_settings(config)
    )
    return Tenant(
        name=name,
        strapi=client,
        collections=collections,
        router=router,
        config=config,
        hosts=spec.hosts if spec is not None else (),
        path_prefix=spec.path_prefix if spec is not None else None,
        cors=options_for(cors) if cors is not None else None,
    )


def content_model(collections: tuple[str, ...]) -> dict[str, ModelledCollection]:
    """What the read router knows of each exposed collection, from its write schema (schemas.py)."""
    model = {}
    for name in collections:
        spec = spec_for(name)
        if spec is not None:
            model[name] = ModelledCollection(spec.draft_and_publish, spec.relations)
    return model


def registry() -> TenantRegistry:
    """The registry of the current app."""
    reg: TenantRegistry = current_app.extensions["bffproxy.tenants"]
    return reg


def current_tenant() -> Tenant:
    """The tenant this request belongs to."""
    tenant: Tenant = g.tenant
    return tenant


def tenant_config() -> Mapping[str, Any]:
    """The current tenant's settings (tenant-scoped keys; the rest are in ``current_app.config``)."""
    return current_tenant().config


def _resolve_tenant() -> None:
    """Put the request's tenant (routed by tenant_routing.py) in ``g`` once, before any view runs."""
    environ = request.environ
    if ENVIRON_KEY not in environ:  # a request context made without the WSGI stack (tests, shell)
        environ[ENVIRON_KEY] = registry().matcher.match(environ)[0]
    tenant = environ[ENVIRON_KEY]
    if tenant is not None:
        g.tenant = tenant
    elif request.blueprint in TENANTLESS:
        return
    elif environ.get(BAD_HOST):
        raise InvalidHost("The Host header (or the request line's host) is not a host name.")
    else:
        raise UnknownTenant("No tenant is configured for this host or path.")


def tenants_from_file(app: Flask, settings: Sequence[TenantSettings]) -> TenantRegistry:
    """Every tenant of BFFPROXY_TENANTS_FILE, each checked with its values over the top-level ones."""
    path = app.config["TENANTS_FILE"]
    read = read_tenants_file(path)
    fallback = dict(app.config)  # the top-level values, not yet checked as a tenant's
    tenants = []
    for spec in read.tenants:
        config = {**fallback, **spec.settings}
        try:
            for configure in settings:
                configure(config)
        except ConfigError as exc:
            raise ConfigError(
                f"BFFPROXY_TENANTS_FILE {path}: tenant {spec.name!r}: {_in_file_terms(exc, spec)}"
            ) from None
        tenants.append(build_tenant(app, spec.name, config, spec))
    _refuse_shared_secrets(path, tenants)
    return TenantRegistry(tenants, read.default, app.config["TENANT_HEADER"] or None)


def _refuse_shared_secrets(path: str, tenants: list[Tenant]) -> None:
    """Tenants on different Strapis must not share a secret: one's tokens would pass as the other's.

    Two tenants of one Strapi (same URL, other hosts, collections or policies) share its secrets
    by nature; a secret both inherit from a top-level ``BFFPROXY_*`` value is the usual mistake.
    """
    for key, name in (("STRAPI_JWT_SECRET", "strapi_jwt_secret"), ("WEBHOOK_SECRET", "webhook_secret")):
        seen: dict[str, Tenant] = {}
        for tenant in tenants:
            secret = tenant.config[key]
            other = seen.setdefault(secret, tenant) if secret else tenant
            if other is not tenant and other.config["STRAPI_URL"] != tenant.config["STRAPI_URL"]:
                raise ConfigError(
                    f"BFFPROXY_TENANTS_FILE {path}: tenants {other.name!r} and {tenant.name!r} have the same "
                    f"{name} but different Strapis: give each its own (set {name} or {name}_env per tenant)"
                )


def _in_file_terms(exc: ConfigError, spec: TenantSpec) -> str:
    """The error naming the file's key (``cache_ttl``) where the tenant set it, else the variable."""
    message = str(exc)
    for key, setting in FILE_KEYS.items():
        if setting in spec.settings:
            message = re.sub(rf"\bBFFPROXY_{setting}(?![A-Z_])", f"key {key!r}", message)
    return message


def init_app(app: Flask, settings: Sequence[TenantSettings]) -> None:
    """Build the tenants (checking each one's settings) and resolve the tenant of every request."""
    if app.config["TENANTS_FILE"]:
        tenants = tenants_from_file(app, settings)
    else:
        for configure in settings:
            configure(app.config)
        tenants = TenantRegistry([build_tenant(app, DEFAULT_TENANT, app.config)], DEFAULT_TENANT)
    app.extensions["bffproxy.tenants"] = tenants
    app.before_request(_resolve_tenant)


def cors_options_of(environ: dict[str, Any]) -> Any:
    """The CORS options of a routed request's tenant (None: no tenant, or no CORS), for cors.Cors."""
    tenant = environ.get(ENVIRON_KEY)
    return tenant.cors if tenant is not None else None
