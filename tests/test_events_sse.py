"""GET /api/events: checks before the stream opens, the SSE format, filters, visibility, replay and
the seam, resync, heartbeats on a fake clock, and the per-worker subscriber limit."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
import responses
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from bffproxy.event_hub import MAILBOX_BATCHES
from bffproxy.event_log import event_log

from .conftest import FakeClock
from .test_publishing import EDITOR, READER, bearer, register_users
from .test_publishing import SECRET as JWT_SECRET

DOC, OTHER = "tjqy7ker8jzhq6j8lkdncc4q", "zmgzrfcqczujaz4mu59blrx6"


@pytest.fixture
def config(config: dict[str, Any]) -> dict[str, Any]:
    return {
        **config,
        "COLLECTIONS": "articles,categories,secrets",
        "STRAPI_JWT_SECRET": JWT_SECRET,
        "POLICIES": {"articles": "read=public,drafts=editor", "secrets": "read=editor"},
        "EVENTS_MAX_SUBSCRIBERS": 2,
    }


@pytest.fixture
def stream_clock(app: Flask) -> FakeClock:
    """The streams' clock; each poll's sleep moves it, so heartbeats come without waiting.

    The hub runs without threads: a stream waiting for events polls the log itself.
    """
    fake = FakeClock(0.0)
    streams = app.extensions["bffproxy.event_streams"]
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        assert len(sleeps) < 10_000, "the stream never yielded"
        fake.advance(seconds)

    streams.clock = streams.now = fake
    streams.hub.threaded, streams.hub.sleep, streams.hub.poll_interval = False, sleep, 0.5
    return fake


def append(
    app: Flask, type_: str = "published", doc: str = DOC, collection: str = "articles", **extra: Any
) -> str:
    fields = {"tenant": "default", "type": type_, "collection": collection, "documentId": doc}
    fields.update(
        {"locale": None, "at": "2026-01-01T00:00:00.000Z", "source": "webhook", "audience": "everyone"}
    )
    with app.app_context():
        return event_log().append("default", {**fields, **extra})


class Stream:
    """An open event stream read message by message (heartbeats and retry included)."""

    def __init__(self, response: TestResponse) -> None:
        self.response = response
        self.chunks: Iterator[Any] = iter(response.response)

    def next(self) -> str:
        chunk = next(self.chunks)
        return chunk.decode() if isinstance(chunk, bytes) else str(chunk)

    def next_event(self) -> dict[str, Any]:
        """The next message that is an event (heartbeats skipped), as its fields."""
        while True:
            message = self.next()
            if not message.startswith((":", "retry:")):
                return parse(message)

    def close(self) -> None:
        self.response.close()


def parse(message: str) -> dict[str, Any]:
    fields = dict(line.split(": ", 1) for line in message.strip().split("\n"))
    return {**fields, "data": json.loads(fields["data"])}


def open_stream(client: FlaskClient, query: str = "", **headers: str) -> Stream:
    response = client.get(f"/api/events{query}", headers=headers, buffered=False)
    assert response.status_code == 200, response.get_data(as_text=True)
    return Stream(response)


@pytest.fixture
def editor(strapi: responses.RequestsMock) -> dict[str, str]:
    register_users(strapi)
    return bearer(EDITOR)


def test_a_stream_has_sse_headers_and_opens_with_retry(
    client: FlaskClient, app: Flask, stream_clock: FakeClock
) -> None:
    stream = open_stream(client)
    headers = stream.response.headers
    assert headers["Content-Type"].startswith("text/event-stream")
    assert headers["Cache-Control"] == "no-cache" and headers["X-Accel-Buffering"] == "no"
    assert stream.next() == "retry: 2000\n\n"
    event_id = append(app)
    message = stream.next()
    assert message.startswith(f"id: {event_id}\nevent: published\ndata: {{")
    assert message.endswith("}\n\n")
    data = parse(message)["data"]
    assert data == {
        "id": event_id,
        "tenant": "default",
        "type": "published",
        "collection": "articles",
        "documentId": DOC,
        "locale": None,
        "at": "2026-01-01T00:00:00.000Z",
        "source": "webhook",
    }
    stream.close()


def test_a_new_subscriber_gets_only_what_comes_after_it_opened(
    client: FlaskClient, app: Flask, stream_clock: FakeClock
) -> None:
    append(app, doc=OTHER)
    stream = open_stream(client)
    live = append(app)
    assert stream.next_event()["id"] == live
    stream.close()


def test_replay_after_last_event_id_then_live_without_gap_or_duplicate(
    client: FlaskClient, app: Flask, stream_clock: FakeClock
) -> None:
    ids = [append(app, doc=f"doc{n}") for n in range(5)]
    stream = open_stream(client, **{"Last-Event-ID": ids[1]})
    assert [stream.next_event()["id"] for _ in range(3)] == ids[2:]
    live = [append(app, doc="live1"), append(app, doc="live2")]
    assert [stream.next_event()["id"] for _ in range(2)] == live
    stream.close()
    by_query = open_stream(client, f"?lastEventId={ids[3]}")
    assert [by_query.next_event()["id"] for _ in range(3)] == [ids[4], *live]
    by_query.close()


def test_the_header_wins_over_the_query(client: FlaskClient, app: Flask, stream_clock: FakeClock) -> None:
    ids = [append(app, doc=f"doc{n}") for n in range(3)]
    stream = open_stream(client, f"?lastEventId={ids[0]}", **{"Last-Event-ID": ids[1]})
    assert stream.next_event()["id"] == ids[2]
    stream.close()


def test_an_id_the_log_no_longer_holds_gets_one_resync_then_live(
    client: FlaskClient, app: Flask, stream_clock: FakeClock
) -> None:
    stream = open_stream(client, "?collections=articles", **{"Last-Event-ID": "999"})
    resync = stream.next_event()
    assert resync["event"] == "resync"
    assert resync["data"] == {"collections": ["articles"], "reason": "history_gone"}
    live = append(app)
    assert stream.next_event()["id"] == live
    stream.close()


def test_filters_by_collection_and_document(client: FlaskClient, app: Flask, stream_clock: FakeClock) -> None:
    stream = open_stream(client, f"?collections=articles&documentId={DOC}")
    append(app, collection="categories")
    append(app, doc=OTHER)
    wanted = append(app)
    assert stream.next_event()["id"] == wanted
    stream.close()


def test_anonymous_streams_never_carry_draft_events(
    client: FlaskClient, app: Flask, stream_clock: FakeClock, editor: dict[str, str]
) -> None:
    anonymous = open_stream(client)
    drafts = open_stream(client, "?drafts=true&collections=articles", **editor)
    append(app, "created", audience="drafts")
    append(app, "deleted", doc=OTHER, audience="public")  # the public's half of a collapsed delete
    published = append(app)
    assert anonymous.next_event()["data"]["type"] == "deleted"
    assert anonymous.next_event()["id"] == published
    assert drafts.next_event()["data"]["type"] == "created"
    assert drafts.next_event()["id"] == published
    anonymous.close()
    drafts.close()


def test_collections_only_an_editor_may_read_are_not_streamed_to_the_public(
    client: FlaskClient, app: Flask, stream_clock: FakeClock
) -> None:
    stream = open_stream(client)
    append(app, collection="secrets")
    wanted = append(app)
    assert stream.next_event()["id"] == wanted
    stream.close()


@pytest.mark.parametrize(
    ("query", "status", "code"),
    [
        ("?collections=articles,nope", 400, "unknown_collection"),
        ("?collections=", 400, "unknown_collection"),
        ("?collection=articles", 400, "invalid_parameter"),
        ("?drafts=yes", 400, "invalid_parameter"),
        ("?documentId=a%20b", 400, "invalid_parameter"),
        ("?lastEventId=1-x", 400, "invalid_parameter"),
        ("?lastEventId=abc", 400, "invalid_parameter"),
        ("?drafts=true", 401, "unauthorized"),
        ("?collections=secrets", 401, "unauthorized"),
    ],
)
def test_bad_requests_are_json_errors_before_any_stream(
    client: FlaskClient, query: str, status: int, code: str
) -> None:
    answer = client.get(f"/api/events{query}")
    assert answer.status_code == status
    assert answer.is_json and answer.get_json()["error"]["code"] == code


def test_a_reader_may_not_ask_for_drafts(client: FlaskClient, strapi: responses.RequestsMock) -> None:
    register_users(strapi)
    answer = client.get("/api/events?drafts=true&collections=articles", headers=bearer(READER))
    assert answer.status_code == 403


def test_a_bad_token_is_401_even_for_public_events(client: FlaskClient) -> None:
    answer = client.get("/api/events", headers={"Authorization": "Bearer not-a-jwt"})
    assert answer.status_code == 401


def test_heartbeat_after_quiet_seconds_on_the_fake_clock(
    client: FlaskClient, app: Flask, stream_clock: FakeClock
) -> None:
    stream = open_stream(client)
    assert stream.next().startswith("retry:")
    assert stream.next() == ": heartbeat\n\n"
    assert stream_clock() == 15.0  # BFFPROXY_EVENTS_HEARTBEAT's default, polled every 0.5 s
    assert stream.next() == ": heartbeat\n\n" and stream_clock() == 30.0
    stream.close()


def test_subscribers_past_the_limit_get_503_and_a_closed_stream_frees_its_slot(
    client: FlaskClient, app: Flask, stream_clock: FakeClock
) -> None:
    first, second = open_stream(client), open_stream(client)
    busy = client.get("/api/events")
    assert busy.status_code == 503
    assert busy.get_json()["error"]["code"] == "too_many_subscribers"
    assert busy.headers["Retry-After"] == "5"
    first.close()
    third = open_stream(client)
    assert app.extensions["bffproxy.event_streams"].open == 2
    second.close()
    third.close()
    assert app.extensions["bffproxy.event_streams"].open == 0


def test_a_log_that_fails_mid_replay_ends_the_stream_with_a_reason(
    client: FlaskClient, app: Flask, stream_clock: FakeClock, monkeypatch: Any
) -> None:
    first = append(app)

    def broken(*args: Any) -> Any:
        raise OSError("disk gone")

    monkeypatch.setattr(app.extensions["bffproxy.event_log"], "read_after", broken)
    stream = open_stream(client, **{"Last-Event-ID": first})
    assert stream.next().startswith("retry:")
    assert stream.next() == 'event: end\ndata: {"reason": "log_unreadable"}\n\n'
    with pytest.raises(StopIteration):
        stream.next()
    stream.close()
    assert app.extensions["bffproxy.event_hub"].subscribers() == 0


def test_a_signed_in_stream_ends_when_its_token_expires(
    client: FlaskClient, app: Flask, stream_clock: FakeClock, editor: dict[str, str]
) -> None:
    wall = FakeClock(time.time())
    app.extensions["bffproxy.event_streams"].now = wall
    stream = open_stream(client, "?drafts=true&collections=articles", **editor)
    assert stream.next().startswith("retry:")
    wall.advance(3601)  # the test token's exp is an hour after it was made
    assert stream.next() == 'event: end\ndata: {"reason": "token_expired"}\n\n'
    with pytest.raises(StopIteration):
        stream.next()
    stream.close()


def test_a_subscriber_that_falls_a_mailbox_behind_is_told_and_cut_off(
    client: FlaskClient, app: Flask, stream_clock: FakeClock
) -> None:
    hub = app.extensions["bffproxy.event_hub"]
    stream = open_stream(client)
    for n in range(MAILBOX_BATCHES + 3):  # the hub reads on; this subscriber reads nothing
        append(app, doc=f"doc{n}")
        hub.poll("default")
    messages = [stream.next() for _ in range(MAILBOX_BATCHES + 2)]
    assert messages[0].startswith("retry:")
    assert all(m.startswith("id: ") for m in messages[1:-1])
    assert messages[-1] == 'event: end\ndata: {"reason": "too_slow"}\n\n'
    with pytest.raises(StopIteration):
        stream.next()
    stream.close()
    assert hub.subscribers() == 0


def test_a_parameter_given_twice_is_400(client: FlaskClient) -> None:
    answer = client.get("/api/events?collections=articles&collections=categories")
    assert answer.status_code == 400 and answer.get_json()["error"]["code"] == "invalid_parameter"


def test_the_websocket_path_without_an_upgrade_is_426(client: FlaskClient) -> None:
    answer = client.get("/api/events/ws")
    assert answer.status_code == 426 and answer.get_json()["error"]["code"] == "upgrade_required"


def test_an_id_of_the_other_kind_of_log_gets_a_resync_not_a_400(
    client: FlaskClient, app: Flask, stream_clock: FakeClock
) -> None:
    """A move from SQLite to Redis (or back): EventSource reconnects with the old kind of id."""
    stream = open_stream(client, "?collections=articles", **{"Last-Event-ID": "1732390187408-0"})
    assert stream.next_event()["event"] == "resync"
    live = append(app)
    assert stream.next_event()["id"] == live
    stream.close()
