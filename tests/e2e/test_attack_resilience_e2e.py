"""Issue 9 attacked as a hostile client and an unlucky operator would: behaviour that holds.

Real Strapi 5, bffproxy under real gunicorn (2 workers x 4 threads), a real redis-server. Each test
breaks something the way production does and checks every answer: JSON (or a body-less 304/HEAD)
with the documented status, within a bound, never a 500, a reset connection or a hang; no write lost
or made twice.

* Strapi SIGSTOPped while clients mix unique misses, one cold key, a stale key, If-None-Match, HEAD,
  signed-in reads, webhooks and keyed writes; then every write retried with its key after SIGCONT.
* The circuit opened by a hung Strapi, and its half-open probe hanging too: the others fail fast.
* Redis SIGSTOPped (paused, not killed): answers stay JSON and fast; HIT again after SIGCONT.
* Strapi answering garbage through a relay: 5xx pages, an unparsable Retry-After, non-JSON 200s.

Findings that do NOT hold are in the uncommitted tests/e2e/test_attack_findings_e2e.py.
"""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests

from bench.soak import delete_in_strapi
from bench.soak import in_strapi as titled_in_strapi

from .services import Gunicorn, RedisServer, Strapi, free_port, login, wait_until
from .test_publishing_e2e import POLICY

# The fail-fast 503s README documents ("What clients get"); each carries Retry-After.
SHED = {"upstream_busy", "upstream_unavailable"}


@dataclass(frozen=True)
class Answer:
    """What one client saw: the status (or the exception's name), seconds, X-Cache, the error code."""

    kind: str
    status: int | str
    seconds: float
    cache: str = ""
    code: str = ""
    retry_after: str = ""
    body: bytes = b""


def ask(kind: str, method: str, url: str, **kwargs: Any) -> Answer:
    """Send one request; never raise (a reset or a timeout is an answer too)."""
    started = time.perf_counter()
    try:
        got = requests.request(method, url, timeout=kwargs.pop("timeout", 20), **kwargs)
    except requests.RequestException as exc:
        return Answer(kind, exc.__class__.__name__, time.perf_counter() - started)
    seconds = time.perf_counter() - started
    code = ""
    if got.status_code >= 400 and method != "HEAD":
        code = got.json()["error"]["code"]  # every error is the JSON envelope: this raises otherwise
    cache, retry_after = got.headers.get("X-Cache", ""), got.headers.get("Retry-After", "")
    return Answer(kind, got.status_code, seconds, cache, code, retry_after, got.content)


