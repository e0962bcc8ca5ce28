"""The event log: content events in the order they were committed, durable, replayable per tenant.

Embedded default: one SQLite file (``BFFPROXY_EVENTS_DB``, default ``CACHE_DIR/events.sqlite3``) in
WAL mode, shared by every worker of the machine: readers never wait for the writer, and an append
is one short ``BEGIN IMMEDIATE`` transaction, so ids (``AUTOINCREMENT``: never reused, even after
pruning) are assigned in commit order and a reader polling ``WHERE id > ?`` can never see id N+1
before id N. That is what makes replay-then-live gapless: the stream's cursor is the last id it
read, whatever the source.

With ``BFFPROXY_REDIS_URL`` the log is a Redis Stream per tenant (``XADD ... MAXLEN ~``), so an
event appended by instance A is read by subscribers of instance B; Redis assigns the ids.

Retention: at most ``BFFPROXY_EVENTS_MAX_COUNT`` events per tenant, none older than
``BFFPROXY_EVENTS_MAX_AGE`` seconds, enforced on every append. A reader whose last id is no longer
covered (pruned, or from a log that was since recreated) is told so by :meth:`is_gone`, and the
stream sends a ``resync`` instead of a silent gap.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from flask import Flask, current_app

from .settings import ConfigError, as_number, as_str, env_name

# How long an append or a read waits for SQLite's lock before it raises. An append takes about a
# millisecond; five seconds means something is wrong, not busy.
BUSY_TIMEOUT = 5.0
_SQLITE_ID = re.compile(r"[0-9]{1,18}")
_STREAM_ID = re.compile(r"[0-9]{1,18}-[0-9]{1,18}")

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant TEXT NOT NULL,
    at REAL NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_tenant ON events (tenant, id);
CREATE TABLE IF NOT EXISTS pruned (tenant TEXT PRIMARY KEY, through INTEGER NOT NULL);
"""


@dataclass(frozen=True)
class LoggedEvent:
    """One event as the log holds it: its id and its JSON-ready fields (``audience`` included)."""

    id: str
    fields: dict[str, Any]
    # Its wire text, made once (events.wire_json): one batch goes to every subscriber of a worker.
    rendered: dict[str, str] = field(default_factory=dict, compare=False, repr=False)


class EventLog(Protocol):
    """What the stream and the emitters need of a log."""

    def append(self, tenant: str, fields: dict[str, Any]) -> str:
        """Append one event; its id."""

    def read_after(self, tenant: str, after: str, limit: int) -> list[LoggedEvent]:
        """Up to ``limit`` events of ``tenant`` after id ``after``, oldest first."""

    def head(self, tenant: str) -> str:
        """The id a new subscriber starts after (every later event is new to it)."""

    def is_gone(self, tenant: str, after: str) -> bool:
        """True when events after ``after`` may have been pruned (or ``after`` is from another log)."""

    def parse_id(self, text: str) -> str | None:
        """``text`` as an id of this log, or None when it cannot be one."""

    def position(self, event_id: str) -> tuple[int, int]:
        """A sort key: ids compare in the order the log handed them out."""


