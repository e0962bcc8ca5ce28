"""Strapi-shaped JWTs and user answers for unit tests (auth, policies, accounts, rate limits)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import jwt
import responses

from .conftest import STRAPI

SECRET = "unit-test-strapi-jwt-secret-32-bytes-or-more"
STRAPI_LIKE_SECRET = "uLlpAudLF5JhWv8QmaWMvA=="  # 24 bytes, as Strapi generates them
POLICIES = {"articles": "read=public,drafts=editor,write=editor"}
USERS = {
    "1": {"username": "reader", "role": "authenticated"},
    "2": {"username": "editor", "role": "editor"},
}


def legacy_token(user_id: int = 1, *, secret: str = SECRET, lifetime: int = 3600, **claims: Any) -> str:
    """A legacy users-permissions JWT: {id, iat, exp}."""
    now = int(time.time())
    payload = {"id": user_id, "iat": now, "exp": now + lifetime, **claims}
    return jwt.encode(payload, secret, algorithm="HS256")


def access_token(
    user_id: str = "1", *, secret: str = SECRET, kind: str = "access", lifetime: int = 600
) -> str:
    """A refresh-mode token: {userId, sessionId, type, iat, exp}."""
    now = int(time.time())
    payload = {"userId": user_id, "sessionId": "abc123", "type": kind, "iat": now, "exp": now + lifetime}
    return jwt.encode(payload, secret, algorithm="HS256")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def crafted(header: dict[str, Any], payload: dict[str, Any], *, secret: str | None = SECRET) -> str:
    """A token with any header, HMAC-SHA256-signed with ``secret`` (no signature when None)."""
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(payload).encode())}"
    if secret is None:
        return signing_input + "."
    signature = hmac.new(secret.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(signature)}"


def bearer(token: str) -> dict[str, str]:
    """The Authorization header for ``token``."""
    return {"Authorization": f"Bearer {token}"}


def user_body(user_id: str, *, role: str | None = None, blocked: bool = False) -> dict[str, Any]:
    """What Strapi answers for /api/users/<id>?populate=role."""
    known = USERS.get(user_id, {"username": f"user{user_id}", "role": "authenticated"})
    body: dict[str, Any] = {
        "id": int(user_id),
        "documentId": f"user{user_id:0>20}",
        "username": known["username"],
        "email": f"{known['username']}@example.com",
        "blocked": blocked,
    }
    body["role"] = {"id": 9, "name": "Role", "type": role or known["role"]}
    return body


def serve_users(strapi: responses.RequestsMock, **overrides: Any) -> None:
    """Let the fake Strapi answer the role look-ups of the known users."""
    for user_id in USERS:
        strapi.get(f"{STRAPI}/api/users/{user_id}", json=user_body(user_id, **overrides))


def strapi_paths(strapi: responses.RequestsMock) -> list[str]:
    """The paths (with queries) the fake Strapi was asked for, in order."""
    return [call.request.url.removeprefix(STRAPI) for call in strapi.calls]  # type: ignore[union-attr]
