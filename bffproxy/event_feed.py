"""An event subscription and its feed: what a subscriber asked for, may see, and receives in order.

Both transports render the same feed: Server-Sent Events (events_sse.py) and WebSocket frames
(events_ws.py). A subscription is parsed from an allow-listed set of parameters (the SSE query,
or a WebSocket ``subscribe`` message) and checked before anything is sent:

* ``collections=articles,categories`` (a list in a WebSocket message) -- only these, each exposed
  and readable by the caller (400 unknown, 401/403 as for a read); default: every collection the
  caller may read;
* ``documentId=<id>`` -- only that document;
* ``drafts=true`` -- draft events too; needs the ``drafts`` policy of each collection;
* ``lastEventId=<id>`` (SSE: the ``Last-Event-ID`` header wins, as ``EventSource`` sends it on
  reconnect) -- every event after it, then live, with no gap and no duplicate at the seam; an id the
  log no longer covers gets one ``resync`` naming the collections to refetch, then live.

The caller is the ``Authorization: Bearer`` Strapi JWT, or a ``ticket`` (event_tickets.py) for
browsers. A signed-in feed ends with ``end`` (``token_expired``) when the token expires; a
subscriber too slow for its bounded mailbox (event_hub.py) gets ``end`` (``too_slow``) and replays
on reconnect. A heartbeat comes after ``BFFPROXY_EVENTS_HEARTBEAT`` quiet seconds: it is also how a
client that went away is noticed (the write fails, the server closes the feed).
"""

from __future__ import annotations

import contextlib
import logging
import queue
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from flask import Flask, current_app, request

from . import metrics, policies
from .auth import Identity, check_policy, current_identity
from .disk_store import DiskStore
from .errors import BadRequest, Forbidden, ServiceUnavailable, Unauthorized
from .event_hub import BATCH, OVERFLOW, Hub, Mailbox, Rewind
from .event_log import LoggedEvent, event_log
from .event_tickets import redeem
from .events import visible
from .reads import is_document_id
from .settings import as_number
from .store import shared_store
from .tenants import current_tenant

log = logging.getLogger(__name__)

FILTERS = frozenset({"collections", "documentId", "drafts", "lastEventId"})
BUSY_RETRY_AFTER = 5
STOP = "stop"  # what Feed.stop puts in its mailbox
ANY_EVENT_ID = re.compile(r"[0-9]{1,18}(-[0-9]{1,18})?")  # a SQLite row id or a Redis Stream id
FOREIGN_ID = "foreign"  # an event id, but another kind of log's


class InvalidParameter(BadRequest):
    code = "invalid_parameter"


class UnknownCollection(BadRequest):
    code = "unknown_collection"


class EventsUnavailable(ServiceUnavailable):
    code, message = "events_unavailable", "The event log cannot be read right now."


class TokenExpired(Unauthorized):
    code, message = "token_expired", "The token behind this stream has expired; sign in again."


class TooManySubscribers(ServiceUnavailable):
    code = "too_many_subscribers"
    message = "This worker holds as many event streams as it may; retry shortly."


@dataclass(frozen=True)
class Subscription:
    """What one subscriber asked for and may see, and until when (0: no end)."""

    tenant: str
    collections: tuple[str, ...]
    document_id: str | None
    drafts: bool
    expires_at: float = 0.0

    def wants(self, event: LoggedEvent) -> bool:
        """True when ``event`` passes the filters and the subscriber may see it."""
        fields = event.fields
        if fields.get("collection") not in self.collections:
            return False
        if self.document_id is not None and fields.get("documentId") != self.document_id:
            return False
        return visible(event, drafts=self.drafts)


@dataclass(frozen=True)
class Resync:
    """History is gone: refetch these collections; the feed goes on after ``cursor``."""

    cursor: str
    collections: tuple[str, ...]


@dataclass(frozen=True)
class End:
    """The feed's last item: why it ends (``token_expired``, ``too_slow``, ``log_unreadable``)."""

    reason: str


HEARTBEAT = "heartbeat"
Item = LoggedEvent | Resync | End | str


