"""The content cache: keys, generations, single-flight, and stale serving.

Entries live in Flask-Caching's backend: FileSystemCache under ``BFFPROXY_CACHE_DIR`` (shared by every
gunicorn worker on one machine) or Redis with ``BFFPROXY_REDIS_URL`` (shared by every instance).

* Keys are normalised: tenant, collection, path, the query's (name, value) pairs sorted, and the
  request headers that change Strapi's answer. ``?a=1&b=2`` and ``?b=2&a=1`` are one entry.
* Every key embeds two *generations* read from the shared store: one per tenant, one per
  (tenant, collection). Invalidation replaces a generation with a new random token: O(1), seen by
  every worker and instance on its next request, no key scanning. Random tokens (not counters) keep
  an evicted generation from ever resurrecting old entries.
* Single-flight: a cold or expired key is fetched by one holder of a lock (``flock`` stripes for the
  file cache, a Redis lock for Redis); the others wait for its result for a bounded time.
* RFC 5861: inside ``stale-while-revalidate`` an expired entry is served while one background
  refresh runs; inside ``stale-if-error`` it is served when Strapi fails.
* A store fault (Redis down, a corrupted entry) is a miss or a BYPASS, never a 500.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from flask import Flask, current_app

from .errors import ApiError, UpstreamError, UpstreamTimeout, UpstreamUnavailable
from .extensions import cache as flask_cache
from .settings import as_mapping, as_number, as_str

log = logging.getLogger(__name__)

Clock = Callable[[], float]
Loader = Callable[[], "Entry"]
UPSTREAM_FAILURES = (UpstreamError, UpstreamTimeout, UpstreamUnavailable)
KEY_VERSION = "v1"
# Finite on purpose: cachelib's FileSystemCache prunes never-expiring (0) files FIRST when full.
GENERATION_TIMEOUT = 365 * 24 * 3600


class StoreUnavailable(Exception):
    """The shared store cannot be used right now; callers bypass it."""


@dataclass(frozen=True)
class Entry:
    """One answer from Strapi as stored: status, body, type, when, and its strong ETag."""

    status: int
    body: bytes
    content_type: str
    stored_at: float
    etag: str

    @classmethod
    def build(cls, status: int, body: bytes, content_type: str, now: float) -> Entry:
        """An entry with its ETag computed from the body."""
        digest = hashlib.sha256(body).hexdigest()[:32]
        return cls(status, body, content_type, now, digest)

    def age(self, now: float) -> float:
        """Seconds since Strapi produced this answer (never negative)."""
        return max(0.0, now - self.stored_at)

    def as_tuple(self) -> tuple[Any, ...]:
        """The compact form written to the store."""
        return (KEY_VERSION, self.status, self.body, self.content_type, self.stored_at, self.etag)

    @classmethod
    def from_stored(cls, value: Any) -> Entry | None:
        """Read a stored tuple back; anything malformed is a miss."""
        if not isinstance(value, tuple) or len(value) != 6 or value[0] != KEY_VERSION:
            return None
        _, status, body, content_type, stored_at, etag = value
        if not (isinstance(status, int) and isinstance(body, bytes) and isinstance(stored_at, float)):
            return None
        return cls(status, body, str(content_type), stored_at, str(etag))


@dataclass(frozen=True)
class Freshness:
    """How long an entry is fresh, and how long past that it may still be served stale."""

    ttl: int
    stale_while_revalidate: int
    stale_if_error: int

    @property
    def keep_for(self) -> int:
        """How long the store keeps an entry: its TTL plus the longer grace window."""
        return self.ttl + max(self.stale_while_revalidate, self.stale_if_error)


@dataclass(frozen=True)
class Served:
    """What the cache answers with, and the X-Cache word that says how."""

    entry: Entry
    x_cache: str  # HIT | MISS | STALE | BYPASS


class MemoryTier:
    """A small per-worker LRU of entries in front of the shared store.

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

    def put(self, key: str, entry: Entry) -> None:
        """Remember ``entry``, evicting the least recently used beyond ``max_bytes``."""
        size = len(entry.body)
        if size > self.max_bytes // 4:
            return  # one huge answer must not flush everything else
        with self._lock:
            old = self._entries.pop(key, None)
            self._bytes += size - (len(old.body) if old else 0)
            self._entries[key] = entry
            while self._bytes > self.max_bytes and self._entries:
                _, evicted = self._entries.popitem(last=False)
                self._bytes -= len(evicted.body)


