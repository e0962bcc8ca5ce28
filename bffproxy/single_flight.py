"""Single-flight: one fetch per cache key across workers and instances, the others wait for it.

The lock factory (:func:`shared_locks`) is the one place locks come from, for the cache and for
idempotency: ``flock`` stripes in the cache dir (the workers of one machine) or redis-py locks
(every instance). A holder publishes what it got (a non-cacheable answer or a failure) under
``flight:<key>`` for a few seconds, so waiters answer the same instead of retrying one by one.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import math
import os
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from flask import Flask
from redis.exceptions import LockError, RedisError

from . import metrics
from .errors import ApiError, UpstreamBusy
from .freshness import Entry, Served
from .store import SharedStore, StoreUnavailable, redis_client

log = logging.getLogger(__name__)

SHARED_OUTCOME_TIMEOUT = 5  # seconds a waiter can still pick up a holder's non-cacheable outcome
FLIGHTS_REMEMBERED = 1024  # flights whose first sighting a worker remembers (a few KB)


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


class _RedisLock:
    """A held redis-py lock whose release never raises.

    A holder can outlive its lock: one Strapi call may take longer than the lock's TTL (two connect
    timeouts and a read timeout, or slow 503s). redis-py then raises LockNotOwnedError on release,
    which in a ``finally`` would replace the caller's real outcome (a 504, stale content, a committed
    write) with a 500. The lock is gone either way (expired, maybe taken over, and redis-py's
    compare-and-delete never frees another holder's lock), so losing it is only logged.
    """

    def __init__(self, lock: Any) -> None:
        self._lock = lock

    def release(self) -> None:
        """Give the lock back if still held; a lost lock or a Redis fault is logged."""
        try:
            self._lock.release()
        except LockError:
            log.warning("lock %s expired before it was released (held longer than its TTL)", self._lock.name)
        except RedisError as exc:  # Redis unreachable: the lock expires by itself
            log.warning("could not release lock %s: %s", self._lock.name, exc)


class RedisFlightLocks:
    """Single-flight across instances: redis-py's Lock (SET NX PX, compare-and-delete release)."""

    def __init__(self, client: Any, prefix: str) -> None:
        self.client = client
        self.prefix = prefix

    def try_acquire(self, key: str, ttl: float) -> FlightLock | None:
        """The lock if free; it expires by itself after ``ttl`` if its holder dies."""
        lock = self.client.lock(f"{self.prefix}lock:{key}", timeout=ttl, blocking=False, thread_local=False)
        try:
            return _RedisLock(lock) if lock.acquire() else None
        except Exception as exc:  # the store is down: fetch without single-flight
            raise StoreUnavailable(str(exc)) from exc


def shared_locks(app: Flask, folder: str, stripes: int = 1024) -> FlightLocks:
    """Locks shared like the store: Redis locks with BFFPROXY_REDIS_URL, else flock stripes in ``folder``."""
    if app.config["REDIS_URL"]:
        return RedisFlightLocks(redis_client(app), app.config["CACHE_KEY_PREFIX"])
    return FileFlightLocks(os.path.join(app.config["CACHE_DIR"], folder), stripes=stripes)


Fetch = Callable[[], Entry]
Settled = Callable[[], Served | None]


T = TypeVar("T")


@dataclass
class LockWait:
    """How long to wait for a key's lock, and the one loop that holds it or watches its holder."""

    locks: FlightLocks
    wait: float
    poll_interval: float
    monotonic: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep

    def hold_or_watch(self, key: str, as_holder: Callable[[], T], watch: Callable[[], T | None]) -> T | None:
        """``as_holder()`` under the key's lock, or what ``watch()`` sees while another holds it.

        None when ``wait`` ran out first; StoreUnavailable when the locks cannot be reached.
        """
        deadline = self.monotonic() + self.wait
        while self.monotonic() < deadline:
            lock = self.locks.try_acquire(key, self.wait)
            if lock is not None:
                try:
                    return as_holder()
                finally:
                    lock.release()
            self.sleep(self.poll_interval)
            seen = watch()
            if seen is not None:
                return seen
        return None


class Releasable(Protocol):
    """Something held that is given back once."""

    def release(self) -> None:
        """Give it back."""


WaitingPlaces = Callable[[], Releasable | None]


@dataclass(frozen=True)
class Fetching:
    """What a holder publishes under ``flight:<key>`` while its fetch runs (its start, for the logs)."""

    started: float


class FlightBusy(UpstreamBusy):
    """A waiter stopped watching a fetch that took too long: Strapi is slow (503 + Retry-After)."""

    message = "The same request is already waiting for Strapi, which is slow to answer."


class _Watcher:
    """One waiter's view of another's fetch: how long it may keep a thread waiting for it.

    Waiting costs a thread a cache hit could use. A waiter that holds one of the worker's waiting
    places (shared with callers queued for a Strapi slot, see admission.py) watches for up to the
    lock wait; any other waits only while the holder's fetch is younger than ``brief``: a healthy
    Strapi answers within it (so a stampede on a cold key is still one fetch, everyone served), a
    hung one does not, and then every further waiter answers at once (stale or 503) instead.

    A fetch's age is measured on this worker's monotonic clock, from when the worker first saw the
    holder's ``Fetching`` record: the holder may be another instance sharing Redis whose wall clock
    differs, so its own start time is never compared with ours.
    """

    def __init__(self, flight: SingleFlight, key: str, places: WaitingPlaces | None) -> None:
        self.flight, self.key, self.places = flight, key, places
        self.seen = flight.token(key)
        self.started = flight.waiting.monotonic()  # until the holder's Fetching record is seen
        self.place: Releasable | None = None
        self.patient = places is None  # no gate (internal callers): the lock wait bounds it
        self.asked = False

    def watch(self, settled: Settled) -> Served | None:
        """What the holder left, if it finished; raise FlightBusy when waiting longer is not allowed."""
        done = settled()
        if done is not None:
            return coalesced(done)
        token, outcome = self.flight.record(self.key)
        if isinstance(outcome, Fetching) and token is not None:
            self.started = min(self.started, self.flight.first_seen(token))
        elif token is not None and token != self.seen:
            return coalesced(self.flight.served_from(outcome))
        if not self.patient and not self.asked:
            self.asked = True
            self.place = self.places() if self.places is not None else None
            self.patient = self.place is not None
        if not self.patient and self.flight.waiting.monotonic() - self.started >= self.flight.brief:
            raise FlightBusy(headers={"Retry-After": "1"})
        return None

    def release(self) -> None:
        """Give the waiting place back, if one was taken."""
        if self.place is not None:
            self.place.release()
            self.place = None


MaybeServed = TypeVar("MaybeServed", Served, Served | None)


def coalesced(served: MaybeServed) -> MaybeServed:
    """``served``, noted as another request's fetch (the metrics' ``coalesced``) when there is one."""
    if served is not None:
        metrics.note(metrics.CACHE, "coalesced")
    return served


class SingleFlight:
    """Runs a fetch under the key's lock; waiters take the holder's result, bounded by the wait."""

    def __init__(
        self,
        store: SharedStore,
        waiting: LockWait,
        brief: float = 1.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.waiting = waiting
        self.brief = brief
        self.clock = clock
        self._first_seen: OrderedDict[str, float] = OrderedDict()  # Fetching token -> monotonic time
        self._seen_lock = threading.Lock()

    def first_seen(self, token: str) -> float:
        """When this worker first saw the flight ``token`` (its monotonic clock); remembered for 1,024."""
        with self._seen_lock:
            seen = self._first_seen.get(token)
            if seen is None:
                seen = self._first_seen[token] = self.waiting.monotonic()
                if len(self._first_seen) > FLIGHTS_REMEMBERED:
                    self._first_seen.popitem(last=False)
            return seen

    def run(self, key: str, fetch: Fetch, settled: Settled, places: WaitingPlaces | None = None) -> Served:
        """Fetch once for everyone; ``settled`` says whether another holder already stored it.

        A waiter whose wait runs out (or, without a waiting place, whose holder is slow) gets
        FlightBusy: it never fetches itself, which would hold its thread for a whole Strapi call.
        """
        watcher = _Watcher(self, key, places)
        try:
            served = self.waiting.hold_or_watch(
                key,
                lambda: self._as_holder(key, fetch, settled, watcher.seen),
                lambda: watcher.watch(settled),
            )
        except StoreUnavailable:
            return Served(fetch(), "MISS")  # no locks: fetch without single-flight
        finally:
            watcher.release()
        if served is None:
            log.warning("single-flight wait for %s ran out: Strapi is slow", key)
            raise FlightBusy(headers={"Retry-After": "1"})
        return served

    def _as_holder(self, key: str, fetch: Fetch, settled: Settled, seen: str | None) -> Served:
        """As the lock holder: re-check (a previous holder may have just stored it), then fetch."""
        shared = settled() or self._outcome_since(key, seen)
        if shared is not None:
            return coalesced(shared)  # the previous holder fetched it while this one waited
        self._publish(key, Fetching(self.clock()), self.waiting.wait)  # so waiters know its age
        try:
            return Served(fetch(), "MISS")
        except ApiError as exc:
            self._publish(key, type(exc)(exc.message))  # waiters fail the same way
            raise

    def share(self, key: str, entry: Entry) -> None:
        """Publish a non-cacheable answer to the waiters of this flight for a few seconds."""
        self._publish(key, entry.as_tuple())

    def _publish(self, key: str, outcome: Any, timeout: float = SHARED_OUTCOME_TIMEOUT) -> None:
        with contextlib.suppress(StoreUnavailable):  # waiters then fetch once the lock is free
            self.store.set(f"flight:{key}", (secrets.token_hex(8), outcome), math.ceil(timeout))

    def record(self, key: str) -> tuple[str | None, Any]:
        """The (token, outcome) last published for ``key`` (a Fetching while one runs), or (None, None)."""
        try:
            outcome = self.store.get(f"flight:{key}")
        except StoreUnavailable:
            return None, None
        return outcome if isinstance(outcome, tuple) and len(outcome) == 2 else (None, None)

    def token(self, key: str) -> str | None:
        """The token of the last record, so a waiter only accepts a newer outcome."""
        return self.record(key)[0]

    def _outcome_since(self, key: str, seen: str | None) -> Served | None:
        """The outcome of a fetch that finished after we started waiting (a failure is raised)."""
        token, outcome = self.record(key)
        if token is None or token == seen:
            return None
        return self.served_from(outcome)

    @staticmethod
    def served_from(outcome: Any) -> Served | None:
        """A finished fetch's outcome as an answer; a shared failure is raised, a running one is None."""
        if isinstance(outcome, ApiError):
            raise outcome
        if isinstance(outcome, Fetching):
            return None
        shared = Entry.from_stored(outcome)
        return Served(shared, "MISS") if shared is not None else None
