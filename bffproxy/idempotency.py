"""Idempotency-Key: a write sent twice is applied once, and a write whose outcome is unknown is
reconciled with Strapi instead of being applied again.

Each key has one record in the records store (a SQLite DiskStore that never evicts, shared by the
workers of a machine, or Redis shared by every instance), for ``BFFPROXY_IDEMPOTENCY_TTL`` seconds
(24 h), under a name derived from (tenant, user, key): two users or tenants never see each
other's keys. A record is:

* ``in_flight`` -- claimed by one request that is talking to Strapi. A duplicate gets **409**
  (``Retry-After: 1``). The claim is a lease: while its write runs, the owner renews it from a
  background heartbeat every ``LEASE / 3`` seconds, however long Strapi takes. A claim not renewed
  for ``LEASE`` seconds belongs to a worker that died (or lost the store): only then is it treated
  as ``unknown``. This holds for the file store (one machine) and Redis (many) alike; the machines
  sharing Redis need clocks within a few seconds of each other (NTP), far less than ``LEASE``.
* ``done`` -- Strapi answered (2xx or 4xx). The same key with the same request **replays** that
  answer (header ``Idempotent-Replayed: true``) without calling Strapi again.
* ``unknown`` -- the request reached Strapi, or may have, but no answer came (timeout, connection
  reset, Strapi 5xx). The client got a 502/504 saying so. A retry with the same key within
  ``BFFPROXY_IDEMPOTENCY_SETTLE`` seconds gets 409 with ``Retry-After``: the first write may still
  be running inside Strapi. After that the retry claims the key again as a *reconciliation*: for a
  create, reconciliation.py looks the document up in Strapi by its slug -- which rules.py derives
  from the key, so it is the same on every retry and unique -- and publishing.py answers with the
  document it finds instead of creating a second one; an unpublish or a delete whose document is
  already offline or gone is answered as done; edit and publish are idempotent in Strapi and are
  simply sent again.

The same key with a different request (method, path or body) is a **422**. A request that fails
before reaching Strapi (connection refused) releases its key, so the retry is a fresh attempt.
Check-and-set on a record happens under a short lock shared like the store (``flock`` stripes or a
Redis lock), so concurrent duplicates cannot both claim a key. If the store is unreachable a keyed
write is refused with 503 rather than risk a duplicate.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

from flask import Flask, current_app

from . import metrics
from .caching import FlightLock, FlightLocks, shared_locks
from .errors import BadRequest, Conflict, ServiceUnavailable, Unprocessable
from .settings import as_number, env_name

log = logging.getLogger(__name__)

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
IN_FLIGHT, DONE, UNKNOWN = "in_flight", "done", "unknown"
KEY_MAX = 255
RECORD_VERSION = 1
LOCK_TTL = 5.0  # seconds; the lock guards only a get-and-set of one record
LOCK_WAIT = 2.0
LEASE = 15.0  # seconds an in-flight claim lives without its owner's heartbeat


class IdempotencyKeyReused(Unprocessable):
    code = "idempotency_key_reused"
    message = "This Idempotency-Key was already used with a different request."


class IdempotencyInFlight(Conflict):
    code = "idempotency_in_flight"
    message = "A request with this Idempotency-Key is still in progress; retry shortly."


class IdempotencyStoreUnavailable(ServiceUnavailable):
    code = "idempotency_unavailable"
    message = "The idempotency store cannot be reached, so this write was not attempted; retry later."


@dataclass(frozen=True)
class StoredAnswer:
    """The answer a finished request gave, replayed verbatim."""

    status: int
    body: bytes
    content_type: str


@dataclass(frozen=True)
class Record:
    """The state of one key."""

    state: str
    fingerprint: str
    owner: str  # the token of the request that holds the current claim
    started_at: float  # when the first attempt claimed the key
    claimed_at: float  # when the current claim was taken
    unknown_at: float | None = None
    answer: StoredAnswer | None = None
    attempts: int = 1
    renewed_at: float = 0.0  # the owner's last heartbeat (records written before leases lack it)


@dataclass(frozen=True)
class Claim:
    """A request's right to perform the write for a key (or the answer to replay)."""

    key: str
    scope: str
    owner: str
    record: Record

    @property
    def replay(self) -> StoredAnswer | None:
        """The stored answer when the write is already done."""
        return self.record.answer if self.record.state == DONE else None

    @property
    def reconciling(self) -> bool:
        """True when an earlier attempt's outcome is unknown: look in Strapi before writing."""
        return self.record.attempts > 1


