"""The shipped nginx site (deploy/nginx/bffproxy.conf) in front of bffproxy and a real Strapi 5."""

from __future__ import annotations

import http.client
import json
import os
import secrets
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from scripts.local_nginx import nginx_available, running_nginx

from .services import Gunicorn, Strapi, free_port, wait_until
from .test_bodies_e2e import chunks, urllib_post

pytestmark = pytest.mark.skipif(not nginx_available(), reason="nginx is not installed (make system-deps)")


@dataclass
class Front:
    """nginx on a free loopback port in front of one bffproxy instance."""

    port: int
    bff: Gunicorn
    prefix: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def access_log(self) -> str:
        return (self.prefix / "access.log").read_text()


def _listening(port: int) -> bool:
    try:
        return requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code > 0
    except requests.RequestException:
        return False


@pytest.fixture
def front(start_bff: Callable[..., Gunicorn], tmp_path: Path) -> Iterator[Front]:
    """bffproxy (2 workers, trusting one proxy) behind the shipped nginx site."""
    # The text access log: these tests read its rid= (the JSON one: tests/e2e/test_metrics_e2e.py).
    with nginx_in_front_of(start_bff(TRUSTED_PROXIES=1, ACCESS_LOG_FORMAT="text"), tmp_path) as running:
        yield running


@contextmanager
def nginx_in_front_of(bff: Gunicorn, tmp_path: Path, microcache: bool = False) -> Iterator[Front]:
    """The shipped nginx site on a free port in front of ``bff``; stopped on exit."""
    port = free_port()
    with running_nginx(tmp_path / "nginx", bff.port, port, microcache=microcache):
        wait_until(lambda: _listening(port), 15, "nginx")
        yield Front(port, bff, tmp_path / "nginx")


def _wait_logged(read: Callable[[], str], needle: str) -> None:
    """Logs are written after the response is sent: give nginx and gunicorn a moment."""
    wait_until(lambda: needle in read(), 5, f"{needle!r} in the log")


def _envelope(response: requests.Response, status: int, code: str) -> dict[str, object]:
    assert response.status_code == status
    assert response.headers["Content-Type"].startswith("application/json")
    error = response.json()["error"]
    assert (error["status"], error["code"]) == (status, code)
    assert isinstance(error["message"], str) and error["message"]
    assert error["request_id"] == response.headers["X-Request-ID"]
    return error  # type: ignore[no-any-return]


def test_content_passes_through_miss_then_hit(front: Front, strapi_live: Strapi) -> None:
    marker = f"nginx-{secrets.token_hex(4)}"  # a key no earlier test has cached
    params = {"filters[title][$notContains]": marker, "pagination[pageSize]": "25"}
    first = requests.get(f"{front.url}/api/articles", params=params, timeout=30)
    second = requests.get(f"{front.url}/api/articles", params=params, timeout=30)
    assert (first.status_code, second.status_code) == (200, 200)
    assert (first.headers["X-Cache"], second.headers["X-Cache"]) == ("MISS", "HIT")
    assert strapi_live.count_requests(marker) == 1
    assert second.json() == strapi_live.get("api/articles", **params).json()
    assert second.headers["Content-Encoding"] == "gzip"  # JSON over 1 KiB is compressed by nginx
    _wait_logged(front.access_log, "cache=HIT")
    assert "cache=MISS" in front.access_log()


def test_etag_revalidation_survives_gzip(front: Front) -> None:
    # nginx turns a strong ETag into a weak one when it compresses; If-None-Match compares weakly.
    first = requests.get(f"{front.url}/api/articles", timeout=30)
    etag = first.headers["ETag"]
    again = requests.get(f"{front.url}/api/articles", headers={"If-None-Match": etag}, timeout=30)
    assert again.status_code == 304, (etag, again.status_code)
    assert again.content == b""


def test_client_request_id_comes_back_and_is_logged(front: Front) -> None:
    rid = f"nginx-e2e-{secrets.token_hex(6)}"
    response = requests.get(f"{front.url}/api/articles", headers={"X-Request-ID": rid}, timeout=30)
    assert response.status_code == 200
    assert response.headers["X-Request-ID"] == rid
    _wait_logged(front.access_log, f"rid={rid}")
    _wait_logged(front.bff.log, f"rid={rid}")


