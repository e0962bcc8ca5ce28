"""Generations: the random tokens every cache key embeds, one per tenant and one per collection.

Invalidation replaces a token: O(1), seen by every worker and instance on its next request, no key
scanning. Random tokens (not counters) keep an evicted generation from ever resurrecting old
entries. Concurrent first requests agree on one token: it is created under a shared lock.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterable
from typing import Any

from cachelib import FileSystemCache

from .single_flight import LockWait
from .store import SharedStore, StoreUnavailable

# Finite on purpose: cachelib's FileSystemCache prunes never-expiring (0) files FIRST when full,
# and Redis under a volatile-* policy only ever evicts keys that carry a TTL.
GENERATION_TIMEOUT = 365 * 24 * 3600


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


class Generations:
    """Current, created-once and replaced generation tokens in the shared store."""

    def __init__(self, store: SharedStore, waiting: LockWait) -> None:
        self.store = store
        self.waiting = waiting
        # Read on every request: for the file store, only when their file changed.
        backend = store.backend
        self._reader = StatValidatedReads(backend) if isinstance(backend, FileSystemCache) else backend

    @staticmethod
    def keys(tenant: str, collection: str) -> tuple[str, str]:
        """The store keys of the tenant's and the collection's generation."""
        return f"gen:{tenant}", f"gen:{tenant}:{collection}"

    def current(self, tenant: str, collection: str) -> tuple[str, str]:
        """The tenant's and the collection's current tokens (created when absent)."""
        keys = self.keys(tenant, collection)
        values = list(self.store.call("get_many", *keys, reader=self._reader))
        for i, value in enumerate(values):
            if not isinstance(value, str):
                values[i] = self._create(keys[i])
        return values[0], values[1]

    def _create(self, key: str) -> str:
        """Create a missing generation once: concurrent first requests must agree on one token."""
        value = self.waiting.hold_or_watch(
            key, lambda: self._create_as_holder(key), lambda: self._existing(key)
        )
        if value is None:
            raise StoreUnavailable(f"could not create generation {key}")
        return value

    def _create_as_holder(self, key: str) -> str:
        """Under the key's lock: keep a token another holder just stored, else store a new one."""
        value = self._existing(key)
        if value is None:
            value = secrets.token_hex(8)
            self.store.set(key, value, GENERATION_TIMEOUT)
        return value

    def _existing(self, key: str) -> str | None:
        """The stored token of ``key``, if any."""
        value = self.store.get(key)
        return value if isinstance(value, str) else None

    def _replace(self, key: str) -> None:
        """Give ``key`` a new random token; raise StoreUnavailable unless the store took it."""
        stored = self.store.set(key, secrets.token_hex(8), GENERATION_TIMEOUT, must_land=True)
        if stored is False:  # cachelib's FileSystemCache reports OS errors (disk full) this way
            raise StoreUnavailable(f"the store refused to write {key}")

    def invalidate(self, tenant: str, collections: Iterable[str]) -> list[str]:
        """Replace the generation of each collection: all its entries are gone for everyone."""
        done = []
        for collection in dict.fromkeys(collections):
            self._replace(self.keys(tenant, collection)[1])
            done.append(collection)
        return done

    def invalidate_tenant(self, tenant: str) -> None:
        """Replace the tenant's generation: every entry of the tenant is gone."""
        self._replace(self.keys(tenant, "")[0])
