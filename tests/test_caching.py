"""The content cache: TTL, stale windows, generations, single-flight and store faults (fake clock)."""

from __future__ import annotations

import os
import pickle
import threading
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
from cachelib import FileSystemCache, SimpleCache
from redis.exceptions import LockNotOwnedError

from bffproxy import create_app
from bffproxy.caching import (
    REFRESH_WORKERS,
    ContentCache,
    Entry,
    FileFlightLocks,
    Freshness,
    MemoryTier,
    RedisFlightLocks,
    Served,
    StoreUnavailable,
    entry_size,
)
from bffproxy.errors import UpstreamTimeout, UpstreamUnavailable
from bffproxy.single_flight import Fetching, FlightBusy, LockWait, SingleFlight
from bffproxy.store import SharedStore

from .conftest import FakeClock

POLICY = Freshness(ttl=60, stale_while_revalidate=10, stale_if_error=300)


class CountingLoader:
    """A Strapi stand-in that counts calls and can fail or block on demand."""

    def __init__(self, clock: FakeClock, body: bytes = b'{"data":[]}', status: int = 200) -> None:
        self.clock, self.body, self.status = clock, body, status
        self.calls = 0
        self.fail: Exception | None = None
        self.gate: threading.Event | None = None
        self._lock = threading.Lock()

    def __call__(self) -> Entry:
        with self._lock:
            self.calls += 1
        if self.gate is not None:
            self.gate.wait(5)
        if self.fail is not None:
            raise self.fail
        return Entry.build(self.status, self.body, "application/json", self.clock())


@pytest.fixture
def cache(tmp_path: Path, clock: FakeClock) -> ContentCache:
    return ContentCache(SimpleCache(), FileFlightLocks(str(tmp_path / "locks")), clock=clock, lock_wait=5)


def serve(cache: ContentCache, load: CountingLoader, signature: str = "api/articles?") -> Any:
    return cache.serve("default", "articles", signature, POLICY, load)


def test_miss_then_hit_within_ttl(cache: ContentCache, clock: FakeClock) -> None:
    load = CountingLoader(clock)
    assert serve(cache, load).x_cache == "MISS"
    clock.advance(59)
    served = serve(cache, load)
    assert served.x_cache == "HIT"
    assert served.entry.age(clock()) == 59
    assert load.calls == 1


def test_stale_while_revalidate_serves_stale_and_refreshes_once(
    cache: ContentCache, clock: FakeClock
) -> None:
    load = CountingLoader(clock, body=b"old")
    serve(cache, load)
    clock.advance(65)  # past TTL, inside the 10 s grace window
    load.body = b"new"
    stale = serve(cache, load)
    cache.join_refreshes()
    assert stale.x_cache == "STALE" and stale.entry.body == b"old"
    assert load.calls == 2
    fresh = serve(cache, load)
    assert (fresh.x_cache, fresh.entry.body) == ("HIT", b"new")


def test_past_grace_window_fetches_synchronously(cache: ContentCache, clock: FakeClock) -> None:
    load = CountingLoader(clock)
    serve(cache, load)
    clock.advance(71)
    assert serve(cache, load).x_cache == "MISS"
    assert load.calls == 2


def test_stale_if_error_serves_old_entry_when_strapi_fails(cache: ContentCache, clock: FakeClock) -> None:
    load = CountingLoader(clock, body=b"kept")
    serve(cache, load)
    clock.advance(200)
    load.fail = UpstreamUnavailable()
    served = serve(cache, load)
    assert (served.x_cache, served.entry.body) == ("STALE", b"kept")
    assert int(served.entry.age(clock())) == 200


def test_beyond_stale_if_error_the_failure_is_raised(cache: ContentCache, clock: FakeClock) -> None:
    load = CountingLoader(clock)
    serve(cache, load)
    clock.advance(60 + 300 + 1)
    load.fail = UpstreamTimeout()
    with pytest.raises(UpstreamTimeout):
        serve(cache, load)


def test_non_200_is_not_cached(cache: ContentCache, clock: FakeClock) -> None:
    load = CountingLoader(clock, status=404)
    assert serve(cache, load).entry.status == 404
    assert serve(cache, load).x_cache == "MISS"
    assert load.calls == 2