def test_request_id_is_generated_when_absent_or_unsafe(front: Front) -> None:
    plain = requests.get(f"{front.url}/healthz", timeout=10)
    unsafe = requests.get(f"{front.url}/healthz", headers={"X-Request-ID": "no spaces; please"}, timeout=10)
    for response in (plain, unsafe):
        rid = response.headers["X-Request-ID"]
        assert len(rid) == 32 and int(rid, 16) >= 0  # nginx's $request_id, kept by bffproxy
        _wait_logged(front.access_log, f"rid={rid}")


def test_client_address_reaches_bffproxy(front: Front) -> None:
    # The client connects from 127.0.0.2 (all of 127/8 is loopback) and tries to spoof its address;
    # with BFFPROXY_TRUSTED_PROXIES=1 bffproxy believes only the address nginx appended.
    rid = f"xff-{secrets.token_hex(6)}"
    conn = http.client.HTTPConnection("127.0.0.1", front.port, timeout=10, source_address=("127.0.0.2", 0))
    try:
        conn.request("GET", "/healthz", headers={"X-Request-ID": rid, "X-Forwarded-For": "203.0.113.9"})
        assert conn.getresponse().status == 200
    finally:
        conn.close()
    _wait_logged(front.bff.log, f"rid={rid}")
    line = next(line for line in front.bff.log().splitlines() if f"rid={rid}" in line)
    assert line.startswith('127.0.0.2 "GET /healthz'), line  # gunicorn logs REMOTE_ADDR after ProxyFix


def test_body_over_one_mib_gets_413_json(front: Front) -> None:
    rid = f"big-{secrets.token_hex(6)}"
    body = b"x" * (1024 * 1024 + 1)
    response = requests.post(
        f"{front.url}/api/articles",
        data=body,
        headers={"Content-Type": "application/json", "X-Request-ID": rid},
        timeout=30,
    )
    error = _envelope(response, 413, "payload_too_large")
    assert error["request_id"] == rid
    assert "1 MiB" in str(error["message"])  # the limit, named as bffproxy names it
    assert error["details"] == {"max_bytes": 1024 * 1024}
    _wait_logged(front.access_log, f"rid={rid}")
    assert f"rid={rid}" not in front.bff.log()  # refused by nginx, bffproxy never saw it


WEBHOOK = {"Content-Type": "application/json", "X-Webhook-Secret": "e2e-webhook-secret"}
DELIVERY = json.dumps({"event": "releases.publish"}).encode()


@pytest.mark.parametrize("how", ["urllib 5 MB", "chunked 2 MB"])
def test_nginx_refuses_big_bodies_every_client_can_read(front: Front, how: str) -> None:
    rid = f"big-{secrets.token_hex(6)}"
    headers = {**WEBHOOK, "X-Request-ID": rid}
    url = f"{front.url}/webhooks/strapi"
    if how == "urllib 5 MB":
        response = urllib_post(url, DELIVERY + b" " * 5_000_000, headers)
    else:  # the tail is whitespace: cut at the limit it would still be JSON
        response = requests.post(
            url, data=chunks(DELIVERY + b" " * (2 * 1024 * 1024)), headers=headers, timeout=30
        )
    error = _envelope(response, 413, "payload_too_large")
    assert error["request_id"] == rid
    _wait_logged(front.access_log, f"rid={rid}")
    assert f"rid={rid}" not in front.bff.log()


@pytest.mark.parametrize("chunked", [False, True])
def test_a_body_of_exactly_the_limit_passes_nginx_and_bffproxy(front: Front, chunked: bool) -> None:
    # client_max_body_size and BFFPROXY_MAX_CONTENT_LENGTH agree: neither refuses 1 MiB.
    body = DELIVERY + b" " * (1024 * 1024 - len(DELIVERY))
    response = requests.post(
        f"{front.url}/webhooks/strapi", data=chunks(body) if chunked else body, headers=WEBHOOK, timeout=30
    )
    assert response.status_code == 202, response.text


@pytest.mark.parametrize(
    ("size", "status", "code"),
    [(7000, 200, None), (7300, 414, "uri_too_long"), (9000, 414, "uri_too_long")],
)
def test_long_request_lines_get_json_from_nginx_never_gunicorns_html(
    front: Front, size: int, status: int, code: str | None
) -> None:
    target = "/api/articles?filters[title][$eq]=" + "a" * (size - 40)
    answer = requests.get(f"{front.url}{target}", timeout=30)
    assert answer.status_code == status, answer.text[:200]
    assert answer.headers["Content-Type"].startswith("application/json")
    if code:
        _envelope(answer, status, code)


