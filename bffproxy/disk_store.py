"""The embedded shared store: one SQLite database per machine (diskcache), bounded in bytes.

cachelib's FileSystemCache lists and opens every file on each write once it is over its threshold:
1.4 s per miss at 20,000 entries, and anonymous clients can fill it with unique query strings.
diskcache keeps entries in one SQLite database in WAL mode (readers never wait for the writer) and,
once over ``size_limit``, each write deletes at most ``cull_limit`` entries found through an index:
expired ones first, then the least recently stored. A write costs the same empty or full
(``bench/store_full.py`` has the figures).

:class:`DiskStore` speaks cachelib's interface, so :class:`~bffproxy.store.SharedStore`'s fault
boundary, Flask-Caching (``CACHE_TYPE`` names :func:`flask_caching_factory`) and every caller work
unchanged. A SQLite error (disk full, a lock held past ``timeout``) raises, so the store is marked
down; FileSystemCache returned False instead.

Forks: diskcache opens one connection per thread on first use and checks the process id on every
call, so a gunicorn worker never uses a connection opened in the arbiter.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import diskcache
from cachelib import BaseCache
from flask import Flask

# Entries deleted by one write when the store is over its size: at 2-15 KB per entry, 10 frees
# room for the largest answer the memory tier keeps, and bounds the work a miss can cause.
CULL_LIMIT = 10
# How long a call waits for SQLite's lock before it raises (then the store is marked down). Writes
# take about a millisecond; a second means something is wrong, not busy.
BUSY_TIMEOUT = 1.0
# SQLite's page cache per connection (one per thread): 1,024 pages of 4 KiB, not diskcache's 32 MiB,
# so 2 workers x 4 threads stay small; the OS page cache and the memory tier do the rest.
SQLITE_CACHE_PAGES = 1024


class DiskStore(BaseCache):
    """A cachelib backend over a size-bounded ``diskcache.Cache``, safe across processes and threads."""

    def __init__(
        self,
        directory: str,
        *,
        size_limit: int,
        default_timeout: int = 300,
        cull_limit: int = CULL_LIMIT,
        timeout: float = BUSY_TIMEOUT,
        evicts: bool = True,
    ) -> None:
        super().__init__(default_timeout)
        self.cache = diskcache.Cache(
            directory,
            timeout=timeout,
            size_limit=size_limit,
            cull_limit=cull_limit,
            # Cache entries: least recently stored first (a hit costs a read, not a write). Records
            # that must outlive any cache pressure (idempotency): never evicted, only expired.
            eviction_policy="least-recently-stored" if evicts else "none",
            sqlite_cache_size=SQLITE_CACHE_PAGES,
        )

    def _expire(self, timeout: int | dt.timedelta | None) -> int | None:
        """diskcache's ``expire`` for a cachelib timeout (None: the default; 0: never)."""
        return self._normalize_timeout(timeout) or None

    def get(self, key: str) -> Any:
        """The value under ``key``, or None when absent or expired."""
        return self.cache.get(key)

    def get_many(self, *keys: str) -> list[Any]:
        """The values under ``keys``, None for each absent one."""
        return [self.cache.get(key) for key in keys]

    def has(self, key: str) -> bool:
        """True when ``key`` holds a value that has not expired."""
        return key in self.cache

    def set(self, key: str, value: Any, timeout: int | dt.timedelta | None = None) -> bool:
        """Store ``value``; over the size limit, first delete at most ``cull_limit`` entries."""
        return bool(self.cache.set(key, value, expire=self._expire(timeout)))

    def add(self, key: str, value: Any, timeout: int | dt.timedelta | None = None) -> bool:
        """Store ``value`` unless ``key`` holds one; True when stored."""
        return bool(self.cache.add(key, value, expire=self._expire(timeout)))

    def delete(self, key: str) -> bool:
        """Forget ``key``; True when it was there."""
        return bool(self.cache.delete(key))

    def inc(self, key: str, delta: int = 1) -> int:
        """Add ``delta`` to the integer under ``key`` (0 when absent), atomically."""
        result: int = self.cache.incr(key, delta, default=0)
        return result

    def dec(self, key: str, delta: int = 1) -> int:
        """Subtract ``delta`` from the integer under ``key``, atomically."""
        return self.inc(key, -delta)

    def clear(self) -> bool:
        """Forget every entry."""
        self.cache.clear()
        return True

    def count(self) -> int:
        """How many entries the store holds (expired ones not yet deleted included)."""
        return len(self.cache)

    def volume(self) -> int:
        """The bytes the store occupies on disk, as its size limit counts them."""
        result: int = self.cache.volume()
        return result

    def close(self) -> None:
        """Close this thread's connection (the next call opens another)."""
        self.cache.close()


def flask_caching_factory(
    app: Flask, config: dict[str, Any], args: list[Any], options: dict[str, Any]
) -> DiskStore:
    """Flask-Caching's ``CACHE_TYPE`` hook: a DiskStore in ``CACHE_DIR`` of ``CACHE_SIZE_LIMIT`` bytes."""
    return DiskStore(
        config["CACHE_DIR"], size_limit=config["CACHE_SIZE_LIMIT"], default_timeout=options["default_timeout"]
    )
