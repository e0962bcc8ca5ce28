"""Hostile clients of the event streams (issue 11): what an expired session, a client that never
reads its socket, or a socket that takes part of a frame must never get from the server."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
import responses
from flask import Flask
from flask.testing import FlaskClient

from bffproxy.event_feed import Feed, Subscription
from bffproxy.event_hub import MAILBOX_BATCHES

from .conftest import FakeClock
from .test_event_tickets import ticket
from .test_events_sse import append
from .test_events_ws import config, connect, send, server  # noqa: F401  (config, server: fixtures)
from .test_publishing import EDITOR, bearer, register_users


@pytest.fixture
def editor(strapi: responses.RequestsMock) -> dict[str, str]:
    register_users(strapi)
    return bearer(EDITOR)


def test_a_ticket_redeemed_after_its_token_expired_replays_no_draft_event(
    client: FlaskClient, app: Flask, editor: dict[str, str]
) -> None:
    """A ticket minted a second before the token's exp opens nothing after it: no replay, then end."""
    append(app, "created", audience="drafts")
    value = ticket(client, editor)
    app.extensions["bffproxy.event_streams"].now = FakeClock(time.time() + 3601)  # exp + 1 s
    answer = client.get(f"/api/events?drafts=true&collections=articles&lastEventId=0&ticket={value}")
    assert answer.status_code == 401, answer.get_data(as_text=True)
    assert answer.get_json()["error"]["code"] == "token_expired"


def test_a_socket_whose_token_expired_gets_no_replay_when_it_subscribes_again(
    server: str,  # noqa: F811  (the fixture imported above)
    app: Flask,
    editor: dict[str, str],
) -> None:
    """Unsubscribed, the socket stays open past the token's exp; a new subscribe must replay nothing."""
    ws = connect(server, headers=editor)
    assert send(ws, {"subscribe": {"drafts": True, "collections": ["articles"]}})["type"] == "subscribed"
    assert send(ws, {"unsubscribe": {}})["type"] == "unsubscribed"
    append(app, "created", audience="drafts")
    app.extensions["bffproxy.event_streams"].now = FakeClock(time.time() + 3601)
    again = send(ws, {"subscribe": {"drafts": True, "collections": ["articles"], "lastEventId": "0"}})
    assert again["type"] == "error" and again["error"]["code"] == "token_expired", again
    ws.close()


def test_a_feed_that_overflows_cuts_its_connection_a_heartbeat_later_unless_it_closed(app: Flask) -> None:
    """A client that stops reading leaves its feed blocked in a write: only a cut frees the slot."""
    streams = app.extensions["bffproxy.event_streams"]
    streams.hub.threaded = False
    timers: list[tuple[float, Callable[[], None]]] = []
    streams.later = lambda delay, action: timers.append((delay, action))
    cuts: list[str] = []
    subscription = Subscription("default", ("articles",), None, False)
    with app.app_context():
        stuck = Feed(streams, subscription, None, cut=lambda: cuts.append("stuck"))
        done = Feed(streams, subscription, None, cut=lambda: cuts.append("done"))
        for n in range(MAILBOX_BATCHES + 3):
            append(app, doc=f"doc{n}")
            streams.hub.poll("default")
    done.close()  # this one read on, told its client too_slow and ended
    assert [delay for delay, _ in timers] == [streams.heartbeat] * 2  # once each, not per batch
    for _, action in timers:
        action()
    assert cuts == ["stuck"]
    stuck.close()


def test_a_replay_lets_other_streams_run_between_batches_and_stops_when_asked(app: Flask) -> None:
    """A replay that matches nothing reads the whole log (10,000 events) without a yield: under
    gevent every other stream of the worker waited for the whole scan."""
    streams = app.extensions["bffproxy.event_streams"]
    streams.hub.threaded = False
    slept: list[float] = []
    streams.hub.sleep = slept.append
    for n in range(250):  # three batches
        append(app, doc=f"doc{n}")
    with app.app_context():
        nothing = Subscription("default", ("articles",), "nomatch", False)
        feed = Feed(streams, nothing, "0")
        assert list(feed._replayed()) == []
        assert slept == [0, 0]  # between the batches: each a chance for the others
        slept.clear()
        stopped = Feed(streams, Subscription("default", ("articles",), None, False), "0")
        replay = stopped._replayed()
        next(replay)
        stopped.stop()  # a WebSocket's new subscribe replaced it
        assert sum(1 for _ in replay) < 100  # it ends within the batch it is in
    feed.close()