@pytest.mark.parametrize(("size", "status"), [(6000, 200), (7300, 400), (9000, 400)])
def test_big_headers_get_json_from_nginx_never_gunicorns_html(front: Front, size: int, status: int) -> None:
    answer = requests.get(f"{front.url}/api/articles", headers={"Cookie": "c=" + "x" * size}, timeout=30)
    assert answer.status_code == status, answer.text[:200]
    assert answer.headers["Content-Type"].startswith("application/json")
    if status != 200:
        _envelope(answer, 400, "header_too_large")


def test_bffproxy_down_gives_502_json(front: Front) -> None:
    front.bff.stop()
    rid = f"down-{secrets.token_hex(6)}"
    response = requests.get(f"{front.url}/api/articles", headers={"X-Request-ID": rid}, timeout=30)
    error = _envelope(response, 502, "bff_unavailable")
    assert error["request_id"] == rid
    assert response.headers["Cache-Control"] == "no-store"
    assert json.loads(response.text)  # one well-formed JSON document


def test_the_events_upstream_down_gives_502_json_too(front: Front) -> None:
    front.bff.stop()  # without an events app, the site sends streams to the API's port
    response = requests.get(f"{front.url}/api/events?collections=articles", timeout=30)
    _envelope(response, 502, "bff_unavailable")


def _from(
    front: Front, source: str, method: str, target: str, headers: dict[str, str]
) -> http.client.HTTPResponse:
    """One request through nginx from the loopback address ``source`` (all of 127/8 is loopback)."""
    conn = http.client.HTTPConnection("127.0.0.1", front.port, timeout=10, source_address=(source, 0))
    conn.request(method, target, body=b"{}" if method == "POST" else None, headers=headers)
    response = conn.getresponse()
    response.body = response.read()  # type: ignore[attr-defined]
    conn.close()
    return response


PRIVATE = [
    ("POST", "/webhooks/strapi"),
    ("POST", "/t/beta/webhooks/strapi"),  # under a tenant's path prefix
    ("GET", "/metrics"),
    ("GET", "/t/beta/metrics"),
    ("POST", "/admin/cache/purge"),
    ("POST", "/%77ebhooks/strapi"),  # nginx matches the decoded path, as gunicorn routes it
    ("POST", "/api/../webhooks/strapi"),
    ("POST", "//admin//cache/purge"),
]


@pytest.mark.parametrize(("method", "target"), PRIVATE)
def test_private_paths_answer_403_json_to_any_other_address(front: Front, method: str, target: str) -> None:
    rid = f"private-{secrets.token_hex(6)}"
    headers = {**WEBHOOK, "X-Request-ID": rid, "Authorization": "Bearer e2e-admin-token"}
    response = _from(front, "127.0.0.2", method, target, headers)
    assert response.status == 403, response.body  # type: ignore[attr-defined]
    error = json.loads(response.body)["error"]  # type: ignore[attr-defined]
    assert (error["status"], error["code"], error["request_id"]) == (403, "forbidden", rid)
    assert response.getheader("Content-Type", "").startswith("application/json")
    _wait_logged(front.access_log, f"rid={rid}")
    assert f"rid={rid}" not in front.bff.log()  # refused by nginx: bffproxy never saw it


def test_private_paths_pass_from_an_allowed_address_and_content_stays_public(front: Front) -> None:
    token = {"Authorization": "Bearer e2e-admin-token"}
    assert _from(front, "127.0.0.1", "GET", "/metrics", token).status == 200
    wait_until(  # the fixture's /healthz probes, counted once answered
        lambda: b"bffproxy_requests_total" in _from(front, "127.0.0.1", "GET", "/metrics", token).body,  # type: ignore[attr-defined]
        10,
        "counts in /metrics through nginx",
    )
    purge = _from(
        front, "127.0.0.1", "POST", "/admin/cache/purge", {**token, "Content-Type": "application/json"}
    )
    assert purge.status == 422  # bffproxy's own answer: {} names nothing to purge
    hook = _from(front, "127.0.0.1", "POST", "/webhooks/strapi", WEBHOOK)
    assert hook.status == 400  # bffproxy's: {} is not a webhook body
    # A documentId or a file named like a private path is content, public as any other.
    for target in ("/api/articles/admin", "/api/articles/metrics", "/uploads/webhooks/x.png"):
        answer = _from(front, "127.0.0.2", "GET", target, {})
        assert answer.status == 404, (target, answer.status)
        assert b'"forbidden"' not in answer.body  # type: ignore[attr-defined]  # Strapi's or bffproxy's 404


