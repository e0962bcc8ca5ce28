"""The publishing blueprint against a fake Strapi: routes, body checks, pass-through, read-your-writes."""

from __future__ import annotations

import json
import time
from typing import Any

import jwt
import pytest
import requests
import responses
from flask.testing import FlaskClient

from bffproxy import create_app

from .conftest import STRAPI, strapi_list
from .test_strapi import connection_refused

SECRET = "unit-test-jwt-secret-0123456789abcdef"
EDITOR, READER = 7, 8
DOC = "abcdefghijklmnopqrstuvwx"


# -- helpers shared by test_idempotency.py and test_audit.py -------------------------------------


@pytest.fixture
def config(config: dict[str, Any]) -> dict[str, Any]:
    """Unit config plus auth: editors may write articles (and their drafts) and categories."""
    config.update(
        STRAPI_JWT_SECRET=SECRET,
        POLICIES={
            "articles": "read=public,drafts=editor,write=editor",
            "categories": "read=public,write=editor",
        },
    )
    return config


def bearer(user_id: int) -> dict[str, str]:
    """The Authorization header of a Strapi (legacy) JWT for ``user_id``."""
    now = int(time.time())
    token = jwt.encode({"id": user_id, "iat": now, "exp": now + 3600}, SECRET, algorithm="HS256")
    return {"Authorization": f"Bearer {token}"}


def register_users(strapi: responses.RequestsMock) -> None:
    """Strapi's answers to the role look-up of the editor and the reader."""
    for user_id, name, role in ((EDITOR, "editor", "editor"), (READER, "reader", "authenticated")):
        strapi.get(
            f"{STRAPI}/api/users/{user_id}",
            json={
                "id": user_id,
                "username": name,
                "email": f"{name}@example.com",
                "blocked": False,
                "role": {"type": role},
            },
        )


@pytest.fixture
def editor(strapi: responses.RequestsMock) -> dict[str, str]:
    """Headers of a signed-in editor (JSON body)."""
    register_users(strapi)
    return {**bearer(EDITOR), "Content-Type": "application/json"}


@pytest.fixture
def reader(strapi: responses.RequestsMock) -> dict[str, str]:
    """Headers of a signed-in reader, who may not write."""
    register_users(strapi)
    return {**bearer(READER), "Content-Type": "application/json"}


def document(document_id: str = DOC, status: int = 201, **fields: Any) -> dict[str, Any]:
    """A Strapi 5 single-document answer."""
    data = {
        "id": 1,
        "documentId": document_id,
        "title": "T",
        "createdAt": "2026-11-23T20:49:49.435Z",
        **fields,
    }
    return {"data": data, "meta": {}}


def writes(strapi: responses.RequestsMock) -> list[Any]:
    """The non-GET calls Strapi received."""
    return [call for call in strapi.calls if call.request.method != "GET"]


def sent_json(call: Any) -> Any:
    """The JSON body of one call Strapi received."""
    return json.loads(call.request.body)


# -- the routes ------------------------------------------------------------------------------------


def test_one_shot_publish_creates_and_publishes(client: FlaskClient, strapi: Any, editor: Any) -> None:
    strapi.post(f"{STRAPI}/api/articles", json=document(title="Hello"), status=201)
    answer = client.post("/api/articles/publish", json={"title": "Hello", "content": "Hi"}, headers=editor)
    assert answer.status_code == 201
    assert answer.get_json()["data"]["documentId"] == DOC
    assert answer.headers["Cache-Control"] == "no-store"
    (call,) = writes(strapi)
    assert "status=" not in call.request.url  # plain POST: create AND publish
    assert call.request.headers["Authorization"] == "Bearer server-api-token"  # never the user's token
    data = sent_json(call)["data"]
    assert data["title"] == "Hello" and data["body"] == "Hi"  # "content" is the flat alias of body
    assert data["slug"].startswith("hello-")


PUBLISHED = "2026-11-23T20:49:47.348Z"


