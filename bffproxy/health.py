"""Liveness and readiness probes for systemd, nginx and load balancers."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify

from .errors import ServiceUnavailable
from .tenants import registry

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> Response:
    """The process is alive and answering; never touches Strapi."""
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz() -> Response:
    """Ready when every tenant's Strapi answers its health check within READY_TIMEOUT."""
    timeout = current_app.config["READY_TIMEOUT"]
    down = [tenant.name for tenant in registry() if not tenant.strapi.ping(timeout)]
    if down:
        raise ServiceUnavailable(
            f"Strapi is not reachable for tenant(s): {', '.join(down)}.", details={"tenants": down}
        )
    response = jsonify(status="ready")
    response.headers["Cache-Control"] = "no-store"
    return response
