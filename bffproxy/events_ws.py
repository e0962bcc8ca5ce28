"""``GET /api/events/ws``: the same content events as WebSocket frames (flask-sock).

The upgrade itself is checked like any request: the caller is the ``Authorization: Bearer`` token
or a ``?ticket=`` (event_tickets.py; browsers' ``WebSocket`` cannot send headers either), a bad one
is a 401 JSON answer and no connection; a full worker is a 503 with ``Retry-After``. A plain GET
(no upgrade) is a 400.

On the open connection the client sends JSON text frames:

* ``{"subscribe": {"collections": [...], "documentId": ..., "drafts": true, "lastEventId": ...}}``
  -- the filters of event_feed.py (all optional); answered ``{"type": "subscribed", ...}`` and then
  every event as its wire JSON (events.py: ``{"id", "type", "collection", ...}``), a
  ``{"type": "resync", ...}`` when history is gone, and ``{"type": "end", "reason": ...}`` before
  the server closes (token expired, too slow). A new ``subscribe`` replaces the previous one;
* ``{"unsubscribe": {}}`` -- stop receiving events (answered ``{"type": "unsubscribed"}``);
* ``{"ping": <anything>}`` -- answered ``{"type": "pong", "ping": <it>}``.

Anything else is answered ``{"type": "error", "error": <the JSON error envelope's body>}`` and the
connection stays open. The server also sends WebSocket ping frames every heartbeat.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from typing import Any, SupportsIndex

from flask import Blueprint, Flask, Response, g, request
from flask_sock import Sock
from simple_websocket import ConnectionClosed, Server

from .errors import ApiError, envelope
from .event_feed import (
    BUSY_RETRY_AFTER,
    End,
    Feed,
    InvalidParameter,
    Resync,
    Streams,
    TooManySubscribers,
    caller,
    check_names,
    current_streams,
    parse_last_event_id,
    release_store_connection,
    socket_cut,
    subscription_of,
)
from .event_log import LoggedEvent
from .events import wire_json

log = logging.getLogger(__name__)

bp = Blueprint("events_ws", __name__)
plain = Blueprint("events_ws_plain", __name__)  # the same path without an upgrade
sock = Sock()
MAX_MESSAGE = 4096  # bytes a client frame may have: a subscribe message is far smaller
SERVER_SOCKETS = ("gunicorn.socket", "werkzeug.socket")
INBOX_MESSAGES = 16  # client messages read ahead of the session; then the client waits (TCP)


class UpgradeRequired(ApiError):
    status, code = 426, "upgrade_required"
    message = "This is a WebSocket endpoint: connect with 'Upgrade: websocket'."


@plain.get("/api/events/ws", websocket=False)
def not_upgraded() -> Response:
    """A plain GET: 426 (no ``Upgrade`` header: WSGI servers refuse hop-by-hop headers)."""
    raise UpgradeRequired()


@bp.before_request
def admit() -> None:
    """Check the caller and take a slot before the handshake: refusals are JSON answers."""
    check_names(request.args, frozenset({"ticket"}))
    g.events_identity = caller(request.args.get("ticket"))
    streams = current_streams()
    if not streams.admit():
        raise TooManySubscribers(headers={"Retry-After": str(BUSY_RETRY_AFTER)})
    g.events_slot = streams
    release_store_connection()  # the caller is known: the socket's greenlet keeps no connection
    for key in SERVER_SOCKETS:  # where simple-websocket finds the connection's socket
        if key in request.environ:
            request.environ[key] = WholeWrites(request.environ[key])


class WholeWrites:
    """The connection's socket as simple-websocket writes to it: each ``send`` writes all of it,
    one writer at a time.

    simple-websocket sends a frame with one ``sock.send`` and ignores the count. Under gevent a
    socket whose buffers are nearly full takes part of the frame and the rest was lost: a slow
    client read garbage from then on. Its ping thread writes too, so writes are serialised.
    """

    def __init__(self, sock: Any) -> None:
        self._sock = sock
        self._lock = threading.Lock()

    def send(self, data: bytes) -> int:
        """Write all of ``data``."""
        with self._lock:
            self._sock.sendall(data)
        return len(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


class Inbox(list[Any]):
    """simple-websocket's queue of received messages, bounded: its reader waits while it is full.

    The session answers each message; blocked on an answer the client does not read, it takes no
    more, and an unbounded queue kept every message the client went on sending (one client that
    sends pings and never reads grew a worker by 800 MB in 15 s). Full, the reader stops reading
    the socket and TCP makes the client wait.
    """

    def __init__(self) -> None:
        super().__init__()
        self._room = threading.Condition()
        self.closed = False

    def append(self, message: Any) -> None:
        """Queue ``message`` once there is room (or the session is over)."""
        with self._room:
            while len(self) >= INBOX_MESSAGES and not self.closed:
                self._room.wait()
            super().append(message)

    def pop(self, index: SupportsIndex = -1) -> Any:
        """Take a message and make room."""
        with self._room:
            message = super().pop(index)
            self._room.notify()
            return message

    def close(self) -> None:
        """The session is over: a waiting reader goes on (and ends, as the connection is closed)."""
        with self._room:
            self.closed = True
            self._room.notify_all()


class ReaderThread(threading.Thread):
    """simple-websocket's reader of one connection (its ``thread_class``), with an :class:`Inbox`.

    Set before the thread starts, so no message can have gone to the unbounded list.
    """

    def __init__(self, target: Callable[[], None]) -> None:
        target.__self__.input_buffer = Inbox()  # type: ignore[attr-defined]  # the Server's method
        super().__init__(target=target, daemon=True)


@bp.teardown_request
def release(_exc: BaseException | None) -> None:
    """Give the slot back when the connection is over."""
    streams: Streams | None = g.pop("events_slot", None)
    if streams is not None:
        streams.release()


@sock.route("/api/events/ws", bp=bp)  # type: ignore[untyped-decorator]  # flask-sock has no types
def connection(ws: Server) -> None:
    """Serve one WebSocket connection: subscribe, unsubscribe and ping messages, events out."""
    Session(ws).serve()


class Session:
    """One connection: at most one subscription at a time, pumped by its own thread (greenlet)."""

    def __init__(self, ws: Server) -> None:
        self.ws = ws
        self.identity = g.events_identity
        self._send_lock = threading.Lock()
        self._feed: Feed | None = None
        self._pump: threading.Thread | None = None

    def serve(self) -> None:
        """Answer the client's messages until it goes away or the feed ends the connection."""
        try:
            while self.ws.connected:
                text = self.ws.receive(timeout=None)
                if text is None:
                    break
                self.handle(text)
        except OSError:  # the client went away while it was answered: the session is over
            pass
        finally:
            self.stop()
            if isinstance(self.ws.input_buffer, Inbox):
                self.ws.input_buffer.close()

    def handle(self, text: Any) -> None:
        """One client message."""
        try:
            message = parse(text)
            if "subscribe" in message:
                self.subscribe(message["subscribe"])
            elif "unsubscribe" in message:
                self.stop()
                self.send({"type": "unsubscribed"})
            else:
                self.send({"type": "pong", "ping": message["ping"]})
        except ApiError as exc:
            body = envelope(exc.status, exc.code, exc.message, exc.details)["error"]
            self.send({"type": "error", "error": body})

    def subscribe(self, filters: Any) -> None:
        """Replace the subscription: checks first, then a feed pumped to the client."""
        if not isinstance(filters, dict):
            raise InvalidParameter("subscribe takes an object of filters.")
        after = parse_last_event_id(filters.get("lastEventId"))
        subscription = subscription_of(filters, self.identity)
        self.stop()
        streams = current_streams()
        # This connection's slot was taken on upgrade; a client that stops reading is cut off.
        feed = Feed(streams, subscription, after, socket_cut(self.ws.sock))
        self._feed = feed
        self.send({"type": "subscribed", "collections": list(subscription.collections), "after": feed.cursor})
        self._pump = threading.Thread(target=self.pump, args=(feed,), name="events-ws", daemon=True)
        self._pump.start()

    def pump(self, feed: Feed) -> None:
        """Send the feed's items until it ends, is stopped, or the client is gone."""
        try:
            for item in feed.items():
                if feed is not self._feed:
                    return
                if isinstance(item, LoggedEvent):
                    self.send_text(wire_json(item))
                elif isinstance(item, Resync):
                    self.send(
                        {
                            "type": "resync",
                            "id": item.cursor,
                            "collections": list(item.collections),
                            "reason": "history_gone",
                        }
                    )
                elif isinstance(item, End):
                    self.send({"type": "end", "reason": item.reason})
                    self.ws.close(reason=1000, message=item.reason)
                    return
        except ConnectionClosed:
            return
        except Exception as exc:  # a log that fails mid-replay: the client resubscribes with its id
            log.warning("event socket ends: %r", exc)
            self.ws.close(reason=1011, message="event log unreadable")

    def stop(self) -> None:
        """End the current subscription, if any."""
        feed, self._feed = self._feed, None
        if feed is not None:
            feed.stop()

    def send(self, frame: dict[str, Any]) -> None:
        """Send one JSON frame."""
        self.send_text(json.dumps(frame, separators=(",", ":")))

    def send_text(self, text: str) -> None:
        """Send one text frame; the pump and the message loop never interleave."""
        with self._send_lock:
            self.ws.send(text)


def parse(text: Any) -> dict[str, Any]:
    """A client message: one JSON object with exactly one known key; 400 envelope otherwise."""
    if not isinstance(text, str) or len(text) > MAX_MESSAGE:
        raise InvalidParameter(f"Messages are JSON text of at most {MAX_MESSAGE} bytes.")
    try:
        message = json.loads(text)
    except ValueError:
        raise InvalidParameter("Messages are JSON objects.") from None
    if (
        not isinstance(message, dict)
        or len(message) != 1
        or not {"subscribe", "unsubscribe", "ping"} & set(message)
    ):
        raise InvalidParameter('Send {"subscribe": {...}}, {"unsubscribe": {}} or {"ping": ...}.')
    return message


def init_app(app: Flask) -> None:
    """Register the route; simple-websocket pings every heartbeat and caps a frame's size."""
    # flask-sock's options for simple-websocket (not an operator setting: derived from the heartbeat).
    app.config["SOCK_SERVER_OPTIONS"] = {
        "ping_interval": app.config["EVENTS_HEARTBEAT"],
        "max_message_size": MAX_MESSAGE,
        "thread_class": ReaderThread,
    }
    app.register_blueprint(bp)
    app.register_blueprint(plain)
