"""Two tenants, two real Strapis (own JWT secrets, API tokens, webhooks, content), one bffproxy.

The session's Strapi is tenant ``acme`` (hosts ``acme.test`` and ``127.0.0.1``, where its webhook
posts); a second Strapi, started here with another JWT secret and webhook secret, is tenant
``beta`` (host ``beta.test`` or the path prefix ``/t/beta``, where its webhook posts). Each host
must see its own content and nothing may bleed: cache, tokens, webhooks, idempotency, rate limits.
"""

from __future__ import annotations

import os
import signal
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from .services import Gunicorn, RedisServer, Strapi, free_port, wait_until

ACME = {"Host": "acme.test"}
BETA = {"Host": "beta.test"}
EDITOR = {"identifier": "editor", "password": "Editor-Passw0rd!"}
BETA_ONLY = "Beta only: renamed in the second Strapi"


@pytest.fixture(scope="module")
def beta_strapi(webhook_port: int, strapi_server: Strapi) -> Iterator[Strapi]:
    """A second seeded Strapi with its own secrets, one of its articles renamed."""
    server = Strapi(
        port=free_port(),
        webhook_port=webhook_port,
        extra_env={
            "JWT_SECRET": uuid.uuid4().hex + uuid.uuid4().hex,
            "WEBHOOK_SECRET": "beta-e2e-webhook-secret",
            "WEBHOOK_URL": f"http://127.0.0.1:{webhook_port}/t/beta/webhooks/strapi",
        },
    )
    server.reset()
    server.start()
    assert server.jwt_secret != strapi_server.jwt_secret and server.api_token != strapi_server.api_token
    token = {"Authorization": f"Bearer {server.api_token}"}
    first = requests.get(f"{server.url}/api/articles?sort=title&pagination[pageSize]=1", timeout=10).json()
    doc = first["data"][0]["documentId"]
    renamed = requests.put(
        f"{server.url}/api/articles/{doc}", json={"data": {"title": BETA_ONLY}}, headers=token, timeout=10
    )
    assert renamed.status_code == 200, renamed.text
    yield server
    server.reset()


def tenants_toml(acme: Strapi, beta: Strapi, **acme_extra: str) -> str:
    extra = "".join(f'{key} = "{value}"\n' for key, value in acme_extra.items())
    return f"""
[tenants.acme]
hosts = ["acme.test", "127.0.0.1"]
strapi_url = "{acme.url}"
strapi_api_token_env = "ACME_TOKEN"
strapi_jwt_secret_env = "ACME_JWT"
webhook_secret = "{acme.webhook_secret}"
collections = ["articles", "categories"]
login_rate_limit = "3/60"
{extra}
[tenants.acme.policies]
articles = "read=public,drafts=editor,write=editor"

[tenants.beta]
hosts = ["beta.test"]
path_prefix = "/t/beta"
strapi_url = "{beta.url}"
strapi_api_token_env = "BETA_TOKEN"
strapi_jwt_secret_env = "BETA_JWT"
webhook_secret = "{beta.webhook_secret}"
collections = ["articles"]

[tenants.beta.policies]
articles = "read=public,drafts=editor,write=editor"
"""


@pytest.fixture
def tenants_env(
    tmp_path: Path, strapi_live: Strapi, beta_strapi: Strapi, monkeypatch: pytest.MonkeyPatch
) -> dict[str, Any]:
    """start_bff's settings for the two tenants (secrets by environment variable, as documented)."""
    path = tmp_path / "tenants.toml"
    path.write_text(tenants_toml(strapi_live, beta_strapi))
    secrets = {
        "ACME_TOKEN": strapi_live.api_token,
        "ACME_JWT": strapi_live.jwt_secret,
        "BETA_TOKEN": beta_strapi.api_token,
        "BETA_JWT": beta_strapi.jwt_secret,
    }
    for name, value in secrets.items():  # gunicorn inherits them (Gunicorn keeps non-BFFPROXY_ env)
        monkeypatch.setenv(name, value)
    return {"TENANTS_FILE": str(path), "SINGLE_TYPES": "", "LOGIN_RATE_LIMIT": "20/60"}


