"""Request bodies: the limit for declared and chunked lengths, the 413 envelope, draining, JSON.

A chunked body reaches the app the way gunicorn passes it: no ``CONTENT_LENGTH``,
``Transfer-Encoding: chunked`` and ``wsgi.input_terminated`` set (the server ends the stream).
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable
from typing import Any

import pytest
import responses
from flask import Flask
from werkzeug.test import EnvironBuilder

from bffproxy import bodies, create_app

from .conftest import STRAPI
from .test_publishing import EDITOR, bearer, register_users, writes

MIB = 1024 * 1024
SECRET = "unit-webhook-secret"
WEBHOOK = {"X-Webhook-Secret": SECRET}


@pytest.fixture
def config(config: dict[str, Any]) -> dict[str, Any]:
    from .test_publishing import SECRET as JWT_SECRET

    config.update(
        STRAPI_JWT_SECRET=JWT_SECRET,
        POLICIES={"articles": "read=public,write=editor", "categories": "read=public,write=editor"},
        WEBHOOK_SECRET=SECRET,
        ADMIN_TOKEN="unit-admin-token",
    )
    return config


class Upload(io.BytesIO):
    """A request body that counts how much of it the app read (or discarded)."""

    @property
    def consumed(self) -> int:
        return self.tell()


def environ_for(
    path: str, body: bytes, *, chunked: bool = False, headers: dict[str, str] | None = None
) -> tuple[dict[str, Any], Upload]:
    """A WSGI environ for POST ``path`` with ``body``, declared or chunked as gunicorn passes it."""
    upload = Upload(body)
    builder = EnvironBuilder(
        path=path,
        method="POST",
        headers={"Content-Type": "application/json", **(headers or {})},
        input_stream=upload,
        content_length=None if chunked else len(body),
    )
    environ = builder.get_environ()
    if chunked:
        environ.pop("CONTENT_LENGTH", None)
        environ["HTTP_TRANSFER_ENCODING"] = "chunked"
        environ["wsgi.input_terminated"] = True
    environ["wsgi.input"] = upload
    return environ, upload


def call(app: Flask, environ: dict[str, Any]) -> tuple[int, dict[str, str], Any]:
    """Run the app's whole WSGI stack as gunicorn does: iterate the answer, then close it."""
    seen: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
        seen["status"], seen["headers"] = int(status.split()[0]), dict(headers)

    answer: Iterable[bytes] = app.wsgi_app(environ, start_response)
    try:
        body = b"".join(answer)
    finally:
        getattr(answer, "close", lambda: None)()
    return seen["status"], seen["headers"], json.loads(body) if body else None


def assert_too_large(status: int, body: Any, limit: int = MIB) -> None:
    assert status == 413
    error = body["error"]
    assert (error["status"], error["code"]) == (413, "payload_too_large")
    assert bodies.size_text(limit) in error["message"]
    assert error["details"] == {"max_bytes": limit}


def publish_body(size: int) -> bytes:
    """A one-shot publish whose JSON is ``size`` bytes long."""
    head, tail = b'{"title": "big", "content": "', b'"}'
    return head + b"x" * (size - len(head) - len(tail)) + tail


# -- declared Content-Length --------------------------------------------------------------------


def test_declared_length_over_the_limit_is_413_naming_it(app: Flask) -> None:
    environ, _ = environ_for("/webhooks/strapi", b" " * (2 * MIB), headers=WEBHOOK)
    status, headers, body = call(app, environ)
    assert_too_large(status, body)
    assert headers["Cache-Control"] == "no-store"
    assert body["error"]["request_id"] == headers["X-Request-ID"]


def test_declared_length_over_the_limit_is_refused_before_authentication(
    app: Flask, strapi: responses.RequestsMock
) -> None:
    # No token: the body is refused first, as nginx does, and nobody asks Strapi about a user.
    environ, _ = environ_for("/api/articles/publish", publish_body(2 * MIB))
    status, _, body = call(app, environ)
    assert_too_large(status, body)
    assert len(strapi.calls) == 0


def test_refused_declared_body_is_read_to_its_end_after_the_answer(app: Flask) -> None:
    # urllib sends all of its body before it reads: unread bytes make gunicorn's close a reset.
    environ, upload = environ_for("/webhooks/strapi", b" " * (5 * 1000 * 1000), headers=WEBHOOK)
    status, _, _ = call(app, environ)
    assert status == 413
    assert upload.consumed == 5 * 1000 * 1000


