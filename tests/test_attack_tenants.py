"""Attack tests for issue 10 (tenants and CORS): a hostile client and an unlucky operator, whole app.

Two tenants as in production: ``acme`` (exact and wildcard hosts, CORS with credentials and a
pattern origin) and ``beta`` (one host and the prefix ``/t/beta``, no CORS), each with its own fake
Strapi, JWT secret and webhook secret. Host, prefix and header tricks, cache, role cache,
idempotency and rate-limit collisions, webhooks sent to the wrong tenant, CORS on every kind of
answer, and the mistakes an operator makes in the tenants file and on reload.
"""

from __future__ import annotations

import os
import runpy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import responses
from flask import Flask
from werkzeug.test import EnvironBuilder, run_wsgi_app
from werkzeug.wrappers import Response

from bffproxy import create_app
from bffproxy.settings import ConfigError
from bffproxy.tenants_file import read_tenants_file

from .conftest import FakeClock, strapi_list
from .strapi_tokens import bearer, legacy_token, user_body

ACME_STRAPI, BETA_STRAPI = "http://acme-strapi.test", "http://beta-strapi.test"
ACME_JWT, BETA_JWT = "acme-jwt-secret-" + "a" * 32, "beta-jwt-secret-" + "b" * 32
ALLOWED = "https://app.acme.test"
GUNICORN_CONF = Path(__file__).resolve().parents[1] / "gunicorn.conf.py"

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
origins = ["{ALLOWED}", "https://*.preview.acme.test"]
allow_credentials = true
max_age = 600

[tenants.beta]
hosts = ["beta.test"]
path_prefix = "/t/beta"
strapi_url = "{BETA_STRAPI}"
strapi_api_token = "beta-api-token"
strapi_jwt_secret = "{BETA_JWT}"
webhook_secret = "beta-webhook"
collections = ["articles"]
login_rate_limit = "2/60"

[tenants.beta.policies]
articles = "read=public,drafts=editor,write=editor"
"""


def write_tenants(tmp_path: Path, text: str = TENANTS, name: str = "tenants.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def build(config: dict[str, Any], tmp_path: Path, text: str = TENANTS, **extra: Any) -> Flask:
    app = create_app({**config, "TENANTS_FILE": str(write_tenants(tmp_path, text)), **extra})
    app.extensions["bffproxy.cache"].clock = FakeClock()
    return app


@pytest.fixture
def app(config: dict[str, Any], tmp_path: Path) -> Flask:
    return build(config, tmp_path)


def call(
    app: Flask,
    path: str,
    host: str | None = "acme.test",
    method: str = "GET",
    headers: dict[str, str] | None = None,
    **kwargs: Any,
) -> Response:
    """One request through the whole WSGI stack with exactly this Host (None: no Host header at all)."""
    path, _, query = path.partition("?")
    environ = EnvironBuilder(
        path=path, query_string=query or None, method=method, headers=headers or {}, **kwargs
    ).get_environ()
    environ.pop("HTTP_HOST", None)
    if host is not None:
        environ["HTTP_HOST"] = host
    body, status, answer_headers = run_wsgi_app(app, environ, buffered=True)
    return Response(b"".join(body), status=status, headers=answer_headers)


def code_of(answer: Response) -> str:
    return str(answer.get_json()["error"]["code"])


def urls(strapi: responses.RequestsMock, base: str) -> list[str]:
    return [str(c.request.url) for c in strapi.calls if str(c.request.url).startswith(base)]


@pytest.fixture
def strapis(strapi: responses.RequestsMock) -> responses.RequestsMock:
    """Both Strapis answer the same paths, each with its own titles."""
    for base, title in ((ACME_STRAPI, "Acme"), (BETA_STRAPI, "Beta")):
        strapi.get(f"{base}/api/articles", json=strapi_list(title))
    strapi.get(f"{ACME_STRAPI}/api/categories", json=strapi_list("Acme category"))
    return strapi


def title_of(answer: Response) -> str:
    return str(answer.get_json()["data"][0]["title"])


# -- Host tricks -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "host",
    [
        "acme.test",
        "ACME.TEST",
        "acme.test.",
        "acme.test:8080",
        "Acme.Test.:443",
        " acme.test ",
        "x.ACME.test.",
    ],
)
def test_every_spelling_of_a_tenants_host_reaches_that_tenant_and_one_entry(
    app: Flask, strapis: responses.RequestsMock, host: str
) -> None:
    first = call(app, "/api/articles", "acme.test")
    answer = call(app, "/api/articles", host)
    assert (answer.status_code, title_of(answer)) == (200, "Acme")
    assert first.headers["ETag"] == answer.headers["ETag"]
    assert len(urls(strapis, ACME_STRAPI)) == 1 and urls(strapis, BETA_STRAPI) == []


@pytest.mark.parametrize(
    "host",
    [
        None,  # HTTP/1.0 without Host: werkzeug falls back to SERVER_NAME ('localhost')
        "",
        "evilacme.test",  # not a subdomain of acme.test
        "acme.test.evil.test",
        "[::1]",
        "[::1]:8080",
        "xn--acme-test.test",
        "beta",
        "test",
        "t",
    ],
)
def test_a_host_that_names_no_tenant_is_unknown_and_reaches_no_strapi(
    app: Flask, strapis: responses.RequestsMock, host: str | None
) -> None:
    for path in ("/api/articles", "/api/categories", "/webhooks/strapi", "/api/me"):
        answer = call(app, path, host)
        assert (answer.status_code, code_of(answer)) == (404, "unknown_tenant"), (host, path)
        assert "Access-Control-Allow-Origin" not in answer.headers
    assert len(strapis.calls) == 0


@pytest.mark.parametrize(
    "host",
    [
        "acme.test:",  # an empty port: not a host name
        "acme.test:http",
        "beta.test,acme.test",  # two hosts glued (a duplicated header joined by a server)
        ".acme.test",
        "a..acme.test",
        "x." + "a" * 64 + ".acme.test",  # a label over 63 characters
        "x,y.acme.test",  # a wildcard must never route text that is not a host name
        "evil/x.acme.test",
        "beta.test@x.acme.test",
    ],
)
def test_a_host_header_that_is_not_a_host_name_is_a_400_on_both_paths(
    config: dict[str, Any], tmp_path: Path, strapis: responses.RequestsMock, host: str
) -> None:
    # Found attacking issue 10: the fast path served 200 HIT where Flask refused such a Host with
    # 400, and '*.acme.test' routed any text ending in '.acme.test'.
    fast = build(config, tmp_path)
    slow = build(config, tmp_path, FAST_HITS=False)
    assert call(fast, "/api/articles", "acme.test").status_code == 200  # warm: a fast hit is possible
    for app in (fast, slow):
        answer = call(app, "/api/articles", host)
        assert (answer.status_code, code_of(answer)) == (400, "invalid_host"), host
    assert len(urls(strapis, ACME_STRAPI)) == 1 and urls(strapis, BETA_STRAPI) == []


def test_a_wildcard_host_matches_subdomains_only_never_its_own_base(
    config: dict[str, Any], tmp_path: Path, strapi: responses.RequestsMock
) -> None:
    text = f"""
