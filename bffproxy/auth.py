"""Strapi users in bffproxy: local JWT validation, role resolution, and the access decorators.

Tokens are the ones Strapi's users-permissions plugin issues: HS256 signed with the raw
``JWT_SECRET`` string, legacy ``{id, iat, exp}`` or refresh-mode access ``{userId, sessionId,
type: "access", iat, exp}``. flask-jwt-extended checks them locally; every failure (``alg: none``,
another algorithm, a bad signature, a malformed or expired token, a refresh token used as an access
token) leaves through the JWTManager loaders below as a 401 in our envelope, before Strapi is called.

Strapi puts no role in its tokens, so the role is resolved once per user and cached briefly in the
shared store (see :func:`fetch_profile`). Views use :func:`require_auth`, :func:`require_role`,
:func:`require_permission` or :func:`authorize`, and read the caller with :func:`current_identity`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from functools import wraps
from typing import Any, TypeVar, cast

import jwt as pyjwt
from flask import Flask, Response, current_app, g, request
from flask_jwt_extended import decode_token
from flask_jwt_extended.exceptions import (
    InvalidHeaderError,
    NoAuthorizationError,
    UserClaimsVerificationError,
)
from jwt.warnings import InsecureKeyLengthWarning

from . import policies
from .errors import ApiError, Forbidden, NotFound, Unauthorized, UpstreamError, error_response
from .extensions import jwt
from .request_id import HEADER as REQUEST_ID_HEADER
from .request_id import current_request_id
from .settings import ConfigError, as_number, as_str, env_name
from .store import StoreUnavailable, shared_store
from .strapi import StrapiClient
from .tenants import current_tenant, tenant_config

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])
WWW_AUTHENTICATE = 'Bearer realm="bffproxy"'
INVALID_TOKEN_CHALLENGE = f'{WWW_AUTHENTICATE}, error="invalid_token"'
# What the role cache holds for a user Strapi says does not exist (see resolve_identity).
GONE: dict[str, Any] = {"gone": True}
_UNSET = object()
_USER_ID = re.compile(r"[0-9]{1,18}")  # Strapi user ids are row ids (fullmatch); they go into a URL path


@dataclass(frozen=True)
class Identity:
    """A signed-in Strapi user, as bffproxy knows them for one request."""

    user_id: str
    username: str
    email: str
    role: str  # the Strapi role's ``type``, e.g. "authenticated", "editor"
    token: str  # the raw bearer token, to forward to Strapi
    expires_at: float = 0.0  # the token's ``exp`` (an event stream ends then)


class AuthNotConfigured(ApiError):
    """A bearer token arrived but no secret to check it with is configured."""

    status, code = 503, "auth_not_configured"
    message = f"Signed-in requests are not available: {env_name('STRAPI_JWT_SECRET')} is not set."


class TokenRefused(Unauthorized):
    """The token is genuine, but Strapi knows no user for it (any more)."""

    code, message = "invalid_token", "Strapi does not accept this token any more; sign in again."

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message, headers={"WWW-Authenticate": INVALID_TOKEN_CHALLENGE})


class UserGone(TokenRefused):
    """The token's user was deleted in Strapi."""

    message = "The token's user no longer exists."


class AccountBlocked(Forbidden):
    """Strapi marks this user as blocked."""

    code, message = "account_blocked", "This account is blocked."


# -- JWTManager loaders: every token failure becomes our envelope ------------------------------


def _unauthorized(code: str, message: str) -> Response:
    """A 401 in our envelope that tells the client how to authenticate."""
    header = INVALID_TOKEN_CHALLENGE if code != "unauthorized" else WWW_AUTHENTICATE
    return error_response(401, code, message, headers={"WWW-Authenticate": header})


@jwt.unauthorized_loader
def _missing_token(reason: str) -> Response:
    return _unauthorized("unauthorized", f"A bearer token is required: {reason}.")


@jwt.invalid_token_loader
def _invalid_token(reason: str) -> Response:
    return _unauthorized("invalid_token", f"The bearer token is invalid: {reason}.")


@jwt.expired_token_loader
def _expired_token(header: dict[str, Any], claims: dict[str, Any]) -> Response:
    return _unauthorized("token_expired", "The bearer token has expired; sign in again.")


@jwt.token_verification_failed_loader
def _no_user_in_token(header: dict[str, Any], claims: dict[str, Any]) -> Response:
    return _unauthorized("invalid_token", "The bearer token does not identify a Strapi user.")


