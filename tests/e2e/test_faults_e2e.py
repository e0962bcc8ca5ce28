"""Issue 9 faults end to end: Strapi dying mid-response, Strapi SIGKILLed, Redis killed under load.

What a client may get while a dependency fails is a JSON answer: 200 (a hit, or ``X-Cache: STALE``),
or the envelope's 502/503/504 — never a 500, a reset connection or an HTML page. When the dependency
comes back, the same gunicorn (same arbiter, same workers) serves normally again: nothing restarts.

* A TCP relay between bffproxy and Strapi (``CuttingRelay``) forwards half of each response and
  closes the connection: Strapi "killed mid-response", deterministically, for reads and for a keyed
  write whose outcome is then unknown (its retry must not create a second document).
* The session's Strapi is SIGKILLed while clients read cached and uncached keys, then started again
  with the fixture's own ``Strapi.start()``; the fixture restarts it even if the test fails.
* redis-server is SIGKILLed while clients read cached and uncached keys and write with
  Idempotency-Key, then started on the same port: BYPASS during the outage, HIT afterwards, and the
  only 5xx are the documented ``503 idempotency_unavailable`` of keyed writes.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import pytest
import requests

from bench.soak import delete_in_strapi
from bench.soak import in_strapi as in_strapi_titled

from .services import Gunicorn, RedisServer, Strapi, free_port, http_ok, wait_until
from .test_publishing_e2e import POLICY, in_strapi

ERROR_STATUSES = {502, 503, 504}
# The documented fail-fast 503s (README, "What clients get") carry Retry-After.
SHED_CODES = {"upstream_busy", "upstream_unavailable"}


# -- a relay that cuts Strapi's answers in half ------------------------------------------------


class CuttingRelay:
    """A loopback TCP relay to Strapi; with ``cut`` set it sends half of each response, then closes.

    Half means: the status line and headers, then half of the body Content-Length announces, so the
    client holds a well-formed beginning and an early end of stream (Strapi dying while it writes).
    Switching modes closes every open connection, so no pooled connection straddles two modes.
    """

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = free_port()
        self.cut = False
        self.cuts = 0
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", self.port))
        self._thread = threading.Thread(target=self._accept, name="cutting-relay", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def set_cut(self, cut: bool) -> None:
        """Cut (or stop cutting) every response from now on; drop the connections open now."""
        self.cut = cut
        with self._lock:
            sockets, self._open = list(self._open), set()
        for sock in sockets:
            _close(sock)

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=10)
            except OSError:
                _close(client)
                continue
            with self._lock:
                self._open |= {client, upstream}
            cut = self.cut
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()
            back = self._cut_one if cut else self._pump
            threading.Thread(target=back, args=(upstream, client), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        _close(source)
        _close(sink)

    def _cut_one(self, upstream: socket.socket, client: socket.socket) -> None:
        """Read one response's head and half its body, send exactly that, close both sides."""
        buffered = b""
        try:
            while b"\r\n\r\n" not in buffered or len(buffered) < self._half(buffered):
                data = upstream.recv(65536)
                if not data:
                    break
                buffered += data
            client.sendall(buffered[: self._half(buffered)])
            self.cuts += 1
        except OSError:
            pass
        _close(upstream)
        _close(client)

    @staticmethod
    def _half(buffered: bytes) -> int:
        """Bytes to send: the head plus half the announced body (the head alone if none is)."""
        head, _, _ = buffered.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip())
        return len(head) + 4 + length // 2 if b"\r\n\r\n" in buffered else 1 << 30

    def __enter__(self) -> CuttingRelay:
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        _close(self._listener)
        self.set_cut(False)


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()


# -- what clients saw --------------------------------------------------------------------------


@dataclass
class Answers:
    """Every answer clients got, thread-safe: (kind, status, X-Cache, error code or None)."""

    seen: list[tuple[str, int, str, str | None]] = field(default_factory=list)
    broken: list[str] = field(default_factory=list)  # resets, timeouts, non-JSON bodies
    lock: threading.Lock = field(default_factory=threading.Lock)

    def get(self, kind: str, url: str, **kwargs: Any) -> requests.Response | None:
        """GET ``url`` and record the answer."""
        return self.send(kind, "GET", url, **kwargs)

    def send(self, kind: str, method: str, url: str, **kwargs: Any) -> requests.Response | None:
        """Send one request and record its answer, or what broke."""
        try:
            answer = requests.request(method, url, timeout=20, **kwargs)
        except requests.RequestException as exc:
            with self.lock:
                self.broken.append(f"{kind}: {exc.__class__.__name__}: {exc}")
            return None
        code = None
        if answer.status_code >= 400:
            try:
                code = answer.json()["error"]["code"]
            except (ValueError, KeyError, TypeError):
                with self.lock:
                    self.broken.append(
                        f"{kind}: {answer.status_code} not the JSON envelope: {answer.text[:200]}"
                    )
        if answer.status_code == 503 and code in SHED_CODES and not answer.headers.get("Retry-After"):
            with self.lock:
                self.broken.append(f"{kind}: {answer.status_code} {code} without Retry-After")
        with self.lock:
            self.seen.append((kind, answer.status_code, answer.headers.get("X-Cache", ""), code))
        return answer

    def statuses(self, kind: str) -> Counter[int]:
        with self.lock:
            return Counter(status for k, status, _, _ in self.seen if k == kind)

    def caches(self, kind: str) -> Counter[str]:
        with self.lock:
            return Counter(cache for k, _, cache, _ in self.seen if k == kind)

    def clear(self) -> None:
        with self.lock:
            self.seen.clear()


