"""The Strapi admin-API client: an admin-panel session per tenant, for what Strapi's REST API cannot do.

Strapi 5 has no REST unpublish, only its admin Content-Manager API, which needs an admin-panel
session (``POST /admin/login``) opened with ``BFFPROXY_STRAPI_ADMIN_EMAIL`` and
``BFFPROXY_STRAPI_ADMIN_PASSWORD``. The session is kept per tenant and renewed shortly before its
token expires, or once when Strapi answers 401.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

import jwt as pyjwt
from flask import Flask, current_app

from .content import forwarded_headers
from .errors import ApiError, NotImplementedYet, UpstreamError
from .settings import ConfigError, as_str, env_name
from .strapi import StrapiResponse
from .tenants import Tenant, current_tenant

ADMIN_TOKEN_MARGIN = 60.0  # seconds before its expiry an admin token is renewed


class AdminLoginFailed(UpstreamError):
    """The admin session could not be opened, so the write itself was never sent."""

    code = "admin_login_failed"


@dataclass
class AdminSession:
    """An admin-panel session on the tenant's Strapi, for what its REST API cannot do."""

    email: str
    password: str
    token: str = ""
    expires_at: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def call(self, method: str, path: str, body: Any) -> StrapiResponse:
        """One admin API call; a 401 (expired session) logs in again once: it was not executed."""
        answer = self._send(method, path, body, self._token())
        if answer.status == 401:
            self.token = ""
            answer = self._send(method, path, body, self._token())
        return answer

    def _send(self, method: str, path: str, body: Any, token: str) -> StrapiResponse:
        client = current_tenant().strapi
        headers = {**forwarded_headers(), **client.authorization(token)}
        return client.request(method, path, json_body=body, headers=headers)

    def _token(self) -> str:
        with self.lock:
            if not self.token or time.time() > self.expires_at - ADMIN_TOKEN_MARGIN:
                self.token, self.expires_at = self._login()
            return self.token

    def _login(self) -> tuple[str, float]:
        client = current_tenant().strapi
        credentials = {"email": self.email, "password": self.password}
        try:
            answer = client.request("POST", "admin/login", json_body=credentials)
        except ApiError as exc:
            raise AdminLoginFailed(f"The admin login failed: {exc.message}") from exc
        token = ((answer.json() or {}).get("data") or {}).get("token") if answer.ok else None
        if not isinstance(token, str):
            raise AdminLoginFailed(
                f"Strapi refused the admin login ({answer.status}): check {env_name('STRAPI_ADMIN_EMAIL')} "
                f"and {env_name('STRAPI_ADMIN_PASSWORD')}."
            )
        return token, jwt_expiry(token) or time.time() + 25 * 60


def jwt_expiry(token: str) -> float | None:
    """The ``exp`` of a JWT, read without checking it (Strapi checks it; we only plan renewal)."""
    try:
        claims = pyjwt.decode(token, options={"verify_signature": False})
        return float(claims["exp"])
    except (pyjwt.PyJWTError, KeyError, TypeError, ValueError):
        return None


def admin_session() -> AdminSession:
    """The admin session of the current tenant; 501 when no admin credentials are configured."""
    sessions: dict[str, AdminSession] = current_app.extensions["bffproxy.admin_sessions"]
    tenant: Tenant = current_tenant()
    config = tenant.config
    if not config["STRAPI_ADMIN_EMAIL"]:
        raise NotImplementedYet(
            "Unpublishing is not available: Strapi 5 has no REST unpublish, only its admin "
            f"Content-Manager API, and {env_name('STRAPI_ADMIN_EMAIL')} / "
            f"{env_name('STRAPI_ADMIN_PASSWORD')} (an admin-panel user allowed to publish) are not set."
        )
    return sessions.setdefault(
        tenant.name, AdminSession(config["STRAPI_ADMIN_EMAIL"], config["STRAPI_ADMIN_PASSWORD"])
    )


def configure_tenant(config: dict[str, Any]) -> None:
    """Validate one tenant's admin credentials: both or neither."""
    for key in ("STRAPI_ADMIN_EMAIL", "STRAPI_ADMIN_PASSWORD"):
        config.setdefault(key, "")
        config[key] = as_str(config, key)
    if bool(config["STRAPI_ADMIN_EMAIL"]) != bool(config["STRAPI_ADMIN_PASSWORD"]):
        raise ConfigError(
            f"{env_name('STRAPI_ADMIN_EMAIL')} and {env_name('STRAPI_ADMIN_PASSWORD')} go together: "
            "set both or neither"
        )


def init_app(app: Flask) -> None:
    """Keep one admin session per tenant, opened on first use."""
    app.extensions["bffproxy.admin_sessions"] = {}
