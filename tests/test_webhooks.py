"""POST /webhooks/strapi: secret, body validation, model mapping and what a delivery invalidates."""

from __future__ import annotations

import copy
import logging
from typing import Any

import pytest
import responses
from flask import Flask
from flask.testing import FlaskClient

from bffproxy import ConfigError, create_app
from bffproxy.webhooks import pluralise

from .conftest import STRAPI
from .test_invalidation import warm_cache, x_cache

SECRET = "unit-webhook-secret"
DOC = "tjqy7ker8jzhq6j8lkdncc4q"

# Bodies as Strapi 5 sent them (../shared/strapi/captures/webhooks/), trimmed of unused fields.
UPDATE = {
    "event": "entry.update",
    "createdAt": "2026-11-23T20:49:48.418Z",
    "model": "article",
    "uid": "api::article.article",
    "entry": {
        "id": 67,
        "documentId": DOC,
        "title": "Captured create (edited)",
        "publishedAt": None,
        "category": {"id": 2, "documentId": "api4tn7w88alg2h8eb2yg7x3", "name": "Technology"},
    },
}
DELETE = {
    "event": "entry.delete",
    "createdAt": "2026-11-23T20:49:59.194Z",
    "model": "article",
    "uid": "api::article.article",
    "entry": {"id": 75, "documentId": DOC, "title": "Captured create (edited)", "publishedAt": None},
}


@pytest.fixture
def config(config: dict[str, Any]) -> dict[str, Any]:
    return {**config, "WEBHOOK_SECRET": SECRET}


@pytest.fixture
def warm(client: FlaskClient, strapi: responses.RequestsMock) -> None:
    """Cache an article list, one article and the category list (each now a HIT)."""
    assert x_cache(client, warm_cache(client, strapi, DOC)) == ["HIT", "HIT", "HIT"]


PATHS = ("/api/articles", f"/api/articles/{DOC}", "/api/categories")


def cached(client: FlaskClient) -> list[str]:
    return x_cache(client, PATHS)


def deliver(client: FlaskClient, body: Any, secret: str | None = SECRET, **kwargs: Any) -> Any:
    headers = {"X-Webhook-Secret": secret} if secret is not None else {}
    return client.post("/webhooks/strapi", json=body, headers=headers, **kwargs)


@pytest.mark.usefixtures("warm")
def test_update_drops_its_collection_and_the_populated_relations(
    client: FlaskClient, strapi: responses.RequestsMock
) -> None:
    calls = len(strapi.calls)
    response = deliver(client, UPDATE)
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    body = response.get_json()
    assert body["invalidated"] == ["articles", "categories"]
    assert (body["event"], body["documentId"], body["scope"]) == ("entry.update", DOC, "document")
    assert len(strapi.calls) == calls  # the receiver never calls Strapi
    assert cached(client) == ["MISS", "MISS", "MISS"]
    assert cached(client) == ["HIT", "HIT", "HIT"]


@pytest.mark.usefixtures("warm")
def test_delete_drops_the_collections_whose_model_embeds_it(client: FlaskClient) -> None:
    # entry.delete carries no relations: the content model says categories embed articles
    # (category.articles), so their cached answers go too, without BFFPROXY_RELATIONS.
    response = deliver(client, DELETE)
    assert response.get_json()["invalidated"] == ["articles", "categories"]
    assert cached(client) == ["MISS", "MISS", "MISS"]


def test_delete_uses_the_configured_relations(config: dict[str, Any], strapi: responses.RequestsMock) -> None:
    client = create_app({**config, "RELATIONS": {"articles": "categories"}}).test_client()
    assert deliver(client, DELETE).get_json()["invalidated"] == ["articles", "categories"]


@pytest.mark.usefixtures("warm")
def test_repeated_deliveries_are_harmless(client: FlaskClient) -> None:
    for _ in range(2):  # a DELETE sends two entry.delete for one document
        assert deliver(client, DELETE).status_code == 200
    assert cached(client) == ["MISS", "MISS", "MISS"]
    assert cached(client) == ["HIT", "HIT", "HIT"]


@pytest.mark.usefixtures("warm")
@pytest.mark.parametrize("secret", [None, "", "wrong", SECRET + "x", "sécret"])
def test_missing_or_wrong_secret_is_401_and_invalidates_nothing(
    client: FlaskClient, secret: str | None
) -> None:
    response = deliver(client, UPDATE, secret=secret)
    assert response.status_code == 401
    assert response.get_json()["error"]["code"] == "unauthorized"
    assert cached(client) == ["HIT", "HIT", "HIT"]


