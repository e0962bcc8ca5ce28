"""bffproxy: a caching, validating Backend-for-Frontend in front of Strapi 5."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from . import (
    accounts,
    admin,
    admission,
    auth,
    bodies,
    caching,
    content,
    cors,
    errors,
    event_feed,
    event_log,
    event_tickets,
    events_demo,
    events_sse,
    events_ws,
    health,
    hits,
    invalidation,
    logs,
    media,
    metrics,
    openapi,
    policies,
    publishing,
    ratelimit,
    reconciler,
    request_id,
    rules,
    settings,
    strapi_admin,
    tenants,
    webhooks,
)
from .settings import ConfigError, load_config
from .tenant_routing import TenantRouting

__all__ = ["ConfigError", "create_app", "create_events_app"]


# Each validates one tenant's settings in place, in this order (later ones read earlier results).
TENANT_SETTINGS: tuple[tenants.TenantSettings, ...] = (
    settings.validate_tenant,
    caching.configure_tenant,
    content.configure_tenant,
    policies.configure_tenant,
    auth.configure_tenant,
    webhooks.configure_tenant,
    invalidation.configure_tenant,
    ratelimit.configure_tenant,
    strapi_admin.configure_tenant,
    rules.configure_tenant,
    media.configure_tenant,
    publishing.check_single_types,
)


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build the API app: settings (defaults, .env, BFFPROXY_* env, ``config``), extensions, blueprints."""
    app = _core_app(config, max_subscribers=2)  # each stream holds a gthread thread here
    accounts.init_app(app)
    admin.init_app(app)
    publishing.init_app(app)
    content.init_app(app)
    openapi.init_app(app)
    events_demo.init_app(app)  # the live articles page (its stream: the events app or this one)
    media.init_app(app)  # before bodies: its uploads stream past the JSON body limit
    app.register_blueprint(webhooks.bp)
    app.register_blueprint(admin.bp)
    app.register_blueprint(publishing.bp)
    reconciler.init_app(app)  # its thread starts in the worker (gunicorn.conf.py), never here
    bodies.init_app(app)  # wraps Flask: counts bodies before any view; fast hits read none
    if app.config["FAST_HITS"]:
        app.wsgi_app = hits.FreshHits(app.wsgi_app, app)  # type: ignore[method-assign]
    return _wrapped(app)


def create_events_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build the events app: event streams, tickets and health only, for gunicorn's gevent worker.

    Same settings, tenants, routing, CORS and auth as the API app; none of its content, publishing
    or file locks, which would block a gevent worker's every greenlet (deploy/: events units).
    """
    app = _core_app(config, max_subscribers=10_000)
    bodies.init_app(app)
    return _wrapped(app)


def _core_app(config: Mapping[str, Any] | None, *, max_subscribers: int) -> Flask:
    """What both apps share: settings, tenants, the store, auth, health and the event routes."""
    app = Flask(__name__, static_folder=None)  # no /static/<path> route: bffproxy serves no package files
    # An API answers the path it was given: no HTML 308 to http://<client Host>/... for '//' or for
    # the URL a rule's defaults spell differently (errors.py turns any other redirect into a 404).
    app.url_map.merge_slashes = False
    app.url_map.redirect_defaults = False
    load_config(app.config, config)
    _configure_logging(app)
    errors.init_app(app)
    request_id.init_app(app)
    caching.configure(app.config)  # process-wide settings the tenants' derive from
    media.configure(app.config)
    event_log.configure(app.config)
    event_feed.configure(app.config, max_subscribers)
    reconciler.configure(app.config)
    tenants.init_app(app, TENANT_SETTINGS)
    caching.init_app(app)
    admission.init_app(app)
    auth.init_app(app)
    health.init_app(app)
    metrics.init_app(app)
    event_log.init_app(app)
    event_feed.init_app(app)
    app.register_blueprint(event_tickets.bp)
    events_sse.init_app(app)
    events_ws.init_app(app)
    return app


def _wrapped(app: Flask) -> Flask:
    """The WSGI layers around Flask, outermost last: CORS, tenant routing, trusted proxies."""
    app.wsgi_app = cors.Cors(app.wsgi_app, tenants.cors_options_of)  # type: ignore[method-assign]
    registry = app.extensions["bffproxy.tenants"]
    app.wsgi_app = TenantRouting(app.wsgi_app, registry.matcher)  # type: ignore[method-assign]
    if app.config["TRUSTED_PROXIES"]:  # outermost: the Host routing reads is the client's
        hops = app.config["TRUSTED_PROXIES"]
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)  # type: ignore[method-assign]
    metrics.observe(app)  # outermost: counts every answer, the fast path's and the middlewares' too
    return app


def _configure_logging(app: Flask) -> None:
    """Send bffproxy's loggers to stderr (gunicorn's error log / journald), one line per record."""
    level = str(app.config.get("LOG_LEVEL", "INFO")).upper()
    if level not in logging.getLevelNamesMapping():
        raise ConfigError(f"BFFPROXY_LOG_LEVEL must be a logging level name, got {level!r}")
    access_format = str(app.config.get("ACCESS_LOG_FORMAT", "json")).strip().lower()
    if access_format not in logs.ACCESS_LOG_FORMATS:
        raise ConfigError(f"BFFPROXY_ACCESS_LOG_FORMAT must be json or text, got {access_format!r}")
    app.config["ACCESS_LOG_FORMAT"] = access_format
    logs.configure(level, access_format)