@dataclass
class Streams:
    """One worker's feeds: its hub, how many are open, and the clocks they use (fakes in tests)."""

    hub: Hub
    max_subscribers: int
    heartbeat: float
    clock: Callable[[], float] = time.monotonic  # heartbeats
    now: Callable[[], float] = time.time  # token expiry (a JWT's exp is wall-clock time)
    # Runs an action in some seconds (a fake in tests): how a client that stopped reading is cut off.
    later: Callable[[float, Callable[[], None]], None] = field(default_factory=lambda: start_timer)
    open: int = 0
    _lock: threading.Lock = field(default_factory=lambda: threading.Lock())  # gevent's, once patched

    def admit(self) -> bool:
        """Take a slot; False when every slot is taken."""
        with self._lock:
            if self.open >= self.max_subscribers:
                return False
            self.open += 1
            metrics.subscriber_joined()
            return True

    def release(self) -> None:
        """Give a slot back (the response was closed)."""
        with self._lock:
            self.open -= 1
            metrics.subscriber_left()

    def wait(self, mailbox: Mailbox, timeout: float) -> Any:
        """The mailbox's next item within ``timeout`` s; a hub without threads is polled here."""
        if self.hub.threaded:
            return mailbox.wait(timeout)
        waited = 0.0
        while True:
            self.hub.poll(mailbox.tenant)
            item = mailbox.take()
            if item is not None or waited >= timeout:
                return item
            self.hub.sleep(self.hub.poll_interval)
            waited += self.hub.poll_interval


def start_timer(delay: float, action: Callable[[], None]) -> None:
    """Run ``action`` in ``delay`` seconds, on a daemon thread (a greenlet under gevent)."""
    timer = threading.Timer(delay, action)
    timer.daemon = True
    timer.start()


def socket_cut(sock: socket.socket | None) -> Callable[[], None] | None:
    """What ends a stream's connection from another thread: its blocked write fails at once."""
    if sock is None:
        return None

    def cut() -> None:
        # Through a twin of the descriptor (same connection): gevent's own shutdown would fail the
        # blocked write as EBADF, which gunicorn logs as an error; this way it is a plain EPIPE.
        with (
            contextlib.suppress(OSError),  # already closed (fileno -1)
            socket.fromfd(sock.fileno(), sock.family, sock.type) as twin,
        ):
            twin.shutdown(socket.SHUT_RDWR)

    return cut


def release_store_connection() -> None:
    """Close this thread's connection to the embedded store: a checked stream never uses it again.

    diskcache keeps a SQLite connection per thread, and under gevent a thread is a greenlet that
    lives as long as its stream: 2 descriptors and ~150 KB per signed-in subscriber otherwise.
    """
    backend = shared_store().backend
    if isinstance(backend, DiskStore):
        backend.close()


def current_streams() -> Streams:
    """This worker's streams."""
    streams: Streams = current_app.extensions["bffproxy.event_streams"]
    return streams


# -- the subscription ------------------------------------------------------------------------------


def caller(ticket: str | None) -> Identity | None:
    """The subscriber: a ticket's user (never together with a bearer token), else the token's, else None."""
    if ticket is None:
        return current_identity()
    if request.headers.get("Authorization"):
        raise InvalidParameter("Send a ticket or an Authorization header, not both.")
    return redeem(ticket)


def check_names(args: Mapping[str, Any], allowed: frozenset[str]) -> None:
    """400 for a parameter not in ``allowed``."""
    unknown = sorted(set(args) - allowed)
    if unknown:
        raise InvalidParameter(f"Unknown parameter(s) {unknown}.", details={"allowed": sorted(allowed)})


def subscription_of(args: Mapping[str, Any], identity: Identity | None) -> Subscription:
    """The filters in ``args``, checked against the tenant's collections and the caller's policies."""
    check_names(args, FILTERS)
    drafts = flag(args.get("drafts", "false"))
    document_id = args.get("documentId")
    if document_id is not None and not (isinstance(document_id, str) and is_document_id(document_id)):
        raise InvalidParameter("documentId must be 1-64 letters, digits, '-' or '_'.")
    action = "drafts" if drafts else "read"
    named = args.get("collections")
    collections = named_collections(named, action) if named is not None else readable_collections(action)
    expires_at = identity.expires_at if identity is not None else 0.0
    if expires_at and current_streams().now() >= expires_at:
        # A ticket minted just before its token's exp, or a socket that outlived it: no replay either.
        raise TokenExpired()
    return Subscription(current_tenant().name, collections, document_id, drafts, expires_at)


