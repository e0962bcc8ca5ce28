"""bench/events.py and its subscriber process (bench/sse_swarm.py) read what a server really sends.

The swarm is driven here against a small asyncio server speaking SSE the way gunicorn does
(chunked, one message per chunk, bytes split anywhere by TCP); the whole bench runs against the
real Strapi and gunicorn in tests/e2e/test_bench_events_e2e.py.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from bench import events, sse_swarm

AT = "2026-12-06T06:31:00.123Z"
AT_EPOCH = dt.datetime(2026, 12, 6, 6, 31, 0, 123000, tzinfo=dt.UTC).timestamp()
HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"


def chunk(text: str) -> bytes:
    """One HTTP/1.1 chunk, as gunicorn writes each SSE message."""
    data = text.encode()
    return b"%X\r\n%s\r\n" % (len(data), data)


def sse_event(document_id: str, at: str = AT) -> str:
    data = json.dumps({"id": "7", "type": "published", "documentId": document_id, "at": at})
    return f"id: 7\nevent: published\ndata: {data}\n\n"


class FakeTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.written = b""
        self.closed = False

    def write(self, data: bytes) -> None:  # type: ignore[override]
        self.written += data

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default

    def abort(self) -> None:
        self.closed = True


class FrozenTime:
    """Stands in for the ``time`` module: ``time()`` is the moment a test says."""

    def __init__(self, now: float) -> None:
        self.now = now

    def time(self) -> float:
        return self.now


def fed(pieces: list[bytes], clock: list[float]) -> sse_swarm.Subscriber:
    """A subscriber given ``pieces`` one ``data_received`` at a time, at the times in ``clock``."""

    async def feed() -> sse_swarm.Subscriber:
        subscriber = sse_swarm.Subscriber(b"GET / HTTP/1.1\r\n\r\n", sse_swarm.Tally())
        subscriber.connection_made(FakeTransport())
        for piece, now in zip(pieces, clock, strict=True):
            with pytest.MonkeyPatch.context() as patch:
                patch.setattr(sse_swarm, "time", FrozenTime(now))
                subscriber.data_received(piece)
        return subscriber

    return asyncio.run(feed())


def test_an_event_split_anywhere_arrives_once_when_its_data_line_is_complete() -> None:
    stream = HEAD + chunk("retry: 2000\n\n") + chunk(": heartbeat\n\n") + chunk(sse_event("doc1"))
    line_end = stream.index(b"\n", stream.index(b"\ndata: ") + 1)
    for cut in range(1, len(stream)):
        subscriber = fed([stream[:cut], stream[cut:]], [100.0, 100.5])
        assert subscriber.opened.result() == 200
        arrived = [(a.at, json.loads(a.data)["documentId"]) for a in subscriber.arrivals]
        assert arrived == [(100.0 if cut > line_end else 100.5, "doc1")], cut
        assert subscriber.tally.arrivals == 1


def test_two_events_in_one_read_are_two_arrivals_and_nothing_is_left_over() -> None:
    subscriber = fed([HEAD + chunk(sse_event("a")) + chunk(sse_event("b"))], [5.0])
    assert [json.loads(a.data)["documentId"] for a in subscriber.arrivals] == ["a", "b"]
    assert b"data: " not in subscriber.tail


def test_a_refused_stream_is_its_status_and_is_closed() -> None:
    subscriber = fed([b"HTTP/1.1 503 SERVICE UNAVAILABLE\r\nRetry-After: 5\r\n\r\n{}"], [1.0])
    assert subscriber.opened.result() == 503
    assert subscriber.transport is not None and subscriber.transport.is_closing()


def test_latency_is_the_arrival_minus_the_events_at_in_utc() -> None:
    assert sse_swarm.parse_at(AT) == AT_EPOCH
    data = json.dumps({"documentId": "doc1", "at": AT}).encode()
    arrival = sse_swarm.Arrival(AT_EPOCH + 0.25, data)
    assert sse_swarm.latency_ms(arrival, "doc1") == pytest.approx(250.0)
    assert sse_swarm.latency_ms(arrival, "another") is None


def test_percentiles_are_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert [events.percentile(values, q) for q in (0.5, 0.99, 1.0)] == [50.0, 99.0, 100.0]
    assert events.percentile([3.0], 0.99) == 3.0


def test_rounds_alternate_so_half_the_swaps_keep_the_subscribers() -> None:
    assert [events.rounds_order(n) for n in range(3)] == [
        ("none", "with"),
        ("with", "none"),
        ("none", "with"),
    ]


def test_the_options_are_bounded() -> None:
    settings = events.parse_settings(["--subscribers", "1000000", "--idle-subscribers", "0"])
    assert (settings.subscribers, settings.idle_subscribers) == (15_000, 1)
    assert events.parse_settings([]).subscribers == 10_000


async def sse_server(
    refuse_after: int, event: asyncio.Event, document_id: str
) -> tuple[asyncio.Server, Callable[[], Awaitable[None]]]:
    """A server that streams to the first ``refuse_after`` clients and answers 503 to the rest."""
    served: list[asyncio.StreamWriter] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        if len(served) >= refuse_after:
            writer.write(b"HTTP/1.1 503 SERVICE UNAVAILABLE\r\nContent-Length: 2\r\n\r\n{}")
            await writer.drain()
            writer.close()
            return
        served.append(writer)
        writer.write(HEAD + chunk("retry: 2000\n\n"))
        await event.wait()
        at = dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        writer.write(chunk(sse_event(document_id, at)))
        await reader.read()  # until the client closes

    server = await asyncio.start_server(handle, "127.0.0.1", 0)

    async def stop() -> None:
        server.close()
        for writer in served:
            writer.close()

    return server, stop


def test_the_swarm_opens_counts_refusals_waits_for_an_event_and_closes() -> None:
    async def scenario() -> tuple[dict[str, Any], ...]:
        event = asyncio.Event()
        server, stop = await sse_server(3, event, "doc9")
        port = server.sockets[0].getsockname()[1]
        swarm = sse_swarm.Swarm("127.0.0.1", port, "/api/events?collections=articles")
        opened = await sse_swarm.answer(swarm, "open 5")
        assert swarm.subscribers[0].transport is not None
        event.set()
        waited = await sse_swarm.answer(swarm, "wait doc9 10")
        unknown = await sse_swarm.answer(swarm, "jump")
        closed = await sse_swarm.answer(swarm, "close")
        assert await sse_swarm.answer(swarm, "quit") is None
        await stop()
        assert opened and waited and unknown and closed
        return opened, waited, unknown, closed

    opened, waited, unknown, closed = asyncio.run(scenario())
    assert (opened["opened"], opened["refused"], opened["failed"]) == (3, {"503": 2}, 0)
    assert (waited["subscribers"], waited["received"], waited["missed"], waited["ended"]) == (3, 3, 0, 0)
    assert len(waited["latencies_ms"]) == 3
    assert unknown == {"error": "unknown command 'jump'"}
    assert closed == {"closed": 3}


def test_a_stream_that_never_gets_the_event_is_missed_not_waited_for_forever() -> None:
    async def scenario() -> dict[str, Any] | None:
        server, stop = await sse_server(2, asyncio.Event(), "never")
        swarm = sse_swarm.Swarm("127.0.0.1", server.sockets[0].getsockname()[1], "/")
        await swarm.open(2)
        waited = await sse_swarm.answer(swarm, "wait doc9 0")  # the deadline has passed
        swarm.close()
        await stop()
        return waited

    waited = asyncio.run(scenario())
    assert waited is not None
    assert (waited["received"], waited["missed"], waited["latencies_ms"]) == (0, 2, [])