class SqliteEventLog:
    """The embedded log: one SQLite file in WAL mode, a connection per thread and per process."""

    def __init__(
        self, path: str, *, max_count: int, max_age: float, clock: Callable[[], float] = time.time
    ) -> None:
        self.path = path
        self.max_count = max_count
        self.max_age = max_age
        self.clock = clock
        self._idle: list[sqlite3.Connection] = []
        self._pid = os.getpid()
        self._pool_lock = threading.Lock()
        with self._connection() as db:
            db.executescript(SCHEMA)

    @contextlib.contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        """A connection of this process for one operation.

        A small pool, not one per thread: under gunicorn's gevent worker ``threading.local`` is per
        greenlet, and thousands of subscribers would each open their own. A connection opened before
        a fork is never used after it.
        """
        with self._pool_lock:
            if self._pid != os.getpid():
                self._idle, self._pid = [], os.getpid()
            db = self._idle.pop() if self._idle else None
        if db is None:
            db = sqlite3.connect(
                self.path, timeout=BUSY_TIMEOUT, isolation_level=None, check_same_thread=False
            )
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable across a process crash
        try:
            yield db
        finally:
            with self._pool_lock:
                if self._pid == os.getpid():
                    self._idle.append(db)

    def append(self, tenant: str, fields: dict[str, Any]) -> str:
        """Append one event and prune the tenant's expired ones, in one transaction; its id."""
        now = self.clock()
        with self._connection() as db:
            db.execute("BEGIN IMMEDIATE")  # one writer at a time: ids are handed out in commit order
            try:
                cursor = db.execute(
                    "INSERT INTO events (tenant, at, body) VALUES (?, ?, ?)",
                    (tenant, now, json.dumps(fields)),
                )
                event_id = int(cursor.lastrowid or 0)
                self._prune(db, tenant, now)
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        return str(event_id)

    def _prune(self, db: sqlite3.Connection, tenant: str, now: float) -> None:
        """Delete the tenant's events past the count or older than the age; remember the last one."""
        row = db.execute(
            "SELECT id FROM events WHERE tenant = ? ORDER BY id DESC LIMIT 1 OFFSET ?",
            (tenant, self.max_count),
        ).fetchone()
        by_count = row[0] if row else 0
        (through,) = db.execute(
            "SELECT MAX(id) FROM events WHERE tenant = ? AND (id <= ? OR at < ?)",
            (tenant, by_count, now - self.max_age),
        ).fetchone()
        if through is None:
            return
        db.execute("DELETE FROM events WHERE tenant = ? AND id <= ?", (tenant, through))
        db.execute(
            "INSERT INTO pruned (tenant, through) VALUES (?, ?) "
            "ON CONFLICT (tenant) DO UPDATE SET through = MAX(through, excluded.through)",
            (tenant, through),
        )

    def read_after(self, tenant: str, after: str, limit: int) -> list[LoggedEvent]:
        """Up to ``limit`` events of ``tenant`` after id ``after``, oldest first."""
        with self._connection() as db:
            rows = db.execute(
                "SELECT id, body FROM events WHERE tenant = ? AND id > ? ORDER BY id LIMIT ?",
                (tenant, int(after), limit),
            ).fetchall()
        return [LoggedEvent(str(event_id), json.loads(body)) for event_id, body in rows]

    def head(self, tenant: str) -> str:
        """The last id handed out (to any tenant: ids are one sequence), or 0."""
        with self._connection() as db:
            row = db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'events'").fetchone()
        return str(row[0] if row else 0)

    def is_gone(self, tenant: str, after: str) -> bool:
        """True when an event after ``after`` was pruned, or ``after`` was never handed out here."""
        with self._connection() as db:
            row = db.execute("SELECT through FROM pruned WHERE tenant = ?", (tenant,)).fetchone()
        pruned_through = row[0] if row else 0
        return int(after) < pruned_through or int(after) > int(self.head(tenant))

    def parse_id(self, text: str) -> str | None:
        """Decimal digits, as this log hands them out."""
        return str(int(text)) if _SQLITE_ID.fullmatch(text) else None

    def position(self, event_id: str) -> tuple[int, int]:
        """The row id."""
        return int(event_id), 0