class StatValidatedReads:
    """Reads of small, rarely changing FileSystemCache values, re-read only when the file changed.

    cachelib writes a value to a temporary file and renames it over the old one, so a change always
    shows as a new (inode, mtime, size) from ``os.stat`` — a few microseconds instead of an open,
    read and unpickle on every request. The memo is never older than the file it was checked
    against, so a replaced generation is seen by the very next request of every worker.
    """

    def __init__(self, store: Any) -> None:
        self.store = store
        self._memo: dict[str, tuple[tuple[int, int, int], Any]] = {}
        self._paths: dict[str, str] = {}

    def get(self, key: str) -> Any:
        """The value stored under ``key`` (None when absent)."""
        path = self._paths.get(key)
        if path is None:
            path = self._paths[key] = self.store._get_filename(key)
        try:
            stat = os.stat(path)
        except FileNotFoundError:
            self._memo.pop(key, None)
            return None
        signature = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        remembered = self._memo.get(key)
        if remembered is not None and remembered[0] == signature:
            return remembered[1]
        value = self.store.get(key)
        self._memo[key] = (signature, value)
        return value

    def get_many(self, *keys: str) -> list[Any]:
        """Values of several keys, like cachelib's get_many."""
        return [self.get(key) for key in keys]


class FlightLock(Protocol):
    """A held single-flight lock."""

    def release(self) -> None:
        """Give the lock back."""


class FlightLocks(Protocol):
    """Non-blocking locks by cache key, shared by every worker that shares the store."""

    def try_acquire(self, key: str, ttl: float) -> FlightLock | None:
        """The lock for ``key`` if free now, else None."""


class _FileLock:
    """An ``flock`` held on an open file; released by closing it."""

    def __init__(self, fd: int) -> None:
        self._fd = fd

    def release(self) -> None:
        """Unlock and close (also done by the kernel if the process dies)."""
        os.close(self._fd)