def run_clients(targets: list[Callable[[], Any]], stop: threading.Event) -> list[threading.Thread]:
    """Start one thread per target, each calling it until ``stop`` is set."""

    def loop(target: Callable[[], Any]) -> None:
        while not stop.is_set():
            target()
            time.sleep(0.01)

    threads = [threading.Thread(target=loop, args=(target,), daemon=True) for target in targets]
    for thread in threads:
        thread.start()
    return threads


def same_workers(bff: Gunicorn) -> set[int]:
    """The pids of the arbiter's workers, once all are up (a restart or a crashed worker changes them)."""
    assert bff.process is not None and bff.process.poll() is None
    children = Path(f"/proc/{bff.process.pid}/task/{bff.process.pid}/children")
    wait_until(lambda: len(children.read_text().split()) == bff.workers, 10, "every worker")
    return {int(child) for child in children.read_text().split()}


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def soak_title(strapi_live: Strapi) -> Iterator[str]:
    """A title prefix for the documents a test writes; they are deleted in Strapi afterwards."""
    title = unique("E2E faults")
    yield title
    delete_in_strapi(strapi_live, in_strapi_titled(strapi_live, title))


# -- Strapi killed mid-response ----------------------------------------------------------------


def test_strapi_dying_mid_response_gives_json_errors_or_stale_and_recovers(
    start_bff: Callable[..., Gunicorn], strapi_live: Strapi, editor: dict[str, str], soak_title: str
) -> None:
    with CuttingRelay(strapi_live.port) as relay:
        bff = start_bff(
            STRAPI_URL=relay.url,
            CACHE_TTL="1",
            STALE_WHILE_REVALIDATE="0",  # past the TTL a read asks Strapi, so the cut is seen
            BREAKER_FAILURES="1000",  # every request reaches the relay and is cut (no fail-fast 503)
            IDEMPOTENCY_SETTLE="1",
            **POLICY,
        )
        workers = same_workers(bff)
        # The editor's role is resolved now (and cached), so the cut write below is the write itself.
        invalid = requests.post(f"{bff.url}/api/articles/publish", json={}, headers=editor, timeout=10)
        assert invalid.status_code == 422
        cached = f"{bff.url}/api/articles?pagination[pageSize]=3"
        before = requests.get(cached, timeout=10)
        assert before.status_code == 200 and before.headers["X-Cache"] == "MISS"
        time.sleep(1.2)  # past the TTL: the entry is stale, kept for stale-if-error

        relay.set_cut(True)
        answers = Answers()
        for _ in range(12):
            stale = answers.get("stale", cached)
            assert stale is not None and stale.content == before.content
            answers.get("miss", f"{bff.url}/api/articles?filters[title][$eq]={unique('cut')}")
            answers.get("document", f"{bff.url}/api/articles/{unique('nosuchdoc')}")
        key = {**editor, "Idempotency-Key": unique("e2e-cut")}
        body = {"title": f"{soak_title} cut write", "content": "sent once"}
        lost = answers.send("write", "POST", f"{bff.url}/api/articles/publish", json=body, headers=key)

        print(f"\ncut responses: {relay.cuts}; answers: {Counter(answers.seen)}")
        assert answers.broken == []
        assert relay.cuts > 0
        assert answers.statuses("stale") == {200: 12} and answers.caches("stale") == {"STALE": 12}
        assert set(answers.statuses("miss")) <= ERROR_STATUSES
        assert set(answers.statuses("document")) <= ERROR_STATUSES
        assert lost is not None and lost.status_code == 502, lost.text
        assert lost.json()["error"]["details"]["outcome"] == "unknown"  # sent, then cut

        relay.set_cut(False)
        fresh = f"{bff.url}/api/articles?filters[title][$eq]={unique('after')}"
        wait_until(lambda: requests.get(fresh, timeout=10).status_code == 200, 20, "misses served again")

        def retried() -> bool:  # the same key: reconciled or created, never a second document
            answer = requests.post(f"{bff.url}/api/articles/publish", json=body, headers=key, timeout=10)
            return answer.status_code == 201

        wait_until(retried, 20, "the keyed write to settle")
        assert len(in_strapi(strapi_live, body["title"])) == 1
        assert requests.get(cached, timeout=10).headers["X-Cache"] in ("MISS", "HIT")
        assert same_workers(bff) == workers