def test_without_a_configured_secret_every_webhook_is_401(
    config: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, "bffproxy"):
        client = create_app({**config, "WEBHOOK_SECRET": ""}).test_client()
    assert "BFFPROXY_WEBHOOK_SECRET is not set" in caplog.text
    for secret in ("", None, "anything"):
        response = deliver(client, UPDATE, secret=secret)
        assert response.status_code == 401
        error = response.get_json()["error"]
        assert error["code"] == "webhooks_disabled"
        assert "BFFPROXY_WEBHOOK_SECRET" in error["message"]


@pytest.mark.parametrize(
    "data",
    [b"{not json", b"", b"[1, 2]", b'"entry.update"'],
)
def test_malformed_json_is_400(client: FlaskClient, data: bytes) -> None:
    response = client.post(
        "/webhooks/strapi", data=data, content_type="application/json", headers={"X-Webhook-Secret": SECRET}
    )
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "bad_request"


def _without(path: tuple[str, ...]) -> dict[str, Any]:
    body = copy.deepcopy(UPDATE)
    target: Any = body
    for name in path[:-1]:
        target = target[name]
    del target[path[-1]]
    return body


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (_without(("event",)), "event"),
        (_without(("model",)), "model"),
        (_without(("entry",)), "entry"),
        (_without(("entry", "documentId")), "documentId"),
        ({**UPDATE, "model": 7}, "model"),
        ({**UPDATE, "entry": "67"}, "entry"),
        ({**UPDATE, "entry": {**UPDATE["entry"], "documentId": ""}}, "documentId"),  # type: ignore[dict-item]
    ],
)
def test_missing_fields_are_400_naming_the_field(client: FlaskClient, body: Any, field: str) -> None:
    response = deliver(client, body)
    assert response.status_code == 400
    assert response.get_json()["error"]["details"] == {"field": field}


@pytest.mark.usefixtures("warm")
def test_unknown_model_is_202_and_invalidates_nothing(client: FlaskClient) -> None:
    body = {**UPDATE, "model": "user", "uid": "plugin::users-permissions.user"}
    response = deliver(client, body)
    assert response.status_code == 202
    assert response.get_json()["invalidated"] == []
    assert "user" in response.get_json()["ignored"]
    assert cached(client) == ["HIT", "HIT", "HIT"]


def test_events_other_than_entry_events_are_ignored(client: FlaskClient) -> None:
    response = deliver(client, {"event": "releases.publish", "release": {"id": 1}})
    assert response.status_code == 202
    assert response.get_json() == {
        "event": "releases.publish",
        "invalidated": [],
        "ignored": "not an entry event",
    }


def test_a_configured_model_name_wins_over_the_plural(config: dict[str, Any]) -> None:
    client = create_app({**config, "MODELS": {"post": "articles"}}).test_client()
    body = {**UPDATE, "model": "post", "uid": "api::post.post"}
    assert deliver(client, body).get_json()["invalidated"] == ["articles", "categories"]


def test_models_must_name_exposed_collections(config: dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match="BFFPROXY_MODELS__post names 'posts'"):
        create_app({**config, "MODELS": {"post": "posts"}})


