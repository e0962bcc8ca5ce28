"""Liveness and readiness probes for systemd, nginx and load balancers."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from flask import Blueprint, Flask, Response, current_app, jsonify

from . import reconciler
from .caching import content_cache
from .errors import ServiceUnavailable
from .strapi import StrapiClient
from .tenants import registry

bp = Blueprint("health", __name__)

READY_REUSE = 1.0  # seconds a worker answers /readyz from its last look at a tenant's Strapi


class Readiness:
    """A worker's look at one tenant's Strapi: one at a time, reused for a second.

    /readyz is often public (nginx's ``location /``) and polled by load balancers; while Strapi hangs,
    each look holds a thread for ``READY_TIMEOUT``, so a flood of probes would take every thread cache
    hits need. Only one thread per worker looks at a time; the others answer with its last result.
    """

    def __init__(
        self, ping: Callable[[float], bool], monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self.ping = ping
        self.monotonic = monotonic
        self._last: tuple[float, bool] | None = None
        self._looking = threading.Lock()

    def up(self, timeout: float) -> bool:
        """The last result if recent or if another thread is looking now, else a new look."""
        last = self._last
        if last is not None and self.monotonic() - last[0] < READY_REUSE:
            return last[1]
        if not self._looking.acquire(blocking=False):
            return last[1] if last is not None else False  # not known yet: not ready
        try:
            result = self.ping(timeout)
            self._last = (self.monotonic(), result)
            return result
        finally:
            self._looking.release()


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
    looks: dict[str, Readiness] = current_app.extensions["bffproxy.readiness"]
    down = [tenant.name for tenant in registry() if not looks[tenant.name].up(timeout)]
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
    reconciled = reconciler.last_successes()  # each tenant's last successful reconcile (None: never)
    response = jsonify(status="ready", strapi="up", store=store, circuit=circuits, reconciled=reconciled)
    response.headers["Cache-Control"] = "no-store"
    return response


def _circuit(client: StrapiClient) -> str:
    """The tenant's circuit breaker: closed, open or half-open (admission.py)."""
    return client.admission.describe() if client.admission is not None else "closed"


def init_app(app: Flask) -> None:
    """Register the probes, with one Readiness per tenant."""
    app.extensions["bffproxy.readiness"] = {
        tenant.name: Readiness(tenant.strapi.ping) for tenant in app.extensions["bffproxy.tenants"]
    }
    app.register_blueprint(bp)
