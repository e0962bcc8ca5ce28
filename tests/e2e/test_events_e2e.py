"""Content events end to end: changes made in the real Strapi reach SSE clients of bffproxy (real
gunicorn, 2 workers, Strapi's real webhooks) once each, in order, with the right type; a client
that reconnects with Last-Event-ID gets exactly what it missed, then live; the public never hears
of a draft-only document."""

from __future__ import annotations

import json
import queue
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests

from .services import Gunicorn, Strapi, login
from .test_publishing_e2e import ADMIN

POLICY = {"POLICIES__articles": "read=public,drafts=editor,write=editor", "EVENTS_MAX_SUBSCRIBERS": "3"}
DEADLINE = 2.0  # seconds from a change in Strapi to its event on the client (the bound)
QUIET = 1.0  # seconds a stream is watched for an event that must not come


class SseClient:
    """An EventSource-like reader of GET /api/events: events (heartbeats dropped) into a queue."""

    def __init__(self, url: str, headers: dict[str, str] | None = None) -> None:
        self.response = requests.get(url, headers=headers or {}, stream=True, timeout=(5, 30))
        assert self.response.status_code == 200, self.response.text
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        buffer = ""
        try:
            for chunk in self.response.iter_content(chunk_size=None, decode_unicode=True):
                buffer += chunk
                while "\n\n" in buffer:
                    message, buffer = buffer.split("\n\n", 1)
                    fields = dict(line.split(": ", 1) for line in message.split("\n") if ": " in line)
                    if "event" in fields:
                        self.events.put({**fields, "data": json.loads(fields["data"])})
        except (requests.RequestException, AttributeError, ValueError):
            pass  # closed by the test

    def take(self, count: int, within: float = DEADLINE) -> list[dict[str, Any]]:
        """Exactly ``count`` events, each within ``within`` seconds of the previous one."""
        return [self.events.get(timeout=within) for _ in range(count)]

    def nothing_more(self) -> None:
        """No further event arrives while the stream is watched for QUIET seconds."""
        with pytest.raises(queue.Empty):
            extra = self.events.get(timeout=QUIET)
            raise AssertionError(f"unexpected event {extra}")

    def close(self) -> None:
        self.response.close()


def kinds(events: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(e["event"], e["data"]["documentId"]) for e in events]


_ADMIN_TOKENS: dict[str, str] = {}


def admin_token(strapi: Strapi) -> str:
    """One admin sign-in per Strapi and session: Strapi rate-limits /admin/login (429 past 5)."""
    if strapi.url not in _ADMIN_TOKENS:
        answer = requests.post(
            f"{strapi.url}/admin/login",
            json={"email": ADMIN["STRAPI_ADMIN_EMAIL"], "password": ADMIN["STRAPI_ADMIN_PASSWORD"]},
            timeout=10,
        )
        assert answer.status_code == 200, answer.text
        _ADMIN_TOKENS[strapi.url] = answer.json()["data"]["token"]
    return _ADMIN_TOKENS[strapi.url]


class StrapiEditor:
    """Changes made in Strapi itself: REST with the API token, unpublish through the admin API."""

    def __init__(self, strapi: Strapi) -> None:
        self.strapi = strapi
        self.rest = {"Authorization": f"Bearer {strapi.api_token}"}
        self.admin = {"Authorization": f"Bearer {admin_token(strapi)}"}
        self.created: list[str] = []

    def create(self, title: str, *, draft: bool = False) -> str:
        query = "?status=draft" if draft else ""
        answer = requests.post(
            f"{self.strapi.url}/api/articles{query}",
            json={"data": {"title": title}},
            headers=self.rest,
            timeout=10,
        )
        assert answer.status_code == 201, answer.text
        doc = str(answer.json()["data"]["documentId"])
        self.created.append(doc)
        return doc

    def edit(self, doc: str, *, draft: bool = False, **data: Any) -> None:
        query = "?status=draft" if draft else ""
        answer = requests.put(
            f"{self.strapi.url}/api/articles/{doc}{query}", json={"data": data}, headers=self.rest, timeout=10
        )
        assert answer.status_code == 200, answer.text

    def publish(self, doc: str) -> None:
        self._action(doc, "publish")

    def unpublish(self, doc: str) -> None:
        self._action(doc, "unpublish")

    def _action(self, doc: str, action: str) -> None:
        path = f"content-manager/collection-types/api::article.article/{doc}/actions/{action}"
        answer = requests.post(f"{self.strapi.url}/{path}", json={}, headers=self.admin, timeout=10)
        assert answer.status_code == 200, answer.text

    def delete(self, doc: str) -> None:
        answer = requests.delete(f"{self.strapi.url}/api/articles/{doc}", headers=self.rest, timeout=10)
        assert answer.status_code == 204, answer.text

    def cleanup(self) -> None:
        for doc in self.created:
            requests.delete(f"{self.strapi.url}/api/articles/{doc}", headers=self.rest, timeout=10)


