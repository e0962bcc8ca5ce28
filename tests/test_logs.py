"""bffproxy's log output: one line per record whatever a client sends, each record written once."""

from __future__ import annotations

import io
import json
import logging
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import responses
from cachelib import FileSystemCache
from gunicorn.config import Config as GunicornConfig

from bffproxy import create_app
from bffproxy.errors import UpstreamError
from bffproxy.logs import FORMAT, AccessLogger, OneLineFormatter, access_line, access_log, escape_controls
from bffproxy.metrics import CACHE, ROUTE, UPSTREAM
from bffproxy.tenant_routing import ENVIRON_KEY
from bffproxy.tenants import current_tenant

from .conftest import STRAPI

FORGED = "x\nFAKE-LINE ERROR forged\r\x1b[31m"
ESCAPED = "x\\nFAKE-LINE ERROR forged\\r\\x1b[31m"
RECORD_START = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} \[\d+\] [A-Z]+ bffproxy")


@contextmanager
def owned_logging() -> Iterator[io.StringIO]:
    """Logging as under gunicorn: nothing configured, so bffproxy installs its handler (on stderr).

    pytest gives the root logger its capture handlers for each test; they are set aside here, the
    way gunicorn leaves the root logger bare, and everything is put back afterwards.
    """
    root, bff = logging.getLogger(), logging.getLogger("bffproxy")
    saved_root, saved_bff, saved_stderr = root.handlers[:], bff.handlers[:], sys.stderr
    root.handlers, bff.handlers = [], []
    sys.stderr = stream = io.StringIO()
    try:
        yield stream
    finally:
        sys.stderr = saved_stderr
        root.handlers, bff.handlers = saved_root, saved_bff
        bff.propagate = True


def lines(stream: io.StringIO) -> list[str]:
    return stream.getvalue().splitlines()


def assert_one_line_per_record(stream: io.StringIO) -> None:
    """Every physical line of bffproxy's log starts a record: nothing was forged."""
    assert lines(stream), "nothing was logged"
    for line in lines(stream):
        assert RECORD_START.match(line), line


# -- the escaping ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "escaped"),
    [
        ("plain text, 'quotes' and unicode: é ✓", "plain text, 'quotes' and unicode: é ✓"),
        ("a\nb\r\nc\td", "a\\nb\\r\\nc\\td"),
        ("\x00\x1b\x7f\x85\x9b", "\\x00\\x1b\\x7f\\x85\\x9b"),
        ("line\u2028para\u2029", "line\\u2028para\\u2029"),
    ],
)
def test_control_characters_are_escaped_repr_style(text: str, escaped: str) -> None:
    assert escape_controls(text) == escaped


def test_a_traceback_stays_on_the_records_line() -> None:
    logger = logging.Logger("bffproxy.example")
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(OneLineFormatter("%(levelname)s %(message)s"))
    logger.addHandler(handler)
    try:
        raise RuntimeError(FORGED)
    except RuntimeError:
        logger.exception("failed on %s", FORGED)
    [line] = lines(stream)
    assert line.startswith(f"ERROR failed on {ESCAPED}\\nTraceback (most recent call last):\\n")
    assert line.endswith(f"RuntimeError: {ESCAPED}")


# -- hostile values through real code paths ----------------------------------------------------


@pytest.fixture
def hostile_config(config: dict[str, Any]) -> dict[str, Any]:
    return {**config, "WEBHOOK_SECRET": "webhook-secret", "STRAPI_JWT_SECRET": "s" * 32}


def test_a_hostile_path_is_a_404_and_forges_no_line(
    hostile_config: dict[str, Any], strapi: responses.RequestsMock
) -> None:
    with owned_logging() as stream:
        client = create_app(hostile_config).test_client()
        response = client.get("/api/articles/x%0aFAKE-LINE%20ERROR?filters[$and]=1")
        assert response.status_code == 404
    assert not any(line.startswith("FAKE") for line in lines(stream))
    assert all(RECORD_START.match(line) for line in lines(stream))