[tenants.shop]
hosts = ["*.shop.test"]
strapi_url = "{ACME_STRAPI}"
collections = ["articles"]
"""
    strapi.get(f"{ACME_STRAPI}/api/articles", json=strapi_list("Shop"))
    app = build(config, tmp_path, text)
    assert call(app, "/api/articles", "shop.test").status_code == 404
    assert call(app, "/api/articles", "eu.shop.test").status_code == 200
    assert call(app, "/api/articles", "a.b.eu.shop.test").status_code == 200
    assert call(app, "/api/articles", "eushop.test").status_code == 404


def test_x_forwarded_host_decides_only_behind_trusted_proxies(
    config: dict[str, Any], tmp_path: Path, strapis: responses.RequestsMock
) -> None:
    direct = build(config, tmp_path)
    forged = call(direct, "/api/articles", "acme.test", headers={"X-Forwarded-Host": "beta.test"})
    assert title_of(forged) == "Acme"  # a client's X-Forwarded-Host is ignored
    proxied = build(config, tmp_path, TRUSTED_PROXIES=1)
    # nginx appends its own value last; ProxyFix with one hop trusts only that one.
    headers = {"X-Forwarded-Host": "acme.test, beta.test", "X-Forwarded-For": "203.0.113.9"}
    assert title_of(call(proxied, "/api/articles", "127.0.0.1:8080", headers=headers)) == "Beta"


# -- Prefix tricks ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/T/beta/api/articles",
        "/t//beta/api/articles",
        "/t/beta/../api/articles",
        "/t/./beta/api/articles",
        "/t/betax/api/articles",
        "/t/beta/t/beta/api/articles",  # the prefix is stripped once, never twice
        "/t/beta//api/articles",
        "/t/beta",
        "/t/beta/",
        "/api/../t/beta/api/articles",
    ],
)
def test_a_mangled_prefix_never_reaches_the_prefixed_tenant(
    app: Flask, strapis: responses.RequestsMock, path: str
) -> None:
    answer = call(app, path, "acme.test")
    assert answer.status_code == 404 and answer.is_json
    assert urls(strapis, BETA_STRAPI) == []


def test_a_prefix_beats_the_host_and_is_routed_as_the_path_below_it(
    app: Flask, strapis: responses.RequestsMock
) -> None:
    answer = call(app, "/t/beta/api/articles", "acme.test")
    assert (title_of(answer), answer.headers["X-Cache"]) == ("Beta", "MISS")
    assert (
        "Access-Control-Allow-Origin"
        not in call(app, "/t/beta/api/articles", "acme.test", headers={"Origin": ALLOWED}).headers
    )  # the prefix's tenant decides CORS too, not the host's
    assert call(app, "/t/beta/api/categories", "acme.test").status_code == 404  # acme's collection
    assert urls(strapis, ACME_STRAPI) == []


def test_a_prefixed_fresh_hit_and_its_304_come_from_the_fast_path_of_that_tenant(
    app: Flask, strapis: responses.RequestsMock
) -> None:
    warm = call(app, "/api/articles?sort=title", "beta.test")
    etag = warm.headers["ETag"]
    hit = call(app, "/t/beta/api/articles?sort=title", "anything.test")
    assert (hit.status_code, hit.headers["X-Cache"], hit.headers["ETag"]) == (200, "HIT", etag)
    revalidated = call(app, "/t/beta/api/articles?sort=title", "x.test", headers={"If-None-Match": etag})
    assert (revalidated.status_code, revalidated.data) == (304, b"")
    assert len(urls(strapis, BETA_STRAPI)) == 1


# -- The tenant header -----------------------------------------------------------------------------


def test_the_tenant_header_alone_decides_when_enabled_and_an_unknown_name_is_never_the_default(
    config: dict[str, Any], tmp_path: Path, strapis: responses.RequestsMock
) -> None:
    app = build(config, tmp_path, 'default_tenant = "acme"\n' + TENANTS, TENANT_HEADER="X-Tenant")
    assert title_of(call(app, "/api/articles", "acme.test", headers={"X-Tenant": "beta"})) == "Beta"
    assert title_of(call(app, "/api/articles", "acme.test", headers={"X-Tenant": " beta "})) == "Beta"
    over_prefix = call(app, "/t/beta/api/articles", "beta.test", headers={"X-Tenant": "acme"})
    assert over_prefix.status_code == 404  # acme's routes see /t/beta/...: no prefix is stripped
    for name in ("Beta", "", "gamma", "acme,beta", "beta\t"):
        answer = call(app, "/api/articles", "acme.test", headers={"X-Tenant": name})
        if name == "beta\t":  # surrounding whitespace is not part of a field value
            assert title_of(answer) == "Beta"
            continue
        assert (answer.status_code, code_of(answer)) == (404, "unknown_tenant"), name
    assert title_of(call(app, "/api/articles", "nobody.test")) == "Acme"  # no header: the default
    disabled = build(config, tmp_path)
    assert title_of(call(disabled, "/api/articles", "acme.test", headers={"X-Tenant": "beta"})) == "Acme"


# -- Nothing shared: cache, validators, role cache, idempotency, buckets, webhooks ----------------


def test_another_tenants_etag_never_revalidates_different_content(
    app: Flask, strapis: responses.RequestsMock
) -> None:
    acme_etag = call(app, "/api/articles", "acme.test").headers["ETag"]
    for _ in range(2):  # the miss, then the fast path's hit
        answer = call(app, "/api/articles", "beta.test", headers={"If-None-Match": acme_etag})
        assert (answer.status_code, title_of(answer)) == (200, "Beta")
        assert answer.headers["ETag"] != acme_etag


def test_the_same_user_id_in_both_strapis_gets_each_tenants_own_role(
    app: Flask, strapi: responses.RequestsMock
) -> None:
    strapi.get(f"{ACME_STRAPI}/api/users/2", json=user_body("2", role="editor"))
    strapi.get(f"{BETA_STRAPI}/api/users/2", json=user_body("2", role="authenticated"))
    for base in (ACME_STRAPI, BETA_STRAPI):
        strapi.get(f"{base}/api/articles", json=strapi_list("Draft"))
    acme_editor = bearer(legacy_token(2, secret=ACME_JWT))
    beta_reader = bearer(legacy_token(2, secret=BETA_JWT))
    assert call(app, "/api/articles?status=draft", "acme.test", headers=acme_editor).status_code == 200
    refused = call(app, "/api/articles?status=draft", "beta.test", headers=beta_reader)
    assert (refused.status_code, code_of(refused)) == (403, "forbidden")
    assert f"{BETA_STRAPI}/api/users/2?populate=role" in urls(strapi, BETA_STRAPI)  # not acme's cached role
    again = call(app, "/api/articles?status=draft", "acme.test", headers=acme_editor)
    assert again.status_code == 200  # and beta's answer did not overwrite acme's


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/api/articles", None),
        ("GET", "/api/articles?status=draft", None),
        ("GET", "/api/me", None),
        ("POST", "/api/articles", {"data": {"title": "Forged"}}),
        ("PUT", f"/api/articles/{'d' * 24}", {"data": {"title": "Forged"}}),
        ("DELETE", f"/api/articles/{'d' * 24}", None),
    ],
)
@pytest.mark.parametrize("where", [{"host": "beta.test"}, {"host": "acme.test", "prefix": "/t/beta"}])
def test_a_token_of_one_tenant_is_refused_by_the_other_before_its_strapi_is_called(
    app: Flask, strapi: responses.RequestsMock, method: str, path: str, body: Any, where: dict[str, str]
) -> None:
    token = bearer(legacy_token(2, secret=ACME_JWT))
    answer = call(app, where.get("prefix", "") + path, where["host"], method, headers=token, json=body)
    assert (answer.status_code, code_of(answer)) == (401, "invalid_token")
    assert len(strapi.calls) == 0


def test_one_idempotency_key_of_the_same_user_id_writes_once_on_each_tenant(
    app: Flask, strapi: responses.RequestsMock
) -> None:
    created = {"data": {"id": 9, "documentId": "n" * 24, "title": "Same"}, "meta": {}}
    for base in (ACME_STRAPI, BETA_STRAPI):
        strapi.get(f"{base}/api/users/2", json=user_body("2", role="editor"))
        strapi.post(f"{base}/api/articles", json=created, status=201)
    body, key = {"data": {"title": "Same"}}, {"Idempotency-Key": "same-key-on-both"}
    for host, secret in (("acme.test", ACME_JWT), ("beta.test", BETA_JWT)):
        headers = {**key, **bearer(legacy_token(2, secret=secret))}
        answer = call(app, "/api/articles?status=draft", host, "POST", headers=headers, json=body)
        assert answer.status_code == 201 and "Idempotent-Replayed" not in answer.headers, host
    posts = [c for c in strapi.calls if c.request.method == "POST"]
    assert sorted(str(c.request.url).split("/api")[0] for c in posts) == [ACME_STRAPI, BETA_STRAPI]
    retry = call(
        app,
        "/t/beta/api/articles?status=draft",  # the same tenant by its prefix: the same record
        "acme.test",
        "POST",
        headers={**key, **bearer(legacy_token(2, secret=BETA_JWT))},
        json=body,
    )
    assert retry.headers["Idempotent-Replayed"] == "true"
    assert len([c for c in strapi.calls if c.request.method == "POST"]) == 2


def test_login_buckets_are_per_tenant_whichever_way_the_tenant_is_reached(
    app: Flask, strapi: responses.RequestsMock
) -> None:
    for base in (ACME_STRAPI, BETA_STRAPI):
        strapi.post(f"{base}/api/auth/local", json={"jwt": "x", "user": {}})
    body = {"identifier": "reader", "password": "secret"}
    beta = [
        call(app, path, host, "POST", json=body).status_code
        for path, host in (
            ("/api/auth/local", "beta.test"),
            ("/t/beta/api/auth/local", "acme.test"),
            ("/t/beta/api/auth/local", "other.test"),
        )
    ]
    assert beta == [200, 200, 429]  # one bucket for beta, however it is routed
    acme = [call(app, "/api/auth/local", "x.acme.test", "POST", json=body).status_code for _ in range(3)]
    assert acme == [200, 200, 429]  # acme's own, untouched by beta's
    assert len(urls(strapi, BETA_STRAPI)) == len(urls(strapi, ACME_STRAPI)) == 2


@pytest.mark.parametrize(
    ("path", "host", "secret"),
    [
        ("/webhooks/strapi", "beta.test", "acme-webhook"),  # acme's secret on beta's host
        ("/t/beta/webhooks/strapi", "acme.test", "acme-webhook"),  # on beta's prefix under acme's host
        ("/webhooks/strapi", "acme.test", "beta-webhook"),  # beta's secret on acme
        ("/webhooks/strapi", "x.acme.test", "beta-webhook"),
    ],
)
def test_a_webhook_with_another_tenants_secret_is_refused_and_invalidates_nothing(
    app: Flask, strapis: responses.RequestsMock, path: str, host: str, secret: str
) -> None:
    for warm_host in ("acme.test", "beta.test"):
        call(app, "/api/articles", warm_host)
    event = {"event": "entry.update", "model": "article", "entry": {"documentId": "d" * 24}}
    answer = call(app, path, host, "POST", headers={"X-Webhook-Secret": secret}, json=event)
    assert answer.status_code == 401
    assert [call(app, "/api/articles", h).headers["X-Cache"] for h in ("acme.test", "beta.test")] == [
        "HIT",
        "HIT",
    ]
    right = call(
        app,
        "/t/beta/webhooks/strapi",
        "acme.test",
        "POST",
        headers={"X-Webhook-Secret": "beta-webhook"},
        json=event,
    )
    assert right.get_json()["tenant"] == "beta"
    assert [call(app, "/api/articles", h).headers["X-Cache"] for h in ("acme.test", "beta.test")] == [
        "HIT",
        "MISS",
    ]


# -- CORS ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("origin", "allowed"),
    [
        (ALLOWED, True),
        ("https://pr-1.preview.acme.test", True),
        ("https://a.b.preview.acme.test", True),
        ("null", False),
        (f"{ALLOWED}/", False),
        (f"{ALLOWED}:443", False),  # browsers never send a default port
        ("http://app.acme.test", False),
        ("https://app.acme.test.evil.com", False),
        ("https://evilapp.acme.test", False),
        ("https://preview.acme.test", False),  # the pattern is for subdomains only
        ("https://pr-1.preview.acme.test:8443", False),
        ("https://pr-1.preview.acme.test.evil.com", False),
        ("https://evil.com/.preview.acme.test", False),
        ("https://evil.com#.preview.acme.test", False),
        (f"{ALLOWED}, https://evil.com", False),
        (f"{ALLOWED}\t", False),
        ("*", False),
        ("", False),
    ],
)
def test_only_an_allowed_origin_gets_allow_origin_and_credentials(
    app: Flask, strapis: responses.RequestsMock, origin: str, allowed: bool
) -> None:
    call(app, "/api/articles")
    for answer in (
        call(app, "/api/articles", headers={"Origin": origin}),
        call(app, "/api/nothing", headers={"Origin": origin}),
    ):
        assert ("Access-Control-Allow-Origin" in answer.headers) is allowed, origin
        assert ("Access-Control-Allow-Credentials" in answer.headers) is allowed
        if allowed:
            assert answer.headers["Access-Control-Allow-Origin"] == origin  # its own, never '*'
        assert "Origin" in [v.strip() for v in answer.headers["Vary"].split(",")]


def test_every_kind_of_answer_of_a_cors_tenant_carries_cors_and_vary_origin(
    config: dict[str, Any], tmp_path: Path, strapi: responses.RequestsMock
) -> None:
    app = build(config, tmp_path, MAX_CONTENT_LENGTH=1024)
    strapi.get(f"{ACME_STRAPI}/api/articles", json=strapi_list("Acme"))
    strapi.get(f"{ACME_STRAPI}/api/categories", body=requests.ConnectionError("down"))
    strapi.get(f"{ACME_STRAPI}/api/users/1", json=user_body("1", role="authenticated"))
    strapi.post(f"{ACME_STRAPI}/api/auth/local", json={"jwt": "x", "user": {}})
    origin = {"Origin": ALLOWED}
    miss = call(app, "/api/articles", headers=origin)
    answers = {
        "miss": miss,
        "fast hit": call(app, "/api/articles", headers=origin),
        "head": call(app, "/api/articles", method="HEAD", headers=origin),
        "304": call(app, "/api/articles", headers={**origin, "If-None-Match": miss.headers["ETag"]}),
        "400": call(app, "/api/articles?unknown_param=1", headers=origin),
        "401": call(app, "/api/articles", headers={**origin, "Authorization": "Bearer junk"}),
        "403": call(
            app, "/api/articles?status=draft", headers={**origin, **bearer(legacy_token(1, secret=ACME_JWT))}
        ),
        "404": call(app, "/api/nothing", headers=origin),
        "405": call(app, "/api/articles", method="PATCH", headers=origin),
        "413": call(
            app,
            "/api/articles",
            method="POST",
            headers={**origin, "Content-Type": "application/json"},
            data=b"[" * 4096,
        ),
        "502": call(app, "/api/categories", headers=origin),
    }
    for _ in range(2):
        call(app, "/api/auth/local", method="POST", headers=origin, json={"identifier": "a", "password": "b"})
    answers["429"] = call(
        app, "/api/auth/local", method="POST", headers=origin, json={"identifier": "a", "password": "b"}
    )
    statuses = {name: answer.status_code for name, answer in answers.items()}
    assert statuses == {
        "miss": 200, "fast hit": 200, "head": 200, "304": 304, "400": 400, "401": 401, "403": 403,
        "404": 404, "405": 405, "413": 413, "502": 502, "429": 429,
    }  # fmt: skip
    assert answers["fast hit"].headers["X-Cache"] == "HIT"
    for name, answer in answers.items():
        assert answer.headers.get("Access-Control-Allow-Origin") == ALLOWED, name
        assert answer.headers.get("Access-Control-Allow-Credentials") == "true", name
        assert "X-Cache" in answer.headers.get("Access-Control-Expose-Headers", ""), name
        assert len(answer.headers.getlist("Vary")) == 1, name
        assert "Origin" in [v.strip() for v in answer.headers["Vary"].split(",")], name
    assert "Retry-After" in answers["429"].headers


def test_the_fast_path_and_the_flask_view_send_the_same_cors_headers(
    config: dict[str, Any], tmp_path: Path, strapis: responses.RequestsMock
) -> None:
    fast = build(config, tmp_path)
    slow = build(config, tmp_path, FAST_HITS=False)
    slow.extensions["bffproxy.cache"].clock = fast.extensions["bffproxy.cache"].clock
    headers = {"Origin": "https://pr-9.preview.acme.test", "X-Request-ID": "r-1"}
    call(fast, "/api/articles?sort=title")
    for extra in ({}, {"If-None-Match": call(fast, "/api/articles?sort=title").headers["ETag"]}):
        one = call(fast, "/api/articles?sort=title", headers={**headers, **extra})
        other = call(slow, "/api/articles?sort=title", headers={**headers, **extra})
        assert one.status_code == other.status_code and one.data == other.data
        assert sorted(one.headers.items()) == sorted(other.headers.items())
        assert one.headers["Access-Control-Allow-Origin"] == "https://pr-9.preview.acme.test"
    assert len(strapis.calls) == 1


def test_preflights_are_answered_without_strapi_and_refuse_what_is_not_allowed(
    app: Flask, strapis: responses.RequestsMock
) -> None:
    def preflight(path: str, host: str = "acme.test", **headers: str) -> Response:
        ask = {"Origin": ALLOWED, "Access-Control-Request-Method": "POST", **headers}
        return call(app, path, host, "OPTIONS", headers=ask)

    ok = preflight("/api/articles", **{"Access-Control-Request-Headers": "authorization, idempotency-key"})
    assert ok.status_code == 204 and ok.headers["Access-Control-Max-Age"] == "600"
    assert ok.headers["Access-Control-Allow-Headers"] == "authorization, idempotency-key"
    patch = preflight("/api/articles", **{"Access-Control-Request-Method": "PATCH"})
    assert "Access-Control-Allow-Methods" not in patch.headers  # the browser refuses the PATCH
    evil = preflight("/api/articles", **{"Access-Control-Request-Headers": "x-evil, cookie"})
    assert "Access-Control-Allow-Headers" not in evil.headers
    other = preflight("/api/articles", Origin="https://evil.test")
    assert not [name for name, _ in other.headers if name.startswith("Access-Control")]
    assert preflight("/api/anything/at/all").status_code == 204
    assert preflight("/webhooks/strapi").status_code == 204
    no_cors = preflight("/api/articles", "beta.test")  # beta has no cors table: Flask's own OPTIONS
    assert no_cors.status_code == 200 and "Access-Control-Allow-Origin" not in no_cors.headers
    unknown = preflight("/api/articles", "nobody.test")
    assert (unknown.status_code, code_of(unknown)) == (404, "unknown_tenant")
    assert "Access-Control-Allow-Origin" not in unknown.headers  # no tenant, no origins to allow
    assert len(strapis.calls) == 0


def test_a_star_origin_without_credentials_answers_star_even_to_null(
    config: dict[str, Any], tmp_path: Path, strapis: responses.RequestsMock
) -> None:
    text = TENANTS.replace(
        f'origins = ["{ALLOWED}", "https://*.preview.acme.test"]\nallow_credentials = true', 'origins = ["*"]'
    )
    app = build(config, tmp_path, text)
    for origin in ("null", "https://anyone.test"):
        answer = call(app, "/api/articles", headers={"Origin": origin})
        assert answer.headers["Access-Control-Allow-Origin"] == "*"
        assert "Access-Control-Allow-Credentials" not in answer.headers


# -- The operator's mistakes -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (("[tenants.beta]", "[tenants.acme]"), "is not valid TOML: Cannot declare ('tenants', 'acme') twice"),
        (
            (
                'login_rate_limit = "2/60"\n\n[tenants.acme.p',
                'login_rate_limit = "2/60"\ncollections = []\n\n[tenants.acme.p',
            ),
            "is not valid TOML",
        ),
        (
            ('strapi_api_token = "beta-api-token"', 'strapi_api_token_env = "UNSET_BETA_TOKEN"'),
            "tenant 'beta', key 'strapi_api_token_env': the environment variable UNSET_BETA_TOKEN is not set",
        ),
        (
            ('hosts = ["beta.test"]', 'hosts = ["ACME.test."]'),
            "tenant 'beta', key 'hosts': 'acme.test' is also a host of tenant 'acme'",
        ),
        (
            ('hosts = ["beta.test"]', 'hosts = ["shop.acme.test"]'),
            "'shop.acme.test' is also matched by '*.acme.test' of tenant 'acme'",
        ),
        (('hosts = ["beta.test"]', 'hosts = ["*.eu.acme.test"]'), "is also matched by '*.acme.test'"),
        (('hosts = ["beta.test"]', 'hosts = ["beta.test:8080"]'), "'beta.test:8080' is not a host name"),
        (('path_prefix = "/t/beta"', 'path_prefix = "/api"'), "would hide bffproxy's own /api routes"),
        (('path_prefix = "/t/beta"', 'path_prefix = "/t/beta/"'), "must start with '/' and not end with one"),
        (('path_prefix = "/t/beta"', 'path_prefix = "/t/../beta"'), "key 'path_prefix'"),
        (("allow_credentials = true", 'allow_credentials = true\norigins = ["*"]'), "is not valid TOML"),
        (
            ('"https://*.preview.acme.test"]', '"*"]'),
            "key 'cors.allow_credentials': cannot be true with the origin '*'",
        ),
        (('"https://*.preview.acme.test"]', '"null"]'), "'null' is not an origin"),
        (('"https://*.preview.acme.test"]', '"https://app.acme.test/"]'), "is not an origin"),
        (
            ('collections = ["articles"]\nlogin', "collections = []\nlogin"),
            "tenant 'beta': key 'collections' is required",
        ),
        (
            ("\n[tenants.acme]\n", 'default_tenant = "gamma"\n[tenants.acme]\n'),
            "key 'default_tenant': names no tenant of this file: 'gamma'",
        ),
    ],
)
def test_a_broken_tenants_file_stops_the_start_with_one_line_naming_it(
    config: dict[str, Any], tmp_path: Path, change: tuple[str, str], expected: str
) -> None:
    text = TENANTS.replace(*change)
    assert text != TENANTS, change
    with pytest.raises(ConfigError) as caught:
        build(config, tmp_path, text)
    message = str(caught.value)
    assert message.startswith(f"BFFPROXY_TENANTS_FILE {tmp_path}/tenants.toml: ") and "\n" not in message
    assert expected in message


def test_a_default_tenant_with_a_prefix_takes_unmatched_hosts_and_its_prefix_still_strips(
    config: dict[str, Any], tmp_path: Path, strapis: responses.RequestsMock
) -> None:
    app = build(config, tmp_path, 'default_tenant = "beta"\n' + TENANTS)
    assert title_of(call(app, "/api/articles", "nobody.test")) == "Beta"
    assert title_of(call(app, "/t/beta/api/articles", "nobody.test")) == "Beta"
    assert title_of(call(app, "/api/articles", "x.acme.test")) == "Acme"  # a match still wins
    assert call(app, "/api/categories", "nobody.test").status_code == 404  # beta's collections only


def test_two_tenants_on_one_strapi_still_keep_their_own_entries_and_collections(
    config: dict[str, Any], tmp_path: Path, strapi: responses.RequestsMock
) -> None:
    app = build(config, tmp_path, TENANTS.replace(BETA_STRAPI, ACME_STRAPI))
    strapi.get(f"{ACME_STRAPI}/api/articles", json=strapi_list("Shared"))
    assert [call(app, "/api/articles", h).headers["X-Cache"] for h in ("acme.test", "beta.test")] == [
        "MISS",
        "MISS",
    ]
    assert call(app, "/api/categories", "beta.test").status_code == 404
    assert len(strapi.calls) == 2


# -- Reload (gunicorn's on_reload hook, called as the arbiter calls it) ----------------------------


class FakeArbiter:
    """What on_reload uses of gunicorn's arbiter: its logger."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []
        self.log = self

    def error(self, message: str, *args: Any) -> None:
        self.lines.append(("error", message % args))

    def info(self, message: str, *args: Any) -> None:
        self.lines.append(("info", message % args))


