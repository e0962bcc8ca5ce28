"""Tenants from a file: each request reaches its own tenant's Strapi, and nothing is shared between them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import responses
from flask import Flask
from flask.testing import FlaskClient

from bffproxy import create_app
from bffproxy.cli import cli
from bffproxy.settings import ConfigError

from .conftest import strapi_list
from .strapi_tokens import bearer, legacy_token, user_body

ACME_STRAPI, BETA_STRAPI = "http://acme-strapi.test", "http://beta-strapi.test"
ACME_JWT, BETA_JWT = "acme-jwt-secret-" + "a" * 32, "beta-jwt-secret-" + "b" * 32

TENANTS = f"""
[tenants.acme]
hosts = ["acme.test", "*.acme.test"]
strapi_url = "{ACME_STRAPI}"
strapi_api_token = "acme-api-token"
strapi_jwt_secret = "{ACME_JWT}"
webhook_secret = "acme-webhook"
collections = ["articles", "categories"]
login_rate_limit = "2/60"

[tenants.acme.policies]
articles = "read=public,drafts=editor,write=editor"

[tenants.acme.cors]
origins = ["https://app.acme.test"]
allow_credentials = true
max_age = 600

[tenants.beta]
hosts = ["beta.test"]
path_prefix = "/t/beta"
strapi_url = "{BETA_STRAPI}"
strapi_api_token_env = "BETA_TOKEN"
strapi_jwt_secret = "{BETA_JWT}"
webhook_secret = "beta-webhook"
collections = ["articles"]
"""

ACME = {"Host": "acme.test"}
BETA = {"Host": "beta.test"}


@pytest.fixture
def tenants_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("BETA_TOKEN", "beta-api-token")
    path = tmp_path / "tenants.toml"
    path.write_text(TENANTS)
    return path


@pytest.fixture
def app(config: dict[str, Any], tenants_file: Path) -> Flask:
    return create_app({**config, "TENANTS_FILE": str(tenants_file), "LOGIN_RATE_LIMIT": "10/60"})


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def strapis(strapi: responses.RequestsMock) -> responses.RequestsMock:
    """Both tenants' Strapis, answering the same path with the same bytes."""
    for base in (ACME_STRAPI, BETA_STRAPI):
        strapi.get(f"{base}/api/articles", json=strapi_list("Same"))
    return strapi


def calls_to(strapi: responses.RequestsMock, base: str) -> list[str]:
    return [call.request.url for call in strapi.calls if call.request.url.startswith(base)]


def test_each_host_and_prefix_reaches_its_own_strapi_with_its_own_token(
    client: FlaskClient, strapis: responses.RequestsMock
) -> None:
    assert client.get("/api/articles", headers=ACME).headers["X-Cache"] == "MISS"
    assert client.get("/api/articles", headers={"Host": "shop.acme.test"}).headers["X-Cache"] == "HIT"
    # The same path, the same bytes from the other Strapi: never the other tenant's entry.
    assert client.get("/api/articles", headers=BETA).headers["X-Cache"] == "MISS"
    assert client.get("/t/beta/api/articles", headers={"Host": "any.test"}).headers["X-Cache"] == "HIT"
    assert len(calls_to(strapis, ACME_STRAPI)) == len(calls_to(strapis, BETA_STRAPI)) == 1


def test_an_unknown_host_is_a_json_404_that_reaches_no_strapi(
    client: FlaskClient, strapis: responses.RequestsMock
) -> None:
    for path in ("/api/articles", "/api/articles/x", "/webhooks/strapi", "/api/auth/local"):
        answer = client.get(path, headers={"Host": "evil.test"})
        assert answer.status_code == 404
        assert answer.get_json()["error"]["code"] == "unknown_tenant"
    assert len(strapis.calls) == 0
    assert client.get("/healthz", headers={"Host": "10.0.0.7"}).status_code == 200  # probes: any host