def test_create_publishes_as_strapi_does(client: FlaskClient, strapi: Any, editor: Any) -> None:
    created = document(publishedAt=PUBLISHED)
    strapi.post(f"{STRAPI}/api/articles", json=created, status=201)
    body = {"data": {"title": "Live", "section": "guide", "featured": True, "category": "catdoc"}}
    answer = client.post("/api/articles", json=body, headers=editor)
    assert (answer.status_code, answer.get_json()) == (201, created)  # Strapi's status and body
    (call,) = writes(strapi)
    assert call.request.url == f"{STRAPI}/api/articles"  # no status: Strapi creates AND publishes
    assert call.request.headers["Authorization"] == "Bearer server-api-token"
    assert sent_json(call)["data"]["category"] == "catdoc"


def test_create_with_status_draft_writes_the_draft_only(
    client: FlaskClient, strapi: Any, editor: Any
) -> None:
    strapi.post(f"{STRAPI}/api/articles", json=document(publishedAt=None), status=201)
    answer = client.post("/api/articles?status=draft", json={"data": {"title": "Draft"}}, headers=editor)
    assert answer.status_code == 201
    (call,) = writes(strapi)
    assert call.request.url == f"{STRAPI}/api/articles?status=draft"


def test_status_draft_needs_the_drafts_policy_as_well_as_write(config: dict[str, Any], strapi: Any) -> None:
    from bffproxy import create_app

    config["POLICIES"] = {"articles": "read=public,write=editor"}
    client = create_app(config).test_client()
    register_users(strapi)
    headers = bearer(EDITOR)
    for method, url in (("POST", "/api/articles"), ("PUT", f"/api/articles/{DOC}")):
        answer = client.open(
            f"{url}?status=draft", method=method, json={"data": {"title": "t"}}, headers=headers
        )
        assert answer.status_code == 403, answer.get_json()
        assert answer.get_json()["error"]["details"]["action"] == "drafts"
    assert writes(strapi) == []


def test_status_published_is_sent_as_given(client: FlaskClient, strapi: Any, editor: Any) -> None:
    strapi.post(f"{STRAPI}/api/articles", json=document(publishedAt=PUBLISHED), status=201)
    strapi.put(f"{STRAPI}/api/articles/{DOC}", json=document(status=200, publishedAt=PUBLISHED))
    body = {"data": {"title": "t"}}
    assert client.post("/api/articles?status=published", json=body, headers=editor).status_code == 201
    assert client.put(f"/api/articles/{DOC}?status=published", json=body, headers=editor).status_code == 200
    assert [c.request.url.split("?")[1] for c in writes(strapi)] == ["status=published"] * 2


def test_fields_and_populate_shape_the_answer_and_are_reencoded(
    client: FlaskClient, strapi: Any, editor: Any
) -> None:
    shaped = {"data": {"id": 1, "documentId": DOC, "title": "T", "category": None}, "meta": {}}
    strapi.put(f"{STRAPI}/api/articles/{DOC}", json=shaped)
    query = "populate=category&fields%5B0%5D=title"
    answer = client.put(f"/api/articles/{DOC}?{query}", json={"data": {"excerpt": "e"}}, headers=editor)
    assert (answer.status_code, answer.get_json()) == (200, shaped)
    (call,) = writes(strapi)
    assert call.request.url.split("?")[1] == "fields[0]=title&populate=category"


REFUSED_WRITE_QUERIES = [
    "status=bogus",  # Strapi writes only the draft for any status but "published"
    "status",
    "status[]=published",
    "status[0]=published",
    "%5Bstatus%5D=published",  # qs reads it as status, but only a plain status=... is accepted
    "status=published&status=draft",
    "locale=fr",
    "filters[title][$eq]=x",
    "sort=title",
    "pagination[page]=2",
    "publicationState=live",
    "_q=x",
    "lookup=x",
    "populate[category][filters][articles][title][$eq]=x",  # filters through a relation into drafts
    "%26status=draft",
]


