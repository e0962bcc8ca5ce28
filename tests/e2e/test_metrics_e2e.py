"""Metrics under real gunicorn (2 workers) in front of the real Strapi: counts add up, dead workers, access.

Each scrape is answered by one worker; multiprocess mode makes every answer show the sum of both
workers' counts. A worker killed with SIGKILL keeps its counts in the totals (its files stay) and
its live gauge stops counting (gunicorn's child_exit → mark_process_dead).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from .services import Gunicorn, Strapi, bff_env, free_port, wait_until

ADMIN = {"Authorization": "Bearer e2e-admin-token"}  # services.bff_env's


Samples = dict[tuple[str, tuple[Any, ...]], float]


def scrape(bff: Gunicorn) -> tuple[str, Samples]:
    """(the worker that answered, every sample by name and sorted labels)."""
    answer = requests.get(f"{bff.url}/metrics", headers=ADMIN, timeout=10)
    assert answer.status_code == 200, answer.text
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(answer.text)
        for s in family.samples
    }
    return answer.headers["X-BFF-Worker"], samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def healthz(bff: Gunicorn, count: int) -> set[str]:
    """``count`` requests, 8 at a time, each on a new connection; the workers that answered.

    One at a time, the same idle worker tends to accept every connection; at once, both do.
    """

    def one(_: int) -> str:
        answer = requests.get(f"{bff.url}/healthz", timeout=10)
        assert answer.status_code == 200
        return answer.headers["X-BFF-Worker"]

    with ThreadPoolExecutor(8) as pool:
        return set(pool.map(one, range(count)))


RESULTS = ("hit", "miss", "stale", "bypass", "coalesced")
HEALTHZ = {"tenant": "default", "route": "/healthz", "method": "GET", "status": "2xx"}


def scrapes_from_both(bff: Gunicorn) -> dict[str, Samples]:
    """One scrape answered by each of the two workers."""
    seen: dict[str, Samples] = {}
    for _ in range(300):  # the kernel hands each new connection to whichever worker accepts first
        worker, samples = scrape(bff)
        seen.setdefault(worker, samples)
        if len(seen) == 2:
            return seen
        time.sleep(0.02)  # a busy moment of one worker leaves the other in accept()
    raise AssertionError(f"one worker answered every scrape: {sorted(seen)}")


@pytest.fixture
def bff(start_bff: Callable[..., Gunicorn]) -> Gunicorn:
    return start_bff(workers=2, RECONCILE_INTERVAL="0")  # only the test's requests reach Strapi


def settled(bff: Gunicorn, holds: Callable[[Samples], bool], what: str) -> None:
    """Wait until a scrape answered by each worker shows ``holds``: a worker writes its counts each second."""
    wait_until(lambda: all(holds(samples) for samples in scrapes_from_both(bff).values()), 10, what)


def test_both_workers_counts_add_up_in_every_scrape(bff: Gunicorn, strapi_live: Strapi) -> None:
    before = value(scrape(bff)[1], "bffproxy_requests_total", **HEALTHZ)  # gunicorn's start-up probes
    sent = 40
    while len(healthz(bff, 40)) < 2:  # until both workers have counted some
        sent += 40
        assert sent <= 400, "one worker took every connection"
    for _ in range(5):  # a cold miss, then hits, from either worker
        assert requests.get(f"{bff.url}/api/articles", timeout=10).status_code == 200

    def cached(samples: Samples) -> dict[str, float]:
        return {
            r: value(samples, "bffproxy_cache_requests_total", tenant="default", result=r) for r in RESULTS
        }

    def adds_up(samples: Samples) -> bool:
        return (
            value(samples, "bffproxy_requests_total", **HEALTHZ) == before + sent
            and sum(cached(samples).values()) == 5
        )

    settled(bff, adds_up, "both workers' counts in every scrape")
    for samples in scrapes_from_both(bff).values():
        assert value(samples, "bffproxy_requests_total", **HEALTHZ) == before + sent
        assert cached(samples)["miss"] >= 1 and cached(samples)["miss"] + cached(samples)["hit"] == 5
        strapi_ok = {"tenant": "default", "outcome": "ok"}
        calls = value(samples, "bffproxy_strapi_request_duration_seconds_count", **strapi_ok)
        assert calls == cached(samples)["miss"]  # the real Strapi answered each miss once


def test_a_killed_worker_keeps_its_counts_and_leaves_no_stale_gauge(
    bff: Gunicorn, strapi_live: Strapi
) -> None:
    before = value(scrape(bff)[1], "bffproxy_requests_total", **HEALTHZ)
    healthz(bff, 20)
    settled(bff, lambda s: value(s, "bffproxy_requests_total", **HEALTHZ) == before + 20, "20 counted")
    with event_stream(bff) as holder:  # one subscriber, held by one worker
        wait_until(lambda: subscribers(bff) == 1, 10, "the subscriber counted")
        os.kill(int(holder), signal.SIGKILL)
        wait_until(lambda: replaced(bff, holder), 30, "gunicorn replacing the killed worker")
    for samples in scrapes_from_both(bff).values():
        assert value(samples, "bffproxy_event_subscribers") == 0  # the dead worker's 1 is gone
        assert value(samples, "bffproxy_requests_total", **HEALTHZ) >= before + 20  # its counts are not


def subscribers(bff: Gunicorn) -> float:
    return value(scrape(bff)[1], "bffproxy_event_subscribers")


def replaced(bff: Gunicorn, killed: str) -> bool:
    """True once two workers answer again, neither of them the killed one."""
    workers = healthz(bff, 20)
    return len(workers) == 2 and killed not in workers


class event_stream:
    """An open SSE subscription; entering it gives the pid of the worker that holds it."""

    def __init__(self, bff: Gunicorn) -> None:
        self.bff = bff
        self.conn = socket.create_connection(("127.0.0.1", bff.port), timeout=10)

    def __enter__(self) -> str:
        self.conn.sendall(b"GET /api/events HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n")
        head = b""
        while b"\r\n\r\n" not in head:
            head += self.conn.recv(4096)
        assert head.startswith(b"HTTP/1.1 200"), head[:300]
        worker = next(line for line in head.split(b"\r\n") if line.lower().startswith(b"x-bff-worker:"))
        return worker.split(b":", 1)[1].strip().decode()

    def __exit__(self, *exc: object) -> None:
        self.conn.close()


def test_metrics_are_refused_without_the_token_and_open_to_an_allowed_address(
    start_bff: Callable[..., Gunicorn],
) -> None:
    guarded = start_bff(workers=1, METRICS_ALLOW="10.9.9.9")
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic ZTJlLWFkbWluLXRva2Vu"}):
        answer = requests.get(f"{guarded.url}/metrics", headers=headers, timeout=10)
        assert answer.status_code == 401
        assert answer.json()["error"]["code"] == "unauthorized"
        assert "bffproxy_" not in answer.text
    # Without BFFPROXY_TRUSTED_PROXIES nobody's X-Forwarded-For is believed.
    forged = requests.get(f"{guarded.url}/metrics", headers={"X-Forwarded-For": "10.9.9.9"}, timeout=10)
    assert forged.status_code == 401
    allowed = start_bff(workers=1, METRICS_ALLOW="127.0.0.0/8")
    assert requests.get(f"{allowed.url}/metrics", timeout=10).status_code == 200
    disabled = start_bff(workers=1, ADMIN_TOKEN="")
    assert requests.get(f"{disabled.url}/metrics", timeout=10).json()["error"]["code"] == "metrics_disabled"


# -- the access log ------------------------------------------------------------------------------

SECRETS = ("SECRET-TICKET", "SECRET-BEARER", "SECRET-COOKIE", "e2e-admin-token", "SECRET-QUERY")


def access_lines(bff: Gunicorn) -> list[dict[str, Any]]:
    return [json.loads(line) for line in bff.log().splitlines() if line.startswith('{"time"')]


def mine_of(bff: Gunicorn, rid: str) -> dict[str, dict[str, Any]]:
    """This test's access lines by request id (each id sent once)."""
    return {r["request_id"]: r for r in access_lines(bff) if str(r["request_id"]).startswith(rid)}