def test_the_admin_purge_names_its_tenant_or_uses_the_routed_one(
    config: dict[str, Any], tenants_file: Path, strapis: responses.RequestsMock
) -> None:
    client = create_app({**config, "TENANTS_FILE": str(tenants_file), "ADMIN_TOKEN": "adm"}).test_client()
    for headers in (ACME, BETA):
        client.get("/api/articles", headers=headers)
    admin = {"Authorization": "Bearer adm", "Host": "10.0.0.7"}
    named = client.post(
        "/admin/cache/purge", json={"tenant": "beta", "collection": "articles"}, headers=admin
    )
    assert named.status_code == 200 and named.get_json()["purged"]["tenant"] == "beta"
    assert client.get("/api/articles", headers=BETA).headers["X-Cache"] == "MISS"
    assert client.get("/api/articles", headers=ACME).headers["X-Cache"] == "HIT"
    unnamed = client.post("/admin/cache/purge", json={"all": True}, headers=admin)  # no host, no default
    assert (unnamed.status_code, unnamed.get_json()["error"]["code"]) == (404, "unknown_tenant")
    routed = client.post("/admin/cache/purge", json={"all": True}, headers={**admin, **ACME})
    assert routed.get_json()["purged"]["tenant"] == "acme"


def test_a_collection_of_one_tenant_is_404_on_the_other(
    client: FlaskClient, strapi: responses.RequestsMock
) -> None:
    strapi.get(f"{ACME_STRAPI}/api/categories", json=strapi_list("Cat"))
    assert client.get("/api/categories", headers=ACME).status_code == 200
    assert client.get("/api/categories", headers=BETA).status_code == 404
    assert calls_to(strapi, BETA_STRAPI) == []


def test_a_token_of_one_tenants_strapi_is_refused_by_the_other_without_calling_it(
    client: FlaskClient, strapi: responses.RequestsMock
) -> None:
    strapi.get(f"{ACME_STRAPI}/api/users/1", json=user_body("1"))
    strapi.get(f"{ACME_STRAPI}/api/articles", json=strapi_list("Mine"))
    token = bearer(legacy_token(1, secret=ACME_JWT))
    assert client.get("/api/articles", headers={**ACME, **token}).status_code == 200
    refused = client.get("/api/articles", headers={**BETA, **token})
    assert (refused.status_code, refused.get_json()["error"]["code"]) == (401, "invalid_token")
    assert calls_to(strapi, BETA_STRAPI) == []


def test_a_webhook_is_checked_with_its_tenants_secret_and_invalidates_only_that_tenant(
    client: FlaskClient, strapis: responses.RequestsMock
) -> None:
    for headers in (ACME, BETA):
        client.get("/api/articles", headers=headers)
    event = {"event": "entry.update", "model": "article", "entry": {"documentId": "d" * 24}}
    wrong = client.post("/t/beta/webhooks/strapi", json=event, headers={"X-Webhook-Secret": "acme-webhook"})
    assert wrong.status_code == 401
    assert client.get("/api/articles", headers=BETA).headers["X-Cache"] == "HIT"  # nothing dropped
    right = client.post("/t/beta/webhooks/strapi", json=event, headers={"X-Webhook-Secret": "beta-webhook"})
    assert right.status_code == 200 and right.get_json()["tenant"] == "beta"
    assert client.get("/api/articles", headers=BETA).headers["X-Cache"] == "MISS"
    assert client.get("/api/articles", headers=ACME).headers["X-Cache"] == "HIT"  # the other kept


def test_login_rate_limits_are_counted_per_tenant(
    client: FlaskClient, strapi: responses.RequestsMock
) -> None:
    for base in (ACME_STRAPI, BETA_STRAPI):
        strapi.post(f"{base}/api/auth/local", json={"jwt": "x", "user": {}})
    body = {"identifier": "reader", "password": "secret"}
    acme = [client.post("/api/auth/local", json=body, headers=ACME).status_code for _ in range(3)]
    assert acme == [200, 200, 429]  # acme's own limit, 2/60
    beta = [client.post("/api/auth/local", json=body, headers=BETA).status_code for _ in range(3)]
    assert beta == [200, 200, 200]  # the top-level 10/60, and its own bucket