@jwt.revoked_token_loader
def _revoked_token(header: dict[str, Any], claims: dict[str, Any]) -> Response:
    return _unauthorized("invalid_token", "The bearer token has been revoked.")


@jwt.user_lookup_error_loader
def _unknown_user(header: dict[str, Any], claims: dict[str, Any]) -> Response:
    return _unauthorized("invalid_token", "The bearer token's user is unknown.")


def user_id_of(claims: dict[str, Any]) -> str | None:
    """The user id of either Strapi token shape, as Strapi reads them; None for any other token.

    Legacy mode: ``id`` (a number), with no ``type`` or ``"access"``. Refresh mode: ``userId`` (a
    string) and ``type: "access"`` exactly, as the SessionManager's ``validateAccessToken`` demands.
    ``claims`` are the token's own: flask-jwt-extended fills in a missing ``type`` as "access".
    """
    legacy, current, kind = claims.get("id"), claims.get("userId"), claims.get("type")
    if isinstance(legacy, int) and not isinstance(legacy, bool) and legacy > 0:
        return str(legacy) if kind in (None, "access") else None
    if isinstance(current, str) and _USER_ID.fullmatch(current) and kind == "access":
        return current
    return None


def bearer_token(header: str) -> str:
    """The token of an ``Authorization`` value, read as Strapi reads it: two words, any case of Bearer."""
    parts = header.split()
    if not parts or parts[0].lower() != "bearer":
        raise NoAuthorizationError("Missing 'Bearer' type in the 'Authorization' header")
    if len(parts) != 2:
        raise InvalidHeaderError("Bad 'Authorization' header: expected 'Bearer <JWT>'")
    return parts[1]


def verified_claims(token: str) -> dict[str, Any]:
    """The claims of a token flask-jwt-extended verified, refused (401) unless Strapi would take it.

    PyJWT takes ``"exp": "9999999999"``; Strapi's jsonwebtoken wants JSON numbers for its times.
    Every failure raises an error whose JWTManager loader above answers 401.
    """
    decoded = decode_token(token)  # signature, algorithm, exp (required), nbf, iat, leeway
    claims: dict[str, Any] = pyjwt.decode(token, options={"verify_signature": False})
    for name in ("exp", "iat", "nbf"):
        value = claims.get(name, 0)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise pyjwt.InvalidTokenError(f"the {name} claim must be a number")
    if user_id_of(claims) is None:
        raise UserClaimsVerificationError("no Strapi user", {}, decoded)
    return claims


# -- who is calling ------------------------------------------------------------------------------


def current_identity() -> Identity | None:
    """The caller (None when anonymous); a bad token raises 401, a blocked user 403. Once per request."""
    identity = g.get("bffproxy_identity", _UNSET)
    if identity is _UNSET:
        identity = _authenticate()
        g.bffproxy_identity = identity
    return cast("Identity | None", identity)


def _authenticate() -> Identity | None:
    """Check the request's bearer token locally, then resolve its user's role."""
    header = request.headers.get("Authorization", "").strip()
    if not header:
        return None
    if not tenant_config()["STRAPI_JWT_SECRET"]:
        raise AuthNotConfigured()
    token = bearer_token(header)
    claims = verified_claims(token)
    user_id = user_id_of(claims)
    assert user_id is not None  # verified_claims refused the token otherwise
    return dataclasses.replace(resolve_identity(user_id, token), expires_at=float(claims["exp"]))


def resolve_identity(user_id: str, token: str) -> Identity:
    """The user's profile and role, from the shared store or from Strapi.

    A deleted user is remembered as :data:`GONE` for ``ROLE_CACHE_TTL`` like any profile: a deleted
    user's tokens stay valid until they expire, and each request with one would ask Strapi again.
    """
    tenant = current_tenant()
    key = f"auth:user:{tenant.name}:{user_id}"
    profile = _stored_profile(key)
    if profile is None:
        profile = fetch_profile(tenant.strapi, user_id, token)
        _store_profile(key, profile)
    if profile == GONE:
        raise UserGone()
    if profile["blocked"]:
        raise AccountBlocked()
    return Identity(user_id, profile["username"], profile["email"], profile["role"], token)


