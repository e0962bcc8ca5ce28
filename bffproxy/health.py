"""Liveness and readiness probes for systemd, nginx and load balancers."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify

from .caching import content_cache
from .errors import ServiceUnavailable
from .strapi import StrapiClient
from .tenants import registry

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> Response:
    """The process is alive and answering; never touches Strapi."""
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz() -> Response:
    """Ready when every tenant's Strapi answers within READY_TIMEOUT; the body says how the store is.

    A store that is down does not make the instance unready: reads then go to Strapi directly
    (X-Cache: BYPASS) and keyed writes answer 503, so taking the instance out of rotation would
    only move the same traffic elsewhere. ``"store": "down"`` tells monitoring all the same.
    """
    store = "up" if content_cache().store.probe() else "down"
    timeout = current_app.config["READY_TIMEOUT"]
    down = [tenant.name for tenant in registry() if not tenant.strapi.ping(timeout)]
    if down:
        raise ServiceUnavailable(
            f"Strapi is not reachable for tenant(s): {', '.join(down)}.",
            details={
                "tenants": down,
                "store": store,
                "circuit": {t.name: _circuit(t.strapi) for t in registry()},
            },
        )
    circuits = {tenant.name: _circuit(tenant.strapi) for tenant in registry()}
    response = jsonify(status="ready", strapi="up", store=store, circuit=circuits)
    response.headers["Cache-Control"] = "no-store"
    return response


def _circuit(client: StrapiClient) -> str:
    """The tenant's circuit breaker: closed, open or half-open (admission.py)."""
    return client.admission.describe() if client.admission is not None else "closed"