def test_cors_is_on_fast_hits_errors_and_preflights_of_the_tenant_that_configures_it(
    client: FlaskClient, strapis: responses.RequestsMock
) -> None:
    origin = {"Origin": "https://app.acme.test"}
    client.get("/api/articles", headers=ACME)
    hit = client.get("/api/articles", headers={**ACME, **origin})
    assert hit.headers["X-Cache"] == "HIT"  # served by the WSGI fast path
    assert hit.headers["Access-Control-Allow-Origin"] == "https://app.acme.test"
    assert "Origin" in hit.headers["Vary"]
    error = client.get("/api/nothing", headers={**ACME, **origin})
    assert (
        error.status_code == 404 and error.headers["Access-Control-Allow-Origin"] == "https://app.acme.test"
    )
    calls = len(strapis.calls)
    preflight = client.options(
        "/api/articles",
        headers={
            **ACME,
            **origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization",
        },
    )
    assert preflight.status_code == 204 and preflight.headers["Access-Control-Max-Age"] == "600"
    assert len(strapis.calls) == calls  # never reaches Strapi
    other = client.get("/api/articles", headers={**BETA, "Origin": "https://app.acme.test"})
    assert "Access-Control-Allow-Origin" not in other.headers  # beta configures no CORS


def test_purge_names_the_tenant(app: Flask, strapis: responses.RequestsMock) -> None:
    client = app.test_client()
    for headers in (ACME, BETA):
        client.get("/api/articles", headers=headers)
    result = app.test_cli_runner().invoke(cli, ["purge", "--tenant", "beta", "--collection", "articles"])
    assert result.exit_code == 0, result.output
    assert client.get("/api/articles", headers=BETA).headers["X-Cache"] == "MISS"
    assert client.get("/api/articles", headers=ACME).headers["X-Cache"] == "HIT"
    unknown = app.test_cli_runner().invoke(cli, ["purge", "--tenant", "gamma", "--all"])
    assert unknown.exit_code != 0 and "There is no tenant 'gamma'" in unknown.output


def test_check_config_shows_every_tenant_with_secrets_masked(app: Flask) -> None:
    output = app.test_cli_runner().invoke(cli, ["check-config"]).output
    assert "[tenant acme] hosts=['acme.test', '*.acme.test']" in output
    assert "[tenant beta] hosts=['beta.test'] path_prefix='/t/beta'" in output
    for secret in ("acme-api-token", "beta-api-token", ACME_JWT, BETA_JWT, "acme-webhook", "beta-webhook"):
        assert secret not in output
    assert "  STRAPI_URL = 'http://beta-strapi.test'" in output


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            ("cache_ttl = 60", 'cache_ttl = "forever"'),
            "tenant 'acme': key 'cache_ttl' must be an integer >= 0",
        ),
        (
            ('collections = ["articles"]', 'collections = ["articles", "no way"]'),
            "tenant 'beta': key 'collections' has",
        ),
        (
            ('strapi_url = "http://beta-strapi.test"', 'strapi_url = "ftp://x"'),
            "tenant 'beta': key 'strapi_url' must be",
        ),
        (("[tenants.acme.policies]", "[tenants.acme.policies]\nwidgets = 'read=public'"), "tenant 'acme': "),
    ],
)
def test_a_bad_tenant_setting_is_one_line_naming_the_file_tenant_and_key(
    config: dict[str, Any], tenants_file: Path, change: tuple[str, str], expected: str
) -> None:
    text = TENANTS.replace('login_rate_limit = "2/60"', 'login_rate_limit = "2/60"\ncache_ttl = 60')
    tenants_file.write_text(text.replace(*change))
    with pytest.raises(ConfigError) as caught:
        create_app({**config, "TENANTS_FILE": str(tenants_file)})
    message = str(caught.value)
    assert message.startswith(f"BFFPROXY_TENANTS_FILE {tenants_file}: ") and "\n" not in message
    assert expected in message


def test_without_a_file_the_one_tenant_takes_every_host(
    config: dict[str, Any], strapi: responses.RequestsMock
) -> None:
    from .conftest import STRAPI

    strapi.get(f"{STRAPI}/api/articles", json=strapi_list("A"))
    client = create_app(config).test_client()
    assert client.get("/api/articles", headers={"Host": "anything.test"}).status_code == 200
    assert client.get("/api/articles", headers={"Host": "other.test"}).headers["X-Cache"] == "HIT"