def fetch_profile(client: StrapiClient, user_id: str, token: str) -> dict[str, Any]:
    """Ask Strapi for the user and their role; 502/504 when it cannot answer, never "let through".

    Strapi 5 strips ``role`` from ``/api/users/me?populate=role`` unless the user's own role may read
    roles, so with the server's API token bffproxy reads ``/api/users/<id>?populate=role`` instead
    (the id comes from a token whose signature was just checked). Without an API token it asks
    ``/api/users/me?populate=role`` with the caller's token and needs the role in the answer.
    Returns :data:`GONE` when Strapi says the user does not exist: Strapi 5 answers ``204`` with no
    body for ``/api/users/<missing id>`` (checked on the real Strapi in test_auth_e2e), older ones 404.
    """
    headers = {REQUEST_ID_HEADER: current_request_id()}
    service = bool(client.api_token)
    if service:
        path, headers = f"api/users/{user_id}", {**headers, **client.service_authorization()}
    else:
        path, headers = "api/users/me", {**headers, **client.authorization(token)}
    answer = client.request("GET", path, params=[("populate", "role")], headers=headers)
    if service and answer.status in (204, 404):
        return GONE
    # 401 on users/me: Strapi refuses the caller's token (a session ended, a deleted user), which says
    # nothing about other tokens of the user, so it is not remembered. A 401/403 on the service path
    # means bffproxy's own API token is wrong: a 502, not the caller's fault.
    if not service and answer.status in (401, 404):
        raise TokenRefused()
    if not answer.ok:
        raise UpstreamError(f"Strapi refused to resolve the user's role ({answer.status}).")
    try:
        body = answer.json()
    except ValueError:  # not JSON (e.g. an HTML page from something that is not Strapi)
        raise UpstreamError("Strapi's answer about the user is not JSON.") from None
    if service and body is None:  # an empty 200 (or null): no such user, however Strapi says it
        return GONE
    role = body.get("role") if isinstance(body, dict) else None
    if not isinstance(role, dict) or not isinstance(role.get("type"), str):
        raise UpstreamError(
            f"Strapi did not return the user's role: set {env_name('STRAPI_API_TOKEN')} "
            "(a full-access token) so bffproxy can read it."
        )
    assert isinstance(body, dict)
    return {
        "username": str(body.get("username") or ""),
        "email": str(body.get("email") or ""),
        "role": role["type"],
        "blocked": body.get("blocked") is True,
    }


def _stored_profile(key: str) -> dict[str, Any] | None:
    """A cached profile; a store fault is a miss (Strapi is asked again)."""
    try:
        value = shared_store().get(key)
    except StoreUnavailable:  # Redis down, a full disk: resolve from Strapi (logged by the store)
        return None
    if value == GONE:
        return GONE
    return value if isinstance(value, dict) and {"role", "blocked"} <= value.keys() else None


def _store_profile(key: str, profile: dict[str, Any]) -> None:
    """Cache a profile (or GONE) for ``ROLE_CACHE_TTL`` seconds; a store fault costs a future lookup."""
    ttl = current_app.config["ROLE_CACHE_TTL"]
    if ttl <= 0:
        return
    with contextlib.suppress(StoreUnavailable):  # logged by the store; costs a future lookup only
        shared_store().set(key, profile, ttl)


# -- decisions and decorators ------------------------------------------------------------------


def _roles_text(roles: frozenset[str]) -> str:
    """'the role 'editor'' or 'one of the roles 'admin', 'editor''."""
    names = ", ".join(f"'{role}'" for role in sorted(roles))
    return f"the role {names}" if len(roles) == 1 else f"one of the roles {names}"


def signed_in() -> Identity:
    """The caller, or 401 for an anonymous one."""
    identity = current_identity()
    if identity is None:
        raise Unauthorized(
            "Sign in first: this needs a bearer token.", headers={"WWW-Authenticate": WWW_AUTHENTICATE}
        )
    return identity


def authorize(collection: str, action: str) -> Identity | None:
    """Check the policy for ``action`` on ``collection``: 404 unexposed, 401 anonymous, 403 wrong role."""
    if not current_tenant().exposes(collection):
        raise NotFound(f"There is no collection '{collection}'.")
    return check_policy(collection, action)