@pytest.fixture
def events_bff(start_bff: Callable[..., Gunicorn], webhook_port: int) -> Gunicorn:
    """bffproxy on the port Strapi's webhooks target, heartbeats every second (gone clients freed)."""
    return start_bff(port=webhook_port, EVENTS_HEARTBEAT="1", **POLICY)


@pytest.fixture
def in_strapi(strapi_live: Strapi) -> Iterator[StrapiEditor]:
    editor = StrapiEditor(strapi_live)
    yield editor
    editor.cleanup()


@pytest.fixture
def streams() -> Iterator[list[SseClient]]:
    opened: list[SseClient] = []
    yield opened
    for stream in opened:
        stream.close()


def title() -> str:
    return f"E2E events {uuid.uuid4().hex[:12]}"


def test_each_change_in_strapi_is_one_event_in_order_and_drafts_stay_private(
    events_bff: Gunicorn, strapi_live: Strapi, in_strapi: StrapiEditor, streams: list[SseClient]
) -> None:
    editor = login(strapi_live, "editor", "Editor-Passw0rd!")
    public = SseClient(f"{events_bff.url}/api/events?collections=articles")
    drafts = SseClient(f"{events_bff.url}/api/events?collections=articles&drafts=true", editor)
    streams += [public, drafts]

    doc = in_strapi.create(title(), draft=True)
    assert kinds(drafts.take(1)) == [("created", doc)]
    in_strapi.edit(doc, draft=True, excerpt="edited")
    assert kinds(drafts.take(1)) == [("updated", doc)]
    in_strapi.publish(doc)
    assert kinds(public.take(1)) == [("published", doc)]
    in_strapi.unpublish(doc)
    assert kinds(public.take(1)) == [("unpublished", doc)]
    in_strapi.publish(doc)
    assert kinds(public.take(1)) == [("published", doc)]
    in_strapi.delete(doc)
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
    events_bff: Gunicorn, strapi_live: Strapi, in_strapi: StrapiEditor, streams: list[SseClient]
) -> None:
    editor = login(strapi_live, "editor", "Editor-Passw0rd!")
    public = SseClient(f"{events_bff.url}/api/events")
    drafts = SseClient(f"{events_bff.url}/api/events?drafts=true&collections=articles", editor)
    streams += [public, drafts]
    doc = in_strapi.create(title(), draft=True)
    assert [e["event"] for e in drafts.take(1)] == ["created"]
    in_strapi.edit(doc, draft=True, excerpt="still a draft")  # after the create's event: Strapi
    assert [e["event"] for e in drafts.take(1)] == ["updated"]  # posts webhooks concurrently
    in_strapi.delete(doc)
    assert [e["event"] for e in drafts.take(1)] == ["deleted"]
    public.nothing_more()


def test_reconnecting_with_last_event_id_gets_exactly_the_missed_changes_then_live(
    events_bff: Gunicorn, in_strapi: StrapiEditor, streams: list[SseClient]
) -> None:
    url = f"{events_bff.url}/api/events?collections=articles"
    first, observer = SseClient(url), SseClient(url)
    streams += [first, observer]
    doc = in_strapi.create(title())
    (seen,) = first.take(1)
    assert kinds([seen]) == [("published", doc)]
    first.close()
    observer.take(1)

    # One change at a time (the observer sees each land): Strapi posts webhooks concurrently, so
    # changes made at once may be logged in either order.
    for change in (in_strapi.unpublish, in_strapi.publish, lambda d: in_strapi.edit(d, excerpt="edit")):
        change(doc)
        observer.take(1)

    again = SseClient(url, {"Last-Event-ID": seen["id"]})
    streams.append(again)
    missed = again.take(3)
    assert [e["event"] for e in missed] == ["unpublished", "published", "published"]
    assert [int(e["id"]) for e in missed] == sorted(int(e["id"]) for e in missed)
    assert int(missed[0]["id"]) > int(seen["id"])
    in_strapi.delete(doc)
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