@pytest.mark.parametrize("query", REFUSED_WRITE_QUERIES)
@pytest.mark.parametrize(("method", "url"), [("POST", "/api/articles"), ("PUT", f"/api/articles/{DOC}")])
def test_write_queries_strapi_would_misread_or_ignore_are_400(
    client: FlaskClient, strapi: Any, editor: Any, method: str, url: str, query: str
) -> None:
    answer = client.open(f"{url}?{query}", method=method, json={"data": {"title": "t"}}, headers=editor)
    assert answer.status_code == 400, answer.get_json()
    assert answer.get_json()["error"]["code"] == "invalid_parameter"
    assert writes(strapi) == []


@pytest.mark.parametrize(
    ("method", "url"),
    [
        ("POST", "/api/articles/publish?status=draft"),
        ("POST", f"/api/articles/{DOC}/publish?fields[0]=title"),
        ("POST", f"/api/articles/{DOC}/unpublish?status=published"),
        ("DELETE", f"/api/articles/{DOC}?locale=fr"),
        ("DELETE", f"/api/articles/{DOC}?status=draft"),  # Strapi answers 500
    ],
)
def test_bffproxys_own_routes_and_delete_take_no_query(
    client: FlaskClient, strapi: Any, editor: Any, method: str, url: str
) -> None:
    answer = client.open(url, method=method, json={"title": "t"}, headers=editor)
    assert answer.status_code == 400
    assert answer.get_json()["error"]["code"] == "invalid_parameter"
    assert writes(strapi) == []


def test_collection_without_drafts_is_created_directly(client: FlaskClient, strapi: Any, editor: Any) -> None:
    strapi.post(f"{STRAPI}/api/categories", json=document(name="Cats"), status=201)
    answer = client.post("/api/categories", json={"data": {"name": "Cats"}}, headers=editor)
    assert answer.status_code == 201
    (call,) = writes(strapi)
    assert call.request.url == f"{STRAPI}/api/categories"
    assert sent_json(call)["data"]["slug"].startswith("cats-")


def test_edit_publishes_as_strapi_does(client: FlaskClient, strapi: Any, editor: Any) -> None:
    edited = document(status=200, excerpt="new", publishedAt=PUBLISHED)
    strapi.put(f"{STRAPI}/api/articles/{DOC}", json=edited)
    answer = client.put(f"/api/articles/{DOC}", json={"data": {"excerpt": "new"}}, headers=editor)
    assert (answer.status_code, answer.get_json()) == (200, edited)
    (call,) = writes(strapi)
    assert call.request.url == f"{STRAPI}/api/articles/{DOC}"  # no status: Strapi publishes the edit
    assert sent_json(call) == {"data": {"excerpt": "new"}}  # partial, and no slug invented on edit


def test_edit_with_status_draft_changes_the_draft_only(client: FlaskClient, strapi: Any, editor: Any) -> None:
    strapi.put(f"{STRAPI}/api/articles/{DOC}", json=document(status=200, excerpt="new", publishedAt=None))
    answer = client.put(
        f"/api/articles/{DOC}?status=draft", json={"data": {"excerpt": "new"}}, headers=editor
    )
    assert answer.status_code == 200
    (call,) = writes(strapi)
    assert call.request.url == f"{STRAPI}/api/articles/{DOC}?status=draft"


def test_publish_puts_status_published(client: FlaskClient, strapi: Any, editor: Any) -> None:
    strapi.put(f"{STRAPI}/api/articles/{DOC}", json=document(publishedAt="2026-11-23T20:49:53.642Z"))
    answer = client.post(f"/api/articles/{DOC}/publish", headers=editor)
    assert answer.status_code == 200
    (call,) = writes(strapi)
    assert call.request.url.endswith("?status=published")
    assert sent_json(call) == {"data": {}}


def test_publish_of_a_collection_without_drafts_is_refused(client: FlaskClient, editor: Any) -> None:
    answer = client.post(f"/api/categories/{DOC}/publish", headers=editor)
    assert answer.status_code == 400
    assert answer.get_json()["error"]["code"] == "no_draft_and_publish"


def test_delete(client: FlaskClient, strapi: Any, editor: Any) -> None:
    strapi.delete(f"{STRAPI}/api/articles/{DOC}", status=204)
    answer = client.delete(f"/api/articles/{DOC}", headers=editor)
    assert answer.status_code == 204
    assert answer.data == b""