def check_policy(name: str, action: str) -> Identity | None:
    """Check the policy ``name`` (a collection's, or the media library's): 401 anonymous, 403 wrong role."""
    identity = current_identity()  # a bad token is a 401 even where the public is allowed
    if policies.is_public(name, action):
        return identity
    identity = identity or signed_in()
    if policies.role_may(identity.role, name, action):
        return identity
    roles = policies.allowed_roles(name, action)
    needed = _roles_text(roles) if roles else "a role that no policy grants"
    raise Forbidden(
        f"To {action} '{name}' you need {needed}; your role is '{identity.role}'.",
        details={
            "action": action,
            "collection": name,
            "required_roles": sorted(roles),
            "role": identity.role,
        },
    )


def require_auth(view: F) -> F:
    """Decorator: 401 without a valid token, 403 for a blocked user."""

    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        signed_in()
        return view(*args, **kwargs)

    return cast(F, wrapper)


def require_role(*roles: str) -> Callable[[F], F]:
    """Decorator factory: the caller must have one of ``roles`` (403 names the missing role)."""
    wanted = frozenset(roles)

    def decorator(view: F) -> F:
        @wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            identity = signed_in()
            if identity.role not in wanted:
                raise Forbidden(
                    f"This needs {_roles_text(wanted)}; your role is '{identity.role}'.",
                    details={"required_roles": sorted(wanted), "role": identity.role},
                )
            return view(*args, **kwargs)

        return cast(F, wrapper)

    return decorator


def require_permission(action: str) -> Callable[[F], F]:
    """Decorator factory: the policy of the view's ``collection`` kwarg must allow ``action``."""

    def decorator(view: F) -> F:
        @wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            authorize(kwargs["collection"], action)
            return view(*args, **kwargs)

        return cast(F, wrapper)

    return decorator


# -- set-up ----------------------------------------------------------------------------------------


def configure_tenant(config: dict[str, Any]) -> None:
    """Validate one tenant's JWT secret (Strapi's JWT_SECRET): required when a policy needs users."""
    config.setdefault("STRAPI_JWT_SECRET", "")
    config["STRAPI_JWT_SECRET"] = as_str(config, "STRAPI_JWT_SECRET")
    if not config["STRAPI_JWT_SECRET"]:
        if policies.needs_signed_in_users(config["POLICIES"]):
            raise ConfigError(
                f"{env_name('POLICIES')} grants actions to signed-in roles, "
                f"so {env_name('STRAPI_JWT_SECRET')} is required"
            )
        log.warning("%s is not set: requests with a bearer token get 503", env_name("STRAPI_JWT_SECRET"))
    elif len(config["STRAPI_JWT_SECRET"].encode()) < 32:
        log.warning(
            "%s is shorter than the 32 bytes RFC 7518 asks for HS256 (Strapi generates 24): "
            "consider a longer JWT_SECRET in Strapi",
            env_name("STRAPI_JWT_SECRET"),
        )


def _tenant_secret(header: dict[str, Any], claims: dict[str, Any]) -> str:
    """flask-jwt-extended's key: the JWT secret of the request's tenant (A's tokens fail on B)."""
    secret: str = tenant_config()["STRAPI_JWT_SECRET"]
    return secret


def init_app(app: Flask) -> None:
    """Validate the process-wide auth settings and configure flask-jwt-extended for Strapi's tokens."""
    config = app.config
    config.setdefault("JWT_LEEWAY", 10)
    config.setdefault("ROLE_CACHE_TTL", 60)
    config["JWT_LEEWAY"] = as_number(config, "JWT_LEEWAY", int, minimum=0)
    config["ROLE_CACHE_TTL"] = as_number(config, "ROLE_CACHE_TTL", int, minimum=0)
    # The secret is Strapi's choice, said once above; PyJWT would warn again on every request.
    warnings.filterwarnings("ignore", category=InsecureKeyLengthWarning)
    jwt.decode_key_loader(_tenant_secret)
    config.update(
        JWT_SECRET_KEY=None,  # each tenant's: _tenant_secret
        JWT_ALGORITHM="HS256",
        JWT_DECODE_ALGORITHMS=["HS256"],  # never "none", never an algorithm the header picks
        JWT_TOKEN_LOCATION=["headers"],
        JWT_HEADER_NAME="Authorization",  # read by bearer_token(), any case of the scheme
        JWT_HEADER_TYPE="Bearer",
        # Strapi tokens have no "sub": require "exp" (all Strapi tokens carry it, and a token
        # without one must never be accepted) and read the user id in user_id_of().
        JWT_IDENTITY_CLAIM="exp",
        JWT_DECODE_LEEWAY=config["JWT_LEEWAY"],
    )
    jwt.init_app(app)
