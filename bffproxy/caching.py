"""The content cache: keys, a per-worker memory tier, and how a request is answered.

It composes pieces that each own one thing:

* :mod:`.store` — the shared store (a size-bounded SQLite :mod:`.disk_store` under
  ``BFFPROXY_CACHE_DIR`` for the workers of one machine, or Redis with ``BFFPROXY_REDIS_URL`` for
  every instance) behind one fault boundary; a store fault is a miss or a BYPASS, never a 500.
* :mod:`.generations` — the tokens every key embeds; invalidation replaces them.
* :mod:`.single_flight` — one Strapi fetch per cold key across workers; the lock factory.
* :mod:`.freshness` — entries, TTL and RFC 5861's stale windows.

Keys are normalised: tenant, collection, path, the query's (name, value) pairs sorted, and the
request headers that change Strapi's answer. ``?a=1&b=2`` and ``?b=2&a=1`` are one entry.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any

from flask import Flask, current_app

from . import store as shared_store
from .errors import UpstreamError, UpstreamTimeout, UpstreamUnavailable
from .freshness import Entry, Freshness, Served, freshness_for, resolve_freshness
from .generations import Generations
from .settings import as_mapping, as_number, as_str
from .single_flight import (
    FileFlightLocks,
    FlightLock,
    FlightLocks,
    LockWait,
    RedisFlightLocks,
    SingleFlight,
    WaitingPlaces,
    shared_locks,
)
from .store import SharedStore, StoreUnavailable, redis_client

__all__ = [
    "ContentCache",
    "Entry",
    "FileFlightLocks",
    "FlightLock",
    "FlightLocks",
    "Freshness",
    "MemoryTier",
    "RedisFlightLocks",
    "Served",
    "StoreUnavailable",
    "content_cache",
    "freshness_for",
    "init_app",
    "redis_client",
    "shared_locks",
]

log = logging.getLogger(__name__)

Clock = Callable[[], float]
Loader = Callable[[], Entry]
UPSTREAM_FAILURES = (UpstreamError, UpstreamTimeout, UpstreamUnavailable)
KEY_VERSION = "v1"
REFRESH_WORKERS = 2


# What one remembered entry costs beyond its key, body and content type (each measured with
# sys.getsizeof): the Entry object, its ETag string and stored_at float, and the OrderedDict's node
# and table slot. Measured with tracemalloc on CPython 3.11: 265 bytes in a tier that only grows,
# up to 310 in one that evicts (the table keeps deleted slots until it resizes). The budget test
# in tests/test_caching.py fails if real memory drifts more than 5% past what is counted.
ENTRY_OVERHEAD = 304

# The embedded store's size (BFFPROXY_CACHE_MAX_MB). BFFPROXY_CACHE_MAX_ENTRIES, its older count
# limit, is still read at 16 KiB an entry: the large end of a list answer, so no old setting shrinks.
DEFAULT_STORE_MB = 256
BYTES_PER_ENTRY = 16 * 1024


def entry_size(key: str, entry: Entry) -> int:
    """The bytes an entry really occupies in the memory tier, key included."""
    return sys.getsizeof(key) + sys.getsizeof(entry.body) + sys.getsizeof(entry.content_type) + ENTRY_OVERHEAD


class MemoryTier:
    """A small per-worker LRU of entries in front of the shared store, bounded by real bytes.

    Safe without any invalidation of its own: every key embeds the current generations, so an
    invalidated entry is simply never asked for again, and freshness is checked on every use.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[str, Entry] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: str) -> Entry | None:
        """The remembered entry for ``key`` (most recently used), or None."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                self._entries.move_to_end(key)
            return entry

    @property
    def bytes_used(self) -> int:
        """The real size of everything remembered (see :func:`entry_size`)."""
        return self._bytes

    def put(self, key: str, entry: Entry) -> None:
        """Remember ``entry``, evicting the least recently used beyond ``max_bytes``."""
        size = entry_size(key, entry)
        if size > self.max_bytes // 4:
            return  # one huge answer must not flush everything else
        with self._lock:
            old = self._entries.pop(key, None)
            self._bytes += size - (entry_size(key, old) if old else 0)
            self._entries[key] = entry
            while self._bytes > self.max_bytes and self._entries:
                evicted_key, evicted = self._entries.popitem(last=False)
                self._bytes -= entry_size(evicted_key, evicted)


class Refreshers:
    """Background refreshes of stale entries: at most ``workers`` at once, one per key, no queue.

    A burst of stale keys (a TTL shared by many entries runs out together) must not start a thread
    per key: a refresh that finds the pool busy is skipped, and the next stale hit asks again.
    """

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._pool: ThreadPoolExecutor | None = None  # threads start on first use, after the fork
        self._running: dict[str, Future[None]] = {}
        self._lock = threading.Lock()

    def has_room_for(self, key: str) -> bool:
        """True when ``key`` is not being refreshed and a worker is free."""
        with self._lock:
            return key not in self._running and len(self._running) < self.workers

    def start(self, key: str, refresh: Callable[[], None]) -> bool:
        """Run ``refresh`` in the pool unless it has no room for ``key``; True when started."""
        with self._lock:
            if key in self._running or len(self._running) >= self.workers:
                return False
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="bffproxy-refresh")
            future = self._running[key] = self._pool.submit(refresh)
        future.add_done_callback(lambda _: self._forget(key))
        return True

    def _forget(self, key: str) -> None:
        with self._lock:
            self._running.pop(key, None)

    def join(self, timeout: float) -> None:
        """Wait for the running refreshes (tests and graceful shutdown)."""
        with self._lock:
            running = list(self._running.values())
        wait(running, timeout)


class ContentCache:
    """Answers a request from memory, the shared store or one single-flight fetch, stale when allowed."""

    def __init__(
        self,
        store: Any,
        locks: FlightLocks,
        *,
        clock: Clock = time.time,
        lock_wait: float = 15.0,
        coalesce_wait: float = 1.0,
        poll_interval: float = 0.01,
        retry_store_after: float = 5.0,
        memory_bytes: int = 0,
        generation_store: Any = None,
    ) -> None:
        self.locks = locks
        self.clock = clock
        self.lock_wait = lock_wait
        self.coalesce_wait = coalesce_wait
        self.poll_interval = poll_interval
        self.retry_store_after = retry_store_after
        self.memory = MemoryTier(memory_bytes) if memory_bytes > 0 else None
        self.store = store
        if generation_store is not None:
            self.generation_store = generation_store
        self.refreshers = Refreshers(REFRESH_WORKERS)

    @property
    def store(self) -> SharedStore:
        """The shared store, behind its fault boundary."""
        return self._store

    @store.setter
    def store(self, store: Any) -> None:
        """Use ``store`` (a SharedStore, or a cachelib backend to wrap in one) for every piece."""
        self._store: SharedStore = self._shared(store)
        self.waiting = LockWait(self.locks, self.lock_wait, self.poll_interval)
        self.flights = SingleFlight(self._store, self.waiting, self.coalesce_wait, self.clock)
        self.generation_store = self._store

    @property
    def generation_store(self) -> SharedStore:
        """Where the generations live: the shared store, or one no eviction reaches."""
        return self._generations.store

    @generation_store.setter
    def generation_store(self, store: Any) -> None:
        """Keep the generations in ``store`` (set after :attr:`store`, which resets it)."""
        self._generations = Generations(self._shared(store), self.waiting)

    def _shared(self, store: Any) -> SharedStore:
        """``store`` behind a fault boundary of its own unless it already has one."""
        return (
            store
            if isinstance(store, SharedStore)
            else SharedStore(store, retry_after=self.retry_store_after)
        )

    # -- entries: this worker's memory in front of the shared store -----------------------------

    def _get_entry(self, key: str) -> Entry | None:
        """The stored entry, or None (absent, corrupted, or unreadable)."""
        try:
            return Entry.from_stored(self.store.get(key))
        except StoreUnavailable:
            return None

    def _lookup(self, key: str, policy: Freshness, now: float) -> Entry | None:
        """A fresh entry from this worker's memory, else whatever the shared store holds."""
        if self.memory is not None:
            remembered = self.memory.get(key)
            if remembered is not None and policy.is_fresh(remembered, now):
                return remembered
        entry = self._get_entry(key)
        if entry is not None and self.memory is not None:
            self.memory.put(key, entry)
        return entry

    def _put_entry(self, key: str, entry: Entry, timeout: int) -> None:
        """Store an entry; a store fault only costs a future miss."""
        if self.memory is not None:
            self.memory.put(key, entry)
        with contextlib.suppress(StoreUnavailable):
            self.store.set(key, entry.as_tuple(), timeout)

    # -- keys and invalidation ------------------------------------------------------------------

    def generations(self, tenant: str, collection: str) -> tuple[str, str]:
        """The tenant's and the collection's current generation tokens (created when absent)."""
        return self._generations.current(tenant, collection)

    def invalidate(self, tenant: str, collections: Iterable[str]) -> list[str]:
        """Replace the generation of each collection: all its entries are gone for everyone."""
        return self._generations.invalidate(tenant, collections)

    def invalidate_tenant(self, tenant: str) -> None:
        """Replace the tenant's generation: every entry of the tenant is gone."""
        self._generations.invalidate_tenant(tenant)

    def key_for(self, tenant: str, collection: str, signature: str) -> str:
        """The entry key: tenant, collection, both generations, and a digest of the request."""
        gen_tenant, gen_collection = self.generations(tenant, collection)
        digest = hashlib.sha256(signature.encode()).hexdigest()[:40]
        return f"{KEY_VERSION}:{tenant}:{collection}:{gen_tenant}.{gen_collection}:{digest}"

    # -- serving ------------------------------------------------------------------------------

    def serve(
        self,
        tenant: str,
        collection: str,
        signature: str,
        policy: Freshness,
        load: Loader,
        places: WaitingPlaces | None = None,
    ) -> Served:
        """Answer from the cache when allowed, else fetch once (single-flight) and store.

        ``places`` gives out the worker's waiting places for this tenant (admission.py): a request
        that must wait for another's fetch without one only waits while that fetch is young.
        """
        located = self._locate(tenant, collection, signature, policy)
        if located is None:  # caching off for this collection, or the store is down
            return Served(load(), "BYPASS")
        key, entry, now = located
        if entry is not None:
            if policy.is_fresh(entry, now):
                return Served(entry, "HIT")
            if policy.may_revalidate(entry, now):
                self._refresh_in_background(key, policy, load)
                return Served(entry, "STALE")
        try:
            return self.flights.run(
                key, lambda: self._load_and_store(key, policy, load), self._settled(key, policy), places
            )
        except UPSTREAM_FAILURES:
            if entry is not None and policy.may_serve_on_error(entry, self.clock()):
                log.warning("serving stale %s/%s: Strapi failed", tenant, collection)
                return Served(entry, "STALE")
            raise

    def _locate(
        self, tenant: str, collection: str, signature: str, policy: Freshness
    ) -> tuple[str, Entry | None, float] | None:
        """The request's key, its entry if any, and now; None when the cache cannot be used."""
        if not policy.caches:
            return None
        try:
            key = self.key_for(tenant, collection, signature)
        except StoreUnavailable:
            return None
        now = self.clock()
        return key, self._lookup(key, policy, now), now

    def fresh_entry(self, tenant: str, collection: str, signature: str, policy: Freshness) -> Entry | None:
        """A fresh entry for this request, else None (miss, stale, store down): then call serve()."""
        located = self._locate(tenant, collection, signature, policy)
        if located is None:
            return None
        _, entry, now = located
        return entry if entry is not None and policy.is_fresh(entry, now) else None

    def _settled(self, key: str, policy: Freshness) -> Callable[[], Served | None]:
        """For single-flight: a fresh entry another fetch has stored meanwhile, as a HIT."""

        def settled() -> Served | None:
            entry = self._get_entry(key)
            fresh = entry is not None and policy.is_fresh(entry, self.clock())
            return Served(entry, "HIT") if entry is not None and fresh else None

        return settled

    def _load_and_store(self, key: str, policy: Freshness, load: Loader) -> Entry:
        """Load from Strapi; keep 200s for ``keep_for``; let waiters see other answers briefly."""
        entry = load()
        if entry.status == 200:
            self._put_entry(key, entry, policy.keep_for)
        else:
            self.flights.share(key, entry)
        return entry

    # -- background refreshes -------------------------------------------------------------------

    def _refresh_in_background(self, key: str, policy: Freshness, load: Loader) -> None:
        """Start one refresh of a stale entry unless this worker is busy or another is already on it."""
        if not self.refreshers.has_room_for(key):
            return
        try:
            lock = self.locks.try_acquire(key, self.lock_wait)
        except StoreUnavailable:
            return
        if lock is None:
            return
        if not self.refreshers.start(key, lambda: self._refresh(key, policy, load, lock)):
            lock.release()  # another thread took the last free worker meanwhile

    def _refresh(self, key: str, policy: Freshness, load: Loader, lock: FlightLock) -> None:
        """The background refresh; a failure leaves the stale entry for stale-if-error."""
        try:
            self._load_and_store(key, policy, load)
        except Exception as exc:
            log.warning("background refresh of %s failed: %s", key, exc)
        finally:
            lock.release()

    def join_refreshes(self, timeout: float = 5.0) -> None:
        """Wait for running background refreshes (tests and graceful shutdown)."""
        self.refreshers.join(timeout)