def test_invalidation_replaces_generation_for_the_collection_only(
    cache: ContentCache, clock: FakeClock
) -> None:
    articles, categories = CountingLoader(clock), CountingLoader(clock)
    serve(cache, articles)
    cache.serve("default", "categories", "api/categories?", POLICY, categories)
    cache.invalidate("default", ["articles"])
    assert serve(cache, articles).x_cache == "MISS"
    assert cache.serve("default", "categories", "api/categories?", POLICY, categories).x_cache == "HIT"


def test_tenant_invalidation_drops_every_collection(cache: ContentCache, clock: FakeClock) -> None:
    load = CountingLoader(clock)
    serve(cache, load)
    cache.invalidate_tenant("default")
    assert serve(cache, load).x_cache == "MISS"


def test_lost_generation_never_resurrects_old_entries(cache: ContentCache, clock: FakeClock) -> None:
    load = CountingLoader(clock)
    serve(cache, load)
    cache.store.backend.delete("gen:default:articles")  # evicted by the store
    assert serve(cache, load).x_cache == "MISS"


def test_corrupted_entry_is_a_miss(cache: ContentCache, clock: FakeClock) -> None:
    load = CountingLoader(clock)
    serve(cache, load)
    key = cache.key_for("default", "articles", "api/articles?")
    cache.store.backend.set(key, ("garbage",))
    assert serve(cache, load).x_cache == "MISS"


def corrupt(path: str) -> None:
    """Keep cachelib's expiry header, garble the pickle behind it."""
    with open(path, "rb") as f:
        header = f.read(6)
    with open(path, "wb") as f:
        f.write(header + b"\x00garbage")


def test_corrupted_entry_file_is_a_miss_then_stored_again(tmp_path: Path, clock: FakeClock) -> None:
    store = FileSystemCache(str(tmp_path / "entries"))
    cache = ContentCache(store, FileFlightLocks(str(tmp_path / "locks")), clock=clock)
    load = CountingLoader(clock)
    serve(cache, load)
    corrupt(store._get_filename(cache.key_for("default", "articles", "api/articles?")))
    assert [serve(cache, load).x_cache for _ in range(2)] == ["MISS", "HIT"]
    assert load.calls == 2


def test_corrupted_generation_file_starts_a_new_generation(tmp_path: Path, clock: FakeClock) -> None:
    store = FileSystemCache(str(tmp_path / "entries"))
    cache = ContentCache(store, FileFlightLocks(str(tmp_path / "locks")), clock=clock)
    load = CountingLoader(clock)
    serve(cache, load)
    before = cache.key_for("default", "articles", "api/articles?")
    corrupt(store._get_filename("gen:default:articles"))
    assert [serve(cache, load).x_cache for _ in range(2)] == ["MISS", "HIT"]
    assert cache.key_for("default", "articles", "api/articles?") != before


class BrokenStore(SimpleCache):
    def __init__(self) -> None:
        super().__init__()
        self.broken = False
        self.calls = 0

    def get_many(self, *keys: str) -> list[Any]:
        self.calls += 1
        if self.broken:
            raise ConnectionError("redis is gone")
        return super().get_many(*keys)


