"""Single types (``BFFPROXY_SINGLE_TYPES``): configuration, reads, writes and webhooks of /api/homepage.

Strapi 5 answers (checked on 5.54 with the project app's ``homepage``): ``GET /api/homepage`` is
``{"data": {...}, "meta": {}}`` or 404 when none is published; ``PUT`` creates or edits it (200)
with a collection PUT's status semantics; ``DELETE`` is 204 even when there is none; ``POST`` is
405; ``/api/homepage/<anything>`` is 404. Webhooks carry ``"model": "homepage"``.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
import requests
import responses
from flask.testing import FlaskClient

from bffproxy import ConfigError, create_app

from .conftest import STRAPI, strapi_list
from .test_publishing import EDITOR, READER, bearer, register_users, sent_json, writes

HOME = f"{STRAPI}/api/homepage"
WEBHOOK_SECRET = "unit-webhook-secret"


@pytest.fixture
def config(config: dict[str, Any]) -> dict[str, Any]:
    """Articles and the homepage single type; editors write both and see their drafts."""
    from .test_publishing import SECRET

    config.update(
        COLLECTIONS="articles,categories,homepage",
        SINGLE_TYPES="homepage",
        STRAPI_JWT_SECRET=SECRET,
        WEBHOOK_SECRET=WEBHOOK_SECRET,
        POLICIES={
            "articles": "read=public,drafts=editor,write=editor",
            "homepage": "read=public,drafts=editor,write=editor",
        },
    )
    return config


@pytest.fixture
def editor(strapi: responses.RequestsMock) -> dict[str, str]:
    register_users(strapi)
    return bearer(EDITOR)


def homepage(status: int = 200, **fields: Any) -> dict[str, Any]:
    """Strapi's answer for the homepage."""
    data = {"id": 2, "documentId": "mgkny5ckjijbo9qqzz8jh8eo", "title": "Welcome", **fields}
    return {"data": data, "meta": {}}


# -- configuration -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("collections", "singles", "named"),
    [
        ("articles", "homepage", "BFFPROXY_SINGLE_TYPES names 'homepage', which is not in"),
        ("articles,homepage", "", "'homepage' is a single type in Strapi (api::homepage.homepage): add it"),
        ("articles,homepage", "articles,homepage", "'articles' is a collection type in Strapi"),
        ("articles,home page", "home page", "BFFPROXY_COLLECTIONS has an invalid name"),
    ],
)
def test_single_types_are_checked_at_start_up(
    config: dict[str, Any], collections: str, singles: str, named: str
) -> None:
    config.update(COLLECTIONS=collections, SINGLE_TYPES=singles, POLICIES={})
    with pytest.raises(ConfigError, match=re.escape(named)):
        create_app(config)


def test_a_single_type_without_a_schema_is_read_only(config: dict[str, Any], strapi: Any) -> None:
    config.update(COLLECTIONS="articles,global", SINGLE_TYPES="global", POLICIES={})
    client = create_app(config).test_client()
    strapi.get(f"{STRAPI}/api/global", json=homepage())
    assert client.get("/api/global").status_code == 200
    assert client.get("/api/global/x").status_code == 404
    assert client.put("/api/global", json={"data": {}}).status_code == 401  # write policy: nobody


# -- reads ---------------------------------------------------------------------------------------------


def test_a_single_type_is_read_through_the_cache(client: FlaskClient, strapi: Any) -> None:
    strapi.get(HOME, json=homepage())
    first = client.get("/api/homepage?fields[0]=title")
    assert (first.status_code, first.headers["X-Cache"], first.get_json()) == (200, "MISS", homepage())
    assert client.get("/api/homepage?fields%5B0%5D=title").headers["X-Cache"] == "HIT"
    assert client.head("/api/homepage?fields[0]=title").headers["X-Cache"] == "HIT"
    (call,) = strapi.calls
    assert call.request.url == f"{HOME}?fields[0]=title"
    assert "Authorization" not in call.request.headers  # Strapi's Public role applies


@pytest.mark.parametrize("path", ["/api/homepage/x", f"/api/homepage/{'a' * 24}", "/api/homepage/publish"])
def test_nothing_lives_under_a_single_type(client: FlaskClient, strapi: Any, path: str) -> None:
    answer = client.get(path)
    assert (answer.status_code, answer.get_json()["error"]["code"]) == (404, "not_found")
    assert len(strapi.calls) == 0  # Strapi is not asked


