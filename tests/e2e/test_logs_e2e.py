"""Log forging against real gunicorn: hostile requests leave one line per record, in both logs.

gunicorn writes its access log (JSON by default, or gunicorn.conf.py's ``access_log_format`` with
``BFFPROXY_ACCESS_LOG_FORMAT=text``) and its error log; bffproxy's records go to the same stderr.
Every physical line must start as one of those does, and every JSON line must parse.
"""

from __future__ import annotations

import json
import re
import socket
import time
from collections.abc import Callable

import pytest

from .services import Gunicorn, Strapi

ACCESS_LINE = re.compile(r'^127\.0\.0\.1 "[A-Z]+ \S+ HTTP/1\.[01]" \d{3} ')
GUNICORN_LINE = re.compile(r"^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d{4}\] \[\d+\] \[[A-Z]+\] ")
BFFPROXY_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} \[\d+\] [A-Z]+ bffproxy")


def send_raw(bff: Gunicorn, request: bytes) -> bytes:
    """Send bytes as they are (no client library cleans them up) and read the whole answer."""
    with socket.create_connection(("127.0.0.1", bff.port), timeout=10) as conn:
        conn.sendall(request)
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    return answer


def get(target: bytes, *headers: bytes) -> bytes:
    lines = [b"GET " + target + b" HTTP/1.1", b"Host: 127.0.0.1", b"Connection: close", *headers]
    return b"\r\n".join(lines) + b"\r\n\r\n"


def webhook(strapi: Strapi, body: dict[str, object]) -> bytes:
    data = json.dumps(body).encode()
    head = [
        b"POST /webhooks/strapi HTTP/1.1",
        b"Host: 127.0.0.1",
        b"Connection: close",
        b"Content-Type: application/json",
        b"X-Webhook-Secret: " + strapi.webhook_secret.encode(),
        b"Content-Length: " + str(len(data)).encode(),
    ]
    return b"\r\n".join(head) + b"\r\n\r\n" + data


HOSTILE = {
    "encoded line break in the path": get(b"/api/articles/x%0aFAKE-LINE%20ERROR?filters[$and]=1"),
    "encoded line break in the query": get(b"/api/articles?x=%0d%0aFAKE-LINE%20ERROR"),
    "raw line break in the target": get(b"/api/x\nFAKE-LINE HTTP/1.1"),
    "escape sequence in the target": get(b"/api/x\x1b[2JFAKE-LINE"),
    "hostile request id": get(b"/healthz", b"X-Request-ID: abc\x1b[2JFAKE-LINE"),
    # gunicorn refuses C0 controls in header values but lets C1 through (NEL, U+0085, breaks lines
    # in some viewers): bffproxy replaces such a request id, so the access log never quotes it.
    "C1 control in the request id": get(b"/healthz", b"X-Request-ID: abc\x85FAKE-LINE"),
    "folded request id": get(b"/healthz", b"X-Request-ID: abc", b" FAKE-LINE ERROR"),
    "bare CR in a header": get(b"/healthz", b"X-Request-ID: abc\rFAKE-LINE ERROR"),
    "hostile bearer token": get(b"/api/articles", b"Authorization: bearer x\x1bFAKE-LINE"),
    "hostile user agent": get(b"/healthz", b"User-Agent: a\x1b\x7fFAKE-LINE"),
}


@pytest.fixture(params=["json", "text"])
def bff(start_bff: Callable[..., Gunicorn], request: pytest.FixtureRequest) -> Gunicorn:
    return start_bff(workers=1, LOG_LEVEL="DEBUG", ACCESS_LOG_FORMAT=request.param)


def is_access_line(line: str, access_format: str) -> bool:
    """A whole access line of that format (a JSON line must parse: nothing was spliced into it)."""
    if access_format == "text":
        return bool(ACCESS_LINE.match(line))
    if not line.startswith('{"time"'):
        return False
    record = json.loads(line)
    return record["log"] == "access" and isinstance(record["status"], int)


def test_hostile_requests_leave_one_line_per_record(bff: Gunicorn, strapi_live: Strapi) -> None:
    answers = {name: send_raw(bff, request) for name, request in HOSTILE.items()}
    hostile_model = {"event": "entry.update", "model": "x\nFAKE-LINE ERROR\x1b", "entry": {"documentId": "a"}}
    answers["hostile webhook model"] = send_raw(bff, webhook(strapi_live, hostile_model))
    hostile_event = {"event": "entry.update\r\nFAKE-LINE", "model": "article", "entry": {"documentId": "a"}}
    answers["hostile webhook event"] = send_raw(bff, webhook(strapi_live, hostile_event))
    for name, answer in answers.items():
        assert answer.startswith(b"HTTP/1.1 "), (name, answer[:200])
    assert b"HTTP/1.1 202" in answers["hostile webhook model"]
    assert b"HTTP/1.1 200" in answers["C1 control in the request id"]
    assert b"abc\x85" not in answers["C1 control in the request id"]
    time.sleep(0.5)  # gunicorn writes the access line after the answer
    log = bff.log()
    assert "FAKE-LINE" in log, "the hostile requests were not logged at all"
    for line in log.splitlines():
        assert not line.lstrip().startswith("FAKE"), line
        assert "\x1b" not in line and "\x85" not in line and "\r" not in line, line
        access = is_access_line(line, bff.env["BFFPROXY_ACCESS_LOG_FORMAT"])
        assert access or GUNICORN_LINE.match(line) or BFFPROXY_LINE.match(line), line
    assert "webhook entry.update x\\nFAKE-LINE ERROR\\x1b a" in log
    if bff.env["BFFPROXY_ACCESS_LOG_FORMAT"] == "text":  # the request line, without its query
        assert '"GET /api/articles/x%0aFAKE-LINE%20ERROR HTTP/1.1" 404' in log
    else:
        assert (
            '"path":"/api/articles/x%0aFAKE-LINE%20ERROR","route":"/api/<collection>/<document_id>",' in log
        )
    assert "filters[$and]" not in log and "x=%0d%0a" not in log
