"""``GET /api/events``: content events as Server-Sent Events, replayable with ``Last-Event-ID``.

Each event is ``id:``, ``event:`` (its type) and one ``data:`` JSON line (events.py's wire shape);
the stream opens with ``retry:`` and sends a ``: heartbeat`` comment after ``BFFPROXY_EVENTS_HEARTBEAT``
quiet seconds. Query (allow-listed; anything else is 400 before the stream opens):

* ``collections=articles,categories`` -- only these (each must be exposed and readable by the
  caller: 400 unknown, 401/403 as for a read); default: every collection the caller may read;
* ``documentId=<id>`` -- only that document;
* ``drafts=true`` -- draft events too; needs the ``drafts`` policy of each collection (a
  ``Authorization: Bearer`` Strapi JWT, validated as for any request);
* ``lastEventId=<id>`` or the ``Last-Event-ID`` header (what ``EventSource`` sends on reconnect;
  the header wins) -- every event after it, then live. The stream's cursor is the last id it read
  from the log, so there is no gap and no duplicate at the seam. An id the log no longer covers
  (pruned, or another log's) gets one ``resync`` event naming the collections to refetch, then live.

Live delivery: each stream polls the log (``WHERE id > ?`` on SQLite, XRANGE on Redis) every
:data:`POLL_INTERVAL` seconds and reads at most :data:`BATCH` events at a time, so a subscriber
holds at most one batch in memory however far behind it is; one that falls behind the log's
retention gets a ``resync``. A client that goes away is noticed at the next write (an event or the
heartbeat): gunicorn closes the generator and the subscriber's slot is freed.

Under gunicorn's gthread workers each open stream holds one of the worker's threads, so at most
``BFFPROXY_EVENTS_MAX_SUBSCRIBERS`` streams are held per worker (503 with ``Retry-After`` past it);
keep it below ``GUNICORN_THREADS`` so ordinary requests always find a thread.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from flask import Blueprint, Flask, Response, current_app, request

from . import policies
from .auth import check_policy, current_identity
from .errors import BadRequest, Forbidden, ServiceUnavailable, Unauthorized
from .event_log import EventLog, LoggedEvent, event_log
from .events import visible, wire_json
from .reads import is_document_id
from .settings import as_number
from .tenants import current_tenant

log = logging.getLogger(__name__)

bp = Blueprint("events", __name__)

QUERY_PARAMS = frozenset({"collections", "documentId", "drafts", "lastEventId"})
POLL_INTERVAL = 0.5  # seconds between two reads of the log by an idle stream
BATCH = 100  # events read from the log at a time: the most a subscriber ever holds
RETRY_MS = 2000  # what EventSource waits before reconnecting
BUSY_RETRY_AFTER = 5


class InvalidParameter(BadRequest):
    code = "invalid_parameter"


class UnknownCollection(BadRequest):
    code = "unknown_collection"


class EventsUnavailable(ServiceUnavailable):
    code, message = "events_unavailable", "The event log cannot be read right now."


class TooManySubscribers(ServiceUnavailable):
    code = "too_many_subscribers"
    message = "This worker holds as many event streams as it may; retry shortly."


@dataclass
class Streams:
    """One worker's streams: how many are open, and the clock and sleep they use (fakes in tests)."""

    max_subscribers: int
    heartbeat: float
    poll_interval: float = POLL_INTERVAL
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    open: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def admit(self) -> bool:
        """Take a slot; False when every slot is taken."""
        with self._lock:
            if self.open >= self.max_subscribers:
                return False
            self.open += 1
            return True

    def release(self) -> None:
        """Give a slot back (the response was closed)."""
        with self._lock:
            self.open -= 1


@dataclass(frozen=True)
class Subscription:
    """What one subscriber asked for and may see."""

    tenant: str
    collections: tuple[str, ...]
    document_id: str | None
    drafts: bool

    def wants(self, event: LoggedEvent) -> bool:
        """True when ``event`` passes the filters and the subscriber may see it."""
        fields = event.fields
        if fields.get("collection") not in self.collections:
            return False
        if self.document_id is not None and fields.get("documentId") != self.document_id:
            return False
        return visible(event, drafts=self.drafts)


@bp.get("/api/events")
def subscribe() -> Response:
    """Open an event stream (every check first: a refused stream is a JSON error, never a stream)."""
    subscription = subscription_from_request()
    log_ = event_log()
    cursor, resync = starting_point(log_, subscription.tenant, last_event_id(log_))
    streams = current_streams()
    if not streams.admit():
        raise TooManySubscribers(headers={"Retry-After": str(BUSY_RETRY_AFTER)})
    response = Response(stream(log_, subscription, cursor, resync, streams), mimetype="text/event-stream")
    response.call_on_close(streams.release)  # also when the generator never started
    response.headers["Cache-Control"] = "no-cache"
    response.headers["X-Accel-Buffering"] = "no"  # nginx: pass each event on at once
    return response


