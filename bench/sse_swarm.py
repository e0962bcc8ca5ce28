"""A swarm of SSE subscribers in one asyncio process, cheap enough to hold 10,000 beside the server.

Run by bench/events.py as ``python -m bench.sse_swarm HOST PORT PATH`` (a process of its own, so the
server's CPU and memory are measured apart from the client's). Each subscriber is an
:class:`asyncio.Protocol` on a raw socket: no HTTP library, no per-subscriber task; the time an
event reached a subscriber is read the moment its bytes are handed to it (``data_received``), and
nothing is parsed until the report.

It takes one command per line on stdin and answers each with one JSON line on stdout:

* ``open N`` -- open N more streams, at most :data:`IN_FLIGHT` being opened at a time; answers how
  many opened (200 and the stream's first bytes), were refused (status counts) or failed;
* ``wait DOCUMENT_ID SECONDS`` -- wait until every open stream has received an event about
  ``DOCUMENT_ID``, or SECONDS passed; answers the event's ``at``, each receiving stream's latency
  in ms (its arrival time minus ``at``), how many did not receive it, how many streams had ended;
* ``close`` -- close every stream, with a reset (answers how many); ``quit`` or end of input --
  close and exit.

It raises its own open-files soft limit to the hard limit first, as a 10,000-stream client must.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import resource
import socket
import struct
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

IN_FLIGHT = 200  # streams being opened at once: below gunicorn's listen backlog (2048)
OPEN_TIMEOUT = 30.0  # seconds a stream may take to open
DATA = b"\ndata: "
LINGER_RESET = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends a reset


@dataclass
class Arrival:
    """The first event a stream received: when (wall-clock seconds) and its ``data:`` line."""

    at: float
    data: bytes


@dataclass
class Tally:
    """Counts shared by a swarm's streams: checking 10,000 streams each time would slow the client."""

    arrivals: int = 0
    ended: int = 0


class Subscriber(asyncio.Protocol):
    """One SSE stream: the status of its answer, every event's arrival time and data line."""

    def __init__(self, request: bytes, tally: Tally) -> None:
        self.request = request
        self.tally = tally
        self.opened: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None
        self.head = b""  # the answer's status line and headers, until they are complete
        self.tail = b""  # body bytes after the last complete line
        self.arrivals: list[Arrival] = []
        self.ended = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        now = time.time()
        if not self.opened.done():
            data = self._head(data)
            if not data:
                return
        text, done = self.tail + data, 0
        while True:  # one SSE message per chunk: chunk framing never splits a data line
            start = text.find(DATA, done)
            end = text.find(b"\n", start + len(DATA)) if start >= 0 else -1
            if end < 0:
                break
            self.arrivals.append(Arrival(now, text[start + len(DATA) : end]))
            self.tally.arrivals += 1
            done = end
        # Keep what may begin a data line: an unfinished one, else the last line's start.
        self.tail = text[start:] if start >= 0 else text[max(text.rfind(b"\n", done), done) :]

    def _head(self, data: bytes) -> bytes:
        """Read the status line; the body bytes after the headers (b"" until they are complete)."""
        self.head += data
        head, sep, body = self.head.partition(b"\r\n\r\n")
        if not sep:
            return b""
        status = int(head.split(b" ", 2)[1])
        self.opened.set_result(status)
        if status != 200:
            self.close()
        return body

    def connection_lost(self, exc: Exception | None) -> None:
        self.ended = True
        self.tally.ended += 1
        if not self.opened.done():
            self.opened.set_exception(exc or ConnectionError("closed before the answer"))

    def close(self) -> None:
        """Close the stream with a reset (idempotent).

        After a plain close (FIN) the server's next write still succeeds, so a gunicorn worker only
        notices the client is gone at its second heartbeat; after a reset, at its first.
        """
        if self.transport is not None and not self.transport.is_closing():
            sock = self.transport.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RESET)
            self.transport.abort()


def parse_at(text: str) -> float:
    """An event's ``at`` (ISO 8601 in UTC with milliseconds, ``Z``) as epoch seconds."""
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def latency_ms(arrival: Arrival, document_id: str) -> float | None:
    """Milliseconds from the event's ``at`` to its arrival, when it is about ``document_id``."""
    event = json.loads(arrival.data)
    if event.get("documentId") != document_id:
        return None
    return (arrival.at - parse_at(event["at"])) * 1000


def first_latency(subscriber: Subscriber, document_id: str) -> float | None:
    """The latency of the first event about ``document_id`` this stream received, or None."""
    for arrival in subscriber.arrivals:
        latency = latency_ms(arrival, document_id)
        if latency is not None:
            return latency
    return None


