"""Request bodies: counted against ``MAX_CONTENT_LENGTH`` as they arrive, then read as JSON.

:class:`BodyLimit` is a WSGI middleware in front of the whole app. It reads each request body before
Flask sees it, as nginx does with ``proxy_request_buffering``, so every view reads a body of known
length from memory:

- a declared ``Content-Length`` over the limit is refused with ``413 payload_too_large`` before any
  view (or authentication) runs;
- a body of unknown length (``Transfer-Encoding: chunked``) is counted as it streams; one byte
  over the limit is a 413, never a body silently cut at the limit (Werkzeug's ``LimitedStream``
  stops reading at ``max_content_length`` and returns what it has);
- after a refusal the rest of the body is read and thrown away, up to :data:`DRAIN_BYTES`, so a
  client that sends its whole body before reading (Python's urllib) gets the 413 instead of a
  reset connection when gunicorn closes a socket with unread data in it.

A body must arrive within ``BFFPROXY_BODY_TIMEOUT`` seconds (30): a client that sends its headers
and then a byte now and then would otherwise hold a worker's thread for as long as it likes (behind
nginx, which buffers bodies, this cannot happen; with gunicorn exposed it can). Under gunicorn a
watchdog shuts the connection's read side at the deadline, the read ends, and the answer is
``408 request_timeout`` with ``Connection: close``.

Routes registered in ``app.extensions["bffproxy.streamed_bodies"]`` (``(method, path) -> limit``,
the media upload) are not buffered: a declared length over *their* limit is refused the same way,
otherwise the view reads the stream itself, counting against that limit, and whatever it left
unread is discarded after the answer.
"""

from __future__ import annotations

import contextlib
import io
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from flask import Flask, request
from werkzeug.wsgi import ClosingIterator, get_content_length

from .errors import ApiError, BadRequest
from .settings import as_number

log = logging.getLogger(__name__)

WsgiApp = Callable[[dict[str, Any], Any], Iterable[bytes]]

#: The most of a refused body read and discarded so the client can read the answer. A declared
#: body larger than this is not read at all (the client will likely see the connection reset).
DRAIN_BYTES = 16 * 1024 * 1024
#: A slow client does not hold a thread longer than this while its refused body is discarded.
DRAIN_SECONDS = 10.0
_READ_SIZE = 64 * 1024
_REFUSAL = "bffproxy.body_refusal"


class PayloadTooLarge(ApiError):
    status, code, message = 413, "payload_too_large", "The request body is too large."


class BodyTimeout(ApiError):
    status, code, message = 408, "request_timeout", "The request body did not arrive in time."


class Watchdog:
    """Shuts a connection's read side when a body takes longer than its deadline to arrive."""

    def __init__(self, environ: dict[str, Any], seconds: float) -> None:
        self.fired = False
        self._socket: Any = environ.get("gunicorn.socket")  # other servers: no watchdog
        self._timer: threading.Timer | None = None
        if self._socket is not None and seconds > 0:
            self._timer = threading.Timer(seconds, self._fire)
            self._timer.daemon = True
            self._timer.start()

    def _fire(self) -> None:
        self.fired = True
        with contextlib.suppress(OSError):  # the client is already gone
            self._socket.shutdown(socket.SHUT_RD)  # the blocked recv returns: the read ends

    def stop(self) -> None:
        """The body arrived (or failed) in time: no shutdown."""
        if self._timer is not None:
            self._timer.cancel()


def size_text(size: int) -> str:
    """``1048576`` as ``1 MiB``, ``2048`` as ``2 KiB``, anything else in bytes."""
    for unit, factor in (("MiB", 1024 * 1024), ("KiB", 1024)):
        if size % factor == 0:
            return f"{size // factor} {unit}"
    return f"{size} bytes"


def too_large(limit: int) -> PayloadTooLarge:
    """The 413 naming the limit, in words and in bytes."""
    return PayloadTooLarge(
        f"The request body is larger than {size_text(limit)}, the most this service accepts.",
        details={"max_bytes": limit},
    )