def test_unpublish_without_admin_credentials_is_501(client: FlaskClient, strapi: Any, editor: Any) -> None:
    answer = client.post(f"/api/articles/{DOC}/unpublish", headers=editor)
    assert answer.status_code == 501
    message = answer.get_json()["error"]["message"]
    assert "BFFPROXY_STRAPI_ADMIN_EMAIL" in message and "BFFPROXY_STRAPI_ADMIN_PASSWORD" in message
    assert writes(strapi) == []


def admin_jwt(exp_in: float = 1800) -> str:
    """An admin token as Strapi issues it (only its exp is read by bffproxy)."""
    return jwt.encode(
        {"userId": "1", "exp": int(time.time() + exp_in)},
        "admin-secret-for-unit-tests-0123456789",
        algorithm="HS256",
    )


@pytest.fixture
def admin_config(config: dict[str, Any]) -> dict[str, Any]:
    config.update(STRAPI_ADMIN_EMAIL="admin@example.com", STRAPI_ADMIN_PASSWORD="Admin-Passw0rd!")
    return config


CM_UNPUBLISH = f"{STRAPI}/content-manager/collection-types/api::article.article/{DOC}/actions/unpublish"


def test_unpublish_uses_the_admin_content_manager_api(
    admin_config: Any, client: FlaskClient, strapi: Any, editor: Any
) -> None:
    token = admin_jwt()
    strapi.post(f"{STRAPI}/admin/login", json={"data": {"token": token}})
    strapi.post(CM_UNPUBLISH, json=document(status=200, publishedAt=None))
    for _ in range(2):
        assert client.post(f"/api/articles/{DOC}/unpublish", headers=editor).status_code == 200
    logins = [c for c in strapi.calls if c.request.url.endswith("/admin/login")]
    assert len(logins) == 1  # the admin session is reused
    assert sent_json(logins[0]) == {"email": "admin@example.com", "password": "Admin-Passw0rd!"}
    unpublishes = [c for c in strapi.calls if c.request.url == CM_UNPUBLISH]
    assert [c.request.headers["Authorization"] for c in unpublishes] == [f"Bearer {token}"] * 2


def test_unpublish_logs_in_again_when_the_admin_session_expired(
    admin_config: Any, client: FlaskClient, strapi: Any, editor: Any
) -> None:
    strapi.post(f"{STRAPI}/admin/login", json={"data": {"token": admin_jwt()}})
    strapi.post(CM_UNPUBLISH, status=401, json={"error": {"status": 401}})
    strapi.post(CM_UNPUBLISH, json=document(status=200))
    assert client.post(f"/api/articles/{DOC}/unpublish", headers=editor).status_code == 200
    assert len([c for c in strapi.calls if c.request.url.endswith("/admin/login")]) == 2


def test_refused_admin_login_is_a_clear_502(
    admin_config: Any, client: FlaskClient, strapi: Any, editor: Any
) -> None:
    strapi.post(f"{STRAPI}/admin/login", status=400, json={"error": {"message": "Invalid credentials"}})
    answer = client.post(f"/api/articles/{DOC}/unpublish", headers=editor)
    assert answer.status_code == 502
    assert "BFFPROXY_STRAPI_ADMIN_PASSWORD" in answer.get_json()["error"]["message"]


def test_admin_credentials_go_together(config: dict[str, Any]) -> None:
    from bffproxy import ConfigError, create_app

    config["STRAPI_ADMIN_EMAIL"] = "admin@example.com"
    with pytest.raises(ConfigError, match="BFFPROXY_STRAPI_ADMIN_PASSWORD"):
        create_app(config)


# -- body checks -----------------------------------------------------------------------------------


def test_non_json_body_is_415(client: FlaskClient, strapi: Any, editor: Any) -> None:
    headers = {**editor, "Content-Type": "text/plain"}
    answer = client.post("/api/articles/publish", data="title=x", headers=headers)
    assert answer.status_code == 415
    assert answer.get_json()["error"]["code"] == "unsupported_media_type"
    assert writes(strapi) == []


