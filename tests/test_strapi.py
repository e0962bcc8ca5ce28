"""The Strapi client: one boundary for transport errors, retries for idempotent reads only."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
import responses
from urllib3.connection import HTTPConnection
from urllib3.exceptions import (
    ConnectTimeoutError,
    MaxRetryError,
    NameResolutionError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
)

from bffproxy.errors import ApiError, UpstreamError, UpstreamTimeout, UpstreamUnavailable
from bffproxy.strapi import StrapiClient

from .conftest import STRAPI
from .e2e.services import free_port


class ScriptedStrapi(BaseHTTPRequestHandler):
    """A real HTTP server answering from a script of statuses; it counts what it received."""

    script: list[int] = []
    seen: list[str] = []

    def _answer(self) -> None:
        type(self).seen.append(f"{self.command} {self.path}")
        status = type(self).script.pop(0) if type(self).script else 200
        if status == 0:  # scripted hang: answer after the client's read timeout
            threading.Event().wait(0.5)
            status = 200
        body = b'{"data":[]}'
        self.send_response(status)
        if status == 503:
            self.send_header("Retry-After", "0")
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def scripted() -> Iterator[tuple[str, type[ScriptedStrapi]]]:
    ScriptedStrapi.script, ScriptedStrapi.seen = [], []
    server = ThreadingHTTPServer(("127.0.0.1", 0), ScriptedStrapi)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", ScriptedStrapi
    server.shutdown()
    server.server_close()


def test_get_retries_503_then_succeeds(scripted: tuple[str, type[ScriptedStrapi]]) -> None:
    url, handler = scripted
    handler.script = [503, 502]
    answer = StrapiClient(url, retries=2).request("GET", "api/articles")
    assert answer.status == 200
    assert handler.seen == ["GET /api/articles"] * 3


def test_post_is_never_retried_on_5xx(scripted: tuple[str, type[ScriptedStrapi]]) -> None:
    url, handler = scripted
    handler.script = [503]
    with pytest.raises(UpstreamUnavailable):
        StrapiClient(url, retries=2).request("POST", "api/articles", json_body={"data": {}})
    assert handler.seen == ["POST /api/articles"]


@pytest.mark.parametrize(
    ("status", "error"),
    [(500, UpstreamError), (501, UpstreamError), (502, UpstreamUnavailable), (503, UpstreamUnavailable)],
)
def test_a_gateways_502_and_503_say_unavailable_other_5xx_say_failed(
    scripted: tuple[str, type[ScriptedStrapi]], status: int, error: type[Exception]
) -> None:
    # Found by the hostile tester: a Strapi behind a gateway answering 503 never opened the circuit.
    url, handler = scripted
    handler.script = [status]
    with pytest.raises(error):
        StrapiClient(url, retries=0).request("GET", "api/articles")


def test_persistent_5xx_becomes_502(scripted: tuple[str, type[ScriptedStrapi]]) -> None:
    url, handler = scripted
    handler.script = [500]
    with pytest.raises(UpstreamError) as excinfo:
        StrapiClient(url, retries=0).request("GET", "api/articles")
    assert excinfo.value.status == 502
    assert "500" in excinfo.value.message


def test_connection_refused_is_502_and_write_outcome_known() -> None:
    client = StrapiClient(f"http://127.0.0.1:{free_port()}", retries=0)
    with pytest.raises(UpstreamUnavailable) as excinfo:
        client.request("POST", "api/articles", json_body={})
    assert excinfo.value.status == 502
    assert excinfo.value.outcome_unknown is False


def test_get_read_timeout_is_504_and_not_retried(scripted: tuple[str, type[ScriptedStrapi]]) -> None:
    url, handler = scripted
    handler.script = [0]
    with pytest.raises(UpstreamTimeout) as excinfo:
        StrapiClient(url, retries=2, read_timeout=0.1).request("GET", "api/articles")
    assert excinfo.value.status == 504
    assert handler.seen == ["GET /api/articles"]


@responses.activate
def test_read_timeout_is_504_and_write_outcome_unknown() -> None:
    responses.post(f"{STRAPI}/api/articles", body=requests.ReadTimeout("slow"))
    with pytest.raises(UpstreamTimeout) as excinfo:
        StrapiClient(STRAPI).request("POST", "api/articles", json_body={})
    assert excinfo.value.status == 504
    assert excinfo.value.outcome_unknown is True


@responses.activate
def test_4xx_is_returned_with_body_for_pass_through() -> None:
    responses.get(f"{STRAPI}/api/articles/x", status=404, json={"data": None, "error": {"status": 404}})
    answer = StrapiClient(STRAPI).request("GET", "api/articles/x")
    assert answer.status == 404
    assert answer.json()["error"]["status"] == 404


@responses.activate
def test_headers_sent_to_strapi() -> None:
    responses.get(f"{STRAPI}/api/articles", json={})
    client = StrapiClient(STRAPI, api_token="tok")
    client.request("GET", "api/articles", headers={**client.service_authorization(), "X-Request-ID": "r1"})
    sent = responses.calls[0].request.headers
    assert sent["Authorization"] == "Bearer tok"
    assert sent["X-Request-ID"] == "r1"
    assert sent["User-Agent"].startswith("bffproxy/")


def test_ping_is_false_when_nothing_listens() -> None:
    assert StrapiClient(f"http://127.0.0.1:{free_port()}").ping(0.2) is False


# -- transport errors as requests raises them (shared by test_publishing, test_idempotency, test_audit)


def _gave_up(reason: Exception) -> MaxRetryError:
    """urllib3's wrapper after its connect retries are spent."""
    return MaxRetryError(None, "/api/articles", reason)  # type: ignore[arg-type]


