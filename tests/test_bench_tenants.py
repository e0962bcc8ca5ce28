"""bench/tenants.py measures what it says: each case a fresh hit of the tenant it names, on the fast path."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import responses
from flask import Flask

from bench import tenants
from bench.stack import cpu_seconds
from bffproxy.hits import FreshHits
from tests.e2e.services import Strapi

from .conftest import strapi_list
from .test_hits import fast_hits

LIST = "/api/articles"


@pytest.fixture
def bench_strapi() -> Strapi:
    """The Strapi the bench's environments name (answered by the fake Strapi)."""
    env = {"STRAPI_API_TOKEN": "bench-token", "STRAPI_JWT_SECRET": "j" * 32, "STRAPI_WEBHOOK_SECRET": "w"}
    return Strapi(port=1337, webhook_port=1, env=env)


@pytest.fixture
def apps(tmp_path: Path, bench_strapi: Strapi, strapi: responses.RequestsMock) -> dict[str, Flask]:
    strapi.get(f"{bench_strapi.url}{LIST}", json=strapi_list("A", "B"))
    return tenants.in_process_apps(bench_strapi, tmp_path)


def refuse_the_flask_path(app: Flask) -> None:
    """From now on only the WSGI fast path may answer: the Flask app behind it fails the test."""

    def flask_app(environ: dict[str, Any], start_response: Any) -> Any:
        raise AssertionError(f"{environ['PATH_INFO']} went past the fast path")

    layer: FreshHits = fast_hits(app)
    layer.wsgi_app = flask_app


def test_each_case_misses_once_in_its_own_tenant_then_is_a_fast_hit(
    apps: dict[str, Flask], strapi: responses.RequestsMock
) -> None:
    cases = tenants.cases(LIST)
    for case in cases:  # 'three' and 'prefix' share an instance: a MISS each means two tenants
        assert tenants.call(apps[case.server], tenants.wsgi_environ(case))[1]["x-cache"] == "MISS"
    assert len(strapi.calls) == len(cases)
    for app in apps.values():
        refuse_the_flask_path(app)
    for case in cases:
        status, headers, body = tenants.call(apps[case.server], tenants.wsgi_environ(case))
        tenants.check_hit(case, status, headers)  # CORS headers exactly on the CORS case
        assert b'"title":"A"' in body.replace(b" ", b"")


def test_the_host_header_is_what_routes_the_three_tenant_cases(apps: dict[str, Flask]) -> None:
    three = next(case for case in tenants.cases(LIST) if case.name == "three")
    unrouted = tenants.Case("no host", "no host", "three", LIST)
    status, headers, body = tenants.call(apps["three"], tenants.wsgi_environ(unrouted))
    assert (status, b"unknown_tenant" in body) == ("404 NOT FOUND", True)
    tenants.call(apps["three"], tenants.wsgi_environ(three))
    without_cors = tenants.Case(
        "cors?", "cors on three", "three", LIST, {**three.headers, "Origin": tenants.ORIGIN}
    )
    status, headers, _ = tenants.call(apps["three"], tenants.wsgi_environ(without_cors))
    with pytest.raises(RuntimeError, match="Access-Control-Allow-Origin is None"):
        tenants.check_hit(without_cors, status, headers)


def test_ratios_read_higher_is_faster_whatever_was_measured() -> None:
    cpu_us = {"three": [110.0, 200.0, 100.0], "one": [100.0, 100.0, 100.0]}  # µs per hit: lower is faster
    row = tenants.ratio_row(tenants.per_second(cpu_us), "three", "one")
    assert row == {"median": pytest.approx(0.909, abs=1e-3), "min": 0.5, "max": 1.0}


def test_cpu_seconds_reads_user_plus_system_time_of_a_process() -> None:
    times = os.times()  # this process's own, as /proc counts it (children apart), in 10 ms ticks
    assert 0 < cpu_seconds(os.getpid()) <= times.user + times.system + 0.02