def test_malformed_json_is_400(client: FlaskClient, strapi: Any, editor: Any) -> None:
    answer = client.post("/api/articles", data='{"data": {"title": ', headers=editor)
    assert answer.status_code == 400
    assert "not valid JSON" in answer.get_json()["error"]["message"]
    assert writes(strapi) == []


def test_body_over_the_limit_is_413(config: dict[str, Any], strapi: Any) -> None:
    from bffproxy import create_app

    config["MAX_CONTENT_LENGTH"] = 200
    client = create_app(config).test_client()
    register_users(strapi)
    headers = {**bearer(EDITOR), "Content-Type": "application/json"}
    answer = client.post("/api/articles/publish", json={"title": "x", "content": "y" * 500}, headers=headers)
    assert answer.status_code == 413
    assert answer.get_json()["error"]["status"] == 413
    assert writes(strapi) == []


@pytest.mark.parametrize(
    ("url", "body", "field"),
    [
        ("/api/articles/publish", {"content": "no title"}, "title"),
        ("/api/articles/publish", {"title": "x" * 201}, "title"),
        ("/api/articles/publish", {"title": "t", "section": "sport"}, "section"),
        ("/api/articles/publish", {"title": "t", "nope": 1}, "nope"),
        ("/api/articles", {"data": {"title": 5}}, "data.title"),
        ("/api/articles", {"title": "t"}, "data"),
        ("/api/articles", {"data": {"title": "t"}, "meta": {}}, "meta"),
        ("/api/articles", [1, 2], "(body)"),
        ("/api/categories", {"data": {"title": "not a category field", "name": "n"}}, "data.title"),
    ],
)
def test_invalid_content_is_422_with_per_field_errors(
    client: FlaskClient, strapi: Any, editor: Any, url: str, body: Any, field: str
) -> None:
    answer = client.post(url, json=body, headers=editor)
    assert answer.status_code == 422
    error = answer.get_json()["error"]
    assert error["code"] == "validation_failed"
    assert field in [item["field"] for item in error["details"]["errors"]]
    assert writes(strapi) == []  # nothing reached Strapi


def test_edit_validates_partially(client: FlaskClient, strapi: Any, editor: Any) -> None:
    answer = client.put(f"/api/articles/{DOC}", json={"data": {"title": None}}, headers=editor)
    assert answer.status_code == 422
    assert writes(strapi) == []


# -- Strapi's answers and failures -------------------------------------------------------------


def test_strapi_4xx_passes_through(client: FlaskClient, strapi: Any, editor: Any) -> None:
    refusal = {"data": None, "error": {"status": 400, "name": "ValidationError", "message": "Invalid key x"}}
    strapi.post(f"{STRAPI}/api/articles", json=refusal, status=400)
    answer = client.post("/api/articles", json={"data": {"title": "t"}}, headers=editor)
    assert answer.status_code == 400
    assert answer.get_json() == refusal


def test_strapi_404_on_edit_passes_through(client: FlaskClient, strapi: Any, editor: Any) -> None:
    strapi.put(f"{STRAPI}/api/articles/{DOC}", status=404, json={"data": None, "error": {"status": 404}})
    assert client.put(f"/api/articles/{DOC}", json={"data": {}}, headers=editor).status_code == 404


def test_timeout_after_sending_is_504_outcome_unknown(client: FlaskClient, strapi: Any, editor: Any) -> None:
    strapi.post(f"{STRAPI}/api/articles", body=requests.exceptions.ReadTimeout("read timed out"))
    answer = client.post("/api/articles/publish", json={"title": "t"}, headers=editor)
    assert answer.status_code == 504
    error = answer.get_json()["error"]
    assert error["code"] == "outcome_unknown"
    assert "outcome of this write is unknown" in error["message"]
    assert "Idempotency-Key" in error["message"]
    assert len(writes(strapi)) == 1  # never retried