def test_models_from_the_environment(config: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BFFPROXY_MODELS__post", "articles")
    app = create_app(config)
    assert app.config["MODELS"] == {"post": "articles"}


@pytest.mark.parametrize(
    ("singular", "plural"),
    [("article", "articles"), ("category", "categories"), ("day", "days"), ("address", "addresses"),
     ("box", "boxes"), ("branch", "branches"), ("y", "ys")],
)  # fmt: skip
def test_default_pluralisation(singular: str, plural: str) -> None:
    assert pluralise(singular) == plural


def test_relation_lists_and_unknown_relation_fields(client: FlaskClient) -> None:
    entry = {
        "documentId": "cat1",
        "articles": [{"id": 1, "documentId": "a1"}],  # a list relation -> articles
        "cover": {"id": 3, "documentId": "m1", "url": "/x.png"},  # media: no exposed collection
        "seo": {"id": 4, "metaTitle": "x"},  # a component: no documentId
        "tags": [],  # unknown when empty: the configured relations must tell
    }
    body = {"event": "entry.update", "model": "category", "entry": entry}
    assert deliver(client, body).get_json()["invalidated"] == ["categories", "articles"]


def test_a_store_fault_is_503_so_strapi_logs_the_failure(app: Flask, client: FlaskClient) -> None:
    class BrokenStore:
        def __getattr__(self, name: str) -> Any:
            def fail(*args: Any) -> Any:
                raise ConnectionError("redis is down")

            return fail

    app.extensions["bffproxy.cache"].store = BrokenStore()
    response = deliver(client, UPDATE)
    assert response.status_code == 503
    assert response.get_json()["error"]["code"] == "cache_unavailable"


def test_one_log_line_per_delivery(client: FlaskClient, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, "bffproxy.webhooks"):
        deliver(client, UPDATE)
        deliver(client, UPDATE, secret="wrong")
        deliver(client, {**UPDATE, "model": "user"})
    lines = [r.getMessage() for r in caplog.records if r.name == "bffproxy.webhooks"]
    assert lines == [
        f"webhook entry.update article {DOC} -> invalidated articles,categories",
        "webhook refused with 401 (unauthorized): Missing or wrong X-Webhook-Secret.",
        f"webhook entry.update user {DOC} -> invalidated nothing",
    ]


def test_a_body_nested_too_deeply_is_400_not_500(client: FlaskClient) -> None:
    response = client.post(
        "/webhooks/strapi",
        data="[" * 100_000,
        headers={"X-Webhook-Secret": SECRET, "Content-Type": "application/json"},
    )
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "bad_request"


def test_with_redis_down_the_503_names_no_host_or_port(
    config: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    import socket

    with socket.socket() as sock:  # a loopback port nobody listens on: connection refused at once
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = create_app({**config, "REDIS_URL": f"redis://127.0.0.1:{port}/0"}).test_client()
    response = deliver(client, UPDATE)
    assert response.status_code == 503
    assert response.get_json()["error"]["code"] == "cache_unavailable"
    body = response.get_data(as_text=True)
    assert "127.0.0.1" not in body and str(port) not in body and "Error" not in body
    assert f"127.0.0.1:{port}" in caplog.text  # the operator still learns why, from the log


# Strapi issue 25387: an entry.publish sometimes carries "entry": null (or the string "null").
PUBLISH_WITHOUT_ENTRY = {
    "event": "entry.publish",
    "createdAt": "2026-11-23T20:50:00.000Z",
    "model": "article",
}
NEWEST = {"documentId": DOC, "publishedAt": "2026-11-23T20:49:59.900Z", "locale": None}


@pytest.mark.usefixtures("warm")
@pytest.mark.parametrize("entry", [None, "null"])
def test_a_publish_without_its_entry_drops_the_collection_and_names_the_newest_published_document(
    client: FlaskClient, app: Flask, strapi: responses.RequestsMock, entry: Any
) -> None:
    from bffproxy.event_log import event_log

    look_up = strapi.get(
        f"{STRAPI}/api/articles",
        json={"data": [NEWEST], "meta": {}},
        match=[
            responses.matchers.query_param_matcher(
                {
                    "sort[0]": "publishedAt:desc",
                    "pagination[pageSize]": "1",
                    "fields[0]": "publishedAt",
                }
            ),
            responses.matchers.header_matcher({"Authorization": "Bearer server-api-token"}),
        ],
    )
    response = deliver(client, {**PUBLISH_WITHOUT_ENTRY, "entry": entry})
    assert response.status_code == 200
    body = response.get_json()
    assert body["documentId"] == DOC and body["scope"] == "collection"
    assert body["invalidated"] == ["articles", "categories"]
    assert look_up.call_count == 1
    with app.app_context():
        (event,) = event_log().read_after("default", "0", 10)
    assert (event.fields["type"], event.fields["documentId"]) == ("published", DOC)
    assert event.fields["audience"] == "everyone"


@pytest.mark.usefixtures("warm")
def test_a_publish_without_its_entry_when_strapi_cannot_say_still_invalidates_and_guesses_no_event(
    client: FlaskClient, app: Flask, strapi: responses.RequestsMock
) -> None:
    from bffproxy.event_log import event_log

    strapi.get(f"{STRAPI}/api/articles", status=500, json={"data": None, "error": {"status": 500}})
    response = deliver(client, {**PUBLISH_WITHOUT_ENTRY, "entry": None})
    body = response.get_json()
    assert response.status_code == 200 and body["documentId"] is None
    assert body["invalidated"] == ["articles", "categories"]
    with app.app_context():
        assert event_log().read_after("default", "0", 10) == []


def test_only_a_publish_may_come_without_its_entry(client: FlaskClient) -> None:
    for event in ("entry.update", "entry.create", "entry.unpublish", "entry.delete"):
        response = deliver(client, {**PUBLISH_WITHOUT_ENTRY, "event": event, "entry": None})
        assert response.status_code == 400 and response.get_json()["error"]["details"] == {"field": "entry"}
