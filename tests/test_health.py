"""Liveness never touches Strapi; readiness does, with a short timeout."""

from __future__ import annotations

from typing import Any

import requests
import responses
from flask import Flask
from flask.testing import FlaskClient

from .conftest import STRAPI


def test_healthz_never_calls_strapi(client: FlaskClient, strapi: responses.RequestsMock) -> None:
    assert client.get("/healthz").get_json() == {"status": "ok"}
    assert len(strapi.calls) == 0


def test_readyz_503_when_strapi_is_down(client: FlaskClient, strapi: responses.RequestsMock) -> None:
    strapi.get(f"{STRAPI}/_health", body=requests.ConnectionError("refused"))
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.get_json()["error"]["code"] == "not_ready"
    assert response.get_json()["error"]["details"] == {
        "tenants": ["default"],
        "store": "up",
        "circuit": {"default": "closed"},
    }


def test_readyz_reports_strapi_and_the_store(client: FlaskClient, strapi: responses.RequestsMock) -> None:
    strapi.get(f"{STRAPI}/_health", status=204)
    response = client.get("/readyz")
    assert response.get_json() == {
        "status": "ready",
        "strapi": "up",
        "store": "up",
        "circuit": {"default": "closed"},
    }
    assert response.headers["Cache-Control"] == "no-store"


class UnreachableStore:
    """A cache backend whose every call fails, as Redis does when it is down."""

    def __getattr__(self, name: str) -> Any:
        def fail(*args: Any) -> Any:
            raise ConnectionError("redis is down")

        return fail


def test_readyz_stays_ready_with_the_store_down_but_says_so(
    app: Flask, client: FlaskClient, strapi: responses.RequestsMock
) -> None:
    """Reads bypass a store that is down (BYPASS), so the instance still serves: ready, store down."""
    strapi.get(f"{STRAPI}/_health", status=204)
    app.extensions["bffproxy.cache"].store = UnreachableStore()
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.get_json() == {
        "status": "ready",
        "strapi": "up",
        "store": "down",
        "circuit": {"default": "closed"},
    }
