"""Liveness never touches Strapi; readiness does, with a short timeout."""

from __future__ import annotations

import requests
import responses
from flask.testing import FlaskClient

from .conftest import STRAPI


def test_healthz_never_calls_strapi(client: FlaskClient, strapi: responses.RequestsMock) -> None:
    assert client.get("/healthz").get_json() == {"status": "ok"}
    assert len(strapi.calls) == 0


def test_readyz_ok_when_strapi_answers(client: FlaskClient, strapi: responses.RequestsMock) -> None:
    strapi.get(f"{STRAPI}/_health", status=204)
    assert client.get("/readyz").status_code == 200


def test_readyz_503_when_strapi_is_down(client: FlaskClient, strapi: responses.RequestsMock) -> None:
    strapi.get(f"{STRAPI}/_health", body=requests.ConnectionError("refused"))
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.get_json()["error"]["code"] == "not_ready"
    assert response.get_json()["error"]["details"] == {"tenants": ["default"]}