def all_at_once(jobs: list[tuple[str, str, str, dict[str, Any]]]) -> list[Answer]:
    """Send every job from its own thread at the same moment; the answers in any order."""
    answers: list[Answer] = []
    threads = [
        threading.Thread(target=lambda job=job: answers.append(ask(job[0], job[1], job[2], **job[3])))
        for job in jobs
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(answers) == len(jobs)
    return answers


@pytest.fixture
def stopped_strapi(strapi_live: Strapi) -> Iterator[Callable[[bool], None]]:
    """``pause(True)`` SIGSTOPs the session's Strapi, ``pause(False)`` resumes it (always, at the end)."""
    pid = int(strapi_live.env["STRAPI_PID"])
    state = {"stopped": False}

    def pause(stop: bool) -> None:
        os.kill(pid, signal.SIGSTOP if stop else signal.SIGCONT)
        state["stopped"] = stop

    yield pause
    if state["stopped"]:
        os.kill(pid, signal.SIGCONT)
    wait_until(lambda: requests.get(f"{strapi_live.url}/_health", timeout=2).ok, 20, "Strapi resumed")


@pytest.fixture
def titles(strapi_live: Strapi) -> Iterator[str]:
    """A unique title prefix; whatever the test made under it is deleted in Strapi afterwards."""
    prefix = f"E2E attack {uuid.uuid4().hex[:10]}"
    yield prefix
    delete_in_strapi(strapi_live, titled_in_strapi(strapi_live, prefix))


def retry_until_settled(url: str, body: dict[str, Any], headers: dict[str, str]) -> requests.Response:
    """Retry a keyed write as a client is told to: while the first may still be settling (409), or
    while the circuit is still open after Strapi came back (503 + Retry-After)."""
    deadline = time.monotonic() + 30
    while True:
        answer = requests.post(url, json=body, headers=headers, timeout=20)
        if answer.status_code not in (409, 503) or time.monotonic() > deadline:
            return answer
        time.sleep(min(float(answer.headers.get("Retry-After", "1")), 5.0))


def test_a_mixed_storm_on_a_hung_strapi_answers_in_json_and_loses_no_write(
    start_bff: Callable[..., Gunicorn],
    strapi_live: Strapi,
    stopped_strapi: Callable[[bool], None],
    titles: str,
) -> None:
    bff = start_bff(
        STRAPI_READ_TIMEOUT="2",
        CACHE_TTL="1",
        STALE_WHILE_REVALIDATE="0",
        COLLECTIONS="articles,categories,homepage",
        SINGLE_TYPES="homepage",
        **POLICY,
    )
    editor = login(strapi_live, "editor", "Editor-Passw0rd!")
    reader = login(strapi_live, "reader", "Reader-Passw0rd!")
    stale = f"{bff.url}/api/articles?pagination[page]=2"
    etag = requests.get(stale, timeout=10).headers["ETag"]
    signed = f"{bff.url}/api/articles?pagination[page]=3"
    assert requests.get(signed, headers=reader, timeout=10).status_code == 200  # the role is cached
    assert (
        requests.post(f"{bff.url}/api/articles/publish", json={}, headers=editor, timeout=10).status_code
        == 422
    )
    time.sleep(1.1)  # the cached page is now past its TTL: only stale-if-error may serve it
    stopped_strapi(True)
    # A change the stale page does not embed (a category change now drops articles too: they embed
    # their category), so stale-if-error may still serve it.
    hook = {"event": "entry.update", "model": "homepage", "entry": {"documentId": "x"}}
    writes = {f"{titles} {n}": f"key-{titles}-{n}" for n in range(4)}
    jobs: list[tuple[str, str, str, dict[str, Any]]] = []
    for n in range(10):
        jobs.append(("miss", "GET", f"{bff.url}/api/articles?filters[title][$eq]=u{n}", {}))
        jobs.append(("cold", "GET", f"{bff.url}/api/articles?filters[title][$eq]=one-cold-key", {}))
        jobs.append(("stale", "GET", stale, {}))
    for n in range(4):
        jobs.append(("revalidate", "GET", stale, {"headers": {"If-None-Match": etag}}))
        jobs.append(("head", "HEAD", f"{bff.url}/api/articles?filters[title][$eq]=h{n}", {}))
        jobs.append(("signed", "GET", signed, {"headers": reader}))
        secret = {"X-Webhook-Secret": strapi_live.webhook_secret}
        jobs.append(("webhook", "POST", f"{bff.url}/webhooks/strapi", {"json": hook, "headers": secret}))
    for title, key in writes.items():
        keyed = {**editor, "Idempotency-Key": key}
        jobs.append(
            ("write", "POST", f"{bff.url}/api/articles/publish", {"json": {"title": title}, "headers": keyed})
        )
    answers = all_at_once(jobs)
    print("\n" + "\n".join(f"{a.kind} {a.status} {a.cache} {a.code} {a.seconds:.2f}s" for a in answers))

    by_kind: dict[str, Counter[tuple[Any, str]]] = {}
    for a in answers:
        by_kind.setdefault(a.kind, Counter())[(a.status, a.cache or a.code)] += 1
        assert a.seconds < 12  # queueing behind 8 threads + one 2 s read timeout, never a hang
        if a.status == 503:
            assert a.code in SHED or a.kind == "head"
            assert a.retry_after.isdigit() and 1 <= int(a.retry_after) <= 10
    assert set(by_kind["stale"]) == {(200, "STALE")}  # a waiter with a stale entry never gets a 503
    assert set(by_kind["revalidate"]) == {(304, "STALE")}
    assert set(by_kind["webhook"]) == {(200, "")}  # webhooks never call Strapi
    for kind in ("miss", "cold", "signed"):
        assert {status for status, _ in by_kind[kind]} <= {503, 504}, kind
    assert {status for status, _ in by_kind["head"]} <= {503, 504}
    assert all(a.body == b"" for a in answers if a.kind == "head")
    assert {code for _, code in by_kind["write"]} <= {
        "upstream_busy",
        "upstream_unavailable",
        "outcome_unknown",
    }

    stopped_strapi(False)
    for title, key in writes.items():  # every write retried with its key: exactly one document each
        again = retry_until_settled(
            f"{bff.url}/api/articles/publish", {"title": title}, {**editor, "Idempotency-Key": key}
        )
        assert again.status_code in (200, 201), again.text
    made = Counter(item["title"] for item in titled_in_strapi(strapi_live, titles))  # one row per document
    assert made == Counter(list(writes))


def test_an_open_circuit_and_a_hanging_probe_fail_fast_for_everyone_else(
    start_bff: Callable[..., Gunicorn], stopped_strapi: Callable[[bool], None]
) -> None:
    bff = start_bff(STRAPI_READ_TIMEOUT="2", BREAKER_FAILURES="2", BREAKER_RESET="4", CACHE_TTL="1")
    cached = f"{bff.url}/api/articles?pagination[page]=4"
    assert requests.get(cached, timeout=10).status_code == 200
    stopped_strapi(True)
    opening = all_at_once(
        [("open", "GET", f"{bff.url}/api/articles?filters[title][$eq]=o{n}", {}) for n in range(2)]
    )
    assert {a.status for a in opening} == {504}
    opened = time.monotonic()  # the circuit is open for 4 s from here
    fast = [
        ask("stale", "GET", cached),
        ask("miss", "GET", f"{bff.url}/api/articles?filters[title][$eq]=f"),
        ask("head", "HEAD", f"{bff.url}/api/articles?filters[title][$eq]=f"),
    ]
    assert [(a.status, a.cache) for a in fast] == [(200, "STALE"), (503, ""), (503, "")]
    assert fast[1].code == "upstream_unavailable" and fast[1].retry_after == fast[2].retry_after
    assert all(a.seconds < 0.5 and 1 <= int(a.retry_after or 1) <= 4 for a in fast)
    ready = requests.get(f"{bff.url}/readyz", timeout=10)
    assert ready.json()["error"]["details"]["circuit"] == {"default": "open"}

    time.sleep(max(0.0, opened + 4.2 - time.monotonic()))  # half-open: one probe, which hangs 2 s
    probe = threading.Thread(
        target=lambda: probed.append(ask("probe", "GET", f"{bff.url}/api/articles?filters[title][$eq]=p"))
    )
    probed: list[Answer] = []
    probe.start()
    time.sleep(0.3)
    during = all_at_once(
        [("during", "GET", f"{bff.url}/api/articles?filters[title][$eq]=d{n}", {}) for n in range(6)]
        + [("stale", "GET", cached, {})]
    )
    probe.join(10)
    print([(a.kind, a.status, a.code, round(a.seconds, 2)) for a in during + probed])
    assert all(a.seconds < 1 for a in during)  # nobody waits behind the hanging probe
    assert {(a.status, a.code) for a in during if a.kind == "during"} == {(503, "upstream_unavailable")}
    assert [(a.status, a.cache) for a in during if a.kind == "stale"] == [(200, "STALE")]
    assert [(a.status, a.code) for a in probed] == [(504, "upstream_timeout")]


def test_redis_paused_not_killed_answers_in_json_quickly_and_recovers(
    start_bff: Callable[..., Gunicorn], strapi_live: Strapi, redis_server: RedisServer
) -> None:
    bff = start_bff(REDIS_URL=redis_server.url)
    cached = f"{bff.url}/api/articles?pagination[page]=5"
    assert requests.get(cached, timeout=10).headers["X-Cache"] == "MISS"
    assert redis_server.process is not None
    hook = {"event": "entry.update", "model": "category", "entry": {"documentId": "x"}}
    secret = {"X-Webhook-Secret": strapi_live.webhook_secret}
    os.kill(redis_server.process.pid, signal.SIGSTOP)
    try:
        answers = all_at_once(
            [("cached", "GET", cached, {}) for _ in range(6)]
            + [("miss", "GET", f"{bff.url}/api/articles?filters[title][$eq]=r{n}", {}) for n in range(6)]
            + [("webhook", "POST", f"{bff.url}/webhooks/strapi", {"json": hook, "headers": secret})] * 3
            + [("ready", "GET", f"{bff.url}/readyz", {})]
        )
    finally:
        os.kill(redis_server.process.pid, signal.SIGCONT)
    print([(a.kind, a.status, a.cache or a.code, round(a.seconds, 2)) for a in answers])
    for a in answers:
        assert a.seconds < 3  # Redis's 0.5 s socket timeout, then the store is skipped
        if a.kind in ("cached", "miss"):
            assert (a.status, a.cache) == (200, "BYPASS") or (a.status, a.code) == (503, "upstream_busy")
    # The webhook cannot land: Strapi's log must show it (503), never a silent 200.
    assert {(a.status, a.code) for a in answers if a.kind == "webhook"} == {(503, "cache_unavailable")}
    assert [a.status for a in answers if a.kind == "ready"] == [200]

    def hit_again() -> bool:
        return requests.get(cached, timeout=10).headers.get("X-Cache") == "HIT"

    wait_until(hit_again, 15, "HIT after Redis resumes")


class StrapiRelay:
    """An HTTP relay to the real Strapi that can answer for it instead (``canned``)."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.canned: tuple[int, dict[str, str], bytes] | None = None
        relay = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                if relay.canned is not None:
                    status, headers, body = relay.canned
                else:
                    passed = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                    got = requests.get(relay.upstream + self.path, headers=passed, timeout=30)
                    status, body = got.status_code, got.content
                    headers = {"Content-Type": got.headers.get("Content-Type", "application/json")}
                self.send_response(status)
                for name, value in {**headers, "Content-Length": str(len(body))}.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:  # quiet
                pass

        self.port = free_port()
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, name="strapi-relay", daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def relay(strapi_live: Strapi) -> Iterator[StrapiRelay]:
    made = StrapiRelay(strapi_live.url)
    yield made
    made.close()


def test_strapi_answering_garbage_gets_json_502s_or_stale_never_a_500(
    start_bff: Callable[..., Gunicorn], relay: StrapiRelay
) -> None:
    bff = start_bff(STRAPI_URL=relay.url, CACHE_TTL="1", STALE_WHILE_REVALIDATE="0", STRAPI_RETRIES="0")
    cached = f"{bff.url}/api/articles?pagination[page]=6"
    assert requests.get(cached, timeout=10).status_code == 200
    time.sleep(1.1)
    html = b"<html><body>Internal <script>x()</script> error at /srv/strapi</body></html>"
    cases = {
        "html 500": (500, {"Content-Type": "text/html"}, html),
        "503 bad Retry-After": (503, {"Retry-After": "tomorrow-ish"}, b"x"),
        "503 huge Retry-After": (503, {"Retry-After": "999999999"}, b""),
    }
    for name, canned in cases.items():
        relay.canned = canned
        miss = ask(name, "GET", f"{bff.url}/api/articles?filters[title][$eq]={uuid.uuid4().hex}")
        assert miss.status == 502 and miss.code in ("upstream_error", "upstream_unavailable"), name
        assert b"script" not in miss.body and b"/srv" not in miss.body and miss.seconds < 3, name
        assert ask(name, "GET", cached).cache == "STALE", name  # stale-if-error
    relay.canned = (200, {"Content-Type": "application/json"}, b'{"data": [trunc')
    odd = requests.get(f"{bff.url}/api/articles?filters[title][$eq]=odd", timeout=10)
    assert (odd.status_code, odd.content) == (200, b'{"data": [trunc')  # passed on as Strapi sent it


def test_a_readyz_flood_during_a_hang_does_not_starve_cache_hits(
    start_bff: Callable[..., Gunicorn],
    stopped_strapi: Callable[[bool], None],
) -> None:
    """Strapi SIGSTOPped; 16 clients loop on GET /readyz (public through the shipped nginx); one
    client reads a fresh cached page. Before: each /readyz held a thread for READY_TIMEOUT, and the
    hit waited up to 3 s; now one thread per worker looks and the others reuse its answer."""
    bff = start_bff()
    cached = f"{bff.url}/api/articles?pagination[page]=7"
    assert requests.get(cached, timeout=10).status_code == 200
    stopped_strapi(True)
    done = threading.Event()

    def flood() -> None:
        while not done.is_set():
            ask("ready", "GET", f"{bff.url}/readyz")

    flooders = [threading.Thread(target=flood) for _ in range(16)]
    for thread in flooders:
        thread.start()
    try:
        time.sleep(1)
        hits = [ask("hit", "GET", cached) for _ in range(10)]
    finally:
        done.set()
        for thread in flooders:
            thread.join(10)
    print([(a.status, a.cache, round(a.seconds, 2)) for a in hits])
    assert all(a.status == 200 and a.cache == "HIT" for a in hits)
    assert max(a.seconds for a in hits) < 0.5


def test_strapi_answering_503_retry_after_opens_the_circuit_and_fails_fast(
    start_bff: Callable[..., Gunicorn],
    relay: StrapiRelay,
) -> None:
    """Strapi's gateway answers every call ``503 Retry-After: 2`` (maintenance). Before, each miss
    held a slot ~4 s and the circuit never opened (only connection errors and timeouts counted);
    now 502/503 count like a refused connection, and later calls fail fast."""
    bff = start_bff(STRAPI_URL=relay.url, BREAKER_FAILURES="2", BREAKER_RESET="30")
    relay.canned = (503, {"Retry-After": "2", "Content-Type": "text/html"}, b"<h1>maintenance</h1>")
    first = [
        ask("miss", "GET", f"{bff.url}/api/articles?filters[title][$eq]={uuid.uuid4().hex}") for _ in range(2)
    ]
    print([(a.status, a.code, round(a.seconds, 2)) for a in first])
    later = ask("miss", "GET", f"{bff.url}/api/articles?filters[title][$eq]={uuid.uuid4().hex}")
    print((later.status, later.code, round(later.seconds, 2)))
    circuit = requests.get(f"{bff.url}/readyz", timeout=10).json()["error"]["details"]["circuit"]
    assert circuit == {"default": "open"}
    assert (later.status, later.code) == (503, "upstream_unavailable") and later.seconds < 1
