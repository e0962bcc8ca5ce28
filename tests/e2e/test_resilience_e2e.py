"""Issue 9 end to end: a hung Strapi (SIGSTOP) must not starve cache hits, and everything recovers.

bffproxy runs under real gunicorn (2 workers x 4 threads) in front of the real Strapi. While Strapi
is stopped, 50 clients send misses (unique query strings, or all one cold key) and 10 clients read
cached keys.
Every hit must answer 200 within its client timeout (2 s; before the bulkhead a hit waited about
20 s for a thread); misses answer 503/504, never hang past the read timeout. After SIGCONT the
circuit's probe closes it and misses are served again, without a restart.
"""

from __future__ import annotations

import os
import signal
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests

from .services import Gunicorn, Strapi, wait_until


@pytest.fixture
def stopped_strapi(strapi_live: Strapi) -> Iterator[Callable[[], None]]:
    """A function that SIGSTOPs the session's Strapi; it is always SIGCONTed afterwards."""
    pid = int(strapi_live.env["STRAPI_PID"])
    stopped: list[bool] = []

    def stop() -> None:
        os.kill(pid, signal.SIGSTOP)
        stopped.append(True)

    yield stop
    if stopped:
        os.kill(pid, signal.SIGCONT)


MISSES = {
    "unique queries": lambda n: f"/api/articles?filters[title][$eq]=m{n}",
    # One cold key: the first is the single-flight holder, one per worker may wait for it as long
    # as a Strapi call can take, the rest only while it is young (1 s), then 503 at once.
    "one cold key": lambda n: "/api/articles?filters[title][$eq]=same",
}


@pytest.mark.parametrize("kind", MISSES)
def test_a_hung_strapi_does_not_starve_hits(
    start_bff: Callable[..., Gunicorn], stopped_strapi: Callable[[], None], kind: str
) -> None:
    bff = start_bff(STRAPI_READ_TIMEOUT="3", BREAKER_RESET="2")
    cached = [f"{bff.url}/api/articles?pagination[page]={page}" for page in range(1, 11)]
    for url in cached:
        assert requests.get(url, timeout=10).headers["X-Cache"] == "MISS"
    stopped_strapi()
    hits: list[tuple[int, str, float]] = []
    misses: list[int | str] = []
    done = threading.Event()

    def read_hits(url: str) -> None:
        while not done.is_set():
            started = time.perf_counter()
            try:
                answer = requests.get(url, timeout=2)
                hits.append(
                    (answer.status_code, answer.headers.get("X-Cache", ""), time.perf_counter() - started)
                )
            except requests.RequestException as exc:
                hits.append((0, exc.__class__.__name__, time.perf_counter() - started))

    def miss(n: int) -> None:
        try:
            misses.append(requests.get(f"{bff.url}{MISSES[kind](n)}", timeout=20).status_code)
        except requests.RequestException as exc:
            misses.append(exc.__class__.__name__)

    readers = [threading.Thread(target=read_hits, args=(url,)) for url in cached]
    missers = [threading.Thread(target=miss, args=(n,)) for n in range(50)]
    for thread in readers + missers:
        thread.start()
    for thread in missers:
        thread.join(30)
    done.set()
    for thread in readers:
        thread.join(5)
    latencies = sorted(seconds for _, _, seconds in hits)
    p99 = latencies[int(len(latencies) * 0.99) - 1] * 1000
    median = statistics.median(latencies) * 1000
    print(f"\n{kind}: hits during the hang: {len(hits)}, median {median:.1f} ms, p99 {p99:.1f} ms")
    print(f"misses: {sorted(map(str, misses))}")
    # Every hit is a 200 HIT; on a loaded 2-core runner a rare one can miss the 2 s client timeout
    # (the harness's 60 threads share the cores), never more than 1% (before: most of them).
    outcomes = {(status, cache) for status, cache, _ in hits}
    assert outcomes <= {(200, "HIT"), (0, "ReadTimeout")}
    assert sum(1 for status, _, _ in hits if status == 0) <= len(hits) / 100
    assert set(misses) <= {503, 504}
    assert misses.count(503) > 0  # the bulkhead or the open circuit answered at once


def test_everything_recovers_after_strapi_comes_back(
    start_bff: Callable[..., Gunicorn], strapi_live: Strapi, stopped_strapi: Callable[[], None]
) -> None:
    bff = start_bff(STRAPI_READ_TIMEOUT="1", BREAKER_FAILURES="2", BREAKER_RESET="1")
    stopped_strapi()
    for n in range(4):
        assert requests.get(f"{bff.url}/api/articles?filters[title][$eq]=r{n}", timeout=10).status_code in (
            503,
            504,
        )
    assert (
        requests.get(f"{bff.url}/readyz", timeout=10).json()["error"]["details"]["circuit"]["default"]
        != "closed"
    )
    os.kill(int(strapi_live.env["STRAPI_PID"]), signal.SIGCONT)

    def served() -> Any:
        return requests.get(f"{bff.url}/api/articles?sort=title", timeout=10).status_code == 200

    wait_until(served, 20, "misses served again after SIGCONT")

    def ready() -> bool:  # on every worker: each reuses its own last look at Strapi for a second
        answers = [requests.get(f"{bff.url}/readyz", timeout=10) for _ in range(4)]
        return all(a.status_code == 200 and a.json()["circuit"] == {"default": "closed"} for a in answers)

    wait_until(ready, 20, "ready again, circuit closed")