def test_drafts_of_a_single_type_follow_the_drafts_policy(
    client: FlaskClient, strapi: Any, editor: Any
) -> None:
    answer = client.get("/api/homepage?status=draft")
    assert (answer.status_code, answer.get_json()["error"]["code"]) == (400, "drafts_not_allowed")
    assert client.get("/api/homepage?status=bogus").status_code == 400
    strapi.get(HOME, json=homepage(publishedAt=None))
    drafts = client.get("/api/homepage?status=draft", headers=editor)
    assert drafts.status_code == 200 and drafts.headers["Cache-Control"] == "private, no-store"
    (call,) = [c for c in strapi.calls if c.request.url.startswith(HOME)]
    assert call.request.url == f"{HOME}?status=draft"
    assert call.request.headers["Authorization"] == "Bearer server-api-token"


def test_reader_may_not_see_drafts(client: FlaskClient, strapi: Any) -> None:
    register_users(strapi)
    assert client.get("/api/homepage?status=draft", headers=bearer(READER)).status_code == 403


# -- writes --------------------------------------------------------------------------------------------


def test_put_creates_or_edits_and_publishes_as_strapi_does(
    client: FlaskClient, strapi: Any, editor: Any
) -> None:
    strapi.get(HOME, json=homepage())
    client.get("/api/homepage")
    assert client.get("/api/homepage").headers["X-Cache"] == "HIT"
    edited = homepage(tagline="New", publishedAt="2026-12-06T03:15:58.885Z")
    strapi.put(HOME, json=edited)
    answer = client.put("/api/homepage", json={"data": {"tagline": "New"}}, headers=editor)
    assert (answer.status_code, answer.get_json()) == (200, edited)
    (call,) = writes(strapi)
    assert call.request.url == HOME  # no status: Strapi publishes
    assert call.request.headers["Authorization"] == "Bearer server-api-token"
    assert sent_json(call) == {"data": {"tagline": "New"}}
    assert client.get("/api/homepage").headers["X-Cache"] == "MISS"  # read-your-writes


def test_put_status_draft_needs_the_drafts_policy_and_is_forwarded(
    config: dict[str, Any], client: FlaskClient, strapi: Any, editor: Any
) -> None:
    strapi.put(HOME, json=homepage(publishedAt=None))
    body = {"data": {"title": "Draft home"}}
    assert (
        client.put("/api/homepage?status=draft&fields[0]=title", json=body, headers=editor).status_code == 200
    )
    (call,) = writes(strapi)
    assert call.request.url == f"{HOME}?fields[0]=title&status=draft"
    config["POLICIES"] = {**config["POLICIES"], "homepage": "read=public,write=editor"}
    strict = create_app(config).test_client()
    assert strict.put("/api/homepage?status=draft", json=body, headers=editor).status_code == 403
    assert len(writes(strapi)) == 1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"data": {"title": "x" * 121}}, "data.title"),
        ({"data": {"title": None}}, "data.title"),
        ({"data": {"slug": "home"}}, "data.slug"),
        ({"data": {"body": '<img src=x onerror="alert(1)">'}}, "body"),  # rules.py names it so
        ({"title": "no data wrapper"}, "data"),
    ],
)
def test_put_is_validated_by_the_single_types_schema(
    client: FlaskClient, strapi: Any, editor: Any, body: Any, field: str
) -> None:
    answer = client.put("/api/homepage", json=body, headers=editor)
    assert answer.status_code == 422
    assert field in [e["field"] for e in answer.get_json()["error"]["details"]["errors"]]
    assert writes(strapi) == []


@pytest.mark.parametrize("query", ["status=bogus", "locale=fr", "filters[title][$eq]=x", "foo=1"])
def test_put_query_is_checked_like_a_collections(
    client: FlaskClient, strapi: Any, editor: Any, query: str
) -> None:
    answer = client.put(f"/api/homepage?{query}", json={"data": {"title": "t"}}, headers=editor)
    assert (answer.status_code, answer.get_json()["error"]["code"]) == (400, "invalid_parameter")
    assert writes(strapi) == []


def test_delete_removes_it_and_invalidates(client: FlaskClient, strapi: Any, editor: Any) -> None:
    strapi.get(HOME, json=homepage())
    client.get("/api/homepage")
    strapi.delete(HOME, status=204)
    answer = client.delete("/api/homepage", headers=editor)
    assert (answer.status_code, answer.data) == (204, b"")
    strapi.replace(responses.GET, HOME, status=404, json={"data": None, "error": {"status": 404}})
    assert client.get("/api/homepage").status_code == 404
    assert client.delete("/api/homepage?status=draft", headers=editor).status_code == 400  # 500 in Strapi
    assert len(writes(strapi)) == 1


@pytest.mark.parametrize(("method", "url"), [("PUT", "/api/homepage"), ("DELETE", "/api/homepage")])
def test_single_type_writes_follow_the_write_policy(
    client: FlaskClient, strapi: Any, method: str, url: str
) -> None:
    register_users(strapi)
    assert client.open(url, method=method, json={"data": {"title": "t"}}).status_code == 401
    assert (
        client.open(url, method=method, json={"data": {"title": "t"}}, headers=bearer(READER)).status_code
        == 403
    )
    assert writes(strapi) == []