@pytest.fixture
def two_tenants(
    start_bff: Callable[..., Gunicorn], webhook_port: int, tenants_env: dict[str, Any]
) -> Gunicorn:
    return start_bff(port=webhook_port, **tenants_env)


def get(bff: Gunicorn, path: str, headers: dict[str, str]) -> requests.Response:
    return requests.get(f"{bff.url}{path}", headers=headers, timeout=10)


def login(bff: Gunicorn, host: dict[str, str]) -> dict[str, str]:
    answer = requests.post(f"{bff.url}/api/auth/local", json=EDITOR, headers=host, timeout=10)
    assert answer.status_code == 200, answer.text
    return {"Authorization": f"Bearer {answer.json()['jwt']}"}


def test_each_host_sees_its_own_strapi_and_its_own_cache(two_tenants: Gunicorn) -> None:
    query = f"/api/articles?filters[title][$eq]={BETA_ONLY}"
    assert get(two_tenants, query, ACME).json()["data"] == []
    assert [a["title"] for a in get(two_tenants, query, BETA).json()["data"]] == [BETA_ONLY]
    assert get(two_tenants, f"/t/beta{query}", {"Host": "unknown.test"}).headers["X-Cache"] == "HIT"
    page = "/api/articles?sort=createdAt&pagination[pageSize]=3&fields[0]=slug"
    first = [get(two_tenants, page, host) for host in (ACME, BETA)]
    assert [a.headers["X-Cache"] for a in first] == ["MISS", "MISS"]  # same path, never one entry
    assert [get(two_tenants, page, host).headers["X-Cache"] for host in (ACME, BETA)] == ["HIT", "HIT"]
    unknown = get(two_tenants, "/api/articles", {"Host": "nobody.test"})
    assert (unknown.status_code, unknown.json()["error"]["code"]) == (404, "unknown_tenant")
    assert get(two_tenants, "/api/categories", BETA).status_code == 404  # acme's collection only


def test_a_token_from_one_strapi_is_refused_by_the_other_tenant(two_tenants: Gunicorn) -> None:
    acme_editor = login(two_tenants, ACME)
    assert get(two_tenants, "/api/articles?status=draft", {**ACME, **acme_editor}).status_code == 200
    refused = get(two_tenants, "/api/articles?status=draft", {**BETA, **acme_editor})
    assert (refused.status_code, refused.json()["error"]["code"]) == (401, "invalid_token")


def test_webhooks_reach_their_tenant_only_and_need_its_secret(
    two_tenants: Gunicorn, beta_strapi: Strapi
) -> None:
    listed = "/api/articles?sort=title&pagination[pageSize]=1"
    doc = get(two_tenants, listed, BETA).json()["data"][0]["documentId"]
    one = f"/api/articles/{doc}"
    assert get(two_tenants, one, BETA).status_code == 200
    get(two_tenants, listed, ACME)
    event = {"event": "entry.update", "model": "article", "entry": {"documentId": doc}}
    forged = requests.post(
        f"{two_tenants.url}/t/beta/webhooks/strapi",
        json=event,
        headers={"X-Webhook-Secret": "e2e-webhook-secret"},  # acme's
        timeout=10,
    )
    assert forged.status_code == 401
    assert get(two_tenants, one, BETA).headers["X-Cache"] == "HIT"
    title = f"{BETA_ONLY} {uuid.uuid4().hex[:6]}"
    token = {"Authorization": f"Bearer {beta_strapi.api_token}"}
    changed = requests.put(
        f"{beta_strapi.url}/api/articles/{doc}", json={"data": {"title": title}}, headers=token, timeout=10
    )
    assert changed.status_code == 200  # Strapi posts its webhook to /t/beta/webhooks/strapi
    wait_until(lambda: get(two_tenants, one, BETA).json()["data"]["title"] == title, 15, "beta's webhook")
    assert get(two_tenants, listed, ACME).headers["X-Cache"] == "HIT"  # acme's entries untouched


