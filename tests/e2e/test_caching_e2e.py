"""Issue 3 cache semantics end to end on the embedded store: ETag/304, single-flight, stale-if-error."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import requests

from .services import Gunicorn, Strapi


def test_etag_304_and_age(bff: Gunicorn) -> None:
    url = f"{bff.url}/api/categories"
    first = requests.get(url, timeout=10)
    etag = first.headers["ETag"]
    revalidated = requests.get(url, headers={"If-None-Match": etag}, timeout=10)
    assert revalidated.status_code == 304
    assert revalidated.content == b""
    assert revalidated.headers["ETag"] == etag
    assert "Age" in revalidated.headers


def test_cold_stampede_reaches_strapi_once(bff: Gunicorn, strapi_live: Strapi) -> None:
    """64 concurrent requests for one cold key, over both workers: one Strapi request.

    Hits are fast enough that one worker sometimes drains all 64 connections; each attempt uses a
    new cold key and must reach Strapi once, until an attempt has spread over both workers.
    """
    workers: set[str] = set()
    for _ in range(5):
        marker = uuid.uuid4().hex
        url = f"{bff.url}/api/articles?filters[title][$containsi]={marker}&populate=category"
        with ThreadPoolExecutor(max_workers=64) as pool:
            answers = list(
                pool.map(
                    lambda _, u=url: requests.get(u, headers={"Connection": "close"}, timeout=30), range(64)
                )
            )
        assert {a.status_code for a in answers} == {200}
        assert sorted({a.headers["X-Cache"] for a in answers}) == ["HIT", "MISS"]
        assert strapi_live.count_requests(marker) == 1
        workers = {a.headers["X-BFF-Worker"] for a in answers}
        if len(workers) == 2:
            break
    assert len(workers) == 2, "no attempt spread over both workers"


def test_stale_if_error_with_strapi_stopped(start_bff: Callable[..., Gunicorn], strapi_live: Strapi) -> None:
    bff = start_bff(CACHE_TTL="1", STALE_WHILE_REVALIDATE="0", STALE_IF_ERROR="600")
    url = f"{bff.url}/api/articles?pagination[pageSize]=2"
    fresh = requests.get(url, timeout=10)
    assert fresh.headers["X-Cache"] == "MISS"
    strapi_live.stop()
    try:
        time.sleep(1.2)  # let the 1 s TTL run out (expiry, not a timing assertion)
        stale = requests.get(url, timeout=20)
        uncached = requests.get(f"{bff.url}/api/articles?pagination[pageSize]=3", timeout=20)
    finally:
        strapi_live.start()
    assert stale.status_code == 200
    assert stale.headers["X-Cache"] == "STALE"
    assert int(stale.headers["Age"]) >= 1
    assert stale.json() == fresh.json()
    assert uncached.status_code == 502


def test_stale_while_revalidate_refreshes_in_background(
    start_bff: Callable[..., Gunicorn], strapi_live: Strapi
) -> None:
    bff = start_bff(CACHE_TTL="1", STALE_WHILE_REVALIDATE="600")
    marker = uuid.uuid4().hex
    url = f"{bff.url}/api/articles?filters[title][$notContainsi]={marker}&pagination[pageSize]=1"
    assert requests.get(url, timeout=10).headers["X-Cache"] == "MISS"
    time.sleep(1.2)
    assert requests.get(url, timeout=10).headers["X-Cache"] == "STALE"
    deadline = time.monotonic() + 10
    answer = "STALE"
    while answer == "STALE" and time.monotonic() < deadline:
        time.sleep(0.05)  # the refresh runs in the background: poll until it has stored
        answer = requests.get(url, timeout=10).headers["X-Cache"]
    assert answer == "HIT"
    assert strapi_live.count_requests(marker) == 2  # exactly one background refresh
