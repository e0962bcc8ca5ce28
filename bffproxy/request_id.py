"""Request ids: taken from the client's ``X-Request-ID`` when sane, else generated; echoed back.

With ``BFFPROXY_DEBUG_HEADERS=true`` every response also names the worker process that served it
(``X-BFF-Worker``), which is how the end-to-end tests prove that workers share one cache.
"""

from __future__ import annotations

import os
import re
import uuid

from flask import Flask, Response, current_app, g, request

from .settings import as_bool

HEADER = "X-Request-ID"
_SANE = re.compile(r"[A-Za-z0-9._:-]{1,128}")  # whole value: fullmatch, never `$` (it allows "\n")


def request_id_for(offered: str | None) -> str:
    """The client's id when it is sane (short, no spaces or control characters), else a new one."""
    return offered if offered and _SANE.fullmatch(offered) else uuid.uuid4().hex


def _assign() -> None:
    """Give the request its id before anything can log or fail."""
    g.request_id = request_id_for(request.headers.get(HEADER))


def _echo(response: Response) -> Response:
    """Return the id so clients and nginx logs can quote it."""
    response.headers[HEADER] = g.get("request_id", "")
    if current_app.config["DEBUG_HEADERS"]:
        response.headers["X-BFF-Worker"] = str(os.getpid())
    return response


def current_request_id() -> str:
    """The id of the request being served."""
    return str(g.get("request_id", ""))


def init_app(app: Flask) -> None:
    """Assign and echo request ids on every request."""
    app.config["DEBUG_HEADERS"] = as_bool(app.config, "DEBUG_HEADERS")
    app.before_request(_assign)
    app.after_request(_echo)