def flag(value: Any) -> bool:
    """``true``/``false`` (a JSON boolean too), as Strapi's boolean query values; 400 otherwise."""
    if value in ("true", "false", True, False):
        return value in ("true", True)
    raise InvalidParameter("drafts must be true or false.")


def named_collections(value: Any, action: str) -> tuple[str, ...]:
    """Comma-separated (or listed) collections: 400 for an unknown one, 401/403 for one not allowed."""
    if isinstance(value, list) and all(isinstance(name, str) for name in value):
        value = ",".join(value)
    if not isinstance(value, str):
        raise InvalidParameter("collections must be a comma-separated string or a list of names.")
    names = tuple(dict.fromkeys(n.strip() for n in value.split(",") if n.strip()))
    tenant = current_tenant()
    unknown = [n for n in names if not tenant.exposes(n)]
    if unknown or not names:
        raise UnknownCollection(
            f"Unknown collection(s) {unknown}." if unknown else "collections names no collection.",
            details={"unknown": unknown, "known": list(tenant.collections)},
        )
    for name in names:
        check_policy(name, action)
    return names


def readable_collections(action: str) -> tuple[str, ...]:
    """Every collection the caller may ``action``; 401/403 when that is none of them."""
    identity = current_identity()  # a bad token is a 401 even for public collections
    tenant = current_tenant()
    allowed = tuple(
        name
        for name in tenant.collections
        if policies.is_public(name, action)
        or (identity is not None and policies.role_may(identity.role, name, action))
    )
    if allowed:
        return allowed
    if identity is None:
        raise Unauthorized(f"Sign in first: no collection's {action} events are public.")
    raise Forbidden(f"Your role '{identity.role}' may not {action} any collection's events.")


def parse_last_event_id(raw: Any) -> str | None:
    """The id to replay after, or None for none; 400 when it cannot be an event id at all.

    An id of the other kind of log (``12`` after a move to Redis, ``1732…-0`` after a move back) is
    :data:`FOREIGN_ID`: the feed answers it with a ``resync``, as for history that is gone, so an
    ``EventSource`` that reconnects with it is not refused for ever.
    """
    if raw is None or (isinstance(raw, str) and raw.strip() == ""):
        return None
    parsed = event_log().parse_id(raw.strip()) if isinstance(raw, str) else None
    if parsed is not None:
        return parsed
    if isinstance(raw, str) and ANY_EVENT_ID.fullmatch(raw.strip()):
        return FOREIGN_ID
    raise InvalidParameter("Last-Event-ID is not an event id.")


# -- the feed --------------------------------------------------------------------------------------


