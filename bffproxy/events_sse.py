"""``GET /api/events``: content events as Server-Sent Events, replayable with ``Last-Event-ID``.

Each event is ``id:``, ``event:`` (its type) and one ``data:`` JSON line (events.py's wire shape);
the stream opens with ``retry:``, sends a ``: heartbeat`` comment after quiet seconds, and a last
``event: end`` (``data: {"reason": ...}``) when it must stop (the token expired, the subscriber fell
too far behind). Query: event_feed.py's filters, plus ``ticket=`` for browsers (event_tickets.py).
Every check comes first: a refused stream is a JSON error, never a stream.

Where it runs: the events app (``wsgi:events_app`` under gunicorn's gevent worker, behind the same
nginx: deploy/) holds thousands of streams per worker. The API app serves the route too, for a few
subscribers without that deployment: each open stream holds one of its gthread threads, so it
keeps ``BFFPROXY_EVENTS_MAX_SUBSCRIBERS`` (default 2 there) below ``GUNICORN_THREADS``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

from flask import Blueprint, Flask, Response, request

from .event_feed import (
    FILTERS,
    HEARTBEAT,
    End,
    Feed,
    InvalidParameter,
    Item,
    Resync,
    caller,
    check_names,
    open_feed,
    parse_last_event_id,
    socket_cut,
    subscription_of,
)
from .event_log import LoggedEvent
from .events import wire_json

bp = Blueprint("events", __name__)

RETRY_MS = 2000  # what EventSource waits before reconnecting


@bp.get("/api/events")
def subscribe() -> Response:
    """Open an event stream."""
    args = request.args.to_dict()
    if len(args) != sum(len(values) for values in request.args.listvalues()):
        raise InvalidParameter("Each parameter may be given once.")
    check_names(args, FILTERS | {"ticket"})  # before a ticket is spent on a bad request
    header = request.headers.get("Last-Event-ID")
    after = parse_last_event_id(header if header is not None else args.get("lastEventId"))
    identity = caller(args.pop("ticket", None))
    subscription = subscription_of(args, identity)
    # The connection's socket (gunicorn's or Werkzeug's), cut if the client stops reading it.
    sock = request.environ.get("gunicorn.socket") or request.environ.get("werkzeug.socket")
    feed, streams = open_feed(subscription, after, socket_cut(sock))
    response = Response(body(feed), mimetype="text/event-stream")
    response.call_on_close(feed.close)
    response.call_on_close(streams.release)  # also when the generator never started
    response.headers["Cache-Control"] = "no-cache"
    response.headers["X-Accel-Buffering"] = "no"  # nginx: pass each event on at once
    return response


def body(feed: Feed) -> Iterator[str]:
    """The SSE text of ``feed``."""
    yield f"retry: {RETRY_MS}\n\n"
    for item in feed.items():
        yield message(item)


def message(item: Item) -> str:
    """One SSE message."""
    if isinstance(item, LoggedEvent):
        return f"id: {item.id}\nevent: {item.fields['type']}\ndata: {wire_json(item)}\n\n"
    if isinstance(item, Resync):
        data = json.dumps({"collections": list(item.collections), "reason": "history_gone"})
        return f"id: {item.cursor}\nevent: resync\ndata: {data}\n\n"
    if isinstance(item, End):
        return f"event: end\ndata: {json.dumps({'reason': item.reason})}\n\n"
    assert item == HEARTBEAT
    return ": heartbeat\n\n"


def init_app(app: Flask) -> None:
    """Register the route (the feed's hub and slots: event_feed.init_app)."""
    app.register_blueprint(bp)
