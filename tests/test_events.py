"""Content events: Strapi's webhooks and bffproxy's writes mapped, deduplicated, and logged only
after the invalidation they stand for."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
import responses
from flask import Flask
from flask.testing import FlaskClient

from bffproxy import events
from bffproxy.event_log import LoggedEvent, event_log
from bffproxy.store import StoreUnavailable

from .conftest import STRAPI
from .test_publishing import EDITOR, bearer, document, register_users
from .test_publishing import SECRET as JWT_SECRET

WEBHOOK_SECRET = "unit-webhook-secret"
DOC = "tjqy7ker8jzhq6j8lkdncc4q"
DRAFT_ONLY = "zmgzrfcqczujaz4mu59blrx6"
UPDATED, PUBLISHED = "2026-11-23T20:49:48.396Z", "2026-11-23T20:49:48.404Z"


def webhook(
    event: str, document_id: str = DOC, published_at: str | None = None, **entry: Any
) -> dict[str, Any]:
    """A Strapi 5 entry webhook body, shaped as the real Strapi sends it (captures/webhooks)."""
    row = {
        "id": 67,
        "documentId": document_id,
        "title": "T",
        "updatedAt": UPDATED,
        "publishedAt": published_at,
    }
    return {"event": event, "model": "article", "uid": "api::article.article", "entry": {**row, **entry}}


@pytest.fixture
def config(config: dict[str, Any]) -> dict[str, Any]:
    return {
        **config,
        "WEBHOOK_SECRET": WEBHOOK_SECRET,
        "STRAPI_JWT_SECRET": JWT_SECRET,
        "POLICIES": {"articles": "read=public,drafts=editor,write=editor"},
    }


def post(client: FlaskClient, body: dict[str, Any]) -> int:
    answer = client.post("/webhooks/strapi", json=body, headers={"X-Webhook-Secret": WEBHOOK_SECRET})
    return answer.status_code


def logged(app: Flask) -> list[LoggedEvent]:
    with app.app_context():
        return event_log().read_after("default", "0", 100)


def seen_by(app: Flask, *, drafts: bool) -> list[tuple[str, str]]:
    return [
        (e.fields["type"], e.fields["documentId"]) for e in logged(app) if events.visible(e, drafts=drafts)
    ]


def test_a_published_create_is_one_public_event_and_its_draft_save_is_for_drafts_only(
    app: Flask, client: FlaskClient
) -> None:
    assert post(client, webhook("entry.create")) == 200
    assert post(client, webhook("entry.publish", published_at=PUBLISHED, id=68)) == 200
    assert seen_by(app, drafts=False) == [("published", DOC)]
    assert seen_by(app, drafts=True) == [("created", DOC), ("published", DOC)]
    (first, second) = logged(app)
    assert second.fields["source"] == "webhook" and second.fields["tenant"] == "default"
    assert set(first.fields) == {
        "tenant",
        "type",
        "collection",
        "documentId",
        "locale",
        "at",
        "source",
        "audience",
    }


def test_a_draft_only_document_never_reaches_the_public(app: Flask, client: FlaskClient) -> None:
    post(client, webhook("entry.create", DRAFT_ONLY))
    post(client, webhook("entry.update", DRAFT_ONLY, updatedAt="2026-11-23T20:49:53.000Z"))
    post(client, webhook("entry.delete", DRAFT_ONLY))
    assert seen_by(app, drafts=False) == []
    assert [t for t, _ in seen_by(app, drafts=True)] == ["created", "updated", "deleted"]


def test_the_two_deletes_of_one_delete_are_one_event_for_each_subscriber(
    app: Flask, client: FlaskClient
) -> None:
    post(client, webhook("entry.delete", id=75))  # the draft row first, as Strapi sent it
    post(client, webhook("entry.delete", id=74, published_at=PUBLISHED))
    post(client, webhook("entry.delete", id=74, published_at=PUBLISHED))  # a repeated delivery
    assert seen_by(app, drafts=False) == [("deleted", DOC)]
    assert seen_by(app, drafts=True) == [("deleted", DOC)]


def test_a_delete_whose_published_row_comes_first_is_one_event_for_everyone(
    app: Flask, client: FlaskClient
) -> None:
    post(client, webhook("entry.delete", id=74, published_at=PUBLISHED))
    post(client, webhook("entry.delete", id=75))
    assert len(logged(app)) == 1
    assert seen_by(app, drafts=False) == seen_by(app, drafts=True) == [("deleted", DOC)]


def test_repeated_deliveries_collapse_and_a_new_version_does_not(app: Flask, client: FlaskClient) -> None:
    body = webhook("entry.publish", published_at=PUBLISHED)
    post(client, body)
    post(client, copy.deepcopy(body))
    post(client, webhook("entry.unpublish", published_at=PUBLISHED))
    post(client, webhook("entry.publish", published_at="2026-11-23T20:49:55.970Z"))  # published again
    assert [t for t, _ in seen_by(app, drafts=False)] == ["published", "unpublished", "published"]


def test_each_strapi_event_maps_to_its_type_and_others_log_nothing(app: Flask, client: FlaskClient) -> None:
    post(client, webhook("entry.draft-discard"))
    post(client, {"event": "media.create", "media": {"id": 1}})
    post(client, {"event": "entry.update", "model": "unexposed", "entry": {"documentId": DOC}})
    assert [(e.fields["type"], e.fields["audience"]) for e in logged(app)] == [("draft_discarded", "drafts")]


def test_a_failed_invalidation_emits_nothing(app: Flask, client: FlaskClient, monkeypatch: Any) -> None:
    def refuse(*args: Any) -> None:
        raise StoreUnavailable("down")

    monkeypatch.setattr(app.extensions["bffproxy.cache"], "invalidate", refuse)
    assert post(client, webhook("entry.publish", published_at=PUBLISHED)) == 503
    assert logged(app) == []


def test_a_store_that_cannot_dedupe_logs_the_event_anyway(
    app: Flask, client: FlaskClient, monkeypatch: Any
) -> None:
    real_call = app.extensions["bffproxy.store"].call

    def no_add(method: str, *args: Any, **kwargs: Any) -> Any:
        if method == "add":
            raise StoreUnavailable("down")
        return real_call(method, *args, **kwargs)

    monkeypatch.setattr(app.extensions["bffproxy.store"], "call", no_add)
    post(client, webhook("entry.publish", published_at=PUBLISHED))
    assert seen_by(app, drafts=False) == [("published", DOC)]


# -- bffproxy's own writes -------------------------------------------------------------------------


def test_a_write_and_strapis_webhook_about_it_are_one_event_each(
    app: Flask, client: FlaskClient, strapi: responses.RequestsMock
) -> None:
    register_users(strapi)
    answer = document(DOC, id=68, updatedAt=UPDATED, publishedAt=PUBLISHED)
    strapi.put(f"{STRAPI}/api/articles/{DOC}", json=answer)
    assert client.post(f"/api/articles/{DOC}/publish", headers=bearer(EDITOR)).status_code == 200
    assert [(e.fields["type"], e.fields["source"]) for e in logged(app)] == [
        ("updated", "write"),
        ("published", "write"),
    ]
    post(client, webhook("entry.update"))  # Strapi's webhooks about the same publish
    post(client, webhook("entry.publish", published_at=PUBLISHED, id=68))
    assert len(logged(app)) == 2


def test_a_draft_write_is_a_drafts_only_event(
    app: Flask, client: FlaskClient, strapi: responses.RequestsMock
) -> None:
    register_users(strapi)
    strapi.put(f"{STRAPI}/api/articles/{DOC}", json=document(DOC, updatedAt=UPDATED, publishedAt=None))
    headers = {**bearer(EDITOR), "Content-Type": "application/json"}
    answer = client.put(
        f"/api/articles/{DOC}?status=draft", json={"data": {"title": "Draft"}}, headers=headers
    )
    assert answer.status_code == 200
    assert seen_by(app, drafts=False) == []
    assert seen_by(app, drafts=True) == [("updated", DOC)]


def test_a_delete_write_tells_drafts_subscribers_and_the_webhook_tells_the_public(
    app: Flask, client: FlaskClient, strapi: responses.RequestsMock
) -> None:
    register_users(strapi)
    strapi.delete(f"{STRAPI}/api/articles/{DOC}", status=204)
    assert client.delete(f"/api/articles/{DOC}", headers=bearer(EDITOR)).status_code == 204
    post(client, webhook("entry.delete", id=75))
    post(client, webhook("entry.delete", id=74, published_at=PUBLISHED))
    assert seen_by(app, drafts=True) == [("deleted", DOC)]
    assert seen_by(app, drafts=False) == [("deleted", DOC)]


def test_a_write_whose_invalidation_failed_emits_nothing(
    app: Flask, client: FlaskClient, strapi: responses.RequestsMock, monkeypatch: Any
) -> None:
    register_users(strapi)
    strapi.put(f"{STRAPI}/api/articles/{DOC}", json=document(DOC, updatedAt=UPDATED, publishedAt=PUBLISHED))

    def refuse(*args: Any) -> None:
        raise StoreUnavailable("down")

    monkeypatch.setattr(app.extensions["bffproxy.cache"], "invalidate", refuse)
    assert client.post(f"/api/articles/{DOC}/publish", headers=bearer(EDITOR)).status_code == 200
    assert logged(app) == []


def test_a_refused_write_emits_nothing(
    app: Flask, client: FlaskClient, strapi: responses.RequestsMock
) -> None:
    register_users(strapi)
    strapi.put(f"{STRAPI}/api/articles/{DOC}", json={"error": {"status": 404}}, status=404)
    assert client.post(f"/api/articles/{DOC}/publish", headers=bearer(EDITOR)).status_code == 404
    assert logged(app) == []


def test_an_event_is_rendered_once_however_many_subscribers_send_it(
    app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    stored = LoggedEvent("7", {"type": "published", "documentId": DOC, "audience": "everyone"})
    dumps, calls = events.json.dumps, []
    monkeypatch.setattr(events.json, "dumps", lambda *a, **k: calls.append(1) or dumps(*a, **k))
    texts = {events.wire_json(stored) for _ in range(3)}
    assert len(texts) == 1 and len(calls) == 1
    assert stored == LoggedEvent("7", dict(stored.fields))  # the rendered text is no part of the event


def test_the_wire_shape_has_no_audience_and_the_logs_id(app: Flask) -> None:
    stored = LoggedEvent("7", {"type": "published", "documentId": DOC, "audience": "everyone", "title": "x"})
    assert json.loads(events.wire_json(stored)) == {
        "id": "7",
        "tenant": None,
        "type": "published",
        "collection": None,
        "documentId": DOC,
        "locale": None,
        "at": None,
        "source": None,
    }