@pytest.fixture
def arbiter_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The arbiter's environment: top-level settings and the operator's tenants file."""
    source = write_tenants(tmp_path, name="operator.toml")
    for key, value in {
        "BFFPROXY_TENANTS_FILE": str(source),
        "BFFPROXY_STRAPI_URL": ACME_STRAPI,
        "BFFPROXY_COLLECTIONS": "articles",
        "BFFPROXY_CACHE_DIR": str(tmp_path / "cache"),
    }.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("BFFPROXY_TENANTS_SOURCE", raising=False)
    yield source
    os.environ.pop("BFFPROXY_TENANTS_SOURCE", None)


def test_a_reload_keeps_the_last_good_copy_for_every_kind_of_broken_file(arbiter_env: Path) -> None:
    hooks = runpy.run_path(str(GUNICORN_CONF))
    hooks["on_starting"](FakeArbiter())
    active = os.environ["BFFPROXY_TENANTS_FILE"]
    assert active != str(arbiter_env) and Path(active).read_text() == TENANTS
    for broken in (
        "[tenants.acme\n",  # not TOML
        TENANTS.replace('strapi_api_token = "beta-api-token"', 'strapi_api_token_env = "UNSET_AT_RELOAD"'),
        TENANTS.replace('hosts = ["beta.test"]', 'hosts = ["acme.test"]'),
        "",  # emptied
        None,  # deleted
    ):
        if broken is None:
            arbiter_env.unlink()
        else:
            arbiter_env.write_text(broken)
        arbiter = FakeArbiter()
        hooks["on_reload"](arbiter)
        assert [level for level, _ in arbiter.lines] == ["error"], broken
        assert "configuration error on reload, keeping the previous one" in arbiter.lines[0][1]
        assert os.environ["BFFPROXY_TENANTS_FILE"] == active and Path(active).read_text() == TENANTS
        create_app()  # what a worker started now builds: the last good tenants
    arbiter_env.write_text(TENANTS.replace('hosts = ["beta.test"]', 'hosts = ["beta.test", "beta2.test"]'))
    arbiter = FakeArbiter()
    hooks["on_reload"](arbiter)
    assert arbiter.lines == [("info", "bffproxy: configuration reloaded")]
    assert "beta2.test" in Path(os.environ["BFFPROXY_TENANTS_FILE"]).read_text()
    assert oct(Path(os.environ["BFFPROXY_TENANTS_FILE"]).stat().st_mode & 0o777) == "0o600"  # secrets


# -- findings of the attack on issue 10, fixed: each failed on 7700ae4 ----------------------------


def test_f1_the_reloaded_snapshot_is_the_very_content_that_was_validated(
    arbiter_env: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    hooks = runpy.run_path(str(GUNICORN_CONF))
    hooks["on_starting"](FakeArbiter())
    import bffproxy

    real = bffproxy.create_app

    def validate_then_editor_saves(config: Any = None) -> Flask:
        app = real(config)
        arbiter_env.write_text("[tenants.acme\n")  # the operator's next save lands now
        return app

    monkeypatch.setattr(bffproxy, "create_app", validate_then_editor_saves)
    arbiter = FakeArbiter()
    hooks["on_reload"](arbiter)
    monkeypatch.setattr(bffproxy, "create_app", real)
    active = os.environ["BFFPROXY_TENANTS_FILE"]
    # Reported "reloaded", yet every worker now boots from a file that never passed validation:
    # gunicorn halts the arbiter when workers fail to boot, so the server goes down.
    read_tenants_file(active)  # the copy that passed, not the later save (7700ae4 copied the save)


def test_f2_two_instances_on_one_cache_dir_keep_their_own_tenants_snapshot(
    arbiter_env: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    hooks = runpy.run_path(str(GUNICORN_CONF))
    hooks["on_starting"](FakeArbiter())  # instance A (say blue) on the shared /var/cache/bffproxy
    a_active = os.environ["BFFPROXY_TENANTS_FILE"]
    other = write_tenants(tmp_path, TENANTS.replace('"beta.test"', '"gamma.test"'), "other.toml")
    # Instance B (green): another process, same CACHE_DIR, another tenants file.
    os.environ.pop("BFFPROXY_TENANTS_SOURCE")
    os.environ["BFFPROXY_TENANTS_FILE"] = str(other)
    monkeypatch.setattr(os, "getpid", lambda: 4242)  # another arbiter
    hooks["on_starting"](FakeArbiter())
    # A's next worker (a crash, max_requests, a timeout kill) reads a_active: it must still be A's.
    assert "gamma.test" not in Path(a_active).read_text()


SHARED = f"""
[tenants.acme]
hosts = ["acme.test"]
strapi_url = "{ACME_STRAPI}"
collections = ["articles"]