def test_declared_body_past_the_drain_bound_is_not_read_and_closes(app: Flask) -> None:
    size = bodies.DRAIN_BYTES + 1
    environ, upload = environ_for("/webhooks/strapi", b"", headers=WEBHOOK)
    environ["CONTENT_LENGTH"] = str(size)
    status, headers, body = call(app, environ)
    assert_too_large(status, body)
    assert upload.consumed == 0
    assert headers["Connection"] == "close"


def test_unread_body_within_the_limit_is_consumed_too(app: Flask) -> None:
    # A 401 answers before the view reads the body; the body is read anyway (it was buffered).
    environ, upload = environ_for("/api/articles/publish", publish_body(900 * 1024))
    status, _, body = call(app, environ)
    assert status == 401, body
    assert upload.consumed == 900 * 1024


def test_body_shorter_than_its_content_length_is_400(app: Flask) -> None:
    environ, _ = environ_for("/webhooks/strapi", b'{"event": "releases.publish"}', headers=WEBHOOK)
    environ["CONTENT_LENGTH"] = "1000"
    status, _, body = call(app, environ)
    assert (status, body["error"]["code"]) == (400, "bad_request")


# -- chunked: no declared length ----------------------------------------------------------------


def test_chunked_publish_over_the_limit_is_413_not_a_truncated_400(
    app: Flask, strapi: responses.RequestsMock
) -> None:
    register_users(strapi)
    environ, upload = environ_for(
        "/api/articles/publish", publish_body(5 * 1000 * 1000), chunked=True, headers=bearer(EDITOR)
    )
    status, _, body = call(app, environ)
    assert_too_large(status, body)
    assert writes(strapi) == []
    assert upload.consumed == 5 * 1000 * 1000  # discarded after the answer


def test_chunked_webhook_with_a_whitespace_tail_over_the_limit_is_413(app: Flask) -> None:
    # Cut at 1 MiB, this body is still valid JSON; it must be refused, not accepted as a 202.
    delivery = json.dumps({"event": "releases.publish"}).encode() + b" " * (2 * MIB)
    environ, _ = environ_for("/webhooks/strapi", delivery, chunked=True, headers=WEBHOOK)
    status, _, body = call(app, environ)
    assert_too_large(status, body)


def test_chunked_purge_over_the_limit_is_413(app: Flask) -> None:
    purge = json.dumps({"collection": "articles"}).encode() + b" " * (2 * MIB)
    headers = {"Authorization": "Bearer unit-admin-token"}
    environ, _ = environ_for("/admin/cache/purge", purge, chunked=True, headers=headers)
    status, _, body = call(app, environ)
    assert_too_large(status, body)


def test_chunked_body_past_the_drain_bound_is_discarded_only_up_to_it(app: Flask) -> None:
    environ, upload = environ_for("/webhooks/strapi", b" " * (bodies.DRAIN_BYTES + MIB), chunked=True)
    status, _, _ = call(app, environ)
    assert status == 413
    assert upload.consumed == bodies.DRAIN_BYTES


def test_chunked_body_of_exactly_the_limit_is_read_whole(
    config: dict[str, Any], strapi: responses.RequestsMock
) -> None:
    config["MAX_CONTENT_LENGTH"] = 300
    app = create_app(config)
    delivery = json.dumps({"event": "releases.publish"}).encode()
    delivery += b" " * (300 - len(delivery))
    environ, _ = environ_for("/webhooks/strapi", delivery, chunked=True, headers=WEBHOOK)
    status, _, body = call(app, environ)
    assert status == 202, body
    environ, _ = environ_for("/webhooks/strapi", delivery + b" ", chunked=True, headers=WEBHOOK)
    status, _, body = call(app, environ)
    assert_too_large(status, body, limit=300)


def test_chunked_login_body_reaches_strapi(app: Flask, strapi: responses.RequestsMock) -> None:
    # The auth pass-through reads a body only when it has a length: a chunked one now has one.
    strapi.post(f"{STRAPI}/api/auth/local", json={"jwt": "x", "user": {"id": 1}})
    credentials = {"identifier": "reader", "password": "Reader-Passw0rd!"}
    environ, _ = environ_for("/api/auth/local", json.dumps(credentials).encode(), chunked=True)
    status, _, _ = call(app, environ)
    assert status == 200
    assert json.loads(strapi.calls[0].request.body) == credentials