def test_strapi_down_before_sending_is_502(client: FlaskClient, strapi: Any, editor: Any) -> None:
    strapi.post(f"{STRAPI}/api/articles", body=connection_refused())
    answer = client.post("/api/articles/publish", json={"title": "t"}, headers=editor)
    assert answer.status_code == 502
    assert answer.get_json()["error"]["code"] == "upstream_unavailable"


def test_strapi_5xx_on_a_write_is_an_unknown_outcome(client: FlaskClient, strapi: Any, editor: Any) -> None:
    strapi.delete(f"{STRAPI}/api/articles/{DOC}", status=500, json={})
    answer = client.delete(f"/api/articles/{DOC}", headers=editor)
    assert answer.status_code == 502
    assert answer.get_json()["error"]["details"]["outcome"] == "unknown"


# -- who may write ---------------------------------------------------------------------------------


WRITE_ROUTES = [
    ("POST", "/api/articles/publish", {"title": "t"}),
    ("POST", "/api/articles", {"data": {"title": "t"}}),
    ("PUT", f"/api/articles/{DOC}", {"data": {"title": "t"}}),
    ("POST", f"/api/articles/{DOC}/publish", None),
    ("POST", f"/api/articles/{DOC}/unpublish", None),
    ("DELETE", f"/api/articles/{DOC}", None),
]


@pytest.mark.parametrize(("method", "url", "body"), WRITE_ROUTES)
def test_reader_gets_403_on_every_write(
    client: FlaskClient, strapi: Any, reader: Any, method: str, url: str, body: Any
) -> None:
    answer = client.open(url, method=method, json=body, headers=reader)
    assert answer.status_code == 403
    assert writes(strapi) == []


@pytest.mark.parametrize(("method", "url", "body"), WRITE_ROUTES)
def test_anonymous_gets_401_on_every_write(
    client: FlaskClient, strapi: Any, method: str, url: str, body: Any
) -> None:
    assert client.open(url, method=method, json=body).status_code == 401
    assert writes(strapi) == []


def test_unknown_collection_is_404(client: FlaskClient, editor: Any) -> None:
    assert client.post("/api/widgets/publish", json={"title": "t"}, headers=editor).status_code == 404


def test_exposed_collection_without_a_schema_is_404(config: dict[str, Any], strapi: Any) -> None:
    from bffproxy import create_app

    config["COLLECTIONS"] = "articles,categories,pages"
    config["POLICIES"] = {**config["POLICIES"], "pages": "read=public,write=editor"}
    register_users(strapi)
    client = create_app(config).test_client()
    answer = client.post("/api/pages", json={"data": {"title": "t"}}, headers=bearer(EDITOR))
    assert answer.status_code == 404


def test_reads_are_untouched_by_the_write_routes(client: FlaskClient, strapi: Any) -> None:
    strapi.get(f"{STRAPI}/api/articles/publish", status=404, json={"data": None, "error": {"status": 404}})
    assert client.get("/api/articles/publish").status_code == 404  # content.py's route, not ours


# -- read-your-writes ------------------------------------------------------------------------------


def test_a_write_is_visible_on_the_very_next_read(client: FlaskClient, strapi: Any, editor: Any) -> None:
    strapi.get(f"{STRAPI}/api/articles", json=strapi_list("Old"))
    assert client.get("/api/articles").headers["X-Cache"] == "MISS"
    assert client.get("/api/articles").headers["X-Cache"] == "HIT"
    strapi.post(f"{STRAPI}/api/articles", json=document(title="New"), status=201)
    strapi.replace(responses.GET, f"{STRAPI}/api/articles", json=strapi_list("Old", "New"))
    assert client.post("/api/articles/publish", json={"title": "New"}, headers=editor).status_code == 201
    after = client.get("/api/articles")
    assert after.headers["X-Cache"] == "MISS"
    assert [item["title"] for item in after.get_json()["data"]] == ["Old", "New"]


