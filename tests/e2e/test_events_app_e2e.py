"""The events app (``wsgi:events_app``, gevent) beside the API app, in front of the real Strapi 5.

The deployment deploy/ ships: the API (gthread, receives Strapi's webhooks, writes the event log)
and the events app (gevent, holds the streams) share the cache directory (SQLite log, store) on one
machine, or Redis across instances. Checked here: SSE and WebSocket subscribers each get exactly one
event per change, in order, within 2 s; a client that refetches on each event never reads the old
version; tickets minted by the API open streams on the events app; Last-Event-ID replays exactly
what was missed across a restart of both; an event received by instance A reaches instance B's
subscribers through Redis.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from .services import Gunicorn, Strapi, StrapiEditor, login
from .subscribers import SseClient, WsClient, kinds, title
from .test_events_e2e import POLICY


@dataclass
class Deployment:
    api: Gunicorn
    events: Gunicorn

    def ws_url(self) -> str:
        return self.events.url.replace("http://", "ws://") + "/api/events/ws"


SETTINGS = {**POLICY, "EVENTS_HEARTBEAT": "1"}


@pytest.fixture
def deployment(start_bff: Callable[..., Gunicorn], webhook_port: int, tmp_path: Path) -> Deployment:
    """The API on the webhook port and the events app, one cache directory between them."""
    shared = tmp_path / "shared-cache"
    api = start_bff(port=webhook_port, cache_dir=shared, **SETTINGS)
    events = start_bff(cache_dir=shared, app="events_app", workers=1, **SETTINGS)
    return Deployment(api, events)


def test_sse_and_websocket_subscribers_each_get_one_event_per_change_in_order(
    deployment: Deployment, strapi_editor: StrapiEditor, subscribers: list[Any]
) -> None:
    sse = SseClient(f"{deployment.events.url}/api/events?collections=articles")
    ws = WsClient(deployment.ws_url(), {"collections": ["articles"]})
    subscribers += [sse, ws]
    doc = strapi_editor.create(title())
    strapi_editor.edit(doc, title=title())
    expected = [("published", doc), ("published", doc)]
    assert kinds(sse.take(2)) == expected and ws.take(2) == expected
    strapi_editor.unpublish(doc)
    assert kinds(sse.take(1)) == [("unpublished", doc)] and ws.take(1) == [("unpublished", doc)]
    strapi_editor.publish(doc)
    assert kinds(sse.take(1)) == [("published", doc)] and ws.take(1) == [("published", doc)]
    strapi_editor.delete(doc)
    assert kinds(sse.take(1)) == [("deleted", doc)] and ws.take(1) == [("deleted", doc)]
    sse.nothing_more()
    ws.nothing_more()
    assert "gevent" in deployment.events.log()  # the events app really runs on gevent workers


def test_a_client_that_refetches_on_every_event_never_reads_the_old_version(
    deployment: Deployment, strapi_editor: StrapiEditor, subscribers: list[Any]
) -> None:
    sse = SseClient(f"{deployment.events.url}/api/events?collections=articles")
    subscribers.append(sse)
    doc = strapi_editor.create(title())
    sse.take(1)
    url = f"{deployment.api.url}/api/articles/{doc}"
    assert requests.get(url, timeout=10).status_code == 200  # cached now
    stale = []
    for _ in range(6):
        expected = title()
        strapi_editor.edit(doc, title=expected)
        assert kinds(sse.take(1)) == [("published", doc)]
        got = requests.get(url, timeout=10).json()["data"]["title"]
        if got != expected:
            stale.append((expected, got))
    assert stale == []


def test_a_ticket_from_the_api_opens_a_drafts_stream_on_the_events_app_once(
    deployment: Deployment, strapi_live: Strapi, strapi_editor: StrapiEditor, subscribers: list[Any]
) -> None:
    editor = login(strapi_live, "editor", "Editor-Passw0rd!")
    answer = requests.post(f"{deployment.api.url}/api/events/ticket", headers=editor, timeout=10)
    assert answer.status_code == 200, answer.text
    ticket = answer.json()["ticket"]
    url = f"{deployment.events.url}/api/events?drafts=true&collections=articles&ticket={ticket}"
    drafts = SseClient(url)
    subscribers.append(drafts)
    doc = strapi_editor.create(title(), draft=True)
    assert kinds(drafts.take(1)) == [("created", doc)]
    again = requests.get(url, timeout=10)
    assert again.status_code == 401 and again.json()["error"]["code"] == "invalid_ticket"


def test_last_event_id_replays_exactly_the_missed_changes_across_a_restart(
    deployment: Deployment, strapi_editor: StrapiEditor, subscribers: list[Any]
) -> None:
    url = f"{deployment.events.url}/api/events?collections=articles"
    first = SseClient(url)
    doc = strapi_editor.create(title())
    (seen,) = first.take(1)
    first.close()
    deployment.events.stop()
    observer = SseClient(f"{deployment.api.url}/api/events?collections=articles")  # the API serves it too
    subscribers.append(observer)
    for change in (
        strapi_editor.unpublish,
        strapi_editor.publish,
        lambda d: strapi_editor.edit(d, title=title()),
    ):
        change(doc)
        observer.take(1)  # one at a time: Strapi posts a change's webhooks concurrently
    observer.close()
    deployment.api.stop()
    deployment.api.start()
    deployment.events.start()
    again = SseClient(url, {"Last-Event-ID": seen["data"]["id"]})
    subscribers.append(again)
    assert [e["event"] for e in again.take(3)] == ["unpublished", "published", "published"]
    strapi_editor.delete(doc)
    assert kinds(again.take(1)) == [("deleted", doc)]
    again.nothing_more()


def test_an_event_received_by_instance_a_reaches_subscribers_of_instance_b_through_redis(
    start_bff: Callable[..., Gunicorn],
    webhook_port: int,
    redis_server: Any,
    strapi_editor: StrapiEditor,
    subscribers: list[Any],
) -> None:
    redis = {"REDIS_URL": redis_server.url, **SETTINGS}
    start_bff(port=webhook_port, **redis)  # instance A: Strapi's webhooks come here
    instance_b = start_bff(app="events_app", workers=1, **redis)  # another machine's cache dir
    sse = SseClient(f"{instance_b.url}/api/events?collections=articles")
    ws_url = instance_b.url.replace("http://", "ws://") + "/api/events/ws"
    ws = WsClient(ws_url, {"collections": ["articles"]})
    subscribers += [sse, ws]
    doc = strapi_editor.create(title())
    assert kinds(sse.take(1)) == [("published", doc)] and ws.take(1) == [("published", doc)]
    sse.nothing_more()  # no resync: a subscriber that joined an empty stream missed nothing


def test_a_publish_webhook_without_its_entry_is_resolved_by_one_look_up_in_the_real_strapi(
    start_bff: Callable[..., Gunicorn],
    strapi_live: Strapi,
    strapi_editor: StrapiEditor,
    subscribers: list[Any],
) -> None:
    """Strapi issue 25387: ``"entry": null``. This API is not on the webhook port, so the real
    webhook never reaches it; the body Strapi sends in that case is posted by hand."""
    api = start_bff(**SETTINGS)
    sse = SseClient(f"{api.url}/api/events?collections=articles")
    subscribers.append(sse)
    doc = strapi_editor.create(title())
    body = {
        "event": "entry.publish",
        "createdAt": "2026-12-06T00:00:00.000Z",
        "model": "article",
        "entry": None,
    }
    answer = requests.post(
        f"{api.url}/webhooks/strapi",
        json=body,
        headers={"X-Webhook-Secret": strapi_live.webhook_secret},
        timeout=10,
    )
    assert answer.status_code == 200 and answer.json()["documentId"] == doc, api.log()[-3000:]
    assert kinds(sse.take(1)) == [("published", doc)]
    sse.nothing_more()
