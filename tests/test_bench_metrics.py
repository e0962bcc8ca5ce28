"""bench/metrics.py measures what it says: the same fast hit, counted by one instance and not the other."""

from __future__ import annotations

from pathlib import Path

import responses

from bench import metrics as bench_metrics
from bench import tenants
from bffproxy import metrics
from tests.e2e.services import Strapi

from .conftest import strapi_list
from .test_bench_tenants import LIST, bench_strapi  # noqa: F401  (the fixture)


def hits_counted() -> float:
    metrics.flush()
    return (
        metrics.REGISTRY.get_sample_value(
            "bffproxy_cache_requests_total", {"tenant": "default", "result": "hit"}
        )
        or 0.0
    )


def test_only_the_metrics_on_instance_counts_and_both_answer_fast_hits(
    tmp_path: Path,
    bench_strapi: Strapi,  # noqa: F811  (test_bench_tenants's fixture)
    strapi: responses.RequestsMock,
) -> None:
    strapi.get(f"{bench_strapi.url}{LIST}", json=strapi_list("A", "B"))
    apps = {
        name: tenants.in_process_app(bench_metrics.server_env(bench_strapi, tmp_path / name, switch))
        for name, switch in bench_metrics.SERVERS.items()
    }
    assert isinstance(apps["on"].wsgi_app, metrics.Observed)
    assert not isinstance(apps["off"].wsgi_app, metrics.Observed)
    for case in bench_metrics.cases(LIST):
        environ = tenants.wsgi_environ(case)
        tenants.call(apps[case.server], environ)  # the miss
        before = hits_counted()
        tenants.check_hit(case, *tenants.call(apps[case.server], environ)[:2])
        assert hits_counted() == before + (1 if case.server == "on" else 0)