def test_chunked_login_over_the_limit_is_413(app: Flask, strapi: responses.RequestsMock) -> None:
    environ, _ = environ_for("/api/auth/local", b'{"identifier": "' + b"x" * (2 * MIB), chunked=True)
    status, _, body = call(app, environ)
    assert_too_large(status, body)
    assert len(strapi.calls) == 0


class BrokenChunks(io.BytesIO):
    """A chunked body the server cannot parse (gunicorn raises its own errors from ``read``)."""

    def read(self, size: int | None = -1) -> bytes:
        raise ValueError("Invalid chunk size")


def test_unreadable_chunked_body_is_400_in_the_envelope(app: Flask) -> None:
    environ, _ = environ_for("/webhooks/strapi", b"", chunked=True, headers=WEBHOOK)
    environ["wsgi.input"] = BrokenChunks()
    status, _, body = call(app, environ)
    assert (status, body["error"]["code"]) == (400, "bad_request")


def test_get_without_a_body_is_not_read(app: Flask, strapi: responses.RequestsMock) -> None:
    environ, upload = environ_for("/healthz", b"", chunked=False)
    environ.update(REQUEST_METHOD="GET", CONTENT_LENGTH="", **{"wsgi.input_terminated": True})
    environ.pop("CONTENT_TYPE", None)
    status, _, _ = call(app, environ)
    assert status == 200
    assert environ["wsgi.input"] is upload  # untouched: no buffering on the read path


# -- the test client (declared lengths) still works end to end ----------------------------------


def test_publish_within_the_limit_goes_through(app: Flask, strapi: responses.RequestsMock) -> None:
    register_users(strapi)
    strapi.post(f"{STRAPI}/api/articles", json={"data": {"documentId": "d" * 24, "title": "t"}}, status=201)
    client = app.test_client()
    headers = {**bearer(EDITOR), "Content-Type": "application/json"}
    answer = client.post("/api/articles/publish", data=publish_body(900 * 1024), headers=headers)
    assert answer.status_code != 413
    assert len(writes(strapi)) == 1


@pytest.mark.parametrize(("size", "text"), [(MIB, "1 MiB"), (2048, "2 KiB"), (1000, "1000 bytes")])
def test_size_text(size: int, text: str) -> None:
    assert bodies.size_text(size) == text


def test_nginx_refuses_at_the_same_limit_with_the_same_message() -> None:
    from bffproxy.settings import DEFAULTS

    from .test_deploy import SITE_CONF

    limit = DEFAULTS["MAX_CONTENT_LENGTH"]
    text = SITE_CONF.read_text()
    assert f"client_max_body_size {limit // MIB}m;" in text
    assert bodies.too_large(limit).message in text
    assert f'"details": {{"max_bytes": {limit}}}' in text


def test_a_body_that_does_not_arrive_in_time_is_a_408_and_frees_the_thread() -> None:
    # Found by the hostile tester: headers with Content-Length: 1000, one byte, then nothing, held a
    # gunicorn thread forever (behind nginx, which buffers bodies, it cannot happen).
    import socket

    from bffproxy.bodies import _REFUSAL, BodyLimit, BodyTimeout

    server, client = socket.socketpair()
    with server, client:
        client.sendall(b"{")
        environ = {
            "REQUEST_METHOD": "POST",
            "CONTENT_LENGTH": "1000",
            "wsgi.input": server.makefile("rb"),
            "gunicorn.socket": server,
        }
        limit = BodyLimit(lambda environ, start_response: [], 1024 * 1024, timeout=0.2)
        assert limit.buffer(environ) is None  # the read ended at the deadline
        refusal = environ[_REFUSAL]
        assert isinstance(refusal, BodyTimeout)
        assert (refusal.status, refusal.code, refusal.headers) == (
            408,
            "request_timeout",
            {"Connection": "close"},
        )


def test_a_body_that_arrives_in_time_is_read_whole() -> None:
    import socket

    from bffproxy.bodies import _REFUSAL, BodyLimit

    server, client = socket.socketpair()
    with server, client:
        client.sendall(b'{"a": 1}')
        environ = {
            "REQUEST_METHOD": "POST",
            "CONTENT_LENGTH": "8",
            "wsgi.input": server.makefile("rb"),
            "gunicorn.socket": server,
        }
        BodyLimit(lambda environ, start_response: [], 1024, timeout=5).buffer(environ)
        assert _REFUSAL not in environ and environ["wsgi.input"].read() == b'{"a": 1}'