class BodyLimit:
    """WSGI middleware: buffer request bodies up to ``limit`` bytes, refuse and drain larger ones."""

    def __init__(
        self,
        wsgi_app: WsgiApp,
        limit: int,
        streamed: Mapping[tuple[str, str], int] | None = None,
        timeout: float = 30.0,
    ) -> None:
        self.wsgi_app = wsgi_app
        self.limit = limit
        self.streamed = dict(streamed or {})
        self.timeout = timeout

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        drain = self.buffer(environ)
        answer = self.wsgi_app(environ, start_response)
        if drain is None:
            return answer
        return ClosingIterator(answer, drain)  # discard the rest once the answer is sent

    def buffer(self, environ: dict[str, Any]) -> Callable[[], None] | None:
        """Put the body in memory or record a refusal; return what discards the unread rest."""
        stream = environ["wsgi.input"]
        declared = get_content_length(environ)
        streamed = self.streamed.get((environ.get("REQUEST_METHOD", ""), environ.get("PATH_INFO", "")))
        if streamed is not None:
            return self.pass_stream(environ, streamed, stream, declared)
        if declared is not None and declared > self.limit:
            return self.refuse(environ, too_large(self.limit), stream, declared)
        if declared is not None:
            if declared == 0:
                return None
            expected = declared
        elif self.unknown_length(environ):
            expected = self.limit + 1  # one byte more than allowed tells "over" from "exactly"
        else:
            return None  # no body, or a server that does not terminate the stream: Werkzeug's way
        watchdog = Watchdog(environ, self.timeout)
        try:
            body = read_up_to(stream, expected)
        except Exception as exc:  # the server's own parse error (bad chunk size) or a reset
            body = None
            log.info("request body unreadable: %s", exc)
        finally:
            watchdog.stop()
        if watchdog.fired:
            log.warning("request body not received within %.0f s; closing the connection", self.timeout)
            environ[_REFUSAL] = BodyTimeout(
                f"The request body did not arrive within {self.timeout:g} s.", headers={"Connection": "close"}
            )
            return None
        if body is None:
            environ[_REFUSAL] = BadRequest("The request body could not be read.")
            return None
        if len(body) > self.limit:
            return self.refuse(environ, too_large(self.limit), stream, None, already=len(body))
        if declared and len(body) < declared:
            environ[_REFUSAL] = BadRequest("The request body ended before its Content-Length.")
            return None
        if body:
            environ["wsgi.input"] = io.BytesIO(body)
            environ["CONTENT_LENGTH"] = str(len(body))
            environ.pop("HTTP_TRANSFER_ENCODING", None)  # the body now has a length
        return None

    def pass_stream(
        self, environ: dict[str, Any], limit: int, stream: Any, declared: int | None
    ) -> Callable[[], None] | None:
        """Leave the body to its view, which counts it (refused here if it declares more than ``limit``)."""
        if declared is not None and declared > limit:
            # An upload a little over a large limit still gets a 413 its client can read.
            return self.refuse(environ, too_large(limit), stream, declared, bound=limit + DRAIN_BYTES)
        if declared is None and not self.unknown_length(environ):
            return None  # nothing the view could read
        return lambda: discard(stream, DRAIN_BYTES if declared is None else declared)

    @staticmethod
    def unknown_length(environ: dict[str, Any]) -> bool:
        """True when a body without Content-Length may follow: chunked, or any non-GET/HEAD."""
        if not environ.get("wsgi.input_terminated"):
            return False  # the server does not end the stream for us; reading could block
        method = environ.get("REQUEST_METHOD")
        return "HTTP_TRANSFER_ENCODING" in environ or method not in ("GET", "HEAD")

    def refuse(
        self,
        environ: dict[str, Any],
        error: ApiError,
        stream: Any,
        declared: int | None,
        *,
        already: int = 0,
        bound: int = DRAIN_BYTES,
    ) -> Callable[[], None] | None:
        """Record the refusal for the app; return the discarding of the rest, if it is within ``bound``."""
        environ[_REFUSAL] = error
        environ["wsgi.input"] = io.BytesIO()
        environ["CONTENT_LENGTH"] = "0"
        environ.pop("HTTP_TRANSFER_ENCODING", None)
        if declared is not None and declared > bound:
            error.headers["Connection"] = "close"  # honoured by servers that let the app say so
            return None
        budget = declared if declared is not None else DRAIN_BYTES - already
        return lambda: discard(stream, budget)


def read_up_to(stream: Any, size: int) -> bytes:
    """At most ``size`` bytes from ``stream``, fewer only when it ends first."""
    parts: list[bytes] = []
    while size > 0:
        chunk = stream.read(min(size, _READ_SIZE))
        if not chunk:
            break
        parts.append(chunk)
        size -= len(chunk)
    return b"".join(parts)


def discard(stream: Any, budget: int) -> None:
    """Read and drop up to ``budget`` bytes, for at most :data:`DRAIN_SECONDS`."""
    deadline = time.monotonic() + DRAIN_SECONDS
    try:
        while budget > 0 and time.monotonic() < deadline:
            chunk = stream.read(min(budget, _READ_SIZE))
            if not chunk:
                return
            budget -= len(chunk)
    except Exception as exc:  # the client gave up; gunicorn closes the connection
        log.debug("stopped discarding a refused body: %s", exc)


def _refuse_recorded_body() -> None:
    """Answer the refusal :class:`BodyLimit` recorded, in the envelope, before any view runs."""
    refusal = request.environ.get(_REFUSAL)
    if refusal is not None:
        raise refusal


def init_app(app: Flask) -> None:
    """Count and buffer request bodies in front of everything else the app's WSGI stack does."""
    app.before_request(_refuse_recorded_body)
    streamed = app.extensions.get("bffproxy.streamed_bodies")
    app.config.setdefault("BODY_TIMEOUT", 30.0)
    timeout = as_number(app.config, "BODY_TIMEOUT", float, minimum=0.001)
    app.config["BODY_TIMEOUT"] = timeout
    limit = app.config["MAX_CONTENT_LENGTH"]
    app.wsgi_app = BodyLimit(app.wsgi_app, limit, streamed, timeout)  # type: ignore[method-assign]


def json_or_none(*, force: bool = False) -> Any:
    """The body parsed as JSON, or None when it is empty, not JSON, or nested too deeply to parse.

    ``force`` ignores the Content-Type (Strapi's webhooks, operators' curl commands). A body over
    ``MAX_CONTENT_LENGTH`` never gets here: :class:`BodyLimit` has answered it with a 413.
    """
    try:
        return request.get_json(force=force, silent=True)
    except RecursionError:  # "[[[[..." deeper than the parser can go
        return None
