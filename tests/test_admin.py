"""POST /admin/cache/purge: bearer token, body validation and the three purge scopes."""

from __future__ import annotations

from typing import Any

import pytest
import responses
from flask.testing import FlaskClient

from bffproxy import create_app

from .test_invalidation import warm_cache, x_cache

TOKEN = "unit-admin-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
PATHS = ("/api/articles", "/api/articles/doc1", "/api/categories")


@pytest.fixture
def config(config: dict[str, Any]) -> dict[str, Any]:
    return {**config, "ADMIN_TOKEN": TOKEN}


@pytest.fixture
def warm(client: FlaskClient, strapi: responses.RequestsMock) -> None:
    warm_cache(client, strapi, "doc1")


def cached(client: FlaskClient) -> list[str]:
    return x_cache(client, PATHS)


def purge(client: FlaskClient, body: Any, headers: dict[str, str] | None = None) -> Any:
    return client.post("/admin/cache/purge", json=body, headers=AUTH if headers is None else headers)


@pytest.mark.usefixtures("warm")
@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}, {"Authorization": f"Basic {TOKEN}"},
     {"Authorization": "Bearer"}, {"Authorization": "Bearer tökén"}],
)  # fmt: skip
def test_missing_or_wrong_token_is_401(client: FlaskClient, headers: dict[str, str]) -> None:
    response = purge(client, {"all": True}, headers=headers)
    assert response.status_code == 401
    assert response.get_json()["error"]["code"] == "unauthorized"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert cached(client) == ["HIT", "HIT", "HIT"]


def test_the_scheme_is_case_insensitive(client: FlaskClient) -> None:
    assert purge(client, {"all": True}, headers={"Authorization": f"bearer {TOKEN}"}).status_code == 200


def test_without_an_admin_token_the_api_is_404(config: dict[str, Any]) -> None:
    client = create_app({**config, "ADMIN_TOKEN": ""}).test_client()
    for headers in ({}, {"Authorization": "Bearer "}, AUTH):
        response = purge(client, {"all": True}, headers=headers)
        assert response.status_code == 404
        error = response.get_json()["error"]
        assert error["code"] == "admin_disabled"
        assert "BFFPROXY_ADMIN_TOKEN" in error["message"]


@pytest.mark.usefixtures("warm")
def test_purge_a_collection(client: FlaskClient) -> None:
    response = purge(client, {"collection": "categories"})
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    assert response.get_json() == {
        "purged": {
            "scope": "collection",
            "tenant": "default",
            "collection": "categories",
            "invalidated": ["categories", "articles"],  # articles embed their category
        }
    }
    assert cached(client) == ["MISS", "MISS", "MISS"]


@pytest.mark.usefixtures("warm")
def test_purge_a_document_drops_its_collection_and_configured_relations(config: dict[str, Any]) -> None:
    # A fresh app over the same store (same CACHE_DIR), with a relation configured.
    other = create_app({**config, "RELATIONS": {"articles": "categories"}}).test_client()
    response = purge(other, {"collection": "articles", "documentId": "doc1"})
    assert response.get_json()["purged"] == {
        "scope": "document",
        "tenant": "default",
        "collection": "articles",
        "documentId": "doc1",
        "invalidated": ["articles", "categories"],
    }
    assert cached(other) == ["MISS", "MISS", "MISS"]


@pytest.mark.usefixtures("warm")
def test_purge_everything(client: FlaskClient) -> None:
    response = purge(client, {"all": True})
    assert response.get_json()["purged"]["scope"] == "all"
    assert cached(client) == ["MISS", "MISS", "MISS"]
    assert cached(client) == ["HIT", "HIT", "HIT"]


@pytest.mark.parametrize("data", [b"{nope", b"[]", b'"all"', b""])
def test_a_body_that_is_not_a_json_object_is_400(client: FlaskClient, data: bytes) -> None:
    response = client.post("/admin/cache/purge", data=data, content_type="application/json", headers=AUTH)
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "bad_request"


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"all": False},
        {"all": "yes"},
        {"all": True, "collection": "articles"},
        {"collection": "users"},
        {"collection": 3},
        {"documentId": "doc1"},
        {"collection": "articles", "documentId": ""},
        {"collection": "articles", "documentId": "../etc"},
        {"collection": "articles", "document_id": "doc1"},
    ],
)
def test_a_bad_scope_is_422(client: FlaskClient, body: dict[str, Any]) -> None:
    response = purge(client, body)
    assert response.status_code == 422
    assert response.get_json()["error"]["code"] == "validation_failed"


def test_a_body_nested_too_deeply_is_400_not_500(client: FlaskClient) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    response = client.post("/admin/cache/purge", data="{" * 100_000, headers=headers)
    assert response.status_code == 400


def test_a_store_fault_is_503_without_the_stores_error_text(config: dict[str, Any]) -> None:
    client = create_app(config).test_client()

    class BrokenStore:
        def __getattr__(self, name: str) -> Any:
            def fail(*args: Any) -> Any:
                raise ConnectionError("Error 111 connecting to 10.0.0.7:6379. Connection refused.")

            return fail

    client.application.extensions["bffproxy.cache"].store = BrokenStore()
    response = purge(client, {"all": True})
    assert response.status_code == 503
    body = response.get_data(as_text=True)
    assert "10.0.0.7" not in body and "6379" not in body and "111" not in body
