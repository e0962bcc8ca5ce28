"""Admission to Strapi: a per-worker bulkhead and a circuit breaker per tenant, shared by workers.

A hung Strapi must not take every thread of a worker: cache hits, 304s, health checks and
webhooks need one. So each worker lets at most ``BFFPROXY_STRAPI_MAX_CONCURRENT`` calls to a
tenant's Strapi run at once (default 2, below gunicorn's 4 threads); a call over the cap waits up
to ``BFFPROXY_STRAPI_QUEUE_WAIT`` seconds (0.25: a healthy Strapi answers well within it) for a
slot if no more than ``BFFPROXY_STRAPI_MAX_WAITING`` (1) others wait, and not at all while Strapi
is failing; otherwise it fails at once with 503 ``upstream_busy`` and ``Retry-After`` (stale
content is served instead where the cache has it). So at most cap + waiting threads of a worker
(3 of gunicorn's 4 by default) are ever spent on Strapi.

And a Strapi that is down must not cost every request the full timeout: after
``BFFPROXY_BREAKER_FAILURES`` consecutive connection failures or timeouts the tenant's breaker
opens; for ``BFFPROXY_BREAKER_RESET`` seconds every call fails at once with 503
``upstream_unavailable`` + ``Retry-After`` (the cache serves stale entries), then one call
(the probe, one per machine or per Redis) is let through and its outcome closes or re-opens it.
The breaker's state lives in the shared store, so every worker (and, with Redis, every
instance) sees it open at once; a store fault falls back to this worker's own count.

Why not pybreaker: its ``CircuitBreaker.call`` holds one lock for the whole wrapped call
(pybreaker issues #3 and #55; PRs #40, #41, #57 and #77 to remove it were closed), so every
Strapi call of a worker would run one at a time, which is the starvation this module prevents.
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from flask import Flask

from .caching import content_cache
from .errors import UpstreamBusy, UpstreamTimeout, UpstreamUnavailable
from .settings import ConfigError, as_number, env_name
from .single_flight import shared_locks
from .store import StoreUnavailable
from .tenants import registry

log = logging.getLogger(__name__)

T = TypeVar("T")
Clock = Callable[[], float]


class CircuitOpen(UpstreamUnavailable):
    status, code, message = 503, "upstream_unavailable", "Strapi is unavailable (circuit open)."


@dataclass(frozen=True)
class AdmissionPolicy:
    """The validated admission settings."""

    max_concurrent: int = 2
    queue_wait: float = 0.25
    max_waiting: int = 1
    failures: int = 5
    reset: float = 10.0


def policy_from_config(config: Mapping[str, Any]) -> AdmissionPolicy:
    """Read and check the admission settings (start-up; one line naming the variable)."""
    values = {
        "STRAPI_MAX_CONCURRENT": (int, 1, 2),
        "STRAPI_QUEUE_WAIT": (float, 0, 0.25),
        "STRAPI_MAX_WAITING": (int, 0, 1),
        "BREAKER_FAILURES": (int, 1, 5),
        "BREAKER_RESET": (float, 0.001, 10.0),
    }
    read = {}
    for key, (kind, minimum, default) in values.items():
        raw = config.get(key, default)
        value = as_number({key: raw}, key, kind, minimum=minimum)
        if not math.isfinite(value):
            raise ConfigError(f"{env_name(key)} must be a finite number, got {raw!r}")
        read[key] = value
    return AdmissionPolicy(
        read["STRAPI_MAX_CONCURRENT"],
        read["STRAPI_QUEUE_WAIT"],
        read["STRAPI_MAX_WAITING"],
        read["BREAKER_FAILURES"],
        read["BREAKER_RESET"],
    )


class BreakerState:
    """The breaker's shared record: consecutive failures (a counter) and when it opened (None: closed).

    The count is one atomic increment in the store (diskcache's ``incr`` in a SQLite transaction,
    Redis's INCR), so failures seen at once by several workers are all counted: a read-modify-write
    would lose some and open the circuit late.
    """

    def __init__(self, store: Any, key: str) -> None:
        self.store = store  # a SharedStore (calls raise StoreUnavailable), or None
        self.failures_key, self.opened_key = f"{key}:failures", f"{key}:opened"
        self._local: tuple[int, float | None] = (0, None)

    def read(self) -> tuple[int, float | None]:
        """(failures, opened_at) from the shared store, else this worker's own record."""
        if self.store is None:
            return self._local
        try:
            failures, opened_at = self.store.get_many(self.failures_key, self.opened_key)
        except Exception:  # the store's own boundary logged it; count locally meanwhile
            return self._local
        self._local = (int(failures or 0), opened_at if isinstance(opened_at, float) else None)
        return self._local

    def count_failure(self) -> tuple[int, float | None]:
        """Add one failure for every worker; (failures, opened_at) afterwards."""
        local_failures, opened_at = self._local
        if self.store is not None:
            try:
                failures = self.store.inc(self.failures_key)
                return self._remember(failures, self.read()[1])
            except Exception:  # on a fault this worker still counts its own
                pass
        return self._remember(local_failures + 1, opened_at)

    def open(self, at: float) -> None:
        """Mark the circuit open since ``at`` for every worker."""
        self._local = (self._local[0], at)
        if self.store is not None:
            with contextlib.suppress(Exception):
                self.store.set(self.opened_key, at, 24 * 3600)

    def close(self) -> None:
        """Reset the count and close the circuit for every worker."""
        self._local = (0, None)
        if self.store is not None:
            with contextlib.suppress(Exception):
                self.store.delete(self.failures_key)
                self.store.delete(self.opened_key)

    def _remember(self, failures: int, opened_at: float | None) -> tuple[int, float | None]:
        self._local = (failures, opened_at)
        return self._local


class Admission:
    """One tenant's gate to Strapi in this worker: the bulkhead slots and the shared breaker."""

    def __init__(
        self,
        tenant: str,
        policy: AdmissionPolicy,
        state: BreakerState,
        probe_lock: Callable[[], Any] | None = None,
        clock: Clock = time.time,
    ) -> None:
        self.tenant = tenant
        self.policy = policy
        self.state = state
        self.probe_lock = probe_lock  # a shared non-blocking lock, so one worker probes at a time
        self.clock = clock
        self._slots = threading.BoundedSemaphore(policy.max_concurrent)
        self._waiting = threading.BoundedSemaphore(policy.max_waiting) if policy.max_waiting else _Full()

    def describe(self) -> str:
        """``closed``, ``open`` or ``half-open``, for /readyz."""
        opened_at = self.state.read()[1]
        if opened_at is None:
            return "closed"
        return "open" if self.clock() < opened_at + self.policy.reset else "half-open"

    def call(self, send: Callable[[], T]) -> T:
        """Run ``send`` if the breaker lets it and a slot frees up in time; record its outcome."""
        failures, probe = self._admit()
        try:
            if not self._take_slot(queue=failures == 0):
                raise UpstreamBusy(
                    f"{self.policy.max_concurrent} calls to Strapi are already running; try again shortly.",
                    headers={"Retry-After": "1"},
                )
            try:
                result = send()
            except (UpstreamUnavailable, UpstreamTimeout) as exc:
                self._failed(exc)
                raise
            finally:
                self._slots.release()
            self._succeeded()
            return result
        finally:
            if probe is not None:
                probe.release()

    def waiting_place(self) -> _WaitingPlace | None:
        """One of the worker's waiting places (shared with callers queued for a slot), or None.

        A single-flight waiter that holds one may watch another's fetch of its key for as long as a
        Strapi call can take; without one it only waits while that fetch is young (single_flight.py).
        """
        if self._waiting.acquire(blocking=False):
            return _WaitingPlace(self._waiting)
        return None

    def _take_slot(self, *, queue: bool) -> bool:
        """A slot now, or after a short wait if few others wait too (never while Strapi fails)."""
        if self._slots.acquire(blocking=False):
            return True
        if not queue or not self._waiting.acquire(blocking=False):
            return False  # every thread that waits here is one a cache hit cannot have
        try:
            return self._slots.acquire(timeout=self.policy.queue_wait)
        finally:
            self._waiting.release()

    def _admit(self) -> tuple[int, Any]:
        """(failures so far, None) when closed; the probe's lock when half-open and ours; else raise."""
        failures, opened_at = self.state.read()
        if opened_at is None:
            return failures, None
        now = self.clock()
        if opened_at > now:  # the clock stepped back, or a peer sharing Redis runs ahead of ours
            opened_at = now  # so the circuit is never open longer than the reset from here
            self.state.open(now)
        remaining = opened_at + self.policy.reset - now
        if remaining <= 0:
            lock = self.probe_lock() if self.probe_lock is not None else _NoLock()
            if lock is not None:
                log.info("circuit for tenant %s half-open: probing Strapi", self.tenant)
                return failures, lock
            remaining = 1  # another worker is probing right now
        raise CircuitOpen(
            f"Strapi failed {self.policy.failures} times in a row; calls resume in {math.ceil(remaining)} s.",
            headers={"Retry-After": str(math.ceil(remaining))},
        )

    def _failed(self, exc: Exception) -> None:
        """Count a connection failure or timeout; open (or re-open) the breaker at the limit."""
        failures, opened_at = self.state.count_failure()
        if opened_at is None and failures < self.policy.failures:
            return
        if opened_at is None or opened_at + self.policy.reset <= self.clock():
            log.error(
                "circuit for tenant %s opened after %d failures (%s); failing fast for %.0f s",
                self.tenant,
                failures,
                exc.__class__.__name__,
                self.policy.reset,
            )
        self.state.open(self.clock())

    def _succeeded(self) -> None:
        """Strapi answered: reset the count, close the breaker if it was open."""
        failures, opened_at = self.state.read()
        if opened_at is not None:
            log.warning("circuit for tenant %s closed: Strapi answers again", self.tenant)
        if failures or opened_at is not None:
            self.state.close()


class _WaitingPlace:
    """A held waiting place; released once."""

    def __init__(self, semaphore: Any) -> None:
        self._semaphore = semaphore

    def release(self) -> None:
        """Give the place back."""
        self._semaphore.release()


class _Full:
    """A semaphore with no room (BFFPROXY_STRAPI_MAX_WAITING=0: nobody queues)."""

    def acquire(self, blocking: bool = True) -> bool:
        return False

    def release(self) -> None:
        """Never taken, never given back."""


class _NoLock:
    def release(self) -> None:
        """Nothing to give back."""


def admission_for(app: Flask, tenant: str, policy: AdmissionPolicy) -> Admission:
    """A tenant's admission over the app's shared store and its shared locks."""
    # Their own lock files: a probe sharing a stripe with a cache key would make that key's
    # requests wait behind a hanging probe (found by the hostile tester's half-open test).
    locks = shared_locks(app, "breaker", stripes=16)
    config = app.config
    probe_ttl = config["STRAPI_CONNECT_TIMEOUT"] + config["STRAPI_READ_TIMEOUT"] + 1

    def probe_lock() -> Any:
        try:
            return locks.try_acquire(f"breaker-probe:{tenant}", probe_ttl)
        except StoreUnavailable:
            return _NoLock()  # no shared locks: probe from this worker

    state = BreakerState(content_cache().store, f"breaker:{tenant}")
    return Admission(tenant, policy, state, probe_lock)


def init_app(app: Flask) -> None:
    """Validate the settings and give every tenant's Strapi client its admission."""
    policy = policy_from_config(app.config)
    with app.app_context():
        for tenant in registry():
            tenant.strapi.admission = admission_for(app, tenant.name, policy)
