"""The optional nginx micro-cache (deploy/nginx/bffproxy-microcache.conf) before bffproxy and a real Strapi.

It keeps exactly the anonymous public reads bffproxy marks with X-Accel-Expires, for at most
BFFPROXY_ACCEL_EXPIRES (1 s): after Strapi's webhook, nginx shows the new version once that has passed.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

from scripts.local_nginx import nginx_available

from .services import Gunicorn, StrapiEditor, wait_until
from .test_nginx_e2e import Front, nginx_in_front_of

pytestmark = pytest.mark.skipif(not nginx_available(), reason="nginx is not installed (make system-deps)")

LIFETIME = 1.0  # BFFPROXY_ACCEL_EXPIRES's default: the documented staleness bound


@pytest.fixture
def micro(start_bff: Callable[..., Gunicorn], webhook_port: int, tmp_path: Path) -> Iterator[Front]:
    """bffproxy on the port Strapi's webhooks target, behind the shipped site with the micro-cache on."""
    bff = start_bff(port=webhook_port, TRUSTED_PROXIES=1, ACCESS_LOG_FORMAT="text")
    with nginx_in_front_of(bff, tmp_path, microcache=True) as front:
        yield front


def _get(front: Front, path: str, **headers: str) -> requests.Response:
    rid = f"micro-{secrets.token_hex(6)}"
    answer = requests.get(f"{front.url}{path}", headers={"X-Request-ID": rid, **headers}, timeout=30)
    assert answer.headers["X-Request-ID"] == rid  # its own id, even from nginx's copy
    return answer


def _reached_bffproxy(front: Front, answer: requests.Response) -> bool:
    return f"rid={answer.headers['X-Request-ID']}" in front.bff.log()


def test_a_public_read_is_kept_by_nginx_and_marked_for_nobody_else(micro: Front) -> None:
    path = f"/api/articles?pagination[pageSize]=3&filters[title][$ne]=micro-{secrets.token_hex(4)}"
    first, second = _get(micro, path), _get(micro, path)
    assert (first.headers["X-Micro-Cache"], second.headers["X-Micro-Cache"]) == ("MISS", "HIT")
    assert second.json() == first.json() and second.headers["ETag"] == first.headers["ETag"]
    assert "X-Accel-Expires" not in first.headers  # nginx's business only
    wait_until(lambda: _reached_bffproxy(micro, first), 5, "the miss in bffproxy's log")
    assert not _reached_bffproxy(micro, second)


@pytest.mark.parametrize(
    ("method", "path", "headers"),
    [
        ("GET", "/api/articles?pagination[pageSize]=4", {"Authorization": "Bearer not-a-token"}),
        ("GET", "/api/articles?status=draft", {}),  # refused: errors are never kept
        ("GET", "/api/articles/nosuchdocumentid0000000", {}),  # Strapi's 404 passed through
        ("GET", "/api/upload/files", {}),  # bffproxy does not mark media lists
        ("POST", "/api/articles", {"Content-Type": "application/json"}),
    ],
)
def test_nginx_keeps_nothing_bffproxy_did_not_mark(
    micro: Front, method: str, path: str, headers: dict[str, str]
) -> None:
    for _ in range(2):
        rid = f"micro-{secrets.token_hex(6)}"
        answer = requests.request(
            method, f"{micro.url}{path}", headers={"X-Request-ID": rid, **headers}, data="{}", timeout=30
        )
        kept = answer.headers.get("X-Micro-Cache", "")  # none: not a cacheable method
        assert kept in ("", "MISS", "BYPASS"), (answer.status_code, answer.headers)
        wait_until(lambda rid=rid: f"rid={rid}" in micro.bff.log(), 5, "the request in bffproxy's log")


def test_after_a_change_in_strapi_nginx_shows_it_once_the_lifetime_has_passed(
    micro: Front, strapi_editor: StrapiEditor
) -> None:
    """A reader keeps nginx's copy warm; each edit in Strapi reaches bffproxy by webhook. Once bffproxy
    shows the new title, nginx does too after BFFPROXY_ACCEL_EXPIRES at most (here 1 s)."""
    doc = strapi_editor.create(f"micro-{secrets.token_hex(4)}")
    path = f"/api/articles/{doc}"
    hits, stop = [0], threading.Event()

    def reader() -> None:
        with requests.Session() as session:
            for _ in range(100_000):
                if stop.is_set():
                    return
                hits[0] += session.get(f"{micro.url}{path}", timeout=30).headers["X-Micro-Cache"] == "HIT"

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for edit in range(3):
            title = f"micro-edit-{edit}-{secrets.token_hex(3)}"
            strapi_editor.edit(doc, title=title)
            wait_until(lambda t=title: _title(micro.bff.url + path) == t, 15, "the webhook's invalidation")
            time.sleep(LIFETIME)  # the bound, and nothing more
            assert _title(micro.url + path) == title, f"edit {edit}: nginx still serves the old version"
    finally:
        stop.set()
        thread.join(30)
    assert hits[0] > 10  # nginx did keep the document meanwhile


def _title(url: str) -> str:
    answer = requests.get(url, timeout=30)
    assert answer.status_code == 200, answer.text
    return str(answer.json()["data"]["title"])


def test_event_streams_pass_the_micro_cache_by(micro: Front) -> None:
    # The events location is a regex one: nginx prefers it to the micro-cache's `location /api/`.
    with requests.get(f"{micro.url}/api/events?collections=articles", stream=True, timeout=10) as stream:
        assert stream.status_code == 200
        assert "X-Micro-Cache" not in stream.headers
        assert next(stream.iter_lines(decode_unicode=True)).startswith("retry:")