def test_store_down_bypasses_and_is_not_retried_per_request(
    tmp_path: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    store = BrokenStore()
    cache = ContentCache(store, FileFlightLocks(str(tmp_path / "l")), clock=clock, retry_store_after=60)
    load = CountingLoader(clock)
    store.broken = True
    results = [serve(cache, load).x_cache for _ in range(5)]
    assert results == ["BYPASS"] * 5
    assert load.calls == 5
    assert store.calls == 1  # marked down after the first failure
    assert caplog.text.count("cache store failed") == 1


class FlightWatchingStore(SimpleCache):
    """Counts the threads that have looked for a flight outcome: each does so once it is waiting."""

    def __init__(self) -> None:
        super().__init__()
        self.waiting: set[int] = set()
        self.changed = threading.Condition()

    def get(self, key: str) -> Any:
        if key.startswith("flight:"):
            with self.changed:
                self.waiting.add(threading.get_ident())
                self.changed.notify_all()
        return super().get(key)

    def wait_for(self, count: int) -> None:
        with self.changed:
            assert self.changed.wait_for(lambda: len(self.waiting) >= count, timeout=10)


def concurrent_cold_requests(tmp_path: Path, clock: FakeClock, load: CountingLoader, count: int) -> list[Any]:
    """``count`` concurrent requests for one cold key; Strapi answers once every one of them waits."""
    store = FlightWatchingStore()
    cache = ContentCache(store, FileFlightLocks(str(tmp_path / "locks")), clock=clock, lock_wait=5)
    cache.key_for("default", "articles", "api/articles?")  # generations exist: only the entry is cold
    load.gate = threading.Event()
    results: list[Any] = []

    def request() -> None:
        try:
            results.append(serve(cache, load).x_cache)
        except UpstreamUnavailable as exc:
            results.append(exc.code)

    threads = [threading.Thread(target=request) for _ in range(count)]
    for thread in threads:
        thread.start()
    store.wait_for(count)  # every request is in the flight: the holder in Strapi, the rest waiting
    load.gate.set()
    for thread in threads:
        thread.join(10)
    return results


def test_single_flight_one_load_for_concurrent_cold_requests(tmp_path: Path, clock: FakeClock) -> None:
    load = CountingLoader(clock)
    results = concurrent_cold_requests(tmp_path, clock, load, 16)
    assert load.calls == 1
    assert sorted(results) == ["HIT"] * 15 + ["MISS"]


def test_single_flight_waiters_share_a_failure(tmp_path: Path, clock: FakeClock) -> None:
    load = CountingLoader(clock)
    load.fail = UpstreamUnavailable()
    results = concurrent_cold_requests(tmp_path, clock, load, 8)
    assert results == ["upstream_unavailable"] * 8
    assert load.calls == 1


class Places:
    """The worker's waiting places (admission.py) as a test sees them: how many, and who took one."""

    def __init__(self, free: int) -> None:
        self.free, self.taken, self.released = free, 0, 0

    def __call__(self) -> Any:
        if self.free == 0:
            return None
        self.free -= 1
        self.taken += 1
        return self

    def release(self) -> None:
        self.free += 1
        self.released += 1


def waiting_cache(tmp_path: Path, clock: FakeClock) -> tuple[ContentCache, FileFlightLocks]:
    """A cache whose waiters move the fake clock by one poll (0.5 s) per look at the holder."""
    locks = FileFlightLocks(str(tmp_path / "locks"))
    cache = ContentCache(SimpleCache(), locks, clock=clock, lock_wait=5, coalesce_wait=1, poll_interval=0.5)
    cache.waiting.monotonic, cache.waiting.sleep = clock, clock.advance
    return cache, locks


def held_flight(cache: ContentCache, locks: FileFlightLocks, started: float | None) -> Any:
    """Hold the key's lock as a holder in Strapi would; ``started``: the Fetching record it published."""
    key = cache.key_for("default", "articles", "api/articles?")
    held = locks.try_acquire(key, 5)
    assert held is not None
    if started is not None:
        cache.store.set(f"flight:{key}", ("t1", Fetching(started)), 5)
    return held


def test_a_waiter_with_a_place_waits_the_lock_wait_then_answers_503_without_fetching(
    tmp_path: Path, clock: FakeClock
) -> None:
    cache, locks = waiting_cache(tmp_path, clock)
    held = held_flight(cache, locks, started=clock())
    load, places, started = CountingLoader(clock), Places(1), clock()
    with pytest.raises(FlightBusy) as caught:
        cache.serve("default", "articles", "api/articles?", POLICY, load, places)
    assert clock() - started == 5  # the whole lock wait, in 0.5 s polls
    assert load.calls == 0  # never a second fetch holding a thread for another whole Strapi call
    assert (caught.value.status, caught.value.code, caught.value.headers) == (
        503,
        "upstream_busy",
        {"Retry-After": "1"},
    )
    assert (places.taken, places.released) == (1, 1)
    held.release()


def test_a_waiter_without_a_place_waits_only_while_the_holder_is_young(
    tmp_path: Path, clock: FakeClock
) -> None:
    cache, locks = waiting_cache(tmp_path, clock)
    held = held_flight(cache, locks, started=clock())
    load, started = CountingLoader(clock), clock()
    with pytest.raises(FlightBusy):
        cache.serve("default", "articles", "api/articles?", POLICY, load, Places(0))
    assert clock() - started == 1  # coalesce_wait after the holder started
    clock.advance(30)  # the holder has been in Strapi for half a minute: later waiters do not wait
    started = clock()
    with pytest.raises(FlightBusy):
        cache.serve("default", "articles", "api/articles?", POLICY, load, Places(0))
    assert clock() - started == 0.5  # one look at the holder's record
    assert load.calls == 0
    held.release()


def test_a_waiter_that_may_not_wait_longer_gets_stale_content_where_there_is_some(
    tmp_path: Path, clock: FakeClock
) -> None:
    cache, locks = waiting_cache(tmp_path, clock)
    load = CountingLoader(clock)
    assert cache.serve("default", "articles", "api/articles?", POLICY, load).x_cache == "MISS"
    clock.advance(75)  # past TTL + stale-while-revalidate, within stale-if-error
    held = held_flight(cache, locks, started=None)  # no record seen: its age counts from our start
    served = cache.serve("default", "articles", "api/articles?", POLICY, load, Places(0))
    assert served.x_cache == "STALE"
    assert load.calls == 1
    held.release()


def test_a_waiter_without_a_place_still_shares_a_healthy_holders_answer(
    tmp_path: Path, clock: FakeClock
) -> None:
    store = FlightWatchingStore()
    cache = ContentCache(store, FileFlightLocks(str(tmp_path / "locks")), clock=clock, lock_wait=5)
    cache.key_for("default", "articles", "api/articles?")
    load = CountingLoader(clock)
    load.gate = threading.Event()
    results: list[str] = []

    def request() -> None:
        results.append(cache.serve("default", "articles", "api/articles?", POLICY, load, Places(0)).x_cache)

    threads = [threading.Thread(target=request) for _ in range(6)]
    for thread in threads:
        thread.start()
    store.wait_for(6)
    key = cache.key_for("default", "articles", "api/articles?")
    for _ in range(1000):  # the holder publishes when it started, just before it calls Strapi
        if isinstance(cache.flights.record(key)[1], Fetching):
            break
        threading.Event().wait(0.005)
    assert cache.flights.record(key)[1] == Fetching(clock())
    load.gate.set()  # Strapi answers within coalesce_wait (the fake clock never moved)
    for thread in threads:
        thread.join(10)
    assert sorted(results) == ["HIT"] * 5 + ["MISS"]
    assert load.calls == 1


def test_zero_ttl_bypasses_the_cache(cache: ContentCache, clock: FakeClock) -> None:
    load = CountingLoader(clock)
    policy = Freshness(0, 0, 0)
    assert cache.serve("default", "articles", "x", policy, load).x_cache == "BYPASS"
    assert cache.serve("default", "articles", "x", policy, load).x_cache == "BYPASS"
    assert load.calls == 2


def test_entry_roundtrip_and_rejects_other_shapes() -> None:
    entry = Entry.build(200, b"{}", "application/json", 1.0)
    assert Entry.from_stored(entry.as_tuple()) == entry
    assert Entry.from_stored(None) is None
    assert Entry.from_stored(("v0", 200, b"", "", 1.0, "e")) is None  # another format version
    assert Entry.from_stored(("v1", "200", b"", "", 1.0, "e")) is None  # a status that is not an int
    assert Entry.from_stored(("v1", 200, "text", "", 1.0, "e")) is None  # a body that is not bytes
    assert Entry.from_stored(("v1", 200, b"", "", 1, "e")) is None  # a time that is not a float
    assert Entry.from_stored(list(entry.as_tuple())) is None  # not a tuple


def test_concurrent_first_requests_agree_on_one_generation(tmp_path: Path, clock: FakeClock) -> None:
    """FileSystemCache.add is not atomic; generation creation must still yield one key for all."""
    store = FileSystemCache(str(tmp_path / "entries"))
    caches = [ContentCache(store, FileFlightLocks(str(tmp_path / "locks")), clock=clock) for _ in range(12)]
    keys: list[str] = []
    barrier = threading.Barrier(len(caches))

    def first_request(cache: ContentCache) -> None:
        barrier.wait()
        keys.append(cache.key_for("default", "articles", "api/articles?"))

    threads = [threading.Thread(target=first_request, args=(c,)) for c in caches]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert len(keys) == 12
    assert len(set(keys)) == 1


def test_pruning_a_full_file_cache_keeps_generations(tmp_path: Path, clock: FakeClock) -> None:
    """cachelib prunes never-expiring files first; generations must outlive ordinary entries."""
    store = FileSystemCache(str(tmp_path / "entries"), threshold=6)
    cache = ContentCache(store, FileFlightLocks(str(tmp_path / "locks")), clock=clock)
    before = cache.generations("default", "articles")
    load = CountingLoader(clock)
    for i in range(20):
        serve(cache, load, signature=f"api/articles?page={i}")
    assert cache.generations("default", "articles") == before


class FlakyStore(SimpleCache):
    """A store whose writes can refuse (False, like a full disk) or fail (raise, like Redis down)."""

    def __init__(self) -> None:
        super().__init__()
        self.writes = "ok"  # "ok" | "refuse" | "raise"

    def set(self, *args: Any, **kwargs: Any) -> bool:
        if self.writes == "raise":
            raise ConnectionError("store down")
        return False if self.writes == "refuse" else bool(super().set(*args, **kwargs))

    def delete(self, key: str) -> bool:
        if self.writes == "raise":
            raise ConnectionError("store down")
        return bool(super().delete(key))


def test_a_refused_generation_write_deletes_the_generation_instead(
    cache: ContentCache, clock: FakeClock
) -> None:
    store = FlakyStore()
    cache.store = store
    cache.memory = None
    load = CountingLoader(clock)
    assert serve(cache, load).x_cache == "MISS"
    store.writes = "refuse"  # a full disk: writes refused, deletes still work
    assert cache.invalidate("default", ["articles"]) == ["articles"]
    assert serve(cache, load).x_cache == "BYPASS"  # no generation can be created: around the cache
    assert load.calls == 2  # the old entry was never served again


def test_an_invalidation_that_did_not_land_bypasses_until_it_does(
    cache: ContentCache, clock: FakeClock
) -> None:
    store = FlakyStore()
    cache.store = store
    cache.memory = None
    cache._generations._retry_every = 0
    load = CountingLoader(clock)
    assert serve(cache, load).x_cache == "MISS"
    categories = ("default", "categories", "api/categories?", POLICY, load)
    assert cache.serve(*categories).x_cache == "MISS"
    store.writes = "raise"  # the store is down for writes; its old entries are still readable
    with pytest.raises(StoreUnavailable):
        cache.invalidate("default", ["articles"])
    cache.store._down_until = 0  # reads would be retried at once: the pending invalidation decides
    assert serve(cache, load).x_cache == "BYPASS"
    cache.store._down_until = 0
    cache._generations._next_retry = float("inf")  # no replay attempt this time
    assert cache.serve(*categories).x_cache == "HIT"  # only what was invalidated is bypassed
    cache._generations._next_retry = 0
    store.writes = "ok"
    assert serve(cache, load).x_cache == "MISS"  # replayed first: the old entry is gone
    assert serve(cache, load).x_cache == "HIT"
    assert cache._generations.pending == set()


def test_memory_tier_evicts_least_recently_used_by_bytes() -> None:
    entry = Entry.build(200, b"x" * 100, "t", 1.0)
    tier = MemoryTier(max_bytes=4 * entry_size("a", entry))
    for name in "abcd":
        tier.put(name, entry)
    tier.get("a")  # a is now the most recently used
    tier.put("e", entry)
    assert tier.get("b") is None
    assert all(tier.get(k) is not None for k in "acde")
    assert tier.bytes_used == tier.max_bytes
    tier.put("huge", Entry.build(200, b"x" * 101, "t", 1.0))  # over a quarter: never remembered
    assert tier.get("huge") is None


def test_memory_tier_respects_generations_and_ttl(tmp_path: Path, clock: FakeClock) -> None:
    cache = ContentCache(
        SimpleCache(), FileFlightLocks(str(tmp_path / "l")), clock=clock, memory_bytes=1 << 20
    )
    load = CountingLoader(clock, body=b"v1")
    serve(cache, load)
    cache.store.backend.clear()  # the shared copy is gone, this worker's memory still has it
    cache.invalidate("default", ["articles"])
    load.body = b"v2"
    assert serve(cache, load).entry.body == b"v2"  # new generation: memory is not consulted
    clock.advance(61)
    load.body = b"v3"
    cache.store.backend.clear()
    served = serve(cache, load)
    assert (served.x_cache, served.entry.body) == ("MISS", b"v3")  # expired in memory too


def test_file_generations_are_reread_only_when_changed_and_seen_at_once(
    tmp_path: Path, clock: FakeClock
) -> None:
    """Two workers (two ContentCache objects) over one FileSystemCache directory."""

    class CountingFileCache(FileSystemCache):
        reads = 0

        def get(self, key: str) -> Any:
            type(self).reads += 1
            return super().get(key)

    worker_a = ContentCache(
        CountingFileCache(str(tmp_path / "e")), FileFlightLocks(str(tmp_path / "l")), clock=clock
    )
    worker_b = ContentCache(
        FileSystemCache(str(tmp_path / "e")), FileFlightLocks(str(tmp_path / "l")), clock=clock
    )
    before = worker_a.key_for("default", "articles", "sig")
    worker_a.key_for("default", "articles", "sig")  # the first read after creation fills the memo
    CountingFileCache.reads = 0
    for _ in range(50):
        assert worker_a.key_for("default", "articles", "sig") == before
    assert CountingFileCache.reads == 0  # unchanged files: stat only
    worker_b.invalidate("default", ["articles"])
    after = worker_a.key_for("default", "articles", "sig")
    assert after != before
    assert after == worker_b.key_for("default", "articles", "sig")


class ExpiredRedisLock:
    """What redis-py's Lock does when its TTL ran out while held: release raises."""

    def __init__(self, name: str) -> None:
        self.name = name

    def acquire(self) -> bool:
        return True

    def release(self) -> None:
        raise LockNotOwnedError("Cannot release a lock that's no longer owned")


class ExpiringLockClient:
    """A redis-py stand-in whose every lock expires before its holder releases it."""

    def lock(self, name: str, **kwargs: Any) -> ExpiredRedisLock:
        return ExpiredRedisLock(name)


def test_a_redis_lock_lost_before_release_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    lock = RedisFlightLocks(ExpiringLockClient(), "bffproxy:").try_acquire("k", 1.0)
    assert lock is not None
    lock.release()
    assert "bffproxy:lock:k expired before it was released" in caplog.text


def test_a_fetch_that_outlasts_its_redis_lock_still_answers_504(clock: FakeClock) -> None:
    cache = ContentCache(SimpleCache(), RedisFlightLocks(ExpiringLockClient(), "bffproxy:"), clock=clock)
    load = CountingLoader(clock)
    load.fail = UpstreamTimeout()
    with pytest.raises(UpstreamTimeout):
        serve(cache, load)


def test_a_fetch_that_outlasts_its_redis_lock_still_serves_stale(clock: FakeClock) -> None:
    cache = ContentCache(SimpleCache(), RedisFlightLocks(ExpiringLockClient(), "bffproxy:"), clock=clock)
    load = CountingLoader(clock, body=b"kept")
    serve(cache, load)
    clock.advance(200)  # past the revalidation window, inside stale-if-error
    load.fail = UpstreamTimeout()
    served = serve(cache, load)
    assert (served.x_cache, served.entry.body) == ("STALE", b"kept")


@pytest.mark.parametrize("body_size", [100, 4000])
def test_memory_tier_stays_within_its_budget_in_real_bytes(body_size: int) -> None:
    """What the tier holds, measured by tracemalloc, fills its budget without exceeding it."""
    budget = 256 * 1024
    tier = MemoryTier(max_bytes=budget)
    stored = pickle.dumps(
        Entry.build(200, os.urandom(body_size), "application/json; charset=utf-8", 1.5).as_tuple()
    )
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(4 * budget // body_size):  # far more than fits: the tier must evict
            # as the shared store hands them out: every entry unpickled into objects of its own
            tier.put(
                f"v1:default:articles:0123456789abcdef.0123456789abcdef:{i:040d}",
                Entry.from_stored(pickle.loads(stored)),
            )
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert 0.9 * budget <= held <= 1.05 * budget


class FreeLocks:
    """Locks that are always free, so only the cache's own bounds can refuse a refresh."""

    class Held:
        def release(self) -> None:
            pass

    def try_acquire(self, key: str, ttl: float) -> FreeLocks.Held:
        return FreeLocks.Held()


def stale_entries(cache: ContentCache, load: CountingLoader, clock: FakeClock, count: int) -> None:
    for i in range(count):
        serve(cache, load, signature=f"api/articles?page={i}")
    clock.advance(65)  # past the TTL, inside stale-while-revalidate
    load.gate = threading.Event()  # refreshes block in "Strapi" until the test opens the gate


def test_background_refreshes_run_in_a_small_bounded_pool(clock: FakeClock) -> None:
    cache = ContentCache(SimpleCache(), FreeLocks(), clock=clock)
    load = CountingLoader(clock)
    stale_entries(cache, load, clock, 10)
    answers = [serve(cache, load, signature=f"api/articles?page={i}").x_cache for i in range(10)]
    assert load.gate is not None
    load.gate.set()
    cache.join_refreshes()
    assert answers == ["STALE"] * 10
    assert load.calls == 10 + REFRESH_WORKERS  # the other eight are skipped, not queued


def test_a_key_being_refreshed_is_not_refreshed_again(clock: FakeClock) -> None:
    cache = ContentCache(SimpleCache(), FreeLocks(), clock=clock)
    load = CountingLoader(clock)
    stale_entries(cache, load, clock, 1)
    answers = [serve(cache, load, signature="api/articles?page=0").x_cache for _ in range(3)]
    assert load.gate is not None
    load.gate.set()
    cache.join_refreshes()
    assert answers == ["STALE"] * 3
    assert load.calls == 1 + 1


def test_idempotency_records_are_never_pruned_with_cache_entries(config: dict[str, Any]) -> None:
    """A full file cache prunes what expires soonest; records live in a key space of their own."""
    config.update(CACHE_MAX_ENTRIES=5, IDEMPOTENCY_TTL=60)  # records expire before entries do
    app = create_app(config)
    records = app.extensions["bffproxy.records"]
    records.set("idem:v1:default:key", "the answer of a committed write", 60)
    cache: ContentCache = app.extensions["bffproxy.cache"]
    load = CountingLoader(FakeClock())
    for i in range(20):  # four times the threshold
        cache.serve("default", "articles", f"api/articles?page={i}", POLICY, load)
    assert load.calls == 20
    assert records.get("idem:v1:default:key") == "the answer of a committed write"


def test_the_store_refuses_writes_that_never_expire() -> None:
    """Under Redis's volatile-* policies only keys with a TTL are evicted: cache writes must carry one."""
    store = SharedStore(SimpleCache())
    with pytest.raises(ValueError, match="must expire"):
        store.set("gen:default", "token", 0)


class _HeldElsewhere:
    """Locks held by another instance (the single-flight holder)."""

    def try_acquire(self, key: str, ttl: float) -> None:
        return None


def test_a_waiter_waits_for_a_young_fetch_whose_holder_clock_is_behind() -> None:
    """Found by the hostile tester: with the holder's start compared with the waiter's clock, a
    holder (another instance on Redis) 5 s behind made every fresh fetch look old: 503 at once."""
    clock = FakeClock()
    ticks: list[float] = [0.0]

    def sleep(seconds: float) -> None:
        ticks[0] += seconds
        clock.advance(seconds)

    store = SharedStore(SimpleCache())
    waiting = LockWait(_HeldElsewhere(), 15.0, 0.05, monotonic=lambda: ticks[0], sleep=sleep)  # type: ignore[arg-type]
    flight = SingleFlight(store, waiting, brief=1.0, clock=clock)
    store.set("flight:k", ("token", Fetching(clock() - 5)), 15)  # just started, on a clock 5 s behind
    entry = Entry.build(200, b"{}", "application/json", clock())

    def settled() -> Served | None:
        return Served(entry, "HIT") if ticks[0] >= 0.2 else None  # the holder stores it 0.2 s later

    served = flight.run("k", lambda: entry, settled, places=lambda: None)
    assert served.x_cache == "HIT"