def test_a_path_strapi_fails_on_is_logged_on_one_line(hostile_config: dict[str, Any]) -> None:
    """The Strapi client logs the path of a failed call: a decoded line break stays escaped."""
    with owned_logging() as stream, responses.RequestsMock() as strapi:
        app = create_app(hostile_config)
        strapi.get(re.compile(f"{STRAPI}/api/articles/.*"), status=500)
        with app.test_request_context("/api/articles"):
            app.preprocess_request()  # resolves the tenant, as for any request
            with pytest.raises(UpstreamError):
                current_tenant().strapi.request("GET", f"api/articles/{FORGED}")
    assert_one_line_per_record(stream)
    assert f"strapi GET api/articles/{ESCAPED} answered 500" in stream.getvalue()


def test_a_webhook_with_a_hostile_model_and_event_is_logged_on_one_line(
    hostile_config: dict[str, Any],
) -> None:
    with owned_logging() as stream:
        client = create_app(hostile_config).test_client()
        body = {"event": "entry.update", "model": FORGED, "entry": {"documentId": "abc"}}
        response = client.post("/webhooks/strapi", json=body, headers={"X-Webhook-Secret": "webhook-secret"})
        assert response.status_code == 202
        body = {"event": FORGED, "model": "article", "entry": {"documentId": "abc"}}
        client.post("/webhooks/strapi", json=body, headers={"X-Webhook-Secret": "webhook-secret"})
    assert_one_line_per_record(stream)
    assert f"webhook entry.update {ESCAPED} abc" in stream.getvalue()


def test_a_hostile_request_id_and_bad_token_never_reach_the_log(
    hostile_config: dict[str, Any], strapi: responses.RequestsMock
) -> None:
    """An unhandled error logs the request id: a hostile X-Request-ID is replaced, never quoted."""
    with owned_logging() as stream:
        app = create_app(hostile_config)

        @app.get("/boom")
        def boom() -> None:
            raise RuntimeError(f"built from client input: {FORGED}")

        client = app.test_client()
        environ = {"HTTP_X_REQUEST_ID": "abc\nFAKE-LINE", "HTTP_AUTHORIZATION": "Bearer \x1b[2J\nFAKE"}
        assert client.get("/api/articles", environ_overrides=environ).status_code == 401
        response = client.get("/boom", environ_overrides={"HTTP_X_REQUEST_ID": "abc\n"})
        assert response.status_code == 500
    assert response.headers["X-Request-ID"] != "abc\n"
    assert_one_line_per_record(stream)
    [record] = lines(stream)
    assert f"unhandled error on request {response.headers['X-Request-ID']}\\n" in record
    assert f"RuntimeError: built from client input: {ESCAPED}" in record


# -- each record once --------------------------------------------------------------------------


def test_after_cachelibs_first_warning_each_record_is_written_once(
    config: dict[str, Any], tmp_path: Path
) -> None:
    """cachelib warns with ``logging.warning()``, which gives the root logger a handler of its own."""
    cache = FileSystemCache(str(tmp_path / "cachelib"))
    Path(cache._get_filename("broken")).write_bytes(b"\x00")  # too short for cachelib's header
    with owned_logging() as stream:
        create_app(config)
        assert cache.get("broken") is None  # cachelib logs its warning on the root logger
        assert logging.getLogger().handlers, "cachelib's warning no longer configures the root logger"
        logging.getLogger("bffproxy.content").warning("one record")
        logging.getLogger("bffproxy").error("another record")
    assert sum("one record" in line for line in lines(stream)) == 1
    assert sum("another record" in line for line in lines(stream)) == 1


def test_building_more_apps_adds_no_second_handler(config: dict[str, Any]) -> None:
    with owned_logging() as stream:
        create_app(config)
        create_app(config)
        logging.getLogger("bffproxy.auth").warning("once")
    assert sum(line.endswith("once") for line in lines(stream)) == 1


def test_logging_the_operator_configured_is_left_alone(config: dict[str, Any]) -> None:
    with owned_logging():
        operator = logging.StreamHandler(io.StringIO())
        logging.getLogger().addHandler(operator)
        create_app(config)
        assert logging.getLogger("bffproxy").handlers == []
        assert logging.getLogger("bffproxy").propagate