def _connection() -> HTTPConnection:
    return HTTPConnection("strapi.test", 80)


def connection_refused() -> requests.ConnectionError:
    """Nothing listens on Strapi's port: the request never left."""
    refused = NewConnectionError(_connection(), "Failed to establish a new connection: [Errno 111] Refused")
    return requests.ConnectionError(_gave_up(refused))


def name_unresolved() -> requests.ConnectionError:
    """Strapi's host name does not resolve (DNS): the request never left."""
    error = NameResolutionError(
        "strapi.test", _connection(), socket.gaierror(-2, "Name or service not known")
    )
    return requests.ConnectionError(_gave_up(error))


def connect_timed_out() -> requests.ConnectTimeout:
    """The TCP handshake did not finish in time: the request never left."""
    return requests.ConnectTimeout(_gave_up(ConnectTimeoutError(_connection(), "connect timeout=3.05")))


def connection_reset() -> requests.ConnectionError:
    """The connection broke after the request was sent: Strapi may have applied it."""
    return requests.ConnectionError(ProtocolError("Connection aborted.", ConnectionResetError(104, "reset")))


def read_timed_out() -> requests.ReadTimeout:
    """Strapi took the request and did not answer in time: it may have applied it."""
    return requests.ReadTimeout(ReadTimeoutError(None, "/api/articles", "Read timed out."))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("error", "status", "unknown"),
    [
        (connection_refused, 502, False),
        (name_unresolved, 502, False),
        (connect_timed_out, 504, False),
        (connection_reset, 502, True),
        (read_timed_out, 504, True),
        # Text is no evidence: an error that merely says "refused" may have come after sending.
        (lambda: requests.ConnectionError("NewConnectionError: Connection refused"), 502, True),
    ],
)
@responses.activate
def test_write_outcome_is_unknown_unless_urllib3_says_it_never_connected(
    error: Callable[[], Exception], status: int, unknown: bool
) -> None:
    responses.post(f"{STRAPI}/api/articles", body=error())
    with pytest.raises(ApiError) as excinfo:
        StrapiClient(STRAPI).request("POST", "api/articles", json_body={})
    assert (excinfo.value.status, excinfo.value.outcome_unknown) == (status, unknown)


def test_dns_failure_of_a_write_is_known_never_sent() -> None:
    client = StrapiClient("http://strapi.invalid", retries=0)  # .invalid never resolves (RFC 6761)
    with pytest.raises(UpstreamUnavailable) as excinfo:
        client.request("POST", "api/articles", json_body={})
    assert excinfo.value.outcome_unknown is False