def _connections_to(port: int) -> set[int]:
    """The other ends' ports of loopback TCP sockets to or from ``port``, in any state."""
    ports = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, remote = (int(end.split(":")[1], 16) for end in line.split()[1:3])
        if port in (local, remote):
            ports.add(remote if local == port else local)
    return ports


def test_nginx_keeps_its_connections_to_gunicorn_alive(front: Front) -> None:
    before = _connections_to(front.bff.port)
    with requests.Session() as client:  # one client connection: one nginx worker
        for _ in range(20):
            assert client.get(f"{front.url}/healthz", timeout=10).status_code == 200
    opened = _connections_to(front.bff.port) - before
    assert len(opened) <= 2, opened  # without `keepalive` in the upstream: one per request


def test_an_event_leaves_nginx_while_the_stream_stays_open(front: Front, strapi_live: Strapi) -> None:
    # Not before the stream ends: proxy_buffering would hold it; the location says off (and
    # bffproxy says X-Accel-Buffering: no). gzip is off there too.
    document = f"nginxsse{secrets.token_hex(4)}"
    with requests.get(f"{front.url}/api/events?collections=articles", stream=True, timeout=10) as stream:
        assert stream.status_code == 200
        assert "gzip" not in stream.headers.get("Content-Encoding", "")
        lines = stream.iter_lines(decode_unicode=True)
        assert next(lines).startswith("retry:")
        at = "2026-12-06T00:00:00.000Z"
        hook = {"event": "entry.publish", "model": "article", "createdAt": at}
        hook["entry"] = {"documentId": document, "publishedAt": at, "updatedAt": at, "locale": None}
        posted = requests.post(f"{front.url}/webhooks/strapi", json=hook, headers=WEBHOOK, timeout=10)
        assert posted.status_code == 200, posted.text
        data = next(line for line in lines if line.startswith("data:"))
    assert json.loads(data[5:])["documentId"] == document


def _reloads(bff: Gunicorn) -> int:
    return bff.log().count("configuration reloaded")


def test_a_reload_under_load_through_nginx_fails_no_request(front: Front) -> None:
    """systemctl reload (HUP) twice while 4 keep-alive clients read a cached and an uncached route.

    gunicorn replaces every worker; nginx's idle upstream connections to the old ones close under
    it. 0 failed requests. (A broken configuration on reload: tests/e2e/test_tenants_e2e.py and
    test_attack_tenants_e2e.py, which also reload under load without nginx.)"""
    failures: list[str] = []
    served = {"cached": 0, "uncached": 0}
    hits = {"cached": 0, "uncached": 0}
    workers: list[set[str]] = [set(), set(), set()]  # who answered before, between and after the reloads
    phase = [0]
    stop = threading.Event()

    def client(kind: str) -> None:
        with requests.Session() as session:  # keep-alive to nginx
            for number in range(100_000):  # bounded; `stop` ends it after the reloads
                if stop.is_set():
                    return
                marker = f"&filters[title][$ne]=reload-{secrets.token_hex(6)}" if kind == "uncached" else ""
                try:
                    answer = session.get(
                        f"{front.url}/api/articles?pagination[pageSize]=2{marker}", timeout=30
                    )
                except requests.RequestException as exc:
                    failures.append(f"{kind} #{number}: {exc!r}")
                    continue
                if answer.status_code != 200 or "data" not in answer.json():
                    failures.append(f"{kind} #{number}: {answer.status_code} {answer.text[:200]}")
                served[kind] += 1
                # (the reconciler's first pass may drop the cached list once: a miss, not a failure)
                hits[kind] += answer.headers["X-Cache"] == "HIT"
                workers[phase[0]].add(answer.headers["X-BFF-Worker"])

    threads = [threading.Thread(target=client, args=(kind,)) for kind in ("cached", "uncached") * 2]
    for thread in threads:
        thread.start()
    try:
        assert front.bff.process is not None
        time.sleep(1)  # load first
        for _ in range(2):
            before = _reloads(front.bff)
            os.kill(front.bff.process.pid, signal.SIGHUP)
            wait_until(lambda before=before: _reloads(front.bff) > before, 20, "the reload")
            time.sleep(1.5)  # the old workers finish their requests and exit under load
            phase[0] += 1
        time.sleep(1)  # load on the last workers only
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
    assert failures == [], failures[:5]
    assert served["cached"] > 20 and served["uncached"] > 10, served
    assert hits["cached"] > served["cached"] / 2 and hits["uncached"] == 0, (hits, served)
    assert workers[0] and workers[2] and not workers[0] & workers[2], workers  # the reloads took effect
