"""Tenant registry: which Strapi serves a request, resolved once into ``g.tenant``.

Today there is one tenant, ``default``, built from the top-level settings. Every cache key, lock,
generation and rate-limit bucket already carries the tenant's name, so routing several tenants to
their own Strapi instances adds entries to this registry without touching keys or views.
"""

from __future__ import annotations

from dataclasses import dataclass

from flask import Flask, current_app, g

from .reads import ReadRouter, extra_read_params
from .relation_paths import ModelledCollection
from .schemas import spec_for
from .strapi import StrapiClient

DEFAULT_TENANT = "default"


@dataclass(frozen=True)
class Tenant:
    """One isolated Strapi: its name, client, the collections it exposes and its read router."""

    name: str
    strapi: StrapiClient
    collections: tuple[str, ...]
    router: ReadRouter

    def exposes(self, collection: str) -> bool:
        """True when ``collection`` is configured for this tenant."""
        return collection in self.collections


class TenantRegistry:
    """All tenants of this app, by name."""

    def __init__(self, tenants: list[Tenant], default: str = DEFAULT_TENANT) -> None:
        self._tenants = {tenant.name: tenant for tenant in tenants}
        self.default = self._tenants[default]

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self._tenants.values())

    def get(self, name: str) -> Tenant | None:
        """The tenant called ``name``, or None."""
        return self._tenants.get(name)


def tenant_from_config(app: Flask, name: str = DEFAULT_TENANT) -> Tenant:
    """Build the default tenant from the validated top-level settings."""
    config = app.config
    client = StrapiClient(
        config["STRAPI_URL"],
        api_token=config["STRAPI_API_TOKEN"],
        connect_timeout=config["STRAPI_CONNECT_TIMEOUT"],
        read_timeout=config["STRAPI_READ_TIMEOUT"],
        retries=config["STRAPI_RETRIES"],
        retry_after_max=config["STRAPI_RETRY_AFTER_MAX"],
        pool_size=config["STRAPI_POOL_SIZE"],
    )
    collections = config["COLLECTIONS"]
    router = ReadRouter(
        collections, extra_read_params(config), content_model(collections), config["SINGLE_TYPES"]
    )
    return Tenant(name=name, strapi=client, collections=collections, router=router)


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


def _resolve_tenant() -> None:
    """Put the request's tenant in ``g`` once, before any view runs."""
    g.tenant = registry().default


def init_app(app: Flask) -> None:
    """Build the registry and resolve the tenant of every request."""
    app.extensions["bffproxy.tenants"] = TenantRegistry([tenant_from_config(app)])
    app.before_request(_resolve_tenant)