class FileFlightLocks:
    """Single-flight across the processes of one machine: ``flock`` on one of N stripe files."""

    def __init__(self, directory: str, stripes: int = 1024) -> None:
        self.directory = directory
        self.stripes = stripes
        os.makedirs(directory, exist_ok=True)

    def try_acquire(self, key: str, ttl: float) -> FlightLock | None:
        """The stripe's lock if free; a stripe shared by two keys only makes one of them wait."""
        stripe = int(hashlib.sha1(key.encode()).hexdigest()[:8], 16) % self.stripes
        fd = os.open(os.path.join(self.directory, f"{stripe}.lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        return _FileLock(fd)


class RedisFlightLocks:
    """Single-flight across instances: redis-py's Lock (SET NX PX, compare-and-delete release)."""

    def __init__(self, client: Any, prefix: str) -> None:
        self.client = client
        self.prefix = prefix

    def try_acquire(self, key: str, ttl: float) -> FlightLock | None:
        """The lock if free; it expires by itself after ``ttl`` if its holder dies."""
        lock = self.client.lock(f"{self.prefix}lock:{key}", timeout=ttl, blocking=False, thread_local=False)
        try:
            return lock if lock.acquire() else None  # type: ignore[no-any-return]
        except Exception as exc:  # the store is down: fetch without single-flight
            raise StoreUnavailable(str(exc)) from exc


class ContentCache:
    """Generations, lookups, single-flight fetches and stale serving over one shared store."""

    def __init__(
        self,
        store: Any,
        locks: FlightLocks,
        *,
        clock: Clock = time.time,
        lock_wait: float = 15.0,
        poll_interval: float = 0.01,
        retry_store_after: float = 5.0,
        memory_bytes: int = 0,
    ) -> None:
        self.store = store
        self.locks = locks
        self.clock = clock
        self.lock_wait = lock_wait
        self.poll_interval = poll_interval
        self.retry_store_after = retry_store_after
        self._store_down_until = 0.0
        self.memory = MemoryTier(memory_bytes) if memory_bytes > 0 else None
        # Generations are read on every request: for the file store, only when their file changed.
        self._generation_reader = StatValidatedReads(store) if hasattr(store, "_get_filename") else store
        self._refreshes: list[threading.Thread] = []

    # -- the shared store, behind one fault boundary --------------------------------------------

    def _store_call(self, method: str, *args: Any, must_land: bool = False, reader: Any = None) -> Any:
        """Call the store; a failure marks it down for a while and is logged once per interval.

        Reads skip a store marked down (they can bypass it); ``must_land`` writes (invalidations)
        always try, since a skipped invalidation would leave every instance serving old content.
        """
        if not must_land and time.monotonic() < self._store_down_until:
            raise StoreUnavailable("store marked down")
        try:
            return getattr(reader or self.store, method)(*args)
        except Exception as exc:
            self._store_down_until = time.monotonic() + self.retry_store_after
            log.error(
                "cache store failed (%s: %s); bypassing it for %.0fs",
                exc.__class__.__name__,
                exc,
                self.retry_store_after,
            )
            raise StoreUnavailable(str(exc)) from exc

    def _get_entry(self, key: str) -> Entry | None:
        """The stored entry, or None (absent, corrupted, or unreadable)."""
        try:
            return Entry.from_stored(self._store_call("get", key))
        except StoreUnavailable:
            return None

    def _lookup(self, key: str, policy: Freshness, now: float) -> Entry | None:
        """A fresh entry from this worker's memory, else whatever the shared store holds."""
        if self.memory is not None:
            remembered = self.memory.get(key)
            if remembered is not None and remembered.age(now) < policy.ttl:
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
            self._store_call("set", key, entry.as_tuple(), timeout)

    # -- generations ----------------------------------------------------------------------------

    @staticmethod
    def _generation_keys(tenant: str, collection: str) -> tuple[str, str]:
        return f"gen:{tenant}", f"gen:{tenant}:{collection}"

    def generations(self, tenant: str, collection: str) -> tuple[str, str]:
        """The tenant's and the collection's current generation tokens (created when absent)."""
        keys = self._generation_keys(tenant, collection)
        values = list(self._store_call("get_many", *keys, reader=self._generation_reader))
        for i, value in enumerate(values):
            if not isinstance(value, str):
                values[i] = self._create_generation(keys[i])
        return values[0], values[1]

    def _create_generation(self, key: str) -> str:
        """Create a missing generation once: concurrent first requests must agree on one token."""
        deadline = time.monotonic() + self.lock_wait
        while time.monotonic() < deadline:
            lock = self.locks.try_acquire(key, self.lock_wait)
            if lock is not None:
                try:
                    value = self._store_call("get", key)
                    if not isinstance(value, str):
                        value = secrets.token_hex(8)
                        self._store_call("set", key, value, GENERATION_TIMEOUT)
                    return str(value)
                finally:
                    lock.release()
            time.sleep(self.poll_interval)
            value = self._store_call("get", key)
            if isinstance(value, str):
                return value
        raise StoreUnavailable(f"could not create generation {key}")

    def _replace_generation(self, key: str) -> None:
        """Give ``key`` a new random token; raise StoreUnavailable unless the store took it."""
        stored = self._store_call("set", key, secrets.token_hex(8), GENERATION_TIMEOUT, must_land=True)
        if stored is False:  # cachelib's FileSystemCache reports OS errors (disk full) this way
            raise StoreUnavailable(f"the store refused to write {key}")

    def invalidate(self, tenant: str, collections: Iterable[str]) -> list[str]:
        """Replace the generation of each collection: all its entries are gone for everyone."""
        done = []
        for collection in dict.fromkeys(collections):
            self._replace_generation(self._generation_keys(tenant, collection)[1])
            done.append(collection)
        return done

    def invalidate_tenant(self, tenant: str) -> None:
        """Replace the tenant's generation: every entry of the tenant is gone."""
        self._replace_generation(f"gen:{tenant}")

    def key_for(self, tenant: str, collection: str, signature: str) -> str:
        """The entry key: tenant, collection, both generations, and a digest of the request."""
        gen_tenant, gen_collection = self.generations(tenant, collection)
        digest = hashlib.sha256(signature.encode()).hexdigest()[:40]
        return f"{KEY_VERSION}:{tenant}:{collection}:{gen_tenant}.{gen_collection}:{digest}"

    # -- serving ------------------------------------------------------------------------------

    def serve(self, tenant: str, collection: str, signature: str, policy: Freshness, load: Loader) -> Served:
        """Answer from the cache when allowed, else fetch once (single-flight) and store."""
        located = self._locate(tenant, collection, signature, policy)
        if located is None:  # caching off for this collection, or the store is down
            return Served(load(), "BYPASS")
        key, entry, now = located
        if entry is not None:
            age = entry.age(now)
            if age < policy.ttl:
                return Served(entry, "HIT")
            if age < policy.ttl + policy.stale_while_revalidate:
                self._refresh_in_background(key, policy, load)
                return Served(entry, "STALE")
        try:
            return self._fetch_once(key, policy, load)
        except UPSTREAM_FAILURES:
            if entry is not None and entry.age(self.clock()) < policy.ttl + policy.stale_if_error:
                log.warning("serving stale %s/%s: Strapi failed", tenant, collection)
                return Served(entry, "STALE")
            raise

    def _locate(
        self, tenant: str, collection: str, signature: str, policy: Freshness
    ) -> tuple[str, Entry | None, float] | None:
        """The request's key, its entry if any, and now; None when the cache cannot be used."""
        if policy.ttl <= 0:
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
        return entry if entry is not None and entry.age(now) < policy.ttl else None

    def _fetch_once(self, key: str, policy: Freshness, load: Loader) -> Served:
        """Fetch under the key's lock; waiters take the holder's result, bounded by lock_wait."""
        seen = self._flight_token(key)
        deadline = time.monotonic() + self.lock_wait
        while time.monotonic() < deadline:
            try:
                lock = self.locks.try_acquire(key, self.lock_wait)
            except StoreUnavailable:
                break
            if lock is not None:
                try:
                    return self._fetch_as_holder(key, policy, load, seen)
                finally:
                    lock.release()
            time.sleep(self.poll_interval)
            shared = self._result_since(key, policy, seen)
            if shared is not None:
                return shared
        log.warning("single-flight wait for %s ran out; fetching directly", key)
        return Served(self._load_and_store(key, policy, load), "MISS")

    def _fetch_as_holder(self, key: str, policy: Freshness, load: Loader, seen: str | None) -> Served:
        """As the lock holder: re-check (a previous holder may have just stored it), then fetch."""
        shared = self._result_since(key, policy, seen)
        if shared is not None:
            return shared
        try:
            return Served(self._load_and_store(key, policy, load), "MISS")
        except ApiError as exc:
            self._share_failure(key, exc)
            raise

    def _flight_outcome(self, key: str) -> tuple[str, Any] | None:
        """The (token, outcome) a finished fetch of ``key`` left for its waiters, if any."""
        try:
            outcome = self._store_call("get", f"flight:{key}")
        except StoreUnavailable:
            return None
        return outcome if isinstance(outcome, tuple) and len(outcome) == 2 else None

    def _flight_token(self, key: str) -> str | None:
        """The token of the last shared outcome, so a waiter only accepts a newer one."""
        outcome = self._flight_outcome(key)
        return outcome[0] if outcome else None

    def _result_since(self, key: str, policy: Freshness, seen: str | None) -> Served | None:
        """A fresh entry, or the outcome of a fetch that finished after we started waiting."""
        entry = self._get_entry(key)
        if entry is not None and entry.age(self.clock()) < policy.ttl:
            return Served(entry, "HIT")
        outcome = self._flight_outcome(key)
        if outcome is None or outcome[0] == seen:
            return None
        if isinstance(outcome[1], ApiError):
            raise outcome[1]
        shared = Entry.from_stored(outcome[1])
        return Served(shared, "MISS") if shared is not None else None

    def _load_and_store(self, key: str, policy: Freshness, load: Loader) -> Entry:
        """Load from Strapi; keep 200s for ``keep_for``; let waiters see other answers briefly."""
        entry = load()
        if entry.status == 200:
            self._put_entry(key, entry, policy.keep_for)
        else:
            self._share(key, entry.as_tuple())
        return entry

    def _share(self, key: str, outcome: Any) -> None:
        """Publish a non-cacheable outcome to the waiters of this flight for a few seconds."""
        with contextlib.suppress(StoreUnavailable):
            self._store_call("set", f"flight:{key}", (secrets.token_hex(8), outcome), 5)

    def _share_failure(self, key: str, exc: ApiError) -> None:
        """Waiters of a failed fetch fail the same way instead of retrying one by one."""
        self._share(key, type(exc)(exc.message))

    def _refresh_in_background(self, key: str, policy: Freshness, load: Loader) -> None:
        """Start one refresh of a stale entry unless another worker or instance is already on it."""
        try:
            lock = self.locks.try_acquire(key, self.lock_wait)
        except StoreUnavailable:
            return
        if lock is None:
            return
        thread = threading.Thread(
            target=self._refresh, args=(key, policy, load, lock), name="bffproxy-refresh", daemon=True
        )
        self._refreshes = [t for t in self._refreshes if t.is_alive()] + [thread]
        thread.start()

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
        for thread in list(self._refreshes):
            thread.join(timeout)


def content_cache() -> ContentCache:
    """The content cache of the current app."""
    result: ContentCache = current_app.extensions["bffproxy.cache"]
    return result


def freshness_for(collection: str) -> Freshness:
    """The configured TTL and grace windows of ``collection`` (resolved once at start-up)."""
    resolved: dict[str, Freshness] = current_app.extensions["bffproxy.freshness"]
    return resolved[collection]


def _resolve_freshness(config: Any) -> dict[str, Freshness]:
    """Every exposed collection's TTL and grace windows."""
    return {
        collection: Freshness(
            config["CACHE_TTLS"].get(collection, config["CACHE_TTL"]),
            config["STALE_WHILE_REVALIDATE"],
            config["STALE_IF_ERROR"],
        )
        for collection in config["COLLECTIONS"]
    }


def _configure(app: Flask) -> None:
    """Validate the cache settings and translate them into Flask-Caching's."""
    config = app.config
    config.setdefault("STALE_WHILE_REVALIDATE", 30)
    config.setdefault("STALE_IF_ERROR", 3600)
    config.setdefault("CACHE_MAX_ENTRIES", 20000)
    config.setdefault("CACHE_LOCK_WAIT", 0)
    config.setdefault("CACHE_CONTROL", {})
    config.setdefault("CLIENT_MAX_AGE", 0)
    config.setdefault("CACHE_MEMORY_MB", 32)
    for key in (
        "STALE_WHILE_REVALIDATE",
        "STALE_IF_ERROR",
        "CACHE_MAX_ENTRIES",
        "CLIENT_MAX_AGE",
        "CACHE_MEMORY_MB",
    ):
        config[key] = as_number(config, key, int, minimum=0)
    wait = as_number(config, "CACHE_LOCK_WAIT", float, minimum=0)
    # A waiter never waits longer than one full Strapi call could take, plus a margin.
    config["CACHE_LOCK_WAIT"] = wait or config["STRAPI_CONNECT_TIMEOUT"] + config["STRAPI_READ_TIMEOUT"] + 1
    config["CACHE_CONTROL"] = as_mapping(config, "CACHE_CONTROL", str, allowed=config["COLLECTIONS"])
    config["CACHE_KEY_PREFIX"] = as_str(config, "CACHE_KEY_PREFIX") or "bffproxy:"


def flask_caching_config(config: Any) -> dict[str, Any]:
    """Flask-Caching's own settings, kept apart from ours (its CACHE_DIR is a sub-folder)."""
    common = {"CACHE_KEY_PREFIX": config["CACHE_KEY_PREFIX"], "CACHE_DEFAULT_TIMEOUT": config["CACHE_TTL"]}
    if config["REDIS_URL"]:
        return {
            **common,
            "CACHE_TYPE": "RedisCache",
            "CACHE_REDIS_URL": config["REDIS_URL"],
            "CACHE_OPTIONS": {"socket_timeout": 0.5, "socket_connect_timeout": 0.5},
        }
    return {
        **common,
        "CACHE_TYPE": "FileSystemCache",
        "CACHE_DIR": os.path.join(config["CACHE_DIR"], "entries"),
        "CACHE_THRESHOLD": config["CACHE_MAX_ENTRIES"],
    }


def redis_client(app: Flask) -> Any:
    """A redis-py client for the configured URL with short timeouts (locks, events, limits)."""
    import redis

    client = app.extensions.get("bffproxy.redis")
    if client is None:
        client = redis.Redis.from_url(app.config["REDIS_URL"], socket_timeout=0.5, socket_connect_timeout=0.5)
        app.extensions["bffproxy.redis"] = client
    return client


def shared_locks(app: Flask, folder: str, stripes: int = 1024) -> FlightLocks:
    """Locks shared like the store: Redis locks with BFFPROXY_REDIS_URL, else flock stripes in ``folder``."""
    if app.config["REDIS_URL"]:
        return RedisFlightLocks(redis_client(app), app.config["CACHE_KEY_PREFIX"])
    return FileFlightLocks(os.path.join(app.config["CACHE_DIR"], folder), stripes=stripes)


def init_app(app: Flask) -> None:
    """Configure Flask-Caching and build the content cache with its single-flight locks."""
    _configure(app)
    flask_cache.init_app(app, config=flask_caching_config(app.config))
    store = flask_cache.cache
    locks = shared_locks(app, "locks")
    app.extensions["bffproxy.freshness"] = _resolve_freshness(app.config)
    app.extensions["bffproxy.cache"] = ContentCache(
        store,
        locks,
        lock_wait=app.config["CACHE_LOCK_WAIT"],
        memory_bytes=app.config["CACHE_MEMORY_MB"] * 1024 * 1024,
    )
