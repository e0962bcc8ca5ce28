"""GET /api/events/ws: checks before the handshake, subscribe/unsubscribe/ping, events as frames.

A real WebSocket needs a real server: each test serves the app with Werkzeug's threaded server on
a loopback port and talks to it with websocket-client; Strapi's role look-ups are `responses`.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import responses
import websocket
from flask import Flask
from werkzeug.serving import make_server

from bffproxy.event_log import event_log

from .test_events_sse import DOC, append
from .test_publishing import EDITOR, READER, bearer, register_users
from .test_publishing import SECRET as JWT_SECRET

TIMEOUT = 10  # seconds a frame may take before the test fails (never reached when it works)


@pytest.fixture
def config(config: dict[str, Any]) -> dict[str, Any]:
    return {
        **config,
        "COLLECTIONS": "articles,categories",
        "STRAPI_JWT_SECRET": JWT_SECRET,
        "POLICIES": {"articles": "read=public,drafts=editor"},
        "EVENTS_MAX_SUBSCRIBERS": 2,
    }


@pytest.fixture
def server(app: Flask, strapi: responses.RequestsMock) -> Iterator[str]:
    """The app on a loopback port; its hub polls every 10 ms."""
    register_users(strapi)
    strapi.add_passthru("http://127.0.0.1")
    app.extensions["bffproxy.event_hub"].poll_interval = 0.01
    httpd = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{httpd.server_port}"
    httpd.shutdown()


def connect(server: str, query: str = "", headers: dict[str, str] | None = None) -> websocket.WebSocket:
    header = [f"{k}: {v}" for k, v in (headers or {}).items()]
    return websocket.create_connection(f"ws://{server}/api/events/ws{query}", header=header, timeout=TIMEOUT)


def frame(ws: websocket.WebSocket) -> dict[str, Any]:
    return dict(json.loads(ws.recv()))


def send(ws: websocket.WebSocket, message: Any) -> dict[str, Any]:
    ws.send(json.dumps(message))
    return frame(ws)


def test_subscribe_then_events_arrive_as_wire_json_frames(server: str, app: Flask) -> None:
    ws = connect(server)
    ack = send(ws, {"subscribe": {"collections": ["articles"]}})
    assert ack["type"] == "subscribed" and ack["collections"] == ["articles"]
    append(app, collection="categories")
    wanted = append(app)
    event = frame(ws)
    assert event["id"] == wanted and event["type"] == "published" and event["documentId"] == DOC
    assert set(event) == {"id", "tenant", "type", "collection", "documentId", "locale", "at", "source"}
    ws.close()


def test_replay_from_last_event_id_then_live(server: str, app: Flask) -> None:
    ids = [append(app, doc=f"doc{n}") for n in range(4)]
    ws = connect(server)
    send(ws, {"subscribe": {"lastEventId": ids[1]}})
    assert [frame(ws)["id"] for _ in range(2)] == ids[2:]
    live = append(app, doc="live")
    assert frame(ws)["id"] == live
    ws.close()


def test_ping_unsubscribe_and_resubscribe(server: str, app: Flask) -> None:
    ws = connect(server)
    assert send(ws, {"ping": 42}) == {"type": "pong", "ping": 42}
    send(ws, {"subscribe": {}})
    assert send(ws, {"unsubscribe": {}}) == {"type": "unsubscribed"}
    append(app)  # nobody subscribed: no frame
    assert send(ws, {"ping": "still here"})["type"] == "pong"
    send(ws, {"subscribe": {"documentId": "other"}})
    append(app)
    wanted = append(app, doc="other")
    assert frame(ws)["id"] == wanted
    ws.close()


@pytest.mark.parametrize(
    ("message", "code"),
    [
        ("not json", "invalid_parameter"),
        ("[1]", "invalid_parameter"),
        ('{"subscribe": {}, "ping": 1}', "invalid_parameter"),
        ('{"subscribe": "articles"}', "invalid_parameter"),
        ('{"subscribe": {"collections": ["nope"]}}', "unknown_collection"),
        ('{"subscribe": {"collections": 7}}', "invalid_parameter"),
        ('{"subscribe": {"drafts": true}}', "unauthorized"),
        ('{"subscribe": {"lastEventId": "1-x"}}', "invalid_parameter"),
        ('{"subscribe": {"extra": 1}}', "invalid_parameter"),
    ],
)
def test_bad_messages_get_an_error_frame_and_the_connection_stays(
    server: str, message: str, code: str
) -> None:
    ws = connect(server)
    ws.send(message)
    answer = frame(ws)
    assert answer["type"] == "error" and answer["error"]["code"] == code
    assert send(ws, {"ping": 1})["type"] == "pong"
    ws.close()


def test_drafts_need_the_policy_and_an_editor_gets_them(server: str, app: Flask) -> None:
    reader = connect(server, headers=bearer(READER))
    refused = send(reader, {"subscribe": {"drafts": True, "collections": ["articles"]}})
    assert refused["error"]["code"] == "forbidden"
    editor = connect(server, headers=bearer(EDITOR))
    send(editor, {"subscribe": {"drafts": True, "collections": ["articles"]}})
    draft = append(app, "created", audience="drafts")
    assert frame(editor)["id"] == draft
    reader.close()
    editor.close()


def test_a_ticket_opens_one_socket(server: str, app: Flask) -> None:
    client = app.test_client()
    ticket = client.post("/api/events/ticket", headers=bearer(EDITOR)).get_json()["ticket"]
    ws = connect(server, f"?ticket={ticket}")
    assert send(ws, {"subscribe": {"drafts": True, "collections": ["articles"]}})["type"] == "subscribed"
    ws.close()
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        connect(server, f"?ticket={ticket}")
    assert refused.value.status_code == 401
    assert json.loads(refused.value.resp_body)["error"]["code"] == "invalid_ticket"


def test_refusals_come_before_the_handshake_as_json(server: str) -> None:
    for query, headers, status in (
        ("", {"Authorization": "Bearer nope"}, 401),
        ("?collections=articles", None, 400),
    ):
        with pytest.raises(websocket.WebSocketBadStatusException) as refused:
            connect(server, query, headers)
        assert refused.value.status_code == status
        assert "error" in json.loads(refused.value.resp_body)


def test_sockets_past_the_limit_get_503_and_a_closed_one_frees_its_slot(server: str, app: Flask) -> None:
    first, second = connect(server), connect(server)
    with pytest.raises(websocket.WebSocketBadStatusException) as busy:
        connect(server)
    assert busy.value.status_code == 503
    assert busy.value.resp_headers["retry-after"] == "5"
    first.close()
    streams = app.extensions["bffproxy.event_streams"]
    for _ in range(500):  # the server notices the close on its own thread
        if streams.open == 1:
            break
        threading.Event().wait(0.01)
    third = connect(server)
    second.close()
    third.close()


def test_the_log_is_the_same_one_the_stream_reads(app: Flask) -> None:
    with app.app_context():
        assert event_log() is app.extensions["bffproxy.event_log"]
