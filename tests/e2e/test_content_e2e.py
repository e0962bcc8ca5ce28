"""Issue 2 end to end: real Strapi 5, bffproxy under real gunicorn with 2 workers."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import requests

from .services import ROOT, Gunicorn, Strapi, free_port

QUERIES = [
    {},
    {"filters[section][$eq]": "guide", "sort": "title:desc"},
    {"populate": "category", "fields[0]": "title", "pagination[pageSize]": "5", "pagination[page]": "2"},
    {"filters[$or][0][featured][$eq]": "true", "filters[$or][1][section][$in][0]": "news", "locale": "en"},
    {"pagination[start]": "3", "pagination[limit]": "4", "sort[0]": "id:asc"},
]


@pytest.mark.parametrize("params", QUERIES, ids=lambda p: ",".join(p) or "plain")
def test_list_equals_strapi_answer(bff: Gunicorn, strapi_live: Strapi, params: dict[str, str]) -> None:
    direct = strapi_live.get("api/articles", **params)
    through = requests.get(f"{bff.url}/api/articles", params=params, timeout=10)
    assert through.status_code == direct.status_code == 200
    assert through.json() == direct.json()


def test_single_document_equals_strapi(bff: Gunicorn, strapi_live: Strapi) -> None:
    doc = strapi_live.get("api/articles").json()["data"][0]["documentId"]
    direct = strapi_live.get(f"api/articles/{doc}", populate="category").json()
    through = requests.get(f"{bff.url}/api/articles/{doc}?populate=category", timeout=10)
    assert through.json() == direct
    assert through.json()["data"]["category"]["name"]


def test_strapi_400_and_404_pass_through(bff: Gunicorn) -> None:
    bad = requests.get(f"{bff.url}/api/articles?filters[nope][$eq]=1", timeout=10)
    assert bad.status_code == 400
    assert bad.json()["error"]["name"] == "ValidationError"
    missing = requests.get(f"{bff.url}/api/articles/doesnotexist000000000000", timeout=10)
    assert missing.status_code == 404
    assert missing.json()["error"]["name"] == "NotFoundError"


def test_unknown_collection_is_404(bff: Gunicorn) -> None:
    response = requests.get(f"{bff.url}/api/users", timeout=10)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_drafts_never_reach_anonymous_callers(bff: Gunicorn, strapi_live: Strapi) -> None:
    # Strapi itself leaks drafts to the Public role for these: prove it, then prove bffproxy does not.
    assert strapi_live.get("api/articles", status="draft").json()["meta"]["pagination"]["total"] > 30
    for value, code in (("draft", "drafts_not_allowed"), ("bogus", "invalid_parameter")):
        response = requests.get(f"{bff.url}/api/articles", params={"status": value}, timeout=10)
        assert response.status_code == 400
        assert response.json()["error"]["code"] == code
    published = requests.get(f"{bff.url}/api/articles", params={"status": "published"}, timeout=10)
    assert published.json()["meta"]["pagination"]["total"] == 30


def test_hit_is_served_by_another_worker(bff: Gunicorn) -> None:
    """The embedded cache is shared: a MISS in one worker is a HIT in the other."""
    url = f"{bff.url}/api/articles?pagination[pageSize]=3&sort=title"
    first = requests.get(url, timeout=10)
    assert first.headers["X-Cache"] == "MISS"
    seen: dict[str, str] = {}
    for _ in range(200):  # new connections land on either worker; stop once another one answered
        response = requests.get(url, headers={"Connection": "close"}, timeout=10)
        seen[response.headers["X-BFF-Worker"]] = response.headers["X-Cache"]
        if len(seen) == 2 and first.headers["X-BFF-Worker"] in seen:
            break
    other = {pid: cache for pid, cache in seen.items() if pid != first.headers["X-BFF-Worker"]}
    assert other, "only one worker ever answered"
    assert set(other.values()) == {"HIT"}


def test_strapi_stopped_gives_502_for_uncached_and_503_on_readyz(bff: Gunicorn, strapi_live: Strapi) -> None:
    strapi_live.stop()
    try:
        uncached = requests.get(f"{bff.url}/api/articles?pagination[pageSize]=7", timeout=20)
        assert uncached.status_code == 502
        assert uncached.json()["error"]["code"] == "upstream_unavailable"
        ready = requests.get(f"{bff.url}/readyz", timeout=10)
        assert ready.status_code == 503
        assert requests.get(f"{bff.url}/healthz", timeout=10).status_code == 200
    finally:
        strapi_live.start()
    assert requests.get(f"{bff.url}/readyz", timeout=10).status_code == 200


def test_read_timeout_gives_504(start_bff: Callable[..., Gunicorn]) -> None:
    slow = start_bff(STRAPI_READ_TIMEOUT="0.001", STRAPI_RETRIES="0")
    response = requests.get(f"{slow.url}/api/articles?populate=*&pagination[pageSize]=100", timeout=10)
    assert response.status_code == 504
    assert response.json()["error"]["code"] == "upstream_timeout"


def test_bad_configuration_refuses_to_boot(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BFFPROXY_")}
    env.update(
        BFFPROXY_COLLECTIONS="articles",
        BFFPROXY_CACHE_TTL="forever",
        BFFPROXY_ENV_FILE=str(tmp_path / "none.env"),
        BFFPROXY_CACHE_DIR=str(tmp_path),
    )
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "-c",
            "gunicorn.conf.py",
            "--bind",
            f"127.0.0.1:{free_port()}",
            "wsgi:app",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if "configuration error" in line]
    assert lines == [
        "bffproxy: configuration error: BFFPROXY_CACHE_TTL must be an integer >= 0, got 'forever'"
    ]
    assert "Traceback" not in result.stderr
