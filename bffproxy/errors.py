"""Error classes (status on the class) and the one JSON error envelope.

Every error bffproxy answers with, whatever raised it, leaves through :func:`error_response`:

    {"error": {"status": 502, "code": "upstream_unavailable", "message": "...", "request_id": "..."}}
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlsplit

from flask import Flask, Response, g, jsonify, request
from werkzeug.exceptions import HTTPException
from werkzeug.exceptions import NotFound as RouteNotFound
from werkzeug.routing import RequestRedirect

log = logging.getLogger(__name__)


class ApiError(Exception):
    """Base of every error bffproxy answers on purpose; subclasses set status and code."""

    status: int = 500
    code: str = "internal_error"
    message: str = "Internal error."

    def __init__(
        self,
        message: str | None = None,
        *,
        details: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message or self.message)
        self.message = message or self.message
        self.details = details
        self.headers = headers or {}
        # Set by the Strapi client on write failures that may have reached Strapi anyway.
        self.outcome_unknown = False


class BadRequest(ApiError):
    status, code, message = 400, "bad_request", "The request is malformed."


class DraftsNotAllowed(BadRequest):
    code, message = "drafts_not_allowed", "Draft content is not public."


class Unauthorized(ApiError):
    status, code, message = 401, "unauthorized", "Authentication is required."


class Forbidden(ApiError):
    status, code, message = 403, "forbidden", "You may not do this."


class NotFound(ApiError):
    status, code, message = 404, "not_found", "No such resource."


class Conflict(ApiError):
    status, code, message = 409, "conflict", "The request conflicts with one in progress."


class UnsupportedMediaType(ApiError):
    status, code, message = 415, "unsupported_media_type", "The body must be application/json."


class Unprocessable(ApiError):
    status, code, message = 422, "validation_failed", "The request body is not valid."


class TooManyRequests(ApiError):
    status, code, message = 429, "rate_limited", "Too many requests; retry later."


class NotImplementedYet(ApiError):
    status, code, message = 501, "not_implemented", "This operation is not available."


class UpstreamError(ApiError):
    status, code, message = 502, "upstream_error", "Strapi answered with an error."


class UpstreamUnavailable(ApiError):
    status, code, message = 502, "upstream_unavailable", "Strapi is unavailable."


class UpstreamBusy(UpstreamUnavailable):
    """Strapi is slow: the calls a worker may run or wait for are all taken (never sent)."""

    status, code, message = 503, "upstream_busy", "Too many requests are waiting for Strapi."


class ServiceUnavailable(ApiError):
    status, code, message = 503, "not_ready", "The service is not ready."


class UpstreamTimeout(ApiError):
    status, code, message = 504, "upstream_timeout", "Strapi did not answer in time."


def envelope(status: int, code: str, message: str, details: Any = None) -> dict[str, Any]:
    """Build the JSON error body every error response uses."""
    body: dict[str, Any] = {
        "status": status,
        "code": code,
        "message": message,
        "request_id": g.get("request_id"),
    }
    if details is not None:
        body["details"] = details
    return {"error": body}


def error_response(
    status: int, code: str, message: str, details: Any = None, headers: dict[str, str] | None = None
) -> Response:
    """Return the JSON error envelope as a response with the given status."""
    response = jsonify(envelope(status, code, message, details))
    response.status_code = status
    response.headers["Cache-Control"] = "no-store"
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def _http_code(exc: HTTPException) -> str:
    """Turn Werkzeug's 'Method Not Allowed' into 'method_not_allowed'."""
    return (exc.name or "error").lower().replace(" ", "_").replace("-", "_")


def handle_api_error(exc: ApiError) -> Response:
    """Answer one of our own errors."""
    return error_response(exc.status, exc.code, exc.message, exc.details, exc.headers)


def handle_http_exception(exc: HTTPException) -> Response:
    """Answer Werkzeug's errors (404 route, 405, 413 ...) in our envelope, keeping their headers."""
    status = exc.code or 500
    response = error_response(status, _http_code(exc), exc.description or exc.name)
    for name, value in exc.get_headers():
        if name.lower() not in ("content-type", "content-length"):
            response.headers[name] = value
    return response


def handle_unexpected(exc: Exception) -> Response:
    """Log the bug with its traceback; the client sees the envelope, never the trace."""
    if isinstance(exc, HTTPException):
        return handle_http_exception(exc)
    log.exception("unhandled error on request %s", g.get("request_id"))
    return error_response(500, "internal_error", "Internal error; it has been logged.")


def _no_routing_redirects() -> None:
    """Make a routing redirect (a rule ending in '/' asked without it) a 404 in the envelope.

    Flask hands RequestRedirect to no error handler: it would leave as Werkzeug's HTML 308 with a
    Location built from the client's Host. The path it points to is named, never redirected to.
    """
    redirect = request.routing_exception
    if isinstance(redirect, RequestRedirect):
        path = urlsplit(redirect.new_url).path
        request.routing_exception = RouteNotFound(f"No such resource; the path is {path}.")


def init_app(app: Flask) -> None:
    """Register the handlers that turn every error into the envelope."""
    app.before_request(_no_routing_redirects)
    app.register_error_handler(ApiError, handle_api_error)
    app.register_error_handler(HTTPException, handle_http_exception)
    app.register_error_handler(Exception, handle_unexpected)