def test_a_related_collection_is_invalidated_too(config: dict[str, Any], strapi: Any) -> None:
    from bffproxy import create_app

    config["RELATIONS"] = {"articles": "categories"}
    client = create_app(config).test_client()
    register_users(strapi)
    strapi.get(f"{STRAPI}/api/categories", json=strapi_list("News"))
    client.get("/api/categories")
    assert client.get("/api/categories").headers["X-Cache"] == "HIT"
    strapi.delete(f"{STRAPI}/api/articles/{DOC}", status=204)
    client.delete(f"/api/articles/{DOC}", headers=bearer(EDITOR))
    assert client.get("/api/categories").headers["X-Cache"] == "MISS"


def test_a_refused_write_invalidates_nothing(client: FlaskClient, strapi: Any, editor: Any) -> None:
    strapi.get(f"{STRAPI}/api/articles", json=strapi_list("Old"))
    client.get("/api/articles")
    strapi.post(f"{STRAPI}/api/articles", json={"error": {"status": 400}}, status=400)
    client.post("/api/articles", json={"data": {"title": "t"}}, headers=editor)
    assert client.get("/api/articles").headers["X-Cache"] == "HIT"


# -- review: bad input and documentId shapes -------------------------------------------------------


def test_deeply_nested_json_is_400_not_500(client: FlaskClient, strapi: Any, editor: Any) -> None:
    answer = client.post("/api/articles/publish", data="[" * 100_000, headers=editor)
    assert answer.status_code == 400
    assert answer.get_json()["error"]["code"] == "bad_request"
    assert writes(strapi) == []


@pytest.mark.parametrize("method", ["PUT", "DELETE"])
def test_document_id_with_a_trailing_newline_is_404_and_never_sent(
    client: FlaskClient, strapi: Any, editor: Any, method: str
) -> None:
    answer = client.open(
        f"/api/articles/{DOC}%0A", method=method, json={"data": {"excerpt": "e"}}, headers=editor
    )
    assert answer.status_code == 404
    assert writes(strapi) == []


def test_one_key_with_another_status_is_another_request(
    client: FlaskClient, strapi: Any, editor: Any
) -> None:
    strapi.post(f"{STRAPI}/api/articles", json=document(publishedAt=PUBLISHED), status=201)
    headers = {**editor, "Idempotency-Key": "k-status"}
    body = {"data": {"title": "t", "slug": "t"}}
    assert client.post("/api/articles", json=body, headers=headers).status_code == 201
    draft = client.post("/api/articles?status=draft", json=body, headers=headers)
    assert draft.status_code == 422  # the same key must ask for the same thing, query included
    assert draft.get_json()["error"]["code"] == "idempotency_key_reused"
    same = client.post("/api/articles", json=body, headers=headers)
    assert (same.status_code, same.headers["Idempotent-Replayed"]) == (201, "true")
    assert len(writes(strapi)) == 1


@pytest.mark.parametrize(
    "articles",
    [[DOC], {"connect": [DOC]}, {"set": [{"documentId": DOC}]}, {"disconnect": [DOC]}, []],
)
def test_setting_a_relation_from_its_inverse_side_needs_write_on_its_target(
    config: dict[str, Any], strapi: responses.RequestsMock, articles: Any
) -> None:
    # Found attacking issue 14: a role allowed to write only categories moved published articles
    # into its category (category.articles is Strapi's mappedBy side of article.category).
    config["POLICIES"] = {
        "articles": "read=public,write=editor",
        "categories": "read=public,write=authenticated|editor",
    }
    client = create_app(config).test_client()
    register_users(strapi)
    body = {"data": {"name": "Moved", "articles": articles}}
    reader = {**bearer(READER), "Content-Type": "application/json"}
    refused = client.post("/api/categories", json=body, headers=reader)
    assert refused.status_code == 403 and "articles" in refused.get_json()["error"]["message"]
    assert not [c for c in strapi.calls if c.request.method == "POST"]
    strapi.post(f"{STRAPI}/api/categories", json=document(name="Moved"), status=201)
    allowed = client.post(
        "/api/categories", json=body, headers={**bearer(EDITOR), "Content-Type": "application/json"}
    )
    assert allowed.status_code == 201  # the editor may write articles too
    plain = client.post("/api/categories", json={"data": {"name": "Plain"}}, headers=reader)
    assert plain.status_code == 201  # without the relation the reader's category write is its own