class RedisEventLog:
    """A Redis Stream per tenant: every instance on the Redis appends to and reads the same log."""

    def __init__(
        self,
        client: Any,
        prefix: str,
        *,
        max_count: int,
        max_age: float,
    ) -> None:
        self.client = client
        self.prefix = prefix
        self.max_count = max_count
        self.max_age = max_age

    def _key(self, tenant: str) -> str:
        return f"{self.prefix}events:{tenant}"

    def append(self, tenant: str, fields: dict[str, Any]) -> str:
        """XADD with an approximate MAXLEN, then trim by age (MINID); the id Redis gave.

        Age is measured back from the new id, which Redis stamped with its own clock: this host's
        clock (stepped, or another instance's, out of sync) could otherwise make the new event old.
        """
        key = self._key(tenant)
        event_id = _text(
            self.client.xadd(key, {"body": json.dumps(fields)}, maxlen=self.max_count, approximate=True)
        )
        oldest_ms = _stream_id(event_id)[0] - int(self.max_age * 1000)
        self.client.xtrim(key, minid=f"{max(oldest_ms, 0)}-0", approximate=True)
        return event_id

    def read_after(self, tenant: str, after: str, limit: int) -> list[LoggedEvent]:
        """XRANGE from just after ``after`` (exclusive), oldest first."""
        rows = self.client.xrange(self._key(tenant), min=f"({after}", max="+", count=limit)
        return [LoggedEvent(_text(event_id), json.loads(_text(data[b"body"]))) for event_id, data in rows]

    def head(self, tenant: str) -> str:
        """The last id the stream handed out (even if trimmed since), or 0-0 before the first."""
        info = self._info(tenant)
        return _text(info["last-generated-id"]) if info else "0-0"

    def is_gone(self, tenant: str, after: str) -> bool:
        """True when ``after`` was never handed out here, or entries after it may have been trimmed.

        Redis (>= 7) counts the entries ever added: when that is the length, nothing was trimmed and
        no cursor is gone, however old (a subscriber that joined an empty stream holds 0-0).
        """
        info = self._info(tenant)
        wanted = _stream_id(after)
        if info is None:
            return wanted > (0, 0)
        last = _stream_id(_text(info["last-generated-id"]))
        if wanted >= last:
            return wanted > last
        added = info.get("entries-added")
        if added is not None and int(added) == int(info["length"]):
            return False
        first = info.get("first-entry")
        return first is None or wanted < _stream_id(_text(first[0]))

    def _info(self, tenant: str) -> dict[str, Any] | None:
        """XINFO STREAM, or None when the stream does not exist (yet)."""
        try:
            info: dict[str, Any] = self.client.xinfo_stream(self._key(tenant))
        except Exception as exc:  # redis.ResponseError; any other (a connection error) is the caller's
            if "no such key" in str(exc).lower():
                return None
            raise
        return info

    def parse_id(self, text: str) -> str | None:
        """A stream id such as ``1732390187408-0``."""
        return text if _STREAM_ID.fullmatch(text) else None

    def position(self, event_id: str) -> tuple[int, int]:
        """Milliseconds and sequence number."""
        return _stream_id(event_id)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _stream_id(text: str) -> tuple[int, int]:
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


def event_log() -> EventLog:
    """The current app's event log."""
    log: EventLog = current_app.extensions["bffproxy.event_log"]
    return log


def configure(config: Any) -> None:
    """Validate the log's settings (after CACHE_DIR): its file, and retention by count and age."""
    config.setdefault("EVENTS_DB", "")
    config.setdefault("EVENTS_MAX_COUNT", 10_000)
    config.setdefault("EVENTS_MAX_AGE", 86_400)
    path = as_str(config, "EVENTS_DB") or os.path.join(config["CACHE_DIR"], "events.sqlite3")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise ConfigError(f"{env_name('EVENTS_DB')} {path!r}: its folder {folder!r} does not exist")
    config["EVENTS_DB"] = path
    config["EVENTS_MAX_COUNT"] = as_number(config, "EVENTS_MAX_COUNT", int, minimum=1)
    config["EVENTS_MAX_AGE"] = as_number(config, "EVENTS_MAX_AGE", int, minimum=1)


def build_log(app: Flask) -> EventLog:
    """The Redis Stream log with BFFPROXY_REDIS_URL, else the embedded SQLite one."""
    config = app.config
    retention = {"max_count": config["EVENTS_MAX_COUNT"], "max_age": config["EVENTS_MAX_AGE"]}
    if config["REDIS_URL"]:
        from .store import redis_client

        return RedisEventLog(redis_client(app), config["CACHE_KEY_PREFIX"], **retention)
    try:
        return SqliteEventLog(config["EVENTS_DB"], **retention)
    except sqlite3.Error as exc:
        raise ConfigError(
            f"{env_name('EVENTS_DB')} {config['EVENTS_DB']!r} cannot be opened: {exc}"
        ) from None


def init_app(app: Flask) -> None:
    """Open the event log (settings: :func:`configure`)."""
    app.extensions["bffproxy.event_log"] = build_log(app)
