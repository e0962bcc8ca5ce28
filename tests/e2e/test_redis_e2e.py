"""Redis scale-out end to end: two gunicorn instances (2 workers each) sharing one real redis-server.

* a webhook received by instance A makes instance B serve fresh content on its very next request;
* a cold stampede spread over both instances reaches Strapi once (counted in Strapi's own log);
* with Redis unreachable both keep answering from Strapi (X-Cache: BYPASS), never 500, and log the
  fault once per interval, not per request.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from .services import Gunicorn, RedisServer, Strapi, free_port, wait_until
from .test_invalidation_e2e import Articles, by_worker, fetch, hit_on_two_workers, wait_for_webhooks

STORE_FAULT = "cache store failed"
RETRY_STORE_AFTER = 5.0  # ContentCache's default interval between a fault and the next try


@pytest.fixture
def articles(strapi_live: Strapi) -> Iterator[Articles]:
    made = Articles(strapi_live)
    yield made
    made.delete_all()


def test_webhook_to_instance_a_refreshes_instance_b(
    start_bff: Callable[..., Gunicorn], webhook_port: int, redis_server: RedisServer, articles: Articles
) -> None:
    a = start_bff(port=webhook_port, REDIS_URL=redis_server.url)
    b = start_bff(REDIS_URL=redis_server.url)
    articles.receiver = a
    document_id = articles.create()
    wait_for_webhooks(a, document_id, 2)
    path = f"/api/articles/{document_id}"
    by_worker(f"{b.url}{path}", until=hit_on_two_workers)
    assert fetch(f"{a.url}{path}").headers["X-Cache"] == "HIT"  # A shares B's entry through Redis

    articles.update(document_id, excerpt="changed through instance A")
    wait_for_webhooks(a, document_id, 4)

    first = fetch(f"{b.url}{path}")
    assert "changed through instance A" in first.text
    assert first.headers["X-Cache"] == "MISS"
    assert "changed through instance A" in fetch(f"{a.url}{path}").text
    assert received_nothing(b)


def received_nothing(bff: Gunicorn) -> bool:
    """True when no webhook reached this instance (it learnt the change from Redis alone)."""
    return "bffproxy.webhooks: webhook " not in bff.log()


def test_cold_stampede_over_two_instances_reaches_strapi_once(
    start_bff: Callable[..., Gunicorn], redis_server: RedisServer, strapi_live: Strapi
) -> None:
    instances = [start_bff(REDIS_URL=redis_server.url) for _ in range(2)]
    workers: set[str] = set()
    for _ in range(5):  # fast hits can leave a worker idle: retry with a new cold key until spread
        marker = uuid.uuid4().hex
        barrier = threading.Barrier(64)

        def one(i: int, marker: str = marker, barrier: threading.Barrier = barrier) -> requests.Response:
            barrier.wait()
            return fetch(f"{instances[i % 2].url}/api/articles?filters[title][$containsi]={marker}")

        with ThreadPoolExecutor(64) as pool:
            answers = list(pool.map(one, range(64)))
        assert {r.status_code for r in answers} == {200}
        assert len({r.content for r in answers}) == 1
        # Strapi logs a request before it sends the answer, so every request it served is logged by now.
        assert strapi_live.count_requests(marker) == 1
        workers = {r.headers["X-BFF-Worker"] for r in answers}
        if len(workers) >= 3:
            break
    assert len(workers) >= 3, "no attempt spread over both instances' workers"


def test_redis_down_bypasses_the_cache_and_logs_once_per_interval(
    start_bff: Callable[..., Gunicorn], redis_server: RedisServer, strapi_live: Strapi
) -> None:
    bff = start_bff(REDIS_URL=redis_server.url)
    url = f"{bff.url}/api/articles?pagination[pageSize]=6"
    wait_until(lambda: fetch(url).headers["X-Cache"] == "HIT", 10, "a cached list in Redis")
    expected = strapi_live.get("api/articles", **{"pagination[pageSize]": 6}).json()

    redis_server.stop()
    started = time.monotonic()
    answers = [fetch(url) for _ in range(40)]
    elapsed = time.monotonic() - started
    assert [r.status_code for r in answers] == [200] * 40
    assert {r.headers["X-Cache"] for r in answers} == {"BYPASS"}
    assert all(r.json() == expected for r in answers)
    faults = bff.log().count(STORE_FAULT)
    assert 1 <= faults <= bff.workers * (int(elapsed // RETRY_STORE_AFTER) + 1), bff.log()

    redis_server.start()  # same port: caching resumes after the retry interval, nothing to restart
    wait_until(lambda: fetch(url).headers["X-Cache"] == "HIT", 3 * RETRY_STORE_AFTER, "caching to resume")


def test_redis_never_reachable_still_serves(start_bff: Callable[..., Gunicorn], strapi_live: Strapi) -> None:
    bff = start_bff(REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")
    answers = [fetch(f"{bff.url}/api/articles/{doc}") for doc in ("nope", "nope", "nope")]
    assert [(r.status_code, r.headers["X-Cache"]) for r in answers] == [(404, "BYPASS")] * 3
    answer = fetch(f"{bff.url}/api/articles")
    assert (answer.status_code, answer.headers["X-Cache"]) == (200, "BYPASS")
    assert answer.json() == strapi_live.get("api/articles").json()
