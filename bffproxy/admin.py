"""Operator API: ``POST /admin/cache/purge`` with ``Authorization: Bearer <BFFPROXY_ADMIN_TOKEN>``.

Bodies: ``{"collection": "articles"}``, ``{"collection": "articles", "documentId": "..."}`` or
``{"all": true}``, each with an optional ``"tenant": "<name>"`` (else the tenant the host or path
prefix routes to, else the tenants file's default). Answers 200 with what was invalidated; 400 for
a body that is not a JSON object, 422 for a bad scope, 401 for a missing or wrong token, 503 when
the shared store refuses the write.

While ``BFFPROXY_ADMIN_TOKEN`` is unset the whole admin API answers 404 ``admin_disabled``: there is
no credential that could be right, and a 404 neither invites guessing nor looks like a bad token.
"""

from __future__ import annotations

import hmac
import logging
from typing import Any

from flask import Blueprint, Flask, Response, current_app, g, jsonify, request

from . import metrics
from .bodies import json_or_none
from .errors import BadRequest, NotFound, Unauthorized, Unprocessable
from .invalidation import purge
from .settings import as_str, env_name
from .tenants import registry

log = logging.getLogger(__name__)

bp = Blueprint("admin", __name__, url_prefix="/admin")

PURGE_FIELDS = frozenset({"collection", "documentId", "all", "tenant"})


class AdminDisabled(NotFound):
    """No admin token is configured, so the admin API does not exist."""

    code = "admin_disabled"
    message = f"The admin API is disabled: set {env_name('ADMIN_TOKEN')} to enable it."


@bp.before_request
def _require_admin_token() -> None:
    """Every admin call needs the bearer token."""
    require_admin_token()


def require_admin_token() -> None:
    """Refuse the request unless it carries the admin bearer token, compared in constant time."""
    expected = current_app.config["ADMIN_TOKEN"]
    if not expected:
        raise AdminDisabled()
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), expected.encode()):
        raise Unauthorized(
            "A valid admin bearer token is required.",
            headers={"WWW-Authenticate": 'Bearer realm="bffproxy-admin"'},
        )


def _optional(body: dict[str, Any], name: str, kind: type) -> Any:
    """A field of the purge body that must have ``kind`` when present."""
    value = body.get(name)
    if value is not None and not isinstance(value, kind):
        raise Unprocessable(f"'{name}' must be a {kind.__name__}.", details={"field": name})
    return value


@bp.post("/cache/purge")
def purge_cache() -> Response:
    """Purge a collection, one document, or everything of this tenant."""
    body = json_or_none(force=True)
    if not isinstance(body, dict):
        raise BadRequest("The body must be a JSON object.")
    unknown = sorted(set(body) - PURGE_FIELDS)
    if unknown:
        raise Unprocessable("Unknown field(s) in the purge body.", details={"fields": unknown})
    everything = _optional(body, "all", bool)
    if everything is False:
        raise Unprocessable("'all' can only be true; leave it out to purge a collection.")
    named = _optional(body, "tenant", str)
    routed = g.get("tenant")
    tenant = registry().named(named) if named is not None or routed is None else routed
    result = purge(
        tenant.name,
        collection=_optional(body, "collection", str),
        document_id=_optional(body, "documentId", str),
        everything=bool(everything),
    )
    metrics.count(metrics.INVALIDATIONS, tenant.name, "admin", by=len(result["invalidated"]))
    log.info("admin purge from %s: %s", request.remote_addr, result)
    response = jsonify(purged=result)
    response.headers["Cache-Control"] = "no-store"
    return response


def init_app(app: Flask) -> None:
    """Validate the admin settings."""
    app.config["ADMIN_TOKEN"] = as_str(app.config, "ADMIN_TOKEN")