def test_every_request_gets_one_json_access_line_and_no_secret_reaches_any_line(
    bff: Gunicorn, strapi_live: Strapi
) -> None:
    rid = f"acc-{time.monotonic_ns()}"
    url = bff.url
    read = "/api/articles?pagination[pageSize]=3&filters[title][$ne]=SECRET-QUERY"
    calls = [
        ("GET", read, {"X-Request-ID": f"{rid}-1"}),
        ("GET", read, {"X-Request-ID": f"{rid}-2"}),
        ("GET", "/api/articles", {"X-Request-ID": f"{rid}-3", "Authorization": "Bearer SECRET-BEARER"}),
        ("GET", "/healthz?token=SECRET-QUERY", {"X-Request-ID": f"{rid}-4", "Cookie": "sid=SECRET-COOKIE"}),
        ("GET", "/metrics", {"X-Request-ID": f"{rid}-5", **ADMIN}),
        (
            "POST",
            "/webhooks/strapi",
            {"X-Request-ID": f"{rid}-6", "X-Webhook-Secret": strapi_live.webhook_secret},
        ),
        ("POST", "/admin/cache/purge", {"X-Request-ID": f"{rid}-7", **ADMIN}),
        ("OPTIONS", "/api/articles", {"X-Request-ID": f"{rid}-8", "Origin": "https://x.example"}),
        ("GET", "/api/events?ticket=SECRET-TICKET", {"X-Request-ID": f"{rid}-9"}),
        ("GET", "/api/articles?ticket=SECRET-TICKET", {"X-Request-ID": f"{rid}-10"}),
    ]
    bodies = {
        "/webhooks/strapi": {"event": "entry.update", "model": "article", "entry": {"documentId": "x"}},
        "/admin/cache/purge": {"collection": "articles"},
    }
    for method, path, headers in calls:
        with requests.request(
            method, url + path, headers=headers, json=bodies.get(path), timeout=10, stream=True
        ) as answer:
            assert answer.status_code < 500, (path, answer.status_code)
            if path == read:
                assert answer.status_code == 200
    wait_until(lambda: len(mine_of(bff, rid)) == len(calls), 20, "one access line per request")
    mine = mine_of(bff, rid)
    first, second = mine[f"{rid}-1"], mine[f"{rid}-2"]
    assert first["path"] == "/api/articles" and first["route"] == "/api/<collection>"
    assert first["tenant"] == "default" and first["client"] == "127.0.0.1" and first["method"] == "GET"
    assert first["status"] == 200 and first["bytes"] > 0 and first["duration_ms"] > 0
    assert {first["cache"], second["cache"]} <= {"miss", "hit"} and second["cache"] == "hit"
    assert (first["upstream_ms"] or 0) > 0 or first["cache"] == "hit"
    assert second["upstream_ms"] is None  # a fast-path hit called no one
    assert mine[f"{rid}-5"]["route"] == "/metrics"
    log = bff.log()
    for secret in (*SECRETS, strapi_live.webhook_secret, strapi_live.api_token):
        assert secret not in log, secret


