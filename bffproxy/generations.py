"""Generations: the random tokens every cache key embeds, one per tenant and one per collection.

Invalidation replaces a token: O(1), seen by every worker and instance on its next request, no key
scanning. Random tokens (not counters) keep an evicted generation from ever resurrecting old
entries. Concurrent first requests agree on one token: it is created under a shared lock.
"""

from __future__ import annotations

import logging
import os
import secrets
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from cachelib import FileSystemCache

from .single_flight import LockWait
from .store import SharedStore, StoreUnavailable

log = logging.getLogger(__name__)
Clock = Callable[[], float]

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

    def __init__(
        self,
        store: SharedStore,
        waiting: LockWait,
        *,
        retry_every: float = 1.0,
        monotonic: Clock = time.monotonic,
    ) -> None:
        self.store = store
        self.waiting = waiting
        # Invalidations the store refused: replayed before anything else, and until they land,
        # the collections they cover are served around the cache (BYPASS) by this worker.
        self.pending: set[str] = set()
        self._pending_lock = threading.Lock()
        self._retry_every = retry_every
        self._next_retry = 0.0
        self._monotonic = monotonic
        # Read on every request: for the file store, only when their file changed.
        backend = store.backend
        self._reader = StatValidatedReads(backend) if isinstance(backend, FileSystemCache) else backend

    @staticmethod
    def keys(tenant: str, collection: str) -> tuple[str, str]:
        """The store keys of the tenant's and the collection's generation."""
        return f"gen:{tenant}", f"gen:{tenant}:{collection}"

    def current(self, tenant: str, collection: str) -> tuple[str, str]:
        """The tenant's and the collection's current tokens (created when absent).

        StoreUnavailable while an invalidation of either is still pending: the caller bypasses.
        """
        keys = self.keys(tenant, collection)
        if self.pending and self._still_pending(keys):
            raise StoreUnavailable("an invalidation of this collection has not landed yet")
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
            if self.store.set(key, value, GENERATION_TIMEOUT) is False:
                raise StoreUnavailable(f"the store refused to write generation {key}")
        return value

    def _existing(self, key: str) -> str | None:
        """The stored token of ``key``, if any."""
        value = self.store.get(key)
        return value if isinstance(value, str) else None

    def _replace(self, key: str) -> None:
        """Give ``key`` a new token, or at least delete it; else remember it and raise.

        Deleting is as good as replacing (tokens are random: a new one is created on the next
        read) and needs no free space, so a full disk still drops the collection's entries.
        """
        try:
            if self.store.set(key, secrets.token_hex(8), GENERATION_TIMEOUT, must_land=True) is False:
                log.error("the store refused to write generation %s; deleting it instead", key)
                self.store.delete(key)
        except StoreUnavailable:
            with self._pending_lock:
                self.pending.add(key)
            log.error("invalidation of %s did not land; this worker bypasses the cache for it", key)
            raise
        with self._pending_lock:
            self.pending.discard(key)

    def _still_pending(self, keys: Iterable[str]) -> bool:
        """Replay refused invalidations (at most every ``retry_every`` s); True if one of ``keys`` waits."""
        now = self._monotonic()
        if now >= self._next_retry:
            self._next_retry = now + self._retry_every
            for key in sorted(self.pending):
                try:
                    self._replace(key)
                    log.warning("invalidation of %s landed after the store came back", key)
                except StoreUnavailable:
                    break
        return any(key in self.pending for key in keys)

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