def content_cache() -> ContentCache:
    """The content cache of the current app."""
    result: ContentCache = current_app.extensions["bffproxy.cache"]
    return result


def configure(config: Any) -> None:
    """Validate the process-wide cache settings (before the tenants', which use them)."""
    config.setdefault("STALE_WHILE_REVALIDATE", 30)
    config.setdefault("STALE_IF_ERROR", 3600)
    config.setdefault("CACHE_LOCK_WAIT", 0)
    config.setdefault("CACHE_COALESCE_WAIT", 1.0)
    config.setdefault("CLIENT_MAX_AGE", 0)
    config.setdefault("SHARED_MAX_AGE", 5)
    config.setdefault("ACCEL_EXPIRES", 1)
    config.setdefault("CACHE_MEMORY_MB", 32)
    for key in (
        "STALE_WHILE_REVALIDATE",
        "STALE_IF_ERROR",
        "CLIENT_MAX_AGE",
        "SHARED_MAX_AGE",
        "ACCEL_EXPIRES",
        "CACHE_MEMORY_MB",
    ):
        config[key] = as_number(config, key, int, minimum=0)
    config["CACHE_COALESCE_WAIT"] = as_number(config, "CACHE_COALESCE_WAIT", float, minimum=0)
    wait = as_number(config, "CACHE_LOCK_WAIT", float, minimum=0)
    # A waiter never waits longer than one full Strapi call could take, plus a margin.
    config["CACHE_LOCK_WAIT"] = wait or config["STRAPI_CONNECT_TIMEOUT"] + config["STRAPI_READ_TIMEOUT"] + 1
    config["CACHE_KEY_PREFIX"] = as_str(config, "CACHE_KEY_PREFIX") or "bffproxy:"
    config["CACHE_MAX_MB"] = _store_megabytes(config)