[tenants.beta]
hosts = ["beta.test"]
strapi_url = "{BETA_STRAPI}"
collections = ["articles"]
"""


@pytest.mark.parametrize(
    ("inherited", "tenant_key"),
    [
        ({"STRAPI_JWT_SECRET": "top-level-jwt-secret-" + "x" * 24}, "strapi_jwt_secret"),
        ({"WEBHOOK_SECRET": "top-level-webhook-secret"}, "webhook_secret"),
    ],
)
def test_f3_two_tenants_sharing_one_secret_are_refused_at_start_up(
    config: dict[str, Any], tmp_path: Path, inherited: dict[str, str], tenant_key: str
) -> None:
    # Both tenants inherit the top-level secret (they do not set their own): a token or webhook of
    # one is then accepted as the other's. Start-up should refuse it, naming both tenants and the key.
    with pytest.raises(ConfigError, match=tenant_key):
        build(config, tmp_path, SHARED, **inherited)


@pytest.mark.parametrize("origin", ["https://*.com", "https://*.test", "http://*.localhost"])
def test_f5_a_cors_pattern_spanning_a_top_level_domain_is_refused(tmp_path: Path, origin: str) -> None:
    text = TENANTS.replace('"https://*.preview.acme.test"]', f'"{origin}"]')
    with pytest.raises(ConfigError, match=r"cors\.origins"):
        read_tenants_file(str(write_tenants(tmp_path, text)), {})


def test_f6_an_unknown_tenant_header_is_404_even_with_a_single_tenant(
    config: dict[str, Any], tmp_path: Path, strapi: responses.RequestsMock
) -> None:
    text = f'[tenants.acme]\nstrapi_url = "{ACME_STRAPI}"\ncollections = ["articles"]\n'
    strapi.get(f"{ACME_STRAPI}/api/articles", json=strapi_list("Acme"))
    app = build(config, tmp_path, text, TENANT_HEADER="X-Tenant")
    answer = call(app, "/api/articles", "anything.test", headers={"X-Tenant": "nope"})
    assert answer.status_code == 404  # README: "an unknown name is a 404" (7700ae4: 200)