# -- an unlucky operator -------------------------------------------------------------------------


def gunicorn_on(strapi: Strapi, tmp_path: Path, name: str, metrics_dir: Path) -> Gunicorn:
    """bffproxy under gunicorn with PROMETHEUS_MULTIPROC_DIR set by the operator."""
    cache = tmp_path / f"{name}-cache"
    cache.mkdir()
    env = {**bff_env(strapi, cache), "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}
    return Gunicorn(free_port(), env, 1, log_path=tmp_path / f"{name}.log")


def test_a_metrics_directory_that_cannot_be_written_stops_the_start_with_one_line(
    tmp_path: Path, strapi_live: Strapi
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    server = gunicorn_on(strapi_live, tmp_path, "unwritable", blocker / "metrics")
    with pytest.raises(RuntimeError, match="gunicorn exited with 3"):
        server.start()
    assert (
        f"bffproxy: configuration error: PROMETHEUS_MULTIPROC_DIR '{blocker}/metrics' is not a"
        in server.log()
    )
    assert "Traceback" not in server.log()


def test_a_second_gunicorn_on_the_same_metrics_directory_is_refused_and_wipes_nothing(
    tmp_path: Path, strapi_live: Strapi
) -> None:
    shared = tmp_path / "metrics"
    first = gunicorn_on(strapi_live, tmp_path, "first", shared)
    first.start()
    try:
        healthz(first, 8)
        counted = value(scrape(first)[1], "bffproxy_requests_total", **HEALTHZ)
        second = gunicorn_on(strapi_live, tmp_path, "second", shared)
        with pytest.raises(RuntimeError, match="gunicorn exited with 3"):
            second.start()
        assert "is in use by another running gunicorn" in second.log()
        assert value(scrape(first)[1], "bffproxy_requests_total", **HEALTHZ) == counted
    finally:
        first.stop()


def cache_results(bff: Gunicorn) -> dict[str, float]:
    samples = scrape(bff)[1]
    return {r: value(samples, "bffproxy_cache_requests_total", tenant="default", result=r) for r in RESULTS}


def test_a_stampede_on_a_cold_key_is_one_miss_and_coalesced_waiters(
    bff: Gunicorn, strapi_live: Strapi
) -> None:
    before = cache_results(bff)
    barrier = threading.Barrier(16)

    def one(_: int) -> str:
        barrier.wait()
        answer = requests.get(f"{bff.url}/api/articles?pagination[pageSize]=7", timeout=20)
        assert answer.status_code == 200
        return answer.headers["X-Cache"]

    with ThreadPoolExecutor(16) as pool:
        x_cache = list(pool.map(one, range(16)))
    wait_until(lambda: sum(cache_results(bff).values()) == sum(before.values()) + 16, 10, "16 counted")
    after = cache_results(bff)
    counted = {r: after[r] - before[r] for r in RESULTS}
    assert counted["miss"] == x_cache.count("MISS") == 1  # one Strapi call for everyone
    assert counted["coalesced"] >= 1  # Strapi takes long enough for some to wait on the holder
    assert counted["coalesced"] + counted["hit"] == 15


def test_the_events_app_keeps_metrics_of_its_own(start_bff: Callable[..., Gunicorn], tmp_path: Path) -> None:
    shared = tmp_path / "shared-cache"
    shared.mkdir()
    api = start_bff(cache_dir=shared, workers=1)
    events = start_bff(cache_dir=shared, app="events_app", workers=1)  # gevent, its own directory
    stream = {"tenant": "default", "route": "/api/events", "method": "GET", "status": "2xx"}
    with event_stream(events):
        wait_until(lambda: subscribers(events) == 1, 10, "the events app counting its subscriber")
        assert value(scrape(events)[1], "bffproxy_requests_total", **stream) == 1
        assert subscribers(api) == 0  # the API's workers hold no stream: its files are its own
        assert value(scrape(api)[1], "bffproxy_requests_total", **stream) == 0
