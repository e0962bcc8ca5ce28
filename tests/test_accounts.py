"""Auth pass-through endpoints and GET /api/me (fake Strapi via responses)."""

from __future__ import annotations

import json
from typing import Any

import pytest
import responses
from flask.testing import FlaskClient

from bffproxy import create_app

from .conftest import STRAPI
from .strapi_tokens import SECRET, access_token, bearer, legacy_token, serve_users

LOGIN = f"{STRAPI}/api/auth/local"
CREDENTIALS = {"identifier": "reader", "password": "Reader-Passw0rd!"}


@pytest.fixture
def config(config: dict[str, Any]) -> dict[str, Any]:
    config.update(STRAPI_JWT_SECRET=SECRET)
    return config


def test_login_passes_through_uncached_with_the_client_address(
    client: FlaskClient, strapi: responses.RequestsMock
) -> None:
    answer = {"jwt": legacy_token(1), "user": {"id": 1, "username": "reader"}}
    strapi.post(LOGIN, json=answer)
    for _ in range(2):
        response = client.post(
            "/api/auth/local", json=CREDENTIALS, environ_base={"REMOTE_ADDR": "203.0.113.7"}
        )
        assert response.status_code == 200
        assert response.get_json() == answer
        assert response.headers["Cache-Control"] == "no-store"
    assert len(strapi.calls) == 2
    sent = strapi.calls[0].request
    assert json.loads(sent.body) == CREDENTIALS
    assert sent.headers["X-Forwarded-For"] == "203.0.113.7"
    assert "Authorization" not in sent.headers


def test_behind_a_trusted_proxy_the_real_client_address_is_forwarded(
    config: dict[str, Any], strapi: responses.RequestsMock
) -> None:
    config["TRUSTED_PROXIES"] = 1
    strapi.post(LOGIN, json={"jwt": "x", "user": {}})
    client = create_app(config).test_client()
    client.post(
        "/api/auth/local",
        json=CREDENTIALS,
        headers={"X-Forwarded-For": "198.51.100.9"},
        environ_base={"REMOTE_ADDR": "127.0.0.1"},
    )
    assert strapi.calls[0].request.headers["X-Forwarded-For"] == "198.51.100.9"


def test_without_a_trusted_proxy_a_client_cannot_pick_its_address(
    client: FlaskClient, strapi: responses.RequestsMock
) -> None:
    strapi.post(LOGIN, json={"jwt": "x", "user": {}})
    client.post(
        "/api/auth/local",
        json=CREDENTIALS,
        headers={"X-Forwarded-For": "198.51.100.9"},
        environ_base={"REMOTE_ADDR": "203.0.113.7"},
    )
    assert strapi.calls[0].request.headers["X-Forwarded-For"] == "203.0.113.7"


@pytest.mark.parametrize(
    ("status", "body", "headers"),
    [
        (400, {"data": None, "error": {"status": 400, "name": "ValidationError"}}, {}),
        (429, {"data": None, "error": {"status": 429, "name": "RateLimitError"}}, {"Retry-After": "42"}),
    ],
)
def test_strapi_refusals_pass_through(
    status: int,
    body: dict[str, Any],
    headers: dict[str, str],
    client: FlaskClient,
    strapi: responses.RequestsMock,
) -> None:
    strapi.post(LOGIN, status=status, json=body, headers=headers)
    response = client.post("/api/auth/local", json={"identifier": "reader", "password": "wrong"})
    assert response.status_code == status
    assert response.get_json() == body
    for name, value in headers.items():
        assert response.headers[name] == value


@pytest.mark.parametrize("data", ["not json", "[1, 2]"])
def test_a_body_that_is_not_a_json_object_is_400_without_strapi(
    data: str, client: FlaskClient, strapi: responses.RequestsMock
) -> None:
    response = client.post("/api/auth/local", data=data, content_type="application/json")
    assert response.status_code == 400
    assert len(strapi.calls) == 0


def test_refresh_and_logout_pass_through(client: FlaskClient, strapi: responses.RequestsMock) -> None:
    strapi.post(f"{STRAPI}/api/auth/refresh", json={"jwt": "new", "refreshToken": "newer"})
    strapi.post(f"{STRAPI}/api/auth/logout", json={"ok": True})
    refreshed = client.post("/api/auth/refresh", json={"refreshToken": "r"})
    assert refreshed.get_json() == {"jwt": "new", "refreshToken": "newer"}
    token = access_token("1")
    logged_out = client.post("/api/auth/logout", headers=bearer(token))
    assert logged_out.get_json() == {"ok": True}
    assert logged_out.headers["Cache-Control"] == "no-store"
    assert json.loads(strapi.calls[0].request.body) == {"refreshToken": "r"}
    assert strapi.calls[1].request.headers["Authorization"] == f"Bearer {token}"


def test_legacy_mode_404_for_refresh_passes_through(
    client: FlaskClient, strapi: responses.RequestsMock
) -> None:
    strapi.post(f"{STRAPI}/api/auth/refresh", status=404, json={"data": None, "error": {"status": 404}})
    assert client.post("/api/auth/refresh", json={"refreshToken": "r"}).status_code == 404


def test_me(client: FlaskClient, strapi: responses.RequestsMock) -> None:
    serve_users(strapi)
    response = client.get("/api/me", headers=bearer(legacy_token(1)))
    assert response.get_json() == {
        "id": 1,
        "username": "reader",
        "email": "reader@example.com",
        "role": "authenticated",
    }
    assert response.headers["Cache-Control"] == "private, no-store"
    assert "Authorization" in response.headers["Vary"]


def test_me_needs_a_token(client: FlaskClient, strapi: responses.RequestsMock) -> None:
    response = client.get("/api/me")
    assert response.status_code == 401
    assert response.get_json()["error"]["code"] == "unauthorized"
    assert len(strapi.calls) == 0


@pytest.mark.parametrize("data", ["[" * 100_000, '{"a":' * 100_000])
def test_a_body_nested_too_deeply_is_400_not_500(
    data: str, client: FlaskClient, strapi: responses.RequestsMock
) -> None:
    response = client.post("/api/auth/local", data=data, content_type="application/json")
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "bad_request"
    assert len(strapi.calls) == 0
