"""The shared store and its one fault boundary.

One cachelib backend (a size-bounded :class:`~.disk_store.DiskStore` under ``BFFPROXY_CACHE_DIR``,
or Redis with ``BFFPROXY_REDIS_URL``) holds cache entries, single-flight outcomes and the role cache.
Generations live there too with Redis; on one machine they get a small file store of their own
(:func:`generations_store`), which no eviction reaches and which a hit reads with two ``stat`` calls.
Every call to it goes through :class:`SharedStore`, so a fault (Redis down, a full disk) is logged
once per interval and becomes :class:`StoreUnavailable` in exactly one place; callers decide what
that means for them (a miss, a BYPASS, a 503).

With Redis there is one client (one connection pool) per worker: locks, rate limits and the cache
backend all use :func:`redis_client`.
"""

from __future__ import annotations

import logging
import os
import pickle
import time
from collections.abc import Callable
from typing import Any

from cachelib import FileSystemCache
from flask import Flask, current_app

from .disk_store import DiskStore, flask_caching_factory
from .extensions import cache as flask_cache

log = logging.getLogger(__name__)

# Idempotency records are never evicted for size, only when they expire (BFFPROXY_IDEMPOTENCY_TTL):
# each is a few hundred bytes, and a day of keyed writes is far less than any disk.
RECORDS_SIZE_LIMIT = 2**62  # no size limit: records are only ever expired


class StoreUnavailable(Exception):
    """The shared store cannot be used right now; callers bypass it."""


