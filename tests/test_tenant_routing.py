"""Tenant routing: header, then path prefix, then host, then the default; never another tenant."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from bffproxy.tenant_routing import ENVIRON_KEY, TenantMatcher, TenantRouting, request_host


@dataclass(frozen=True)
class T:
    name: str
    hosts: tuple[str, ...] = ()
    path_prefix: str | None = None


ACME = T("acme", ("acme.test", "*.acme.test"))
BETA = T("beta", ("beta.test",), "/t/beta")
DEEP = T("deep", (), "/x/y/z")
PREVIEW = T("preview", ("*.preview.acme2.test",))


def environ(path: str = "/api/articles", host: str = "acme.test", **extra: str) -> dict[str, Any]:
    return {"PATH_INFO": path, "HTTP_HOST": host, "SCRIPT_NAME": "", **extra}


def names(matcher: TenantMatcher, env: dict[str, Any]) -> tuple[str | None, str]:
    tenant, prefix = matcher.match(env)
    return (tenant.name if tenant else None, prefix)


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        (environ(host="acme.test"), ("acme", "")),
        (environ(host="ACME.test:8443"), ("acme", "")),
        (environ(host="acme.test."), ("acme", "")),
        (environ(host="shop.acme.test"), ("acme", "")),
        (environ(host="a.b.acme.test"), ("acme", "")),
        (environ(host="beta.test"), ("beta", "")),
        (environ(host="x.beta.test"), (None, "")),  # beta has no wildcard
        (environ(host="evilacme.test"), (None, "")),
        (environ(host="acme.test.evil"), (None, "")),
        (environ(host=""), (None, "")),
        (environ(host="[::1]:8080"), (None, "")),
        (environ("/t/beta/api/articles", host="unknown.test"), ("beta", "/t/beta")),
        (environ("/t/beta/api/articles", host="acme.test"), ("beta", "/t/beta")),  # prefix before host
        (environ("/t/beta", host="unknown.test"), ("beta", "/t/beta")),
        (environ("/t/betax/api", host="unknown.test"), (None, "")),
        (environ("/t/bet/api", host="unknown.test"), (None, "")),
        (environ("/x/y/z/api/articles", host="unknown.test"), ("deep", "/x/y/z")),
        (environ("/x/y/api", host="unknown.test"), (None, "")),
        (environ("/api/articles", host="pr-1.preview.acme2.test"), ("preview", "")),
    ],
)
def test_prefix_then_host_each_by_look_up(env: dict[str, Any], expected: tuple[str | None, str]) -> None:
    assert names(TenantMatcher([ACME, BETA, DEEP, PREVIEW]), env) == expected


def test_the_header_decides_alone_when_enabled_and_sent() -> None:
    matcher = TenantMatcher([ACME, BETA], header="X-Tenant")
    assert names(matcher, environ(host="acme.test", HTTP_X_TENANT="beta")) == ("beta", "")
    assert names(matcher, environ(host="acme.test", HTTP_X_TENANT="nobody")) == (None, "")  # never acme
    assert names(matcher, environ(host="acme.test")) == ("acme", "")  # not sent: the other rules
    disabled = TenantMatcher([ACME, BETA])
    assert names(disabled, environ(host="acme.test", HTTP_X_TENANT="beta")) == ("acme", "")  # a client's


def test_the_default_takes_what_nothing_matched_and_only_that() -> None:
    matcher = TenantMatcher([ACME, BETA], default="beta")
    assert names(matcher, environ(host="unknown.test")) == ("beta", "")
    assert names(matcher, environ(host="acme.test")) == ("acme", "")


def test_one_tenant_without_hosts_or_prefixes_takes_every_request() -> None:
    only = T("default")
    assert names(TenantMatcher([only]), environ(host="anything.test")) == ("default", "")


def test_the_middleware_strips_the_prefix_and_records_the_tenant() -> None:
    seen: dict[str, Any] = {}

    def app(env: dict[str, Any], start_response: Any) -> list[bytes]:
        seen.update(env)
        return []

    TenantRouting(app, TenantMatcher([ACME, BETA]))(environ("/t/beta/api/articles/abc"), lambda *a: None)
    assert (seen["SCRIPT_NAME"], seen["PATH_INFO"], seen[ENVIRON_KEY]) == (
        "/t/beta",
        "/api/articles/abc",
        BETA,
    )


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("Example.COM:80", "example.com"),
        ("example.com", "example.com"),
        ("[::1]", "[::1]"),
        ("[::1]:8080", "[::1]"),
        ("a:b", None),
        ("a..b", None),
        ("a b", None),
        ("", ""),
    ],
)
def test_request_host(host: str, expected: str | None) -> None:
    assert request_host({"HTTP_HOST": host}) == expected


def test_an_absolute_form_request_line_names_the_host() -> None:
    # RFC 9112 3.2.2: the request target's authority wins over the Host header.
    assert request_host({"RAW_URI": "http://beta.test/api/x", "HTTP_HOST": "acme.test"}) == "beta.test"
    assert request_host({"RAW_URI": "/api/x", "HTTP_HOST": "acme.test"}) == "acme.test"
