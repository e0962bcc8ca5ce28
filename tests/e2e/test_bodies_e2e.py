"""Oversize and chunked request bodies against real gunicorn (gthread, gunicorn.conf.py).

Three clients, three ways of sending: Python's urllib writes its whole body before reading and asks
for ``Connection: close``; requests keeps the connection alive; curl reads the answer while it
sends. Every one of them must read the same 413 envelope.
"""

from __future__ import annotations

import json
import subprocess
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import pytest
import requests

from .services import Gunicorn
from .test_publishing_e2e import POLICY

MIB = 1024 * 1024
SECRET = {"X-Webhook-Secret": "e2e-webhook-secret"}
JSON = {"Content-Type": "application/json"}
# Every route that reads a body: a publishing write, the webhook, the purge, the auth pass-through.
ROUTES = ["/api/articles/publish", "/webhooks/strapi", "/admin/cache/purge", "/api/auth/local"]


@pytest.fixture
def bff(start_bff: Callable[..., Gunicorn]) -> Gunicorn:
    """bffproxy (2 workers) where editors may write articles; not Strapi's webhook target."""
    return start_bff(**POLICY)


def assert_too_large(response: requests.Response) -> None:
    assert response.status_code == 413, response.content[:300]
    assert response.headers["Content-Type"].startswith("application/json")
    error = response.json()["error"]
    assert (error["status"], error["code"]) == (413, "payload_too_large")
    assert "1 MiB" in error["message"]
    assert error["request_id"] == response.headers["X-Request-ID"]


def as_response(status: int, headers: Iterable[tuple[str, str]], content: bytes) -> requests.Response:
    """What another client read, as a requests.Response, so one set of assertions reads all three."""
    response = requests.Response()
    response.status_code, response._content = status, content
    response.headers.update(headers)
    return response


def urllib_post(url: str, body: bytes, headers: dict[str, str]) -> requests.Response:
    """POST with urllib, which sends every byte before it reads a byte of the answer."""
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return as_response(answer.status, answer.headers.items(), answer.read())
    except urllib.error.HTTPError as exc:
        return as_response(exc.code, exc.headers.items(), exc.read())


def chunks(body: bytes, size: int = 64 * 1024) -> Iterator[bytes]:
    """A generator body, which requests sends with Transfer-Encoding: chunked."""
    for start in range(0, len(body), size):
        yield body[start : start + size]


def publish_body(size: int) -> bytes:
    head, tail = b'{"title": "too big", "content": "', b'"}'
    return head + b"x" * (size - len(head) - len(tail)) + tail


@pytest.mark.parametrize("path", ROUTES)
def test_urllib_reads_the_413_of_a_5_mb_body(bff: Gunicorn, path: str) -> None:
    assert_too_large(urllib_post(f"{bff.url}{path}", b" " * 5_000_000, {**JSON, **SECRET}))


def test_requests_reads_the_413_and_keeps_its_connection(bff: Gunicorn) -> None:
    with requests.Session() as session:
        answer = session.post(f"{bff.url}/webhooks/strapi", data=b" " * 5_000_000, headers={**JSON, **SECRET})
        assert_too_large(answer)
        again = session.post(
            f"{bff.url}/webhooks/strapi", json={"event": "releases.publish"}, headers=SECRET, timeout=10
        )
        assert again.status_code == 202, again.text  # the rest of the 5 MB was not read as a request


def test_curl_reads_the_413_of_a_5_mb_body(bff: Gunicorn, tmp_path: Path) -> None:
    upload = tmp_path / "big.json"
    upload.write_bytes(b" " * 5_000_000)
    out = tmp_path / "answer"
    result = subprocess.run(
        ["curl", "-sS", "-o", str(out), "-D", "-", "-X", "POST", "-H", "Content-Type: application/json",
         "--data-binary", f"@{upload}", f"{bff.url}/webhooks/strapi"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    head = result.stdout.split("\n\n")[-2].splitlines()  # the last block, after any "100 Continue"
    headers = [(name, value.strip()) for name, _, value in (line.partition(":") for line in head[1:])]
    assert_too_large(as_response(int(head[0].split()[1]), headers, out.read_bytes()))


def test_chunked_5_mb_publish_is_413_not_a_truncated_400(bff: Gunicorn, editor: dict[str, str]) -> None:
    answer = requests.post(
        f"{bff.url}/api/articles/publish",
        data=chunks(publish_body(5_000_000)),
        headers={**editor, **JSON},
        timeout=60,
    )
    assert answer.request.headers["Transfer-Encoding"] == "chunked"
    assert_too_large(answer)


def test_chunked_2_mb_webhook_with_a_whitespace_tail_is_413_not_202(bff: Gunicorn) -> None:
    delivery = json.dumps({"event": "releases.publish"}).encode() + b" " * (2 * MIB)
    answer = requests.post(
        f"{bff.url}/webhooks/strapi", data=chunks(delivery), headers={**JSON, **SECRET}, timeout=60
    )
    assert_too_large(answer)


def test_chunked_bodies_within_the_limit_are_read_whole(bff: Gunicorn) -> None:
    delivery = json.dumps({"event": "releases.publish"}).encode() + b" " * (MIB - 100)
    answer = requests.post(
        f"{bff.url}/webhooks/strapi", data=chunks(delivery), headers={**JSON, **SECRET}, timeout=60
    )
    assert answer.status_code == 202, answer.text
    # Before, the auth pass-through read no chunked body at all: Strapi got {} and answered 400.
    credentials = json.dumps({"identifier": "reader", "password": "Reader-Passw0rd!"}).encode()
    login_answer = requests.post(
        f"{bff.url}/api/auth/local", data=chunks(credentials), headers=JSON, timeout=30
    )
    assert login_answer.status_code == 200, login_answer.text
    assert login_answer.json()["user"]["username"] == "reader"


def test_bodies_that_never_finish_get_a_408_and_never_starve_hits(start_bff: Callable[..., Gunicorn]) -> None:
    """Found by the hostile tester: 10 connections sending a POST's headers, one byte of a 1000-byte
    body, then nothing, held every gunicorn thread (without nginx in front): hits timed out."""
    import socket
    import time

    bff = start_bff(BODY_TIMEOUT="2")
    cached = f"{bff.url}/api/articles?pagination[page]=8"
    assert requests.get(cached, timeout=10).status_code == 200
    slow = []
    for _ in range(10):
        sock = socket.create_connection(("127.0.0.1", bff.port))
        sock.sendall(
            b"POST /webhooks/strapi HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 1000\r\n\r\n{"
        )
        slow.append(sock)
    try:
        time.sleep(1)
        hits = [requests.get(cached, timeout=10) for _ in range(3)]  # may wait for the deadline, no more
        answers = []
        for sock in slow:
            sock.settimeout(10)  # the server must close it: a timeout here fails the test
            received = b""
            while chunk := sock.recv(65536):  # the answer may come in several segments
                received += chunk
            answers.append(received.decode(errors="replace"))
    finally:
        for sock in slow:
            sock.close()
    assert [(h.status_code, h.headers["X-Cache"]) for h in hits] == [(200, "HIT")] * 3
    for answer in answers:
        head, _, body = answer.partition("\r\n\r\n")
        assert head.startswith("HTTP/1.1 408"), head
        assert json.loads(body)["error"]["code"] == "request_timeout"
