"""POST /api/events/ticket: single use, short-lived, per tenant, never the token itself."""

from __future__ import annotations

import pathlib
import time
from typing import Any

import jwt
import pytest
import responses
from flask import Flask
from flask.testing import FlaskClient

from .test_publishing import EDITOR, bearer, register_users
from .test_publishing import SECRET as JWT_SECRET


@pytest.fixture
def config(config: dict[str, Any]) -> dict[str, Any]:
    return {
        **config,
        "STRAPI_JWT_SECRET": JWT_SECRET,
        "POLICIES": {"articles": "read=public,drafts=editor"},
    }


@pytest.fixture
def editor(strapi: responses.RequestsMock) -> dict[str, str]:
    register_users(strapi)
    return bearer(EDITOR)


def ticket(client: FlaskClient, headers: dict[str, str]) -> str:
    answer = client.post("/api/events/ticket", headers=headers)
    assert answer.status_code == 200, answer.get_data(as_text=True)
    assert answer.headers["Cache-Control"] == "no-store"
    body = answer.get_json()
    assert body["expiresIn"] == 30 and len(body["ticket"]) >= 40
    return str(body["ticket"])


def test_a_ticket_opens_one_drafts_stream_as_its_user_and_only_once(
    client: FlaskClient, editor: dict[str, str]
) -> None:
    value = ticket(client, editor)
    query = f"/api/events?drafts=true&collections=articles&ticket={value}"
    opened = client.get(query, buffered=False)
    assert opened.status_code == 200
    opened.close()
    again = client.get(query)
    assert again.status_code == 401 and again.get_json()["error"]["code"] == "invalid_ticket"


def test_the_store_keeps_a_digest_of_the_ticket_and_never_the_token(
    client: FlaskClient, app: Flask, editor: dict[str, str]
) -> None:
    value = ticket(client, editor)
    token = editor["Authorization"].split()[1]
    folder = pathlib.Path(app.config["CACHE_DIR"])
    stored = b"".join(p.read_bytes() for p in folder.rglob("*") if p.is_file())
    assert value.encode() not in stored and token.encode() not in stored


@pytest.mark.parametrize("bad", ["", "short", "x" * 200, "not a ticket at all but long enough", "a" * 43])
def test_unknown_or_malformed_tickets_are_401(client: FlaskClient, bad: str) -> None:
    answer = client.get("/api/events", query_string={"ticket": bad})
    assert answer.status_code == 401
    assert answer.get_json()["error"]["code"] == "invalid_ticket"


def test_a_ticket_lives_30_seconds_in_the_shared_store(
    client: FlaskClient, app: Flask, editor: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from bffproxy.store import SharedStore

    writes: list[tuple[str, int]] = []
    real = SharedStore.set

    def spy(self: SharedStore, key: str, value: Any, timeout: int, **kwargs: Any) -> Any:
        writes.append((key, timeout))
        return real(self, key, value, timeout, **kwargs)

    monkeypatch.setattr(SharedStore, "set", spy)
    ticket(client, editor)
    assert [timeout for key, timeout in writes if key.startswith("events:ticket:default:")] == [30]


def test_a_ticket_needs_a_signed_in_caller(client: FlaskClient) -> None:
    answer = client.post("/api/events/ticket")
    assert answer.status_code == 401


def test_a_ticket_and_a_token_together_are_400_and_the_ticket_survives(
    client: FlaskClient, editor: dict[str, str]
) -> None:
    value = ticket(client, editor)
    both = client.get(f"/api/events?ticket={value}", headers=editor)
    assert both.status_code == 400
    alone = client.get(f"/api/events?ticket={value}", buffered=False)
    assert alone.status_code == 200
    alone.close()


def test_a_bad_parameter_does_not_spend_the_ticket(client: FlaskClient, editor: dict[str, str]) -> None:
    value = ticket(client, editor)
    assert client.get(f"/api/events?ticket={value}&nope=1").status_code == 400
    assert client.get(f"/api/events?ticket={value}&lastEventId=x").status_code == 400
    alone = client.get(f"/api/events?ticket={value}", buffered=False)
    assert alone.status_code == 200
    alone.close()


def test_a_ticket_of_one_tenant_opens_nothing_on_another(
    config: dict[str, Any], tmp_path: Any, monkeypatch: pytest.MonkeyPatch, strapi: responses.RequestsMock
) -> None:
    from bffproxy import create_app

    from .test_tenants import ACME, ACME_JWT, ACME_STRAPI, BETA, TENANTS

    monkeypatch.setenv("BETA_TOKEN", "beta-api-token")
    path = tmp_path / "tenants.toml"
    path.write_text(TENANTS)
    client = create_app({**config, "TENANTS_FILE": str(path)}).test_client()
    strapi.get(
        f"{ACME_STRAPI}/api/users/{EDITOR}",
        json={
            "id": EDITOR,
            "username": "e",
            "email": "e@x.test",
            "blocked": False,
            "role": {"type": "editor"},
        },
    )
    now = int(time.time())
    token = jwt.encode({"id": EDITOR, "iat": now, "exp": now + 600}, ACME_JWT, algorithm="HS256")
    value = ticket(client, {**ACME, "Authorization": f"Bearer {token}"})
    refused = client.get(f"/api/events?ticket={value}", headers=BETA)
    assert refused.status_code == 401 and refused.get_json()["error"]["code"] == "invalid_ticket"
    opened = client.get(f"/api/events?ticket={value}", headers=ACME, buffered=False)
    assert opened.status_code == 200
    opened.close()