def test_idempotency_keys_and_login_limits_are_per_tenant(
    two_tenants: Gunicorn, strapi_live: Strapi, beta_strapi: Strapi
) -> None:
    key, title = f"tenant-key-{uuid.uuid4().hex}", f"Tenant write {uuid.uuid4().hex[:8]}"
    answers = []
    for host, strapi in ((ACME, strapi_live), (BETA, beta_strapi)):
        headers = {**host, **login(two_tenants, host), "Idempotency-Key": key}
        answer = requests.post(
            f"{two_tenants.url}/api/articles?status=draft",
            json={"data": {"title": title}},
            headers=headers,
            timeout=10,
        )
        answers.append(answer)
        token = {"Authorization": f"Bearer {strapi.api_token}"}
        found = requests.get(
            f"{strapi.url}/api/articles?status=draft&filters[title][$eq]={title}", headers=token, timeout=10
        ).json()["data"]
        assert len(found) == 1  # each Strapi got its own write: the key is not shared
        requests.delete(f"{strapi.url}/api/articles/{found[0]['documentId']}", headers=token, timeout=10)
    assert [a.status_code for a in answers] == [201, 201]
    assert all("Idempotent-Replayed" not in a.headers for a in answers)
    wrong = {"identifier": "editor", "password": "wrong"}
    acme = [
        requests.post(f"{two_tenants.url}/api/auth/local", json=wrong, headers=ACME, timeout=10)
        for _ in range(3)
    ]
    assert acme[-1].status_code == 429  # acme: 3/60, two logins above and these
    beta = requests.post(f"{two_tenants.url}/api/auth/local", json=wrong, headers=BETA, timeout=10)
    assert beta.status_code == 400  # beta's own bucket: Strapi's answer to a wrong password


def test_two_instances_on_one_redis_keep_tenants_apart(
    start_bff: Callable[..., Gunicorn], tenants_env: dict[str, Any], redis_server: RedisServer
) -> None:
    a = start_bff(REDIS_URL=redis_server.url, **tenants_env)
    b = start_bff(REDIS_URL=redis_server.url, **tenants_env)
    page = f"/api/articles?pagination[pageSize]=2&filters[title][$ne]={uuid.uuid4().hex}"
    assert get(a, page, ACME).headers["X-Cache"] == "MISS"
    assert get(b, page, ACME).headers["X-Cache"] == "HIT"  # shared through Redis
    assert get(b, page, BETA).headers["X-Cache"] == "MISS"  # but never across tenants
    assert get(a, page, BETA).headers["X-Cache"] == "HIT"


def test_a_reload_applies_a_good_tenants_file_and_survives_a_broken_one(
    start_bff: Callable[..., Gunicorn], tenants_env: dict[str, Any], strapi_live: Strapi, beta_strapi: Strapi
) -> None:
    bff = start_bff(**tenants_env)
    path = Path(tenants_env["TENANTS_FILE"])
    assert get(bff, "/api/articles?pagination[pageSize]=1", ACME).status_code == 200
    assert bff.process is not None
    path.write_text("[tenants.acme\nbroken = ")  # a bad edit, then systemctl reload (HUP)
    os.kill(bff.process.pid, signal.SIGHUP)
    wait_until(lambda: "configuration error on reload" in bff.log(), 20, "the reload error logged")
    for _ in range(10):  # the old tenants keep serving on every worker
        assert get(bff, "/api/articles?pagination[pageSize]=1", ACME).status_code == 200
    assert bff.process.poll() is None
    fixed = tenants_toml(strapi_live, beta_strapi).replace('"127.0.0.1"]', '"127.0.0.1", "acme2.test"]')
    path.write_text(fixed)
    os.kill(bff.process.pid, signal.SIGHUP)
    wait_until(
        lambda: get(bff, "/api/articles?pagination[pageSize]=1", {"Host": "acme2.test"}).status_code == 200,
        20,
        "the new host served after the reload",
    )