# -- Strapi SIGKILLed while requests are in flight ---------------------------------------------


@pytest.fixture
def killable_strapi(strapi_server: Strapi, strapi_live: Strapi) -> Iterator[Callable[[], None]]:
    """A function that SIGKILLs the session's Strapi; it is started again whatever the test did."""
    yield lambda: os.killpg(int(strapi_live.env["STRAPI_PID"]), signal.SIGKILL)
    if not http_ok(f"{strapi_server.url}/_health"):
        strapi_server.start()


def test_strapi_sigkilled_under_load_then_restarted_without_restarting_bffproxy(
    start_bff: Callable[..., Gunicorn], strapi_server: Strapi, killable_strapi: Callable[[], None]
) -> None:
    bff = start_bff(STRAPI_READ_TIMEOUT="3", BREAKER_RESET="1")
    workers = same_workers(bff)
    hits = [f"{bff.url}/api/articles?pagination[page]={page}" for page in (1, 2, 3)]
    for url in hits:
        wait_until(lambda url=url: requests.get(url, timeout=10).headers.get("X-Cache") == "HIT", 10, "a hit")
    answers = Answers()
    heavy = f"{bff.url}/api/articles?populate=*&pagination[pageSize]=100"
    clients = [lambda url=url: answers.get("hit", url) for url in hits] + [
        lambda: answers.get("miss", f"{heavy}&filters[title][$notContains]={unique('k')}") for _ in range(4)
    ]
    stop = threading.Event()
    threads = run_clients(clients, stop)
    try:
        wait_until(lambda: answers.statuses("miss")[200] >= 4, 15, "misses served before the kill")
        killable_strapi()
        time.sleep(3)
        during = Counter(answers.seen)
        answers.clear()
        strapi_server.start()  # the fixture's own restart: a fresh process on the same port and database
        wait_until(lambda: answers.statuses("miss")[200] >= 4, 30, "misses served after the restart")
    finally:
        stop.set()
        for thread in threads:
            thread.join(25)
    print(f"\nwhile Strapi was killed: {during}\nafter its restart: {Counter(answers.seen)}")
    assert answers.broken == []
    assert {(kind, status) for kind, status, _, _ in during} <= {("hit", 200)} | {
        ("miss", status) for status in {200} | ERROR_STATUSES
    }
    assert {cache for kind, _, cache, _ in during if kind == "hit"} == {"HIT"}
    assert any(kind == "miss" and status in ERROR_STATUSES for kind, status, _, _ in during)
    assert set(answers.statuses("hit")) == {200}
    assert same_workers(bff) == workers


# -- Redis SIGKILLed and restarted under load --------------------------------------------------


def test_redis_killed_and_restarted_under_load(
    start_bff: Callable[..., Gunicorn],
    redis_server: RedisServer,
    strapi_live: Strapi,
    editor: dict[str, str],
    soak_title: str,
) -> None:
    bff = start_bff(REDIS_URL=redis_server.url, **POLICY)
    _redis_outage(bff, redis_server, strapi_live, editor, f"{soak_title} a1")


