"""The soak's suite version: 45 s of mixed traffic through bffproxy to the real Strapi (bench/soak.py).

`make soak` runs the same code for 10 minutes against its own Strapi. Here bffproxy is the session
Strapi's webhook target, so the writes' webhooks arrive from Strapi itself. The soak deletes what it
created.
"""

from __future__ import annotations

from collections.abc import Callable

from bench.soak import SOAK_SETTINGS, run_soak

from .services import Gunicorn, Strapi

SECONDS = 45.0


def test_soak_mixed_traffic_loses_nothing_and_stays_flat(
    start_bff: Callable[..., Gunicorn], webhook_port: int, strapi_live: Strapi
) -> None:
    bff = start_bff(port=webhook_port, **SOAK_SETTINGS)
    report = run_soak(bff, strapi_live, SECONDS)
    print("\n" + report.text())
    assert report.unexpected == []
    assert report.unexpected_5xx == 0
    assert report.accepted > 0 and report.counts[("hit", 200)] > 0 and report.counts[("login", 200)] > 0
    assert report.webhooks and all(200 <= status < 300 for status in report.webhooks)
    assert not report.lost and not report.doubled
    assert not report.workers_replaced
    for worker in report.workers:
        assert worker.rss_end <= worker.rss_warm * 1.10, worker
        assert worker.fds_end <= worker.fds_warm + 16, worker
    assert all(report.verdicts().values()), report.verdicts()