class SharedStore:
    """A cachelib backend behind one fault boundary: a failure marks it down for ``retry_after``.

    While marked down, calls are refused at once (no 0.5 s socket timeout per request) unless the
    caller says the call must land (invalidations) or the store was built with
    ``skip_while_down=False`` (idempotency records: refusing a write costs more than trying).
    """

    def __init__(
        self,
        backend: Any,
        *,
        name: str = "cache store",
        retry_after: float = 5.0,
        skip_while_down: bool = True,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.backend = backend
        self.name = name
        self.retry_after = retry_after
        self.skip_while_down = skip_while_down
        self.monotonic = monotonic
        self._down_until = 0.0

    @property
    def is_down(self) -> bool:
        """True while the last failure is more recent than ``retry_after``."""
        return self.monotonic() < self._down_until

    def call(self, method: str, *args: Any, must_land: bool = False, reader: Any = None) -> Any:
        """Call ``method`` on the backend (or on ``reader``); any failure becomes StoreUnavailable."""
        if self.skip_while_down and not must_land and self.is_down:
            raise StoreUnavailable(f"{self.name} marked down")
        try:
            return getattr(reader or self.backend, method)(*args)
        except Exception as exc:
            self._down_until = self.monotonic() + self.retry_after
            log.error(
                "%s failed (%s: %s); bypassing it for %.0fs",
                self.name,
                exc.__class__.__name__,
                exc,
                self.retry_after,
            )
            # Only the class: the exception's text (Redis's host and port) stays in the log above.
            raise StoreUnavailable(f"{self.name} failed ({exc.__class__.__name__})") from exc

    def get(self, key: str) -> Any:
        """The value under ``key``, or None."""
        return self.call("get", key)

    def get_many(self, *keys: str) -> Any:
        """The values under ``keys``, None for each absent one."""
        return self.call("get_many", *keys)

    def set(self, key: str, value: Any, timeout: int, *, must_land: bool = False) -> Any:
        """Store ``value`` for ``timeout`` seconds; False when a file backend could not write it."""
        if timeout <= 0:  # cachelib reads 0 as "forever": never evictable under volatile-* policies
            raise ValueError(f"{self.name} writes must expire: {key} has timeout {timeout}")
        return self.call("set", key, value, timeout, must_land=must_land)

    def inc(self, key: str) -> int:
        """Add one to the counter under ``key`` (0 when absent) in one atomic step; the new count."""
        return int(self.call("inc", key))

    def probe(self) -> bool:
        """True when the store takes a write now; a store marked down is not retried before its time."""
        if self.is_down:
            return False
        try:
            return self.set("probe:readyz", 1, 5, must_land=True) is not False
        except StoreUnavailable:
            return False

    def delete(self, key: str) -> Any:
        """Forget ``key``."""
        return self.call("delete", key, must_land=True)


class RedisRecords:
    """Idempotency records in Redis under their own prefix, with no Redis TTL.

    Under the recommended ``maxmemory-policy volatile-lru`` Redis evicts only keys that carry a TTL:
    cache entries, generations and flight outcomes always do (see :meth:`SharedStore.set`), records
    never do, so memory pressure drops cache entries and never a record. A record's expiry lives in
    its value (an expired record reads as absent) and in a sorted set; every write deletes up to
    100 records whose time has passed, atomically (a record written again meanwhile is kept).
    """

    PRUNE = """
    local expired = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, 100)
    for _, name in ipairs(expired) do
        redis.call('DEL', ARGV[2] .. name)
        redis.call('ZREM', KEYS[1], name)
    end
    return #expired
    """

    def __init__(self, client: Any, prefix: str, clock: Callable[[], float] = time.time) -> None:
        self.client = client
        self.prefix = prefix
        self.index = f"{prefix}expiry"
        self.clock = clock
        self._prune = client.register_script(self.PRUNE)

    def get(self, key: str) -> Any:
        """The record under ``key``, or None when absent, expired or unreadable."""
        raw = self.client.get(self.prefix + key)
        if raw is None:
            return None
        try:
            expires_at, value = pickle.loads(raw)
        except Exception:  # written by another version: a miss, like cachelib
            return None
        return value if expires_at > self.clock() else None

    def set(self, key: str, value: Any, timeout: int) -> bool:
        """Keep ``value`` for ``timeout`` seconds, and delete records that have expired."""
        now = self.clock()
        pipe = self.client.pipeline(transaction=True)
        pipe.set(self.prefix + key, pickle.dumps((now + timeout, value)))
        pipe.zadd(self.index, {key: now + timeout})
        pipe.execute()
        self._prune(keys=[self.index], args=[now, self.prefix])
        return True

    def delete(self, key: str) -> bool:
        """Forget the record under ``key``."""
        pipe = self.client.pipeline(transaction=True)
        pipe.delete(self.prefix + key)
        pipe.zrem(self.index, key)
        pipe.execute()
        return True


def redis_client(app: Flask) -> Any:
    """The worker's one redis-py client for BFFPROXY_REDIS_URL, with short timeouts."""
    import redis

    client = app.extensions.get("bffproxy.redis")
    if client is None:
        client = redis.Redis.from_url(app.config["REDIS_URL"], socket_timeout=0.5, socket_connect_timeout=0.5)
        app.extensions["bffproxy.redis"] = client
    return client


def shared_store() -> SharedStore:
    """The current app's shared store (cache entries, generations, role cache)."""
    store: SharedStore = current_app.extensions["bffproxy.store"]
    return store


def flask_caching_config(app: Flask) -> dict[str, Any]:
    """Flask-Caching's own settings, kept apart from ours (its CACHE_DIR is a sub-folder).

    With Redis the backend gets the worker's one client (``CACHE_REDIS_HOST`` takes a client
    object), so the cache, locks and rate limits share one connection pool. Otherwise it is a
    DiskStore of ``CACHE_MAX_MB`` in ``CACHE_DIR/store`` (not ``entries``, where FileSystemCache's
    files lie after an upgrade: that folder can be deleted).
    """
    config = app.config
    common = {"CACHE_KEY_PREFIX": config["CACHE_KEY_PREFIX"], "CACHE_DEFAULT_TIMEOUT": config["CACHE_TTL"]}
    if config["REDIS_URL"]:
        return {**common, "CACHE_TYPE": "RedisCache", "CACHE_REDIS_HOST": redis_client(app)}
    return {
        **common,
        "CACHE_TYPE": f"{flask_caching_factory.__module__}.{flask_caching_factory.__name__}",
        "CACHE_DIR": os.path.join(config["CACHE_DIR"], "store"),
        "CACHE_SIZE_LIMIT": config["CACHE_MAX_MB"] * 1024 * 1024,
    }


def generations_store(app: Flask, store: SharedStore) -> SharedStore:
    """Where generations live: with Redis, in ``store``; else a file store that is never pruned.

    A few files (one per tenant and per collection), so no threshold: cachelib never counts or
    prunes them, the DiskStore's eviction cannot turn every key of a collection into a miss, and
    :class:`~.generations.StatValidatedReads` reads them with a ``stat`` each.
    """
    if app.config["REDIS_URL"]:
        return store
    backend = FileSystemCache(os.path.join(app.config["CACHE_DIR"], "generations"), threshold=0)
    return SharedStore(backend, name="generation store")


def records_backend(app: Flask) -> Any:
    """Where idempotency records live: a key space no cache pruning or eviction reaches.

    On one machine, a DiskStore of its own that never evicts (records only expire, and each write
    deletes at most a few expired ones), so a write costs the same with 10 or 1,000,000 records;
    with Redis, :class:`RedisRecords`.
    """
    config = app.config
    if config["REDIS_URL"]:
        return RedisRecords(redis_client(app), f"{config['CACHE_KEY_PREFIX']}records:")
    directory = os.path.join(config["CACHE_DIR"], "records")
    return DiskStore(directory, size_limit=RECORDS_SIZE_LIMIT, evicts=False)


def init_app(app: Flask) -> None:
    """Build the shared, generations and records stores (after caching has validated its settings)."""
    flask_cache.init_app(app, config=flask_caching_config(app))
    store = app.extensions["bffproxy.store"] = SharedStore(flask_cache.cache)
    app.extensions["bffproxy.generations"] = generations_store(app, store)
    # Idempotency records: refusing a keyed write costs more than trying, so never skipped.
    app.extensions["bffproxy.records"] = SharedStore(
        records_backend(app), name="idempotency store", skip_while_down=False
    )
