"""Content events end to end: changes made in the real Strapi reach SSE clients of bffproxy (real
gunicorn, 2 workers, Strapi's real webhooks) once each, in order, with the right type; a client
that reconnects with Last-Event-ID gets exactly what it missed, then live; the public never hears
of a draft-only document."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest

from .services import Gunicorn, Strapi, StrapiEditor, login
from .subscribers import SseClient, kinds, title

POLICY = {"POLICIES__articles": "read=public,drafts=editor,write=editor", "EVENTS_MAX_SUBSCRIBERS": "3"}


@pytest.fixture
def events_bff(start_bff: Callable[..., Gunicorn], webhook_port: int) -> Gunicorn:
    """bffproxy on the port Strapi's webhooks target, heartbeats every second (gone clients freed)."""
    return start_bff(port=webhook_port, EVENTS_HEARTBEAT="1", **POLICY)


def test_each_change_in_strapi_is_one_event_in_order_and_drafts_stay_private(
    events_bff: Gunicorn, strapi_live: Strapi, strapi_editor: StrapiEditor, subscribers: list[SseClient]
) -> None:
    editor = login(strapi_live, "editor", "Editor-Passw0rd!")
    public = SseClient(f"{events_bff.url}/api/events?collections=articles")
    drafts = SseClient(f"{events_bff.url}/api/events?collections=articles&drafts=true", editor)
    subscribers += [public, drafts]

    doc = strapi_editor.create(title(), draft=True)
    assert kinds(drafts.take(1)) == [("created", doc)]
    strapi_editor.edit(doc, draft=True, excerpt="edited")
    assert kinds(drafts.take(1)) == [("updated", doc)]
    strapi_editor.publish(doc)
    assert kinds(public.take(1)) == [("published", doc)]
    strapi_editor.unpublish(doc)
    assert kinds(public.take(1)) == [("unpublished", doc)]
    strapi_editor.publish(doc)
    assert kinds(public.take(1)) == [("published", doc)]
    strapi_editor.delete(doc)
    assert kinds(public.take(1)) == [("deleted", doc)]
    public.nothing_more()  # the draft's create and edit, the delete's second row: never public

    # Strapi's publish (admin or REST) saves the draft row too and says so (entry.update, checked
    # here on the real Strapi): drafts subscribers hear of that save, the public does not.
    # Strapi posts a publish's two webhooks at once, so they reach bffproxy in either order: each
    # publish is judged as the pair, the changes themselves in order.
    rest = kinds(drafts.take(6))
    pair = sorted([("updated", doc), ("published", doc)])
    assert sorted(rest[0:2]) == pair
    assert rest[2] == ("unpublished", doc)
    assert sorted(rest[3:5]) == pair
    assert rest[5] == ("deleted", doc)
    drafts.nothing_more()  # the delete's two rows are one event here too


def test_a_draft_only_document_is_never_announced_to_the_public(
    events_bff: Gunicorn, strapi_live: Strapi, strapi_editor: StrapiEditor, subscribers: list[SseClient]
) -> None:
    editor = login(strapi_live, "editor", "Editor-Passw0rd!")
    public = SseClient(f"{events_bff.url}/api/events")
    drafts = SseClient(f"{events_bff.url}/api/events?drafts=true&collections=articles", editor)
    subscribers += [public, drafts]
    doc = strapi_editor.create(title(), draft=True)
    assert [e["event"] for e in drafts.take(1)] == ["created"]
    strapi_editor.edit(doc, draft=True, excerpt="still a draft")  # after the create's event: Strapi
    assert [e["event"] for e in drafts.take(1)] == ["updated"]  # posts webhooks concurrently
    strapi_editor.delete(doc)
    assert [e["event"] for e in drafts.take(1)] == ["deleted"]
    public.nothing_more()


def test_reconnecting_with_last_event_id_gets_exactly_the_missed_changes_then_live(
    events_bff: Gunicorn, strapi_editor: StrapiEditor, subscribers: list[SseClient]
) -> None:
    url = f"{events_bff.url}/api/events?collections=articles"
    first, observer = SseClient(url), SseClient(url)
    subscribers += [first, observer]
    doc = strapi_editor.create(title())
    (seen,) = first.take(1)
    assert kinds([seen]) == [("published", doc)]
    first.close()
    observer.take(1)

    # One change at a time (the observer sees each land): Strapi posts webhooks concurrently, so
    # changes made at once may be logged in either order.
    for change in (
        strapi_editor.unpublish,
        strapi_editor.publish,
        lambda d: strapi_editor.edit(d, excerpt="edit"),
    ):
        change(doc)
        observer.take(1)

    again = SseClient(url, {"Last-Event-ID": seen["id"]})
    subscribers.append(again)
    missed = again.take(3)
    assert [e["event"] for e in missed] == ["unpublished", "published", "published"]
    assert [int(e["id"]) for e in missed] == sorted(int(e["id"]) for e in missed)
    assert int(missed[0]["id"]) > int(seen["id"])
    strapi_editor.delete(doc)
    assert kinds(again.take(1)) == [("deleted", doc)]
    again.nothing_more()


def test_the_redis_stream_log_orders_replays_and_prunes(redis_server: Any) -> None:
    import redis

    from bffproxy.event_log import RedisEventLog

    client = redis.Redis.from_url(redis_server.url)
    log = RedisEventLog(client, f"e2e{uuid.uuid4().hex[:6]}:", max_count=1000, max_age=3600)
    ids = [log.append("a", {"documentId": f"doc{n}"}) for n in range(5)]
    log.append("b", {"documentId": "other"})
    assert [e.fields["documentId"] for e in log.read_after("a", ids[1], 10)] == ["doc2", "doc3", "doc4"]
    assert log.head("a") == ids[4] and log.read_after("a", ids[4], 10) == []
    assert not log.is_gone("a", ids[0]) and not log.is_gone("c", "0-0")
    assert not log.is_gone("a", "0-0")  # joined the empty stream: nothing was trimmed since
    assert log.is_gone("c", ids[0])  # an id another stream handed out
    assert log.is_gone("a", "99999999999999-0")  # never handed out
    assert log.parse_id(ids[0]) == ids[0] and log.parse_id("12") is None

    tight = RedisEventLog(client, f"e2e{uuid.uuid4().hex[:6]}:", max_count=1, max_age=3600)
    first = tight.append("a", {"n": 0})
    for n in range(300):  # MAXLEN ~ trims whole macro nodes: past 100 entries the first one goes
        tight.append("a", {"n": n + 1})
    assert tight.is_gone("a", first)
    assert not tight.is_gone("a", tight.head("a"))