class Feed:
    """One subscriber's place in the log: joined to the hub on creation, left on :meth:`close`."""

    def __init__(
        self,
        streams: Streams,
        subscription: Subscription,
        after: str | None,
        cut: Callable[[], None] | None = None,
    ) -> None:
        """Join the hub and find where to start; a log that cannot be read is a 503 here, not later.

        ``cut`` ends the client's connection (:func:`socket_cut`): see :meth:`_fell_behind`.
        """
        self.streams, self.subscription, self.log, self.cut = streams, subscription, event_log(), cut
        self.closed = False
        tenant = subscription.tenant
        try:
            self.mailbox, hub_cursor = streams.hub.join(tenant)
        except Exception as exc:  # sqlite3.Error, redis errors
            log.error("event log unreadable: %r", exc)
            raise EventsUnavailable() from None
        self.mailbox.on_overflow = self._fell_behind
        self.cursor, self.resync, self.replay, self.stopped = hub_cursor, False, False, False
        try:
            if after == FOREIGN_ID or (after is not None and self.log.is_gone(tenant, after)):
                self.resync = True
            elif after is not None:
                self.cursor, self.replay = after, True
        except Exception as exc:
            self.close()
            log.error("event log unreadable: %r", exc)
            raise EventsUnavailable() from None

    def close(self) -> None:
        """Stop receiving (idempotent)."""
        self.closed = True
        self.streams.hub.leave(self.mailbox)

    def _fell_behind(self) -> None:
        """The mailbox overflowed: the feed ends with ``too_slow`` when it reads on. A client that
        stopped reading its socket leaves the feed blocked in a write, where it never would: unless
        the feed is closed within a heartbeat, its connection is cut (the slot and buffers freed)."""
        self.streams.later(self.streams.heartbeat, self._cut_unless_closed)

    def _cut_unless_closed(self) -> None:
        if not self.closed and self.cut is not None:
            self.cut()

    def stop(self) -> None:
        """End :meth:`items` from another thread (a WebSocket unsubscribe): it wakes and returns."""
        self.stopped = True
        self.close()
        with contextlib.suppress(queue.Full):
            self.mailbox.queue.put_nowait(STOP)

    def items(self) -> Iterator[Item]:
        """A resync if asked, the replay, then live events, heartbeats and at last an End."""
        try:
            if self.resync:
                yield Resync(self.cursor, self.subscription.collections)
            if self.replay:
                yield from self._replayed()
            yield from self._live()
        except Exception as exc:  # sqlite3.Error, redis errors: the client replays from its last id
            log.warning("event feed ends: the event log cannot be read (%r)", exc)
            yield End("log_unreadable")
        finally:
            self.close()

    def _replayed(self) -> Iterator[LoggedEvent]:
        """Every wanted event after the cursor, read from the log a batch at a time.

        Between batches the other streams run (gevent: SQLite and JSON never yield, and a replay
        that matches nothing would read the whole log in one go); a stopped feed reads no further.
        """
        while not self.stopped:
            batch = self.log.read_after(self.subscription.tenant, self.cursor, BATCH)
            for event in batch:
                self.cursor = event.id
                if self.subscription.wants(event) and not self.stopped:
                    yield event
            if len(batch) < BATCH:
                return
            self.streams.hub.sleep(0)

    def _live(self) -> Iterator[Item]:
        """What the hub delivers after the cursor, a heartbeat when quiet, an End when it must stop."""
        streams, expires_at = self.streams, self.subscription.expires_at
        quiet_since = streams.clock()
        position = self.log.position
        while not self.stopped:
            timeout = quiet_since + streams.heartbeat - streams.clock()
            if expires_at:
                timeout = min(timeout, expires_at - streams.now())
            delivery = streams.wait(self.mailbox, timeout) if timeout > 0 else None
            if self.stopped:
                return
            if expires_at and streams.now() >= expires_at:
                yield End("token_expired")
                return
            if delivery == OVERFLOW:
                yield End("too_slow")
                return
            if isinstance(delivery, Rewind):
                self.cursor = delivery.head
                quiet_since = streams.clock()
                yield Resync(self.cursor, self.subscription.collections)
            elif isinstance(delivery, list):
                for event in delivery:
                    if position(event.id) <= position(self.cursor):
                        continue  # the replay already read it
                    self.cursor = event.id
                    if self.subscription.wants(event):
                        quiet_since = streams.clock()
                        yield event
            if streams.clock() - quiet_since >= streams.heartbeat:
                quiet_since = streams.clock()
                yield HEARTBEAT


def open_feed(
    subscription: Subscription, after: str | None, cut: Callable[[], None] | None = None
) -> tuple[Feed, Streams]:
    """A slot and a feed for ``subscription``: 503 with ``Retry-After`` when the worker is full."""
    streams = current_streams()
    if not streams.admit():
        raise TooManySubscribers(headers={"Retry-After": str(BUSY_RETRY_AFTER)})
    try:
        feed = Feed(streams, subscription, after, cut)
    except BaseException:
        streams.release()
        raise
    release_store_connection()
    return feed, streams


def configure(config: dict[str, Any], max_subscribers: int = 2) -> None:
    """Validate the heartbeat and the per-worker subscriber limit (its default: the app's kind's)."""
    config.setdefault("EVENTS_HEARTBEAT", 15)
    config.setdefault("EVENTS_MAX_SUBSCRIBERS", max_subscribers)
    config["EVENTS_HEARTBEAT"] = as_number(config, "EVENTS_HEARTBEAT", float, minimum=1)
    config["EVENTS_MAX_SUBSCRIBERS"] = as_number(config, "EVENTS_MAX_SUBSCRIBERS", int, minimum=0)


def init_app(app: Flask) -> None:
    """This worker's hub and streams (settings: :func:`configure`)."""
    hub = Hub(app.extensions["bffproxy.event_log"])
    app.extensions["bffproxy.event_hub"] = hub
    app.extensions["bffproxy.event_streams"] = Streams(
        hub, app.config["EVENTS_MAX_SUBSCRIBERS"], app.config["EVENTS_HEARTBEAT"]
    )