def subscription_from_request() -> Subscription:
    """The request's filters, checked against the tenant's collections and the caller's policies."""
    unknown = sorted(set(request.args) - QUERY_PARAMS)
    if unknown:
        raise InvalidParameter(f"Unknown parameter(s) {unknown}.", details={"allowed": sorted(QUERY_PARAMS)})
    drafts = flag(request.args.get("drafts", "false"))
    document_id = request.args.get("documentId")
    if document_id is not None and not is_document_id(document_id):
        raise InvalidParameter("documentId must be 1-64 letters, digits, '-' or '_'.")
    action = "drafts" if drafts else "read"
    named = request.args.get("collections")
    collections = named_collections(named, action) if named is not None else readable_collections(action)
    return Subscription(current_tenant().name, collections, document_id, drafts)


def flag(text: str) -> bool:
    """``true``/``false``, as Strapi's boolean query values; 400 otherwise."""
    if text not in ("true", "false"):
        raise InvalidParameter("drafts must be true or false.")
    return text == "true"


def named_collections(text: str, action: str) -> tuple[str, ...]:
    """The comma-separated collections: 400 for an unknown one, 401/403 for one the caller may not see."""
    names = tuple(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))
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


def last_event_id(log_: EventLog) -> str | None:
    """The id to replay after: the ``Last-Event-ID`` header, else ``?lastEventId``; 400 if malformed."""
    raw = request.headers.get("Last-Event-ID")
    if raw is None:
        raw = request.args.get("lastEventId")
    if raw is None or raw.strip() == "":
        return None
    parsed = log_.parse_id(raw.strip())
    if parsed is None:
        raise InvalidParameter("Last-Event-ID is not an id this server handed out.")
    return parsed


def starting_point(log_: EventLog, tenant: str, after: str | None) -> tuple[str, bool]:
    """Where the stream starts reading, and whether it must first tell the client to resync."""
    try:
        if after is None:
            return log_.head(tenant), False
        if log_.is_gone(tenant, after):
            return log_.head(tenant), True
        return after, False
    except Exception as exc:  # sqlite3.Error, redis errors
        log.error("event log unreadable: %r", exc)
        raise EventsUnavailable() from None


def stream(
    log_: EventLog, subscription: Subscription, cursor: str, resync: bool, streams: Streams
) -> Iterator[str]:
    """The SSE body: retry, a resync if asked, then every wanted event after ``cursor``, forever."""
    yield f"retry: {RETRY_MS}\n\n"
    if resync:
        yield resync_message(cursor, subscription)
    quiet_since = streams.clock()
    while True:
        try:
            batch = log_.read_after(subscription.tenant, cursor, BATCH)
            gone = not batch and log_.is_gone(subscription.tenant, cursor)
        except Exception as exc:  # the client reconnects with its Last-Event-ID and replays
            log.warning("event stream ends: the event log cannot be read (%r)", exc)
            return
        if gone:  # fell behind retention (or the log was recreated): say so, go on from its head
            cursor = log_.head(subscription.tenant)
            yield resync_message(cursor, subscription)
        for event in batch:
            cursor = event.id
            if subscription.wants(event):
                quiet_since = streams.clock()
                yield event_message(event)
        if streams.clock() - quiet_since >= streams.heartbeat:
            quiet_since = streams.clock()
            yield ": heartbeat\n\n"  # also how a client that went away is noticed
        if len(batch) < BATCH:
            streams.sleep(streams.poll_interval)


def event_message(event: LoggedEvent) -> str:
    """One SSE message for ``event``."""
    return f"id: {event.id}\nevent: {event.fields['type']}\ndata: {wire_json(event)}\n\n"


def resync_message(cursor: str, subscription: Subscription) -> str:
    """The SSE message that says: history is gone, refetch these collections."""
    data = json.dumps({"collections": list(subscription.collections), "reason": "history_gone"})
    return f"id: {cursor}\nevent: resync\ndata: {data}\n\n"


def current_streams() -> Streams:
    """This worker's streams."""
    streams: Streams = current_app.extensions["bffproxy.event_streams"]
    return streams


def configure(config: dict[str, object]) -> None:
    """Validate the heartbeat and the per-worker subscriber limit."""
    config.setdefault("EVENTS_HEARTBEAT", 15)
    config.setdefault("EVENTS_MAX_SUBSCRIBERS", 2)
    config["EVENTS_HEARTBEAT"] = as_number(config, "EVENTS_HEARTBEAT", float, minimum=1)
    config["EVENTS_MAX_SUBSCRIBERS"] = as_number(config, "EVENTS_MAX_SUBSCRIBERS", int, minimum=0)


def init_app(app: Flask) -> None:
    """Set up this worker's streams and the route (settings: :func:`configure`)."""
    app.extensions["bffproxy.event_streams"] = Streams(
        app.config["EVENTS_MAX_SUBSCRIBERS"], app.config["EVENTS_HEARTBEAT"]
    )
    app.register_blueprint(bp)
