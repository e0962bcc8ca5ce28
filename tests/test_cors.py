"""CORS at the WSGI layer: Flask-CORS's decisions on every answer, preflights answered without the app."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import pytest
from werkzeug.test import Client
from werkzeug.wrappers import Response

from bffproxy.cors import Cors, options_for
from bffproxy.tenants_file import CorsSpec

ACME = CorsSpec(
    origins=("https://app.acme.test", re.compile(r"https://[a-z0-9-]+\.preview\.acme\.test\Z")),
    allow_credentials=True,
    max_age=600,
)


class App:
    """A WSGI app that answers like a content view and counts its calls."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        self.calls += 1
        start_response(
            "200 OK", [("Content-Type", "application/json"), ("Vary", "Authorization"), ("X-Cache", "HIT")]
        )
        return [b"{}"]


def client(spec: CorsSpec | None) -> tuple[Client, App]:
    app = App()
    options = options_for(spec) if spec is not None else None
    return Client(Cors(app, lambda environ: options), Response), app


def test_an_allowed_origin_reads_the_answer_and_its_cache_headers() -> None:
    browser, _ = client(ACME)
    answer = browser.get("/api/articles", headers={"Origin": "https://app.acme.test"})
    assert answer.headers["Access-Control-Allow-Origin"] == "https://app.acme.test"
    assert answer.headers["Access-Control-Allow-Credentials"] == "true"
    exposed = {h.strip() for h in answer.headers["Access-Control-Expose-Headers"].split(",")}
    assert {"ETag", "Age", "X-Cache", "X-Request-ID", "Retry-After", "Idempotent-Replayed"} <= exposed
    assert answer.headers.getlist("Vary") == ["Authorization, Origin"]  # one Vary, merged


def test_a_pattern_origin_is_allowed_and_its_lookalikes_are_not() -> None:
    browser, _ = client(ACME)
    allowed = browser.get("/", headers={"Origin": "https://pr-7.preview.acme.test"})
    assert allowed.headers["Access-Control-Allow-Origin"] == "https://pr-7.preview.acme.test"
    for origin in (
        "https://pr-7.preview.acme.test.evil.test",
        "https://evil.test",
        "null",
        "http://app.acme.test",
    ):
        answer = browser.get("/", headers={"Origin": origin})
        assert "Access-Control-Allow-Origin" not in answer.headers, origin
        assert answer.headers["Vary"] == "Authorization, Origin"


def test_without_an_origin_no_cors_headers_but_vary_origin() -> None:
    browser, _ = client(ACME)
    answer = browser.get("/")
    assert not [name for name, _ in answer.headers if name.startswith("Access-Control")]
    assert answer.headers["Vary"] == "Authorization, Origin"


def test_every_origin_without_credentials_gets_the_wildcard() -> None:
    browser, _ = client(CorsSpec(origins=("*",)))
    answer = browser.get("/", headers={"Origin": "https://anyone.test"})
    assert answer.headers["Access-Control-Allow-Origin"] == "*"
    assert "Access-Control-Allow-Credentials" not in answer.headers


def test_a_preflight_is_answered_here_and_never_reaches_the_app() -> None:
    browser, app = client(ACME)
    answer = browser.options(
        "/api/articles",
        headers={
            "Origin": "https://app.acme.test",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type, idempotency-key, x-evil",
        },
    )
    assert (answer.status_code, app.calls) == (204, 0)
    assert answer.headers["Access-Control-Allow-Origin"] == "https://app.acme.test"
    assert set(answer.headers["Access-Control-Allow-Methods"].split(", ")) >= {"GET", "POST", "PUT", "DELETE"}
    assert answer.headers["Access-Control-Allow-Headers"] == "authorization, content-type, idempotency-key"
    assert answer.headers["Access-Control-Max-Age"] == "600"
    assert answer.headers["Vary"] == "Origin, Access-Control-Request-Method, Access-Control-Request-Headers"


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "https://evil.test", "Access-Control-Request-Method": "POST"},
        {"Origin": "https://app.acme.test", "Access-Control-Request-Method": "TRACE"},
    ],
)
def test_a_refused_preflight_gets_no_allow_headers(headers: dict[str, str]) -> None:
    browser, app = client(ACME)
    answer = browser.options("/api/articles", headers=headers)
    assert (answer.status_code, app.calls) == (204, 0)
    assert "Access-Control-Allow-Methods" not in answer.headers
    assert "Access-Control-Allow-Headers" not in answer.headers


def test_a_tenant_without_cors_is_left_alone() -> None:
    browser, app = client(None)
    answer = browser.get("/", headers={"Origin": "https://app.acme.test"})
    assert "Access-Control-Allow-Origin" not in answer.headers
    assert answer.headers["Vary"] == "Authorization"
    plain = browser.options(
        "/", headers={"Origin": "https://app.acme.test", "Access-Control-Request-Method": "GET"}
    )
    assert plain.status_code == 200 and app.calls == 2  # the app answers its own OPTIONS


def test_a_hits_cors_headers_are_remembered_per_origin_and_method(monkeypatch: pytest.MonkeyPatch) -> None:
    import bffproxy.cors as cors

    computed: list[str] = []
    real = cors.get_cors_headers

    def counting(options: Any, headers: Any, method: str) -> Any:
        computed.append(headers.get("Origin"))
        return real(options, headers, method)

    monkeypatch.setattr(cors, "get_cors_headers", counting)
    browser, _ = client(ACME)
    for origin in ["https://app.acme.test", "https://evil.test"] * 3:
        answer = browser.get("/", headers={"Origin": origin})
        allowed = answer.headers.get("Access-Control-Allow-Origin")
        assert allowed == (origin if origin == "https://app.acme.test" else None)
    assert computed == ["https://app.acme.test", "https://evil.test"]  # once each, then remembered
