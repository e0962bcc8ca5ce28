"""The measurements of one run: throughput, RSS, cold-key stampede, webhook-to-fresh."""

from __future__ import annotations

import http.client
import secrets
import statistics
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from bench import wrk
from bench.stack import Stack, rss_mib, worker_pids

SYSTEMS = ("bffproxy", "floor", "strapi")
Progress = Callable[[str], None]


@dataclass(frozen=True)
class Knobs:
    """How long and how hard to load each server (BENCH_* environment variables)."""

    duration: float
    connections: int
    rounds: int
    warmup: float


def get_once(
    port: int, path: str, method: str = "GET", headers: Mapping[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    """One request on a fresh connection, so gunicorn hands it to whichever worker accepts first."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(method, path, headers={**(headers or {}), "Connection": "close"})
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


def base_urls(stack: Stack) -> dict[str, str]:
    """The base URL of each measured system."""
    return {"bffproxy": stack.bff.url, "floor": stack.floor.url, "strapi": stack.strapi.url}


def check_targets(stack: Stack) -> None:
    """Every target is a bffproxy cache HIT, and the floor answers the very same bytes."""
    for path in stack.targets.values():
        get_once(stack.bff.port, path)
        status, headers, body = get_once(stack.bff.port, path)
        if status != 200 or headers.get("x-cache") != "HIT":
            raise RuntimeError(f"expected a 200 HIT for {path}, got {status} {headers.get('x-cache')}")
        if get_once(stack.floor.port, path)[2] != body:
            raise RuntimeError(f"the floor does not answer bffproxy's bytes for {path}")


def throughput(stack: Stack, knobs: Knobs, progress: Progress) -> dict[str, dict[str, list[wrk.WrkResult]]]:
    """wrk on every (target, system), warmed up first, then interleaved round by round."""
    check_targets(stack)
    urls = base_urls(stack)
    for target, path in stack.targets.items():
        for system in SYSTEMS:
            progress(f"warm-up {system} {target} ({knobs.warmup:g}s)")
            wrk.run(urls[system] + path, duration=knobs.warmup, connections=4)
    results: dict[str, dict[str, list[wrk.WrkResult]]] = {t: {s: [] for s in SYSTEMS} for t in stack.targets}
    for round_no in range(1, knobs.rounds + 1):
        for target, path in stack.targets.items():
            for system in SYSTEMS:
                result = wrk.run(urls[system] + path, duration=knobs.duration, connections=knobs.connections)
                results[target][system].append(result)
                rps = result.requests_per_s
                progress(f"round {round_no}/{knobs.rounds} {target:8} {system:8} {rps:9.0f} req/s")
    return results


def summarise(runs: list[wrk.WrkResult]) -> dict[str, float]:
    """Medians over the rounds (robust to one noisy round), plus the error total."""
    return {
        "requests_per_s": statistics.median(r.requests_per_s for r in runs),
        "p50_ms": statistics.median(r.p50_ms for r in runs),
        "p99_ms": statistics.median(r.p99_ms for r in runs),
        "errors": sum(r.errors for r in runs),
    }


def worker_rss(stack: Stack) -> dict[str, list[float]]:
    """RSS in MiB of each gunicorn worker of bffproxy and of the floor, and of Strapi's process."""
    strapi_pid = int(stack.strapi.env.get("STRAPI_PID", "0"))
    return {
        "bffproxy": [round(rss_mib(pid), 1) for pid in worker_pids(stack.bff)],
        "floor": [round(rss_mib(pid), 1) for pid in worker_pids(stack.floor)],
        "strapi": [round(rss_mib(strapi_pid), 1)] if strapi_pid else [],
    }


def stampede(stack: Stack, clients: int = 64) -> dict[str, Any]:
    """``clients`` simultaneous requests for one cold key; how many reached Strapi?"""
    marker = f"bench-{secrets.token_hex(6)}"
    path = f"/api/articles?filters%5Btitle%5D%5B%24notContains%5D={marker}"
    barrier = threading.Barrier(clients)

    def one(_: int) -> tuple[int, str]:
        conn = http.client.HTTPConnection("127.0.0.1", stack.bff.port, timeout=60)
        try:
            conn.connect()
            barrier.wait(timeout=30)
            conn.request("GET", path)
            response = conn.getresponse()
            response.read()
            return response.status, response.getheader("X-Cache") or "-"
        finally:
            conn.close()

    with ThreadPoolExecutor(clients) as pool:
        answers = list(pool.map(one, range(clients)))
    time.sleep(1.0)  # let Strapi flush its log (one `http: GET <path> (N ms) <status>` line per request)
    return {
        "clients": clients,
        "strapi_requests": stack.strapi.count_requests(marker),
        "statuses": dict(Counter(str(status) for status, _ in answers)),
        "x_cache": dict(Counter(x for _, x in answers)),
    }
