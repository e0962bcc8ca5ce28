"""The event hub: one reader of the event log per process and tenant, fanning out to every subscriber.

Without it each open stream would poll the log itself: 10,000 subscribers would be 20,000 reads a
second. With it a process reads each tenant's log once per :data:`POLL_INTERVAL` (one indexed
``WHERE id > ?`` on SQLite, one ``XRANGE`` on Redis) and hands each batch it read to every
subscriber's :class:`Mailbox`. A mailbox is bounded (:data:`MAILBOX_BATCHES` batches): a subscriber
that does not keep up finds :data:`OVERFLOW` in it and its stream ends, so the client reconnects
and replays from its ``Last-Event-ID``; memory never grows with a slow reader.

The seam between a subscriber's replay and live delivery has no gap and no duplicate: a subscriber
joins (its mailbox receives every batch read from then on), then replays the log after its own
cursor, then takes batches from its mailbox, skipping ids at or before its cursor. Whatever the
poller read before the join, the replay read after it.

Pollers are daemon threads, started by the first subscriber of a tenant in each worker (never in
the arbiter: nothing starts at import). Under gunicorn's gevent worker, threads and queues are
greenlets and gevent queues (monkey-patched), so the same code holds thousands of subscribers in
one process. Tests drive a hub without threads: :meth:`Hub.poll` reads and fans out once.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .event_log import EventLog, LoggedEvent

log = logging.getLogger(__name__)

# Seconds between two reads of a tenant's log when it is quiet, so the most a quiet log adds to an
# event's latency (make bench-events: p99 <= 1 s at 10,000 subscribers); a quiet read costs ~30 µs.
POLL_INTERVAL = 0.1
BATCH = 100  # events read at a time
MAILBOX_BATCHES = 64  # batches a subscriber may have waiting before it is cut off
OVERFLOW = "overflow"  # what a full mailbox receives last: the stream ends, the client replays


@dataclass(frozen=True)
class Rewind:
    """The log no longer covers the poller's cursor (pruned past it, or recreated): resync at ``head``."""

    head: str


Delivery = list[LoggedEvent] | Rewind | str


@dataclass(eq=False)
class Mailbox:
    """One subscriber's bounded queue of batches."""

    tenant: str
    queue: queue.Queue[Delivery] = field(default_factory=lambda: queue.Queue(MAILBOX_BATCHES + 1))
    overflowed: bool = False
    on_overflow: Callable[[], None] | None = None  # told once, when OVERFLOW goes in

    def deliver(self, item: Delivery) -> None:
        """Queue ``item``; a full mailbox gets :data:`OVERFLOW` instead and nothing after it."""
        if self.overflowed:
            return
        if self.queue.qsize() >= MAILBOX_BATCHES:
            self.overflowed = True
            item = OVERFLOW
        self.queue.put_nowait(item)  # the spare slot always takes OVERFLOW
        if self.overflowed and self.on_overflow is not None:
            self.on_overflow()

    def take(self) -> Delivery | None:
        """The next item if one is waiting, else None."""
        try:
            return self.queue.get_nowait()
        except queue.Empty:
            return None

    def wait(self, timeout: float) -> Delivery | None:
        """The next item, waiting up to ``timeout`` seconds; None when none came."""
        try:
            return self.queue.get(timeout=max(timeout, 0.0))
        except queue.Empty:
            return None


@dataclass
class _Tenant:
    cursor: str
    mailboxes: set[Mailbox] = field(default_factory=set)
    running: bool = False


class Hub:
    """A process's pollers of the event log, one per tenant with subscribers, and their mailboxes."""

    def __init__(
        self,
        event_log: EventLog,
        *,
        poll_interval: float = POLL_INTERVAL,
        threaded: bool = True,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        self.log = event_log
        self.poll_interval = poll_interval
        self.threaded = threaded
        self.sleep = sleep or time.sleep  # looked up now: gevent's, once it patched time
        self._tenants: dict[str, _Tenant] = {}
        self._lock = threading.Lock()

    def join(self, tenant: str) -> tuple[Mailbox, str]:
        """A new mailbox that receives every batch of ``tenant`` read after the id returned with it."""
        mailbox = Mailbox(tenant)
        with self._lock:
            state = self._tenants.get(tenant)
            if state is None:  # the log is read here, so a failure is the subscriber's 503
                state = self._tenants[tenant] = _Tenant(self.log.head(tenant))
            state.mailboxes.add(mailbox)
            cursor = state.cursor  # with the registration: the batches after it all reach the mailbox
            start = self.threaded and not state.running
            state.running = state.running or start
        if start:
            threading.Thread(
                target=self._run, args=(tenant,), name=f"events-hub-{tenant}", daemon=True
            ).start()
        return mailbox, cursor

    def leave(self, mailbox: Mailbox) -> None:
        """Stop delivering to ``mailbox``."""
        with self._lock:
            state = self._tenants.get(mailbox.tenant)
            if state is not None:
                state.mailboxes.discard(mailbox)

    def subscribers(self, tenant: str | None = None) -> int:
        """How many mailboxes are open (for ``tenant``, or in all)."""
        with self._lock:
            states = [self._tenants[tenant]] if tenant in self._tenants else []
            if tenant is None:
                states = list(self._tenants.values())
            return sum(len(state.mailboxes) for state in states)

    def poll(self, tenant: str) -> int:
        """Read the next batch of ``tenant``'s log once and deliver it; how many events it held."""
        with self._lock:
            state = self._tenants[tenant]
            cursor = state.cursor
        delivery: Delivery
        batch = []
        if self.log.is_gone(tenant, cursor):  # pruned past it while it was behind: never a silent gap
            cursor = self.log.head(tenant)
            delivery = Rewind(cursor)
        else:
            batch = self.log.read_after(tenant, cursor, BATCH)
            if not batch:
                return 0
            delivery, cursor = batch, batch[-1].id
        with self._lock:
            state.cursor = cursor
            mailboxes = list(state.mailboxes)
        for mailbox in mailboxes:
            mailbox.deliver(delivery)
        return len(batch)

    def _run(self, tenant: str) -> None:
        """The poller: read, deliver, sleep when the log is quiet; a failing log is retried."""
        failing = False
        while True:
            try:
                read = self.poll(tenant)
                if failing:
                    log.warning("event hub: the event log of tenant %s is readable again", tenant)
                failing = False
            except Exception as exc:  # sqlite3.Error, redis errors: subscribers wait, nothing is lost
                if not failing:
                    log.error("event hub: the event log of tenant %s cannot be read (%r)", tenant, exc)
                failing, read = True, 0
            if read < BATCH:
                self.sleep(self.poll_interval)


def hub_for(app_extensions: dict[str, Any]) -> Hub:
    """The app's hub."""
    hub: Hub = app_extensions["bffproxy.event_hub"]
    return hub