def configure_tenant(config: dict[str, Any]) -> None:
    """One tenant's Cache-Control per collection and the TTL and grace windows of each (FRESHNESS)."""
    config.setdefault("CACHE_CONTROL", {})
    config["CACHE_CONTROL"] = as_mapping(config, "CACHE_CONTROL", str, allowed=config["COLLECTIONS"])
    config["FRESHNESS"] = resolve_freshness(config)


def _store_megabytes(config: dict[str, Any]) -> int:
    """BFFPROXY_CACHE_MAX_MB; from the older BFFPROXY_CACHE_MAX_ENTRIES at 16 KiB each when only it is set."""
    if "CACHE_MAX_MB" not in config and "CACHE_MAX_ENTRIES" in config:
        entries: int = as_number(config, "CACHE_MAX_ENTRIES", int, minimum=1)
        return -(-entries * BYTES_PER_ENTRY // (1024 * 1024))  # rounded up: never below 1
    config.setdefault("CACHE_MAX_MB", DEFAULT_STORE_MB)
    megabytes: int = as_number(config, "CACHE_MAX_MB", int, minimum=1)
    return megabytes


def init_app(app: Flask) -> None:
    """Build the shared store and the content cache with its locks (settings: :func:`configure`)."""
    shared_store.init_app(app)
    app.extensions["bffproxy.cache"] = ContentCache(
        app.extensions["bffproxy.store"],
        shared_locks(app, "locks"),
        lock_wait=app.config["CACHE_LOCK_WAIT"],
        coalesce_wait=app.config["CACHE_COALESCE_WAIT"],
        memory_bytes=app.config["CACHE_MEMORY_MB"] * 1024 * 1024,
        generation_store=app.extensions["bffproxy.generations"],
    )