@pytest.mark.parametrize(
    ("method", "url", "status", "allow"),
    [
        ("POST", "/api/homepage", 405, "GET, HEAD, PUT, DELETE"),  # a single type is never POSTed
        ("PUT", "/api/articles", 405, "GET, HEAD, POST"),  # a collection has no PUT without an id
        ("DELETE", "/api/articles", 405, "GET, HEAD, POST"),
        ("PUT", f"/api/homepage/{'a' * 24}", 404, None),
        ("DELETE", f"/api/homepage/{'a' * 24}", 404, None),
        ("POST", "/api/homepage/publish", 404, None),
        ("POST", f"/api/homepage/{'a' * 24}/publish", 404, None),
        ("PUT", "/api/widgets", 404, None),
        ("DELETE", "/api/widgets", 404, None),
    ],
)
def test_routes_a_kind_does_not_have_are_refused_before_anything_else(
    client: FlaskClient, strapi: Any, method: str, url: str, status: int, allow: str | None
) -> None:
    answer = client.open(url, method=method, json={"data": {"title": "t"}})  # even anonymous
    assert answer.status_code == status, answer.get_json()
    assert answer.get_json()["error"]["status"] == status
    assert answer.headers.get("Allow") == allow
    assert len(strapi.calls) == 0


def test_a_keyed_put_replays_and_is_audited_as_an_update(
    client: FlaskClient, strapi: Any, editor: Any, caplog: pytest.LogCaptureFixture
) -> None:
    strapi.put(HOME, json=homepage())
    headers = {**editor, "Idempotency-Key": "home-1"}
    for _ in range(2):
        assert client.put("/api/homepage", json={"data": {"title": "t"}}, headers=headers).status_code == 200
    assert len(writes(strapi)) == 1
    client.put("/api/homepage?status=draft", json={"data": {"title": "t"}}, headers=editor)
    actions = [r.getMessage() for r in caplog.records if r.name == "bffproxy.audit"]
    assert ['"action":"update"' in a for a in actions] == [True, True, False]
    assert '"action":"update_draft","outcome":"success"' in actions[2]
    assert all('"collection":"homepage"' in a for a in actions)


def test_an_unknown_delete_found_done_is_not_sent_again(
    app: Any, client: FlaskClient, strapi: Any, editor: Any, clock: Any
) -> None:
    app.extensions["bffproxy.idempotency"].clock = clock
    headers = {**editor, "Idempotency-Key": "home-del"}
    strapi.delete(HOME, body=requests.exceptions.ReadTimeout("read timed out"))
    assert client.delete("/api/homepage", headers=headers).status_code == 504
    strapi.get(HOME, status=404, json={"data": None, "error": {"status": 404}})
    clock.advance(11)
    retry = client.delete("/api/homepage", headers=headers)
    assert (retry.status_code, retry.data) == (204, b"")
    assert len(writes(strapi)) == 1
    (look_up,) = [
        c.request for c in strapi.calls if c.request.method == "GET" and "/users/" not in c.request.url
    ]
    assert look_up.url == f"{HOME}?status=draft"


# -- webhooks ------------------------------------------------------------------------------------------


PUBLISH = {  # as Strapi 5.54 sent it for the project app's homepage
    "event": "entry.publish",
    "createdAt": "2026-12-06T03:15:58.900Z",
    "model": "homepage",
    "uid": "api::homepage.homepage",
    "entry": {"id": 3, "documentId": "mgkny5ckjijbo9qqzz8jh8eo", "title": "Welcome", "publishedAt": "x"},
}


def test_its_webhook_invalidates_the_single_type_only(client: FlaskClient, strapi: Any) -> None:
    strapi.get(HOME, json=homepage())
    strapi.get(f"{STRAPI}/api/articles", json=strapi_list("One"))
    for path in ("/api/homepage", "/api/articles"):
        client.get(path)
    headers = {"X-Webhook-Secret": WEBHOOK_SECRET}
    answer = client.post("/webhooks/strapi", json=PUBLISH, headers=headers)
    assert answer.status_code == 200
    assert (answer.get_json()["model"], answer.get_json()["invalidated"]) == ("homepage", ["homepage"])
    assert [client.get(p).headers["X-Cache"] for p in ("/api/homepage", "/api/articles")] == ["MISS", "HIT"]


def test_a_single_types_model_is_its_name_even_when_a_plural_is_exposed(
    config: dict[str, Any], strapi: Any
) -> None:
    config.update(COLLECTIONS="articles,homepage,homepages", SINGLE_TYPES="homepage")
    client = create_app(config).test_client()
    answer = client.post("/webhooks/strapi", json=PUBLISH, headers={"X-Webhook-Secret": WEBHOOK_SECRET})
    assert answer.get_json()["invalidated"] == ["homepage"]