def _redis_outage(
    bff: Gunicorn, redis_server: RedisServer, strapi_live: Strapi, editor: dict[str, str], soak_title: str
) -> None:
    """Kill Redis under mixed traffic, restart it, and judge every phase's answers."""
    workers = same_workers(bff)
    cached = [f"{bff.url}/api/articles?pagination[pageSize]={size}" for size in (4, 5, 6)]
    for url in cached:
        wait_until(lambda url=url: requests.get(url, timeout=10).headers.get("X-Cache") == "HIT", 10, "a hit")
    answers = Answers()
    created: list[str] = []

    def write() -> None:
        headers = {**editor, "Idempotency-Key": unique("e2e-redis")}
        body = {"title": f"{soak_title} {uuid.uuid4().hex[:8]}"}
        answer = answers.send("write", "POST", f"{bff.url}/api/articles/publish", json=body, headers=headers)
        if answer is not None and answer.status_code == 201:
            created.append(answer.json()["data"]["documentId"])
        time.sleep(0.2)

    clients = [lambda url=url: answers.get("cached", url) for url in cached] + [
        lambda: answers.get("uncached", f"{bff.url}/api/articles?filters[title][$eq]={unique('r')}"),
        write,
    ]
    stop = threading.Event()
    threads = run_clients(clients, stop)
    phases: dict[str, Counter[tuple[str, int, str, str | None]]] = {}
    try:
        time.sleep(1.5)
        phases["before"] = Counter(answers.seen)
        answers.clear()
        assert redis_server.process is not None
        redis_server.process.kill()
        redis_server.process.wait(5)
        wait_until(lambda: answers.caches("cached")["BYPASS"] >= 20, 15, "reads bypassing a dead Redis")
        wait_until(lambda: answers.statuses("write")[503] >= 1, 15, "a keyed write during the outage")
        phases["outage"] = Counter(answers.seen)
        answers.clear()
        redis_server.start()  # the same port: bffproxy reconnects by itself
        for url in cached:  # a hit again on every key: re-stored after the store's retry interval
            wait_until(
                lambda url=url: requests.get(url, timeout=10).headers.get("X-Cache") == "HIT", 20, "HIT"
            )
        # A worker that has not been asked yet may still hold Redis as down for the store's retry
        # interval (5 s): let every worker pass it before the "after" phase is judged.
        time.sleep(5.5)
        phases["recovery"] = Counter(answers.seen)
        answers.clear()
        time.sleep(2)
        phases["after"] = Counter(answers.seen)
    finally:
        stop.set()
        for thread in threads:
            thread.join(25)
    print("\n" + "\n".join(f"{name}: {dict(counts)}" for name, counts in phases.items()))
    assert answers.broken == []
    everything = [seen for counts in phases.values() for seen in counts.elements()]
    fivexx = Counter((kind, status, code) for kind, status, _, code in everything if status >= 500)
    # Documented 503s only: a keyed write while its store is down, and the bulkhead shedding reads
    # that all reach Strapi while nothing can be cached (every read is a BYPASS, and no single-flight).
    documented = {("write", 503, "idempotency_unavailable")} | {
        (kind, 503, "upstream_busy") for kind in ("cached", "uncached", "write")
    }
    assert set(fivexx) <= documented, fivexx
    outage_reads = [status for kind, status, _, _ in phases["outage"].elements() if kind != "write"]
    assert outage_reads.count(200) > len(outage_reads) / 2  # answers continue through the outage
    assert {status for kind, status, _, _ in everything if kind != "write"} <= {200, 503}
    after_statuses = Counter(status for _, status, _, _ in phases["after"].elements())
    assert set(after_statuses) <= {200, 201, 503} and after_statuses[503] <= after_statuses[200] / 10
    outage_hits = phases["outage"].elements()
    assert {cache for kind, status, cache, _ in outage_hits if kind == "cached" and status == 200} <= {
        "BYPASS",
        "HIT",  # a worker's memory tier keeps answering a hit it holds until Redis is asked
        "MISS",  # a read that began just before the kill, or before its worker saw the fault
    }
    # Only 200s carry X-Cache: a read the bulkhead shed (503, bounded above) has none. Counting those
    # as an empty X-Cache was the 1-in-8 failure this test once re-ran for.
    after = Counter(
        cache for kind, status, cache, _ in phases["after"].elements() if kind == "cached" and status == 200
    )
    assert set(after) <= {"HIT", "MISS"} and after["HIT"] > after["MISS"]  # writes invalidate: MISS
    assert {status for kind, status, _, _ in everything if kind == "write"} <= {201, 503}
    assert sorted(item["documentId"] for item in in_strapi_titled(strapi_live, soak_title)) == sorted(created)
    assert same_workers(bff) == workers


# -- a defect found here, fixed in publishing.never_sent -------------------------------------------


def test_a_write_refused_before_sending_is_not_an_unknown_outcome(
    start_bff: Callable[..., Gunicorn], strapi_live: Strapi, editor: dict[str, str], soak_title: str
) -> None:
    """Reproduction: open the circuit with one cut read, then POST a keyed write (nothing is sent)."""
    with CuttingRelay(strapi_live.port) as relay:
        bff = start_bff(STRAPI_URL=relay.url, BREAKER_FAILURES="1", BREAKER_RESET="30", **POLICY)
        invalid = requests.post(f"{bff.url}/api/articles/publish", json={}, headers=editor, timeout=10)
        assert invalid.status_code == 422  # the editor's role is cached: the write needs no read
        relay.set_cut(True)
        opened = requests.get(f"{bff.url}/api/articles?filters[title][$eq]={unique('o')}", timeout=10)
        assert opened.status_code == 502
        relay.set_cut(False)  # Strapi is fine again, but the circuit stays open for 30 s
        cuts = relay.cuts
        headers = {**editor, "Idempotency-Key": unique("e2e-refused")}
        refused = requests.post(
            f"{bff.url}/api/articles/publish", json={"title": soak_title}, headers=headers, timeout=10
        )
        assert relay.cuts == cuts and in_strapi(strapi_live, soak_title) == []  # never sent
        assert refused.json()["error"]["code"] == "upstream_unavailable", refused.text
        assert refused.status_code == 503 and refused.headers.get("Retry-After")
