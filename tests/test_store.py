"""The embedded store (DiskStore): bounded work when full, eviction, forks, settings and wiring."""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
from cachelib import FileSystemCache

from bffproxy import create_app
from bffproxy.caching import ContentCache
from bffproxy.disk_store import CULL_LIMIT, DiskStore
from bffproxy.settings import ConfigError
from bffproxy.store import SharedStore, StoreUnavailable

from .conftest import FakeClock
from .test_caching import POLICY, CountingLoader

VALUE = b"x" * 4_000  # a small list answer: stored inline in SQLite, as most entries are


def full_store(directory: Path, entries: int) -> DiskStore:
    """A DiskStore holding ``entries`` values, its size limit set to exactly what they occupy."""
    store = DiskStore(str(directory), size_limit=1 << 40)
    with store.cache.transact():
        for i in range(entries):
            store.set(f"fill:{i}", VALUE, 300)
    store.cache.reset("size_limit", store.volume())
    return store


def steps_of_a_set(store: DiskStore) -> int:
    """SQLite virtual-machine steps of one set on a store at its limit (so that set evicts)."""
    store.cache.reset("size_limit", store.volume())
    before = store.count()
    steps = 0

    def count() -> int:
        nonlocal steps
        steps += 1
        return 0  # carry on

    connection: sqlite3.Connection = store.cache._con
    connection.set_progress_handler(count, 1)
    try:
        store.set("miss", VALUE, 300)
    finally:
        connection.set_progress_handler(None, 1)
    assert store.count() == before + 1 - CULL_LIMIT  # it did evict, as much as it may
    return steps


def test_a_set_on_a_full_store_does_the_same_work_at_ten_times_the_entries(tmp_path: Path) -> None:
    """FileSystemCache read every file per set once full; the DiskStore's work must not grow with N."""
    work = {}
    for entries in (1_000, 10_000):
        work[entries] = steps_of_a_set(full_store(tmp_path / str(entries), entries))
    assert work[10_000] < 1.2 * work[1_000], work
    assert work[1_000] < 2_000, work  # index look-ups and 10 deletes (about 900), not a pass over rows


def test_each_set_over_the_limit_deletes_at_most_the_cull_limit_oldest_first(tmp_path: Path) -> None:
    store = full_store(tmp_path, 200)
    counts = []
    for i in range(30):
        before = store.count()
        store.set(f"new:{i}", VALUE, 300)
        counts.append(before + 1 - store.count())
    assert max(counts) <= CULL_LIMIT
    assert sum(counts) >= 30 - CULL_LIMIT  # it does evict: the store stays about its size
    assert store.get("fill:0") is None  # least recently stored went first
    assert store.get("fill:199") == VALUE
    assert all(store.get(f"new:{i}") == VALUE for i in range(30))


def test_expired_entries_are_culled_before_live_ones(tmp_path: Path) -> None:
    store = full_store(tmp_path, 100)
    store.cache.set("fill:99", VALUE, expire=-1)  # the newest entry, already expired
    store.set("new", VALUE, 300)
    assert "fill:99" not in store.cache
    assert store.get("fill:50") == VALUE


def test_cachelib_timeouts_become_diskcache_expiry(tmp_path: Path) -> None:
    store = DiskStore(str(tmp_path), size_limit=1 << 20, default_timeout=300)
    now = time.time()
    store.set("ttl", 1, 60)
    store.set("default", 1)
    store.set("forever", 1, 0)  # cachelib: 0 never expires
    expiry = {key: store.cache.get(key, expire_time=True)[1] for key in ("ttl", "default", "forever")}
    assert expiry["ttl"] == pytest.approx(now + 60, abs=5)
    assert expiry["default"] == pytest.approx(now + 300, abs=5)
    assert expiry["forever"] is None
    assert store.add("ttl", 2, 60) is False and store.get("ttl") == 1
    assert store.get_many("ttl", "absent") == [1, None]
    assert store.inc("n") == 1 and store.inc("n", 2) == 3 and store.dec("n") == 2
    assert store.has("ttl") and not store.has("absent")
    assert store.delete("ttl") is True and store.delete("ttl") is False


