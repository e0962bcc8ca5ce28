"""Accounts blueprint: Strapi's auth endpoints passed through, and ``GET /api/me``.

``POST /api/auth/local``, ``/api/auth/refresh`` and ``/api/auth/logout`` go to Strapi as they are
(body, ``Authorization``), are never cached, and are limited per client address in the shared store
(``BFFPROXY_LOGIN_RATE_LIMIT``). The client's address travels in ``X-Forwarded-For``, so Strapi's
own per-address limit counts each client, not bffproxy's one address (Strapi must trust the header:
``STRAPI_TRUST_PROXY=true`` in the Strapi template's ``config/server.js``).
"""

from __future__ import annotations

from flask import Blueprint, Flask, Response, jsonify, request

from . import ratelimit
from .auth import require_auth, signed_in
from .bodies import json_or_none
from .content import forwarded_headers
from .errors import BadRequest
from .tenants import current_tenant, tenant_config

bp = Blueprint("accounts", __name__)

NO_STORE = "no-store"


def pass_through(path: str) -> Response:
    """POST the client's JSON body to Strapi's ``path`` and answer with Strapi's status and body."""
    ratelimit.limiter().check(path, tenant_config()["LOGIN_RATE_LIMIT"])
    body = json_or_none() if request.content_length else {}
    if not isinstance(body, dict):
        raise BadRequest("The body must be a JSON object.")
    headers = forwarded_headers()
    if "Authorization" in request.headers:  # logout needs the caller's access token
        headers["Authorization"] = request.headers["Authorization"]
    answer = current_tenant().strapi.request("POST", path, json_body=body, headers=headers)
    response = Response(answer.body, status=answer.status, content_type=answer.content_type)
    response.headers["Cache-Control"] = NO_STORE
    for name, value in answer.headers.items():  # Strapi's Retry-After on its own 429
        response.headers[name] = value
    return response


@bp.post("/api/auth/local")
def login() -> Response:
    """Sign in with ``{identifier, password}``; Strapi answers ``{jwt, user}`` (+ refreshToken)."""
    return pass_through("api/auth/local")


@bp.post("/api/auth/refresh")
def refresh() -> Response:
    """Swap a refresh token for new tokens (Strapi's refresh mode only; 404 otherwise)."""
    return pass_through("api/auth/refresh")


@bp.post("/api/auth/logout")
def logout() -> Response:
    """End the session of the access token (Strapi's refresh mode only; 404 otherwise)."""
    return pass_through("api/auth/logout")


@bp.get("/api/me")
@require_auth
def me() -> Response:
    """The caller's id, username, email and role."""
    identity = signed_in()
    response = jsonify(
        id=int(identity.user_id), username=identity.username, email=identity.email, role=identity.role
    )
    response.headers["Cache-Control"] = "private, no-store"
    response.vary.add("Authorization")
    return response


def init_app(app: Flask) -> None:
    """Set up the rate limiter and register the blueprint."""
    ratelimit.init_app(app)
    app.register_blueprint(bp)