def test_a_record_logged_while_serving_names_the_tenant_and_the_request_id(
    hostile_config: dict[str, Any],
) -> None:
    with owned_logging() as stream:
        client = create_app(hostile_config).test_client()
        body = {"event": "entry.update", "model": "nothing", "entry": {"documentId": "abc"}}
        headers = {"X-Webhook-Secret": "webhook-secret", "X-Request-ID": "req-42"}
        assert client.post("/webhooks/strapi", json=body, headers=headers).status_code == 202
    [line] = [line for line in lines(stream) if "webhook entry.update" in line]
    assert " tenant=default rid=req-42: webhook entry.update nothing abc" in line
    outside = logging.LogRecord("bffproxy.x", logging.INFO, __file__, 1, "started", None, None)
    assert "tenant=- rid=-: started" in OneLineFormatter(FORMAT).format(outside)


# -- the access log ------------------------------------------------------------------------------


class SentResponse:
    """What gunicorn's Response tells its logger once the answer is sent."""

    def __init__(
        self, status: int = 200, headers: list[tuple[str, str]] | None = None, sent: int = 42
    ) -> None:
        self.status = f"{status} X"
        self.status_code = status
        self.headers = headers if headers is not None else [("X-Request-ID", "rid-1"), ("X-Cache", "HIT")]
        self.sent = sent


class SentRequest:
    """gunicorn's parsed request: its headers (the text format may quote them)."""

    headers = [("AUTHORIZATION", "Bearer SECRET-TOKEN"), ("COOKIE", "session=SECRET-COOKIE")]


def gunicorn_environ(raw_uri: str = "/api/articles?ticket=SECRET-TICKET", **extra: Any) -> dict[str, Any]:
    environ = {
        "REQUEST_METHOD": "GET",
        "RAW_URI": raw_uri,
        "PATH_INFO": raw_uri.split("?")[0],
        "QUERY_STRING": raw_uri.partition("?")[2],
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "203.0.113.7",
        "HTTP_AUTHORIZATION": "Bearer SECRET-TOKEN",
        "HTTP_COOKIE": "session=SECRET-COOKIE",
    }
    return {**environ, **extra}


def access_logger(access_format: str) -> tuple[AccessLogger, io.StringIO]:
    """gunicorn's logger as gunicorn.conf.py makes it, writing its access lines to a string."""
    cfg = GunicornConfig()
    cfg.set("accesslog", "-")
    cfg.set("access_log_format", ACCESS_FORMAT)
    logger = AccessLogger(cfg)
    stream = io.StringIO()
    for handler in logger.access_log.handlers:
        if getattr(handler, "_gunicorn", False):  # not pytest's capture handlers
            handler.setStream(stream)
    access_log["format"] = access_format
    return logger, stream


ACCESS_FORMAT = '%(h)s "%(r)s" %(s)s %(b)s rid=%({x-request-id}o)s'


@pytest.fixture
def tenant() -> Any:
    class Named:
        name = "acme"

    return Named()


def test_an_access_line_is_one_json_object_with_what_the_app_noted(tenant: Any) -> None:
    environ = gunicorn_environ(
        **{ENVIRON_KEY: tenant, ROUTE: "/api/<collection>", CACHE: "coalesced", UPSTREAM: 0.0123456}
    )
    logger, stream = access_logger("json")
    try:
        logger.access(SentResponse(), None, environ, timedelta(milliseconds=12, microseconds=345))
    finally:
        access_log["format"] = "json"
    line = stream.getvalue()
    assert line.count("\n") == 1
    record = json.loads(line)
    assert record.pop("time").endswith("Z")
    assert record == {
        "log": "access",
        "request_id": "rid-1",
        "tenant": "acme",
        "client": "203.0.113.7",
        "method": "GET",
        "path": "/api/articles",
        "route": "/api/<collection>",
        "status": 200,
        "bytes": 42,
        "duration_ms": 12.345,
        "cache": "coalesced",
        "upstream_ms": 12.346,
    }


def test_an_answer_the_app_noted_nothing_about_has_nulls() -> None:
    record = json.loads(access_line(SentResponse(404, headers=[]), gunicorn_environ("/x"), timedelta(0)))
    assert record["tenant"] is record["route"] is record["cache"] is record["upstream_ms"] is None
    assert record["request_id"] is None and record["status"] == 404