def test_a_forked_worker_opens_its_own_connection(tmp_path: Path) -> None:
    """gunicorn forks after the arbiter may have used the store: a child must not share its connection."""
    store = DiskStore(str(tmp_path), size_limit=1 << 20)
    store.set("before-fork", "arbiter", 60)
    parent_connection = store.cache._con
    pid = os.fork()
    if pid == 0:  # the worker
        ok = store.cache._con is not parent_connection and store.get("before-fork") == "arbiter"
        ok = ok and store.set("from-worker", "worker", 60)
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert store.cache._con is parent_connection
    assert store.get("from-worker") == "worker"


def test_a_sqlite_error_marks_the_store_down(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """FileSystemCache answered False on a full disk; the DiskStore raises, so the store is marked down."""
    backend = DiskStore(str(tmp_path), size_limit=1 << 20)
    store = SharedStore(backend)

    def full(*args: Any, **kwargs: Any) -> None:
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(backend.cache, "set", full)
    with pytest.raises(StoreUnavailable):
        store.set("key", "value", 60)
    assert store.is_down


# -- settings and wiring -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "megabytes"),
    [
        ({}, 256),
        ({"CACHE_MAX_MB": "64"}, 64),
        ({"CACHE_MAX_ENTRIES": "20000"}, 313),  # 16 KiB an entry, rounded up
        ({"CACHE_MAX_ENTRIES": "5"}, 1),
        ({"CACHE_MAX_ENTRIES": "20000", "CACHE_MAX_MB": "64"}, 64),  # the byte size wins
    ],
)
def test_the_store_size_setting(config: dict[str, Any], settings: dict[str, str], megabytes: int) -> None:
    config.update(settings)
    app = create_app(config)
    backend = app.extensions["bffproxy.store"].backend
    assert isinstance(backend, DiskStore)
    assert backend.cache.size_limit == megabytes * 1024 * 1024
    assert backend.cache.directory == os.path.join(config["CACHE_DIR"], "store")


@pytest.mark.parametrize("key", ["CACHE_MAX_MB", "CACHE_MAX_ENTRIES"])
def test_a_store_size_below_one_is_refused_at_start_up(config: dict[str, Any], key: str) -> None:
    config[key] = 0
    with pytest.raises(ConfigError, match=rf"^BFFPROXY_{key} must be an integer >= 1, got 0$"):
        create_app(config)


def test_generations_and_records_live_apart_from_the_evicting_store(config: dict[str, Any]) -> None:
    app = create_app(config)
    cache: ContentCache = app.extensions["bffproxy.cache"]
    assert isinstance(cache.store.backend, DiskStore)
    assert isinstance(cache.generation_store.backend, FileSystemCache)  # stat-validated on hits
    assert cache.generation_store is app.extensions["bffproxy.generations"]
    records = app.extensions["bffproxy.records"].backend
    assert isinstance(records, DiskStore)
    assert records.cache.directory != cache.store.backend.cache.directory


@pytest.mark.parametrize("evicts", [True, False])
def test_a_records_store_over_its_size_keeps_every_record_a_cache_store_evicts(
    tmp_path: Path, evicts: bool
) -> None:
    store = DiskStore(str(tmp_path), size_limit=64 * 1024, evicts=evicts)
    for n in range(200):  # 200 x 4 KiB: 12 times the size
        store.set(f"r{n}", b"x" * 4096, 3600)
    kept = sum(store.get(f"r{n}") is not None for n in range(200))
    assert (kept == 200) is not evicts  # the cache store evicts to its size; records stay


def test_a_full_store_keeps_generations_and_serves_what_it_holds(config: dict[str, Any]) -> None:
    """Anonymous unique queries fill the store: it evicts entries, never a generation token."""
    config.update(CACHE_MAX_MB=1, CACHE_MEMORY_MB=0)  # no worker memory: every read is the store's
    app = create_app(config)
    cache: ContentCache = app.extensions["bffproxy.cache"]
    clock = FakeClock(time.time())
    cache.clock = clock
    before = cache.generations("default", "articles")
    load = CountingLoader(clock, body=b"x" * 20_000)
    for i in range(200):  # about 4 MB into 1 MB
        cache.serve("default", "articles", f"api/articles?x={i}", POLICY, load)
    assert cache.store.backend.volume() < 2 * 1024 * 1024
    assert cache.generations("default", "articles") == before
    assert cache.serve("default", "articles", "api/articles?x=199", POLICY, load).x_cache == "HIT"
    assert cache.serve("default", "articles", "api/articles?x=0", POLICY, load).x_cache == "MISS"