def fingerprint(method: str, path: str, body: Any) -> str:
    """A digest of what the request asks for: the same key must always ask for the same thing."""
    canonical = json.dumps([method.upper(), path, body], sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def scope_of(tenant: str, user: str, key: str) -> str:
    """The key's identity, namespaced by tenant and user (also the seed of derived slugs)."""
    return hashlib.sha256(f"{tenant}\0{user}\0{key}".encode()).hexdigest()


def check_key(raw: str) -> str:
    """The header value if usable: 1-255 visible ASCII characters."""
    if not 0 < len(raw) <= KEY_MAX or not raw.isascii() or not raw.isprintable():
        raise BadRequest(f"{HEADER} must be 1 to {KEY_MAX} visible ASCII characters.")
    return raw


class IdempotencyStore:
    """Claims, answers and unknown outcomes of Idempotency-Keys in the shared store."""

    def __init__(
        self,
        store: Any,
        locks: FlightLocks,
        *,
        ttl: int,
        settle: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.locks = locks
        self.ttl = ttl
        self.settle = settle
        self.clock = clock
        self.lease = LEASE
        self.renew_every = LEASE / 3  # a lease survives two missed heartbeats

    # -- the store, behind one fault boundary ---------------------------------------------------

    def _get(self, key: str) -> Record | None:
        try:
            value = self.store.get(key)
        except Exception as exc:
            log.error("idempotency store get failed: %s", exc)
            raise IdempotencyStoreUnavailable() from exc
        if isinstance(value, tuple) and len(value) == 2 and value[0] == RECORD_VERSION:
            record = value[1]
            return record if isinstance(record, Record) else None
        return None

    def _put(self, key: str, record: Record) -> None:
        try:
            ok = self.store.set(key, (RECORD_VERSION, record), self.ttl)
        except Exception as exc:
            log.error("idempotency store set failed: %s", exc)
            raise IdempotencyStoreUnavailable() from exc
        if ok is False:
            raise IdempotencyStoreUnavailable()

    @contextlib.contextmanager
    def _locked(self, key: str) -> Iterator[None]:
        """Hold the key's lock for one check-and-set."""
        deadline = time.monotonic() + LOCK_WAIT
        lock: FlightLock | None = None
        while lock is None:
            try:
                lock = self.locks.try_acquire(f"idem:{key}", LOCK_TTL)
            except Exception as exc:
                raise IdempotencyStoreUnavailable() from exc
            if lock is None:
                if time.monotonic() > deadline:
                    raise IdempotencyInFlight(headers={"Retry-After": "1"})
                time.sleep(0.005)
        try:
            yield
        finally:
            try:
                lock.release()
            except Exception as exc:  # expired while held (e.g. redis-py's LockNotOwnedError)
                # The check-and-set is over; raising here would turn its outcome (a committed
                # write's recorded answer) into a 500.
                log.warning("idempotency lock of %s lost before its release: %r", key, exc)

    # -- the state machine ----------------------------------------------------------------------

    def claim(self, tenant: str, user: str, raw_key: str, request_fingerprint: str) -> Claim:
        """Claim the key for this request, or raise 409/422, or return the answer to replay."""
        scope = scope_of(tenant, user, raw_key)
        key = f"idem:v{RECORD_VERSION}:{tenant}:{scope[:40]}"
        owner = secrets.token_hex(8)
        with self._locked(key):
            now = self.clock()
            record = self._get(key)
            if record is None:
                record = Record(IN_FLIGHT, request_fingerprint, owner, now, now)
                self._put(key, record)
                return Claim(key, scope, owner, record)
            if record.fingerprint != request_fingerprint:
                metrics.count(metrics.IDEMPOTENCY_CONFLICTS, tenant, "key_reused")
                raise IdempotencyKeyReused()
            if record.state == DONE:
                metrics.count(metrics.IDEMPOTENCY_REPLAYS, tenant)
                return Claim(key, scope, owner, record)
            try:
                self._refuse_while_unsettled(record, now)
            except IdempotencyInFlight:
                metrics.count(metrics.IDEMPOTENCY_CONFLICTS, tenant, "in_flight")
                raise
            record = replace(
                record,
                state=IN_FLIGHT,
                owner=owner,
                claimed_at=now,
                unknown_at=None,
                attempts=record.attempts + 1,
            )
            self._put(key, record)
            return Claim(key, scope, owner, record)

    def _refuse_while_unsettled(self, record: Record, now: float) -> None:
        """409 while the key's write may still be running in Strapi."""
        if record.state == IN_FLIGHT:
            lease_ends = max(record.claimed_at, record.renewed_at) + self.lease
            if now < lease_ends:  # its owner is alive and renewing, however long Strapi takes
                raise IdempotencyInFlight(headers={"Retry-After": "1"})
            unknown_since = lease_ends  # its owner stopped renewing: it died
        else:
            unknown_since = record.unknown_at if record.unknown_at is not None else now
        wait = unknown_since + self.settle - now
        if wait > 0:
            raise IdempotencyInFlight(
                "The outcome of the earlier request with this Idempotency-Key is unknown and Strapi may "
                f"still be applying it; retry in {math.ceil(wait)} s to reconcile.",
                headers={"Retry-After": str(math.ceil(wait))},
            )

    def _update(self, claim: Claim, change: Callable[[Record], Record | None]) -> Record | None:
        """Apply ``change`` if this request still holds the claim; the record as it now is."""
        with self._locked(claim.key):
            record = self._get(claim.key)
            if record is None or record.owner != claim.owner:
                log.warning("idempotency claim %s lost before it finished", claim.key)
                return None
            changed = change(record)
            if changed is None:
                with contextlib.suppress(Exception):
                    self.store.delete(claim.key)
            elif changed is not record:
                self._put(claim.key, changed)
            return changed

    def renew(self, claim: Claim) -> bool:
        """Extend the claim's lease; False once this request no longer holds it in flight."""
        record = self._update(
            claim, lambda r: replace(r, renewed_at=self.clock()) if r.state == IN_FLIGHT else r
        )
        return record is not None and record.state == IN_FLIGHT

    @contextlib.contextmanager
    def leased(self, claim: Claim) -> Iterator[None]:
        """Renew the claim's lease from a background heartbeat while the block (the write) runs."""
        stop = threading.Event()
        heartbeat = threading.Thread(
            target=self._heartbeat, args=(claim, stop), name=f"idempotency-lease-{claim.owner}", daemon=True
        )
        heartbeat.start()
        try:
            yield
        finally:
            stop.set()
            heartbeat.join()

    def _heartbeat(self, claim: Claim, stop: threading.Event) -> None:
        """Renew every ``renew_every`` seconds until stopped or the claim is no longer ours."""
        while not stop.wait(self.renew_every):
            try:
                if not self.renew(claim):
                    return
            except Exception as exc:  # the store is down: keep trying, the lease outlasts two misses
                log.warning("idempotency lease of %s not renewed: %r", claim.key, exc)

    def finish(self, claim: Claim, answer: StoredAnswer) -> None:
        """Strapi answered: remember the answer for replays."""
        self._update(claim, lambda r: replace(r, state=DONE, answer=answer, unknown_at=None))

    def mark_unknown(self, claim: Claim) -> None:
        """The write may or may not have happened: the next retry reconciles."""
        self._update(claim, lambda r: replace(r, state=UNKNOWN, unknown_at=self.clock()))

    def release(self, claim: Claim) -> None:
        """The write never reached Strapi: forget the key so a retry starts afresh."""
        self._update(claim, lambda r: None if r.attempts == 1 else replace(r, state=UNKNOWN, unknown_at=0.0))


def idempotency_store() -> IdempotencyStore:
    """The idempotency store of the current app."""
    store: IdempotencyStore = current_app.extensions["bffproxy.idempotency"]
    return store


def guard_finish(store: IdempotencyStore, claim: Claim, answer: StoredAnswer) -> None:
    """Record the answer; no fault now (store, lock) may turn a write Strapi committed into an error."""
    try:
        store.finish(claim, answer)
    except Exception as exc:
        # The record stays in flight; once its lease runs out a retry reconciles, no duplicate.
        log.error("could not record the answer of idempotency key %s: %r", claim.key, exc)


def init_app(app: Flask) -> None:
    """Validate the idempotency settings and build the store over the shared cache backend."""
    config = app.config
    config.setdefault("IDEMPOTENCY_TTL", 24 * 3600)
    config.setdefault("IDEMPOTENCY_SETTLE", config["STRAPI_READ_TIMEOUT"])
    config["IDEMPOTENCY_TTL"] = as_number(config, "IDEMPOTENCY_TTL", int, minimum=1)
    config["IDEMPOTENCY_SETTLE"] = as_number(config, "IDEMPOTENCY_SETTLE", float, minimum=0)
    locks = shared_locks(app, "idempotency-locks", stripes=256)
    records = app.extensions.get("bffproxy.records")
    if records is None:
        raise RuntimeError(f"caching.init_app must run before idempotency.init_app ({env_name('CACHE_DIR')})")
    app.extensions["bffproxy.idempotency"] = IdempotencyStore(
        records,
        locks,
        ttl=config["IDEMPOTENCY_TTL"],
        settle=config["IDEMPOTENCY_SETTLE"],
    )