def event_at(subscribers: list[Subscriber], document_id: str) -> float | None:
    """The ``at`` (epoch seconds) of the event about ``document_id``, from the first stream that has it."""
    for subscriber in subscribers:
        for arrival in subscriber.arrivals:
            event = json.loads(arrival.data)
            if event.get("documentId") == document_id:
                return parse_at(event["at"])
    return None


@dataclass
class Swarm:
    """Every stream this process opened to one SSE URL."""

    host: str
    port: int
    path: str
    subscribers: list[Subscriber] = field(default_factory=list)
    tally: Tally = field(default_factory=Tally)

    def request(self) -> bytes:
        """The GET an EventSource sends."""
        return (
            f"GET {self.path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            "Accept: text/event-stream\r\nCache-Control: no-cache\r\n\r\n"
        ).encode()

    async def open(self, count: int) -> dict[str, Any]:
        """Open ``count`` more streams; how many opened, were refused (by status) or failed."""
        started = time.monotonic()
        gate = asyncio.Semaphore(IN_FLIGHT)
        outcomes = await asyncio.gather(*(self._open_one(gate) for _ in range(count)))
        tally = Counter(outcomes)
        refused = {status: n for status, n in tally.items() if status not in ("opened", "failed")}
        return {
            "opened": tally["opened"],
            "refused": refused,
            "failed": tally["failed"],
            "seconds": round(time.monotonic() - started, 2),
        }

    async def _open_one(self, gate: asyncio.Semaphore) -> str:
        async with gate:
            loop = asyncio.get_running_loop()
            request, tally = self.request(), self.tally
            try:
                async with asyncio.timeout(OPEN_TIMEOUT):
                    _, subscriber = await loop.create_connection(
                        lambda: Subscriber(request, tally), self.host, self.port
                    )
                    status = await subscriber.opened
            except (OSError, TimeoutError, ConnectionError):
                return "failed"
            if status != 200:
                return str(status)
            self.subscribers.append(subscriber)
            return "opened"

    async def wait(self, document_id: str, seconds: float) -> dict[str, Any]:
        """Wait for every stream to receive an event about ``document_id``; the latencies."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not self._all_received(document_id.encode()):
            await asyncio.sleep(0.05)
        latencies = [first_latency(s, document_id) for s in self.subscribers]
        received = sorted(round(ms, 1) for ms in latencies if ms is not None)
        return {
            "at": event_at(self.subscribers, document_id),
            "subscribers": len(self.subscribers),
            "received": len(received),
            "missed": len(self.subscribers) - len(received),
            "ended": sum(s.ended for s in self.subscribers),
            "events": sum(len(s.arrivals) for s in self.subscribers),
            "latencies_ms": received,
        }

    def _all_received(self, document_id: bytes) -> bool:
        """True when every stream received an event about ``document_id`` or ended."""
        if self.tally.arrivals + self.tally.ended < len(self.subscribers):
            return False  # the cheap check first: this runs every 50 ms during the fan-out
        return all(s.ended or any(document_id in a.data for a in s.arrivals) for s in self.subscribers)

    def close(self) -> dict[str, Any]:
        """Close every stream."""
        closed = len(self.subscribers)
        for subscriber in self.subscribers:
            subscriber.close()
        self.subscribers = []
        return {"closed": closed}


async def answer(swarm: Swarm, line: str) -> dict[str, Any] | None:
    """Carry out one command line; its answer, or None to stop."""
    words = line.split()
    if not words or words[0] == "quit":
        return None
    if words[0] == "open" and len(words) == 2:
        return await swarm.open(int(words[1]))
    if words[0] == "wait" and len(words) == 3:
        return await swarm.wait(words[1], float(words[2]))
    if words[0] == "close" and len(words) == 1:
        return swarm.close()
    return {"error": f"unknown command {line.strip()!r}"}


def raise_open_files_limit() -> int:
    """Raise the soft limit on open files to the hard limit; the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


async def serve(host: str, port: int, path: str) -> None:
    """Answer commands from stdin until ``quit`` or its end."""
    swarm = Swarm(host, port, path)
    loop = asyncio.get_running_loop()
    try:
        while True:
            line = await loop.run_in_executor(None, sys.stdin.readline)
            reply = await answer(swarm, line)
            if reply is None:
                return
            print(json.dumps(reply), flush=True)
    finally:
        swarm.close()
        await asyncio.sleep(0)  # let the transports close


def main() -> None:
    """``python -m bench.sse_swarm HOST PORT PATH``."""
    host, port, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    raise_open_files_limit()
    with contextlib.suppress(KeyboardInterrupt, BrokenPipeError):
        asyncio.run(serve(host, port, path))


if __name__ == "__main__":
    main()
