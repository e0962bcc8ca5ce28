"""Redis scale-out end to end: two gunicorn instances (2 workers each) sharing one real redis-server.

* a webhook received by instance A makes instance B serve fresh content on its very next request;
* a cold stampede spread over both instances reaches Strapi once (counted in Strapi's own log);
* with Redis unreachable both keep answering from Strapi (X-Cache: BYPASS), never 500, and log the
  fault once per interval, not per request;
* under memory pressure (``maxmemory-policy volatile-lru``) Redis evicts cache entries, never an
  idempotency record;
* a single-flight or idempotency lock that expires while held (a Strapi call outlasting it) is
  released without an error, so the answer stays a 504 or stale content, never a 500.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import redis
import requests
from cachelib import RedisCache

from bffproxy import create_app
from bffproxy.caching import ContentCache, Entry, Freshness, RedisFlightLocks
from bffproxy.errors import UpstreamTimeout
from bffproxy.store import RedisRecords

from ..conftest import FakeClock
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
    return not any("bffproxy.webhooks " in line and ": webhook " in line for line in bff.log().splitlines())


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


def expire_locks(client: redis.Redis, pattern: str) -> None:
    """What Redis does when a lock's TTL runs out, without waiting for it: the key is gone."""
    held = client.keys(pattern)
    assert held, f"no lock matching {pattern} is held"
    client.delete(*held)


def test_a_lock_that_expires_before_release_is_released_quietly(redis_server: RedisServer) -> None:
    client = redis.Redis.from_url(redis_server.url)
    locks = RedisFlightLocks(client, "e2e:")
    lock = locks.try_acquire("idem:record", 5.0)  # the idempotency store's check-and-set lock
    assert lock is not None
    expire_locks(client, "e2e:lock:idem:record")
    taken_over = locks.try_acquire("idem:record", 5.0)  # another request may take it meanwhile
    assert taken_over is not None
    lock.release()  # must neither raise nor free the new holder's lock
    assert client.exists("e2e:lock:idem:record") == 1
    taken_over.release()
    assert client.exists("e2e:lock:idem:record") == 0


def test_a_fetch_that_outlasts_its_redis_lock_answers_504_not_500(redis_server: RedisServer) -> None:
    client = redis.Redis.from_url(redis_server.url)
    cache = ContentCache(RedisCache(host=client, key_prefix="e2e:"), RedisFlightLocks(client, "e2e:"))

    def strapi_slower_than_the_lock() -> Entry:
        expire_locks(client, "e2e:lock:v1:*")  # the fetch's own single-flight lock
        raise UpstreamTimeout()

    with pytest.raises(UpstreamTimeout):
        cache.serve("default", "articles", "api/articles?", Freshness(60, 0, 0), strapi_slower_than_the_lock)


def test_memory_pressure_evicts_cache_entries_never_idempotency_records(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    client = redis.Redis.from_url(redis_server.url)
    client.config_set("maxmemory", "8mb")
    client.config_set("maxmemory-policy", "volatile-lru")  # what the README recommends
    app = create_app(
        {
            "STRAPI_URL": f"http://127.0.0.1:{free_port()}",
            "COLLECTIONS": "articles",
            "CACHE_DIR": str(tmp_path / "cache"),
            "REDIS_URL": redis_server.url,
        }
    )
    records = app.extensions["bffproxy.records"]
    records.set("idem:v1:default:committed", "the answer of a committed write", 24 * 3600)
    store = app.extensions["bffproxy.cache"].store
    entry = Entry.build(200, os.urandom(10_000), "application/json", 1.0).as_tuple()
    # volatile-* policies only ever evict keys with a TTL: records have none, everything else has.
    assert client.ttl("bffproxy:records:idem:v1:default:committed") == -1
    app.extensions["bffproxy.cache"].key_for("default", "articles", "api/articles?")  # generations
    cache_keys = [k for k in client.scan_iter("bffproxy:*") if not k.startswith(b"bffproxy:records:")]
    assert cache_keys and all(client.ttl(k) > 0 for k in cache_keys)
    for i in range(3000):  # about 30 MB of entries into 8 MB
        store.set(f"v1:default:articles:filler:{i}", entry, 600)
    assert int(client.info("stats")["evicted_keys"]) > 2000
    assert records.get("idem:v1:default:committed") == "the answer of a committed write"


def test_expired_records_read_as_absent_and_the_next_write_deletes_them(redis_server: RedisServer) -> None:
    client = redis.Redis.from_url(redis_server.url)
    clock = FakeClock()
    records = RedisRecords(client, "e2e:records:", clock=clock)
    records.set("old", "answer", 60)
    clock.advance(61)
    assert records.get("old") is None
    records.set("new", "answer", 60)
    assert client.exists("e2e:records:old") == 0
    assert client.zrange("e2e:records:expiry", 0, -1) == [b"new"]
    assert records.get("new") == "answer"