@pytest.mark.parametrize("access_format", ["json", "text"])
def test_no_query_header_or_cookie_reaches_an_access_line(access_format: str) -> None:
    logger, stream = access_logger(access_format)
    try:
        logger.access(SentResponse(), SentRequest(), gunicorn_environ(), timedelta(0))
    finally:
        access_log["format"] = "json"
    line = stream.getvalue()
    assert "/api/articles" in line
    assert "SECRET" not in line and "ticket" not in line


def test_a_forwarded_address_with_controls_is_escaped_in_the_text_format() -> None:
    logger, stream = access_logger("text")
    try:
        environ = gunicorn_environ(REMOTE_ADDR='1.2.3.4\x85FAKE "GET /x HTTP/1.1" 200')
        logger.access(SentResponse(), SentRequest(), environ, timedelta(0))
    finally:
        access_log["format"] = "json"
    # gunicorn escapes the quotes, bffproxy the control character
    line = stream.getvalue()
    assert line.startswith('1.2.3.4\\x85FAKE \\"GET /x HTTP/1.1\\" 200 "GET /api/articles HTTP/1.1"')
    assert line.count("\n") == 1 and "\x85" not in line


def test_the_text_format_is_gunicorns_without_the_query() -> None:
    logger, stream = access_logger("text")
    try:
        logger.access(SentResponse(), SentRequest(), gunicorn_environ(), timedelta(0))
    finally:
        access_log["format"] = "json"
    assert stream.getvalue() == '203.0.113.7 "GET /api/articles HTTP/1.1" 200 42 rid=rid-1\n'


@pytest.mark.parametrize(
    "target",
    [
        "/api/x\nFAKE-LINE",
        '/api/x\r\n{"log": "access", "status": 200}',
        '/api/\x1b[2J\x85\u2028é"\\',
    ],
)
def test_a_hostile_path_stays_inside_its_json_string(target: str) -> None:
    line = access_line(SentResponse(), gunicorn_environ(target), timedelta(0))
    assert line.isascii() and line.isprintable()
    assert json.loads(line)["path"] == target


def test_the_app_chooses_the_access_log_format(config: dict[str, Any]) -> None:
    try:
        create_app({**config, "ACCESS_LOG_FORMAT": "TEXT"})
        assert access_log["format"] == "text"
        create_app(config)
        assert access_log["format"] == "json"
    finally:
        access_log["format"] = "json"


def test_gunicorns_error_log_quotes_no_query() -> None:
    """A refused request line (or a failed target) is quoted by gunicorn: without its query."""
    logger = AccessLogger(GunicornConfig())
    stream = io.StringIO()
    for handler in logger.error_log.handlers:
        if getattr(handler, "_gunicorn", False):
            handler.setStream(stream)
    logger.warning(
        "Invalid request from ip=1.2.3.4: Invalid HTTP request line: 'GET /x?ticket=T1&a=b HTTP/1.1 x'"
    )
    logger.exception("Error handling request %s %s", "GET", "/api/events?ticket=T2")
    logger.setup(GunicornConfig())  # a HUP sets it up again: the filter stays, once
    logger.info("no query here: %s", "/healthz")
    logging.raiseExceptions, raising = False, logging.raiseExceptions
    try:
        logger.info("arguments that do not fit %s %s", "?one")  # the caller never sees an error
    finally:
        logging.raiseExceptions = raising
    text = stream.getvalue()
    assert "T1" not in text and "T2" not in text and "a=b" not in text
    assert "request line: 'GET /x?[query removed] HTTP/1.1 x'" in text
    assert "Error handling request GET /api/events?[query removed]" in text
    assert logger.error_log.filters.count(logger.error_log.filters[0]) == 1


@pytest.mark.parametrize(
    ("raw", "path"),
    [
        ("http://alice:pw@acme.test:8080/api/x%20y?ticket=T", "/api/x%20y"),
        ("https://acme.test", "/"),
        ("//not-a-host/api/x?y", "//not-a-host/api/x"),  # origin form: a path, kept as sent
        ("/api/x?ticket=T", "/api/x"),
    ],
)
def test_the_logged_path_has_no_credentials_nor_query(raw: str, path: str) -> None:
    from bffproxy.logs import target_path

    assert target_path({"RAW_URI": raw}) == path
