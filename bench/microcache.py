"""`make bench-microcache`: the optional nginx micro-cache beside bffproxy alone, in one run.

Issue 13's targets: public list hits through the micro-cache (deploy/nginx/bffproxy-microcache.conf)
>= 5x bffproxy alone, and a bounded staleness after a webhook: nginx keeps an answer at most
BFFPROXY_ACCEL_EXPIRES (1 s) after bffproxy gave it.

One freshly seeded Strapi (its webhooks relayed to bffproxy), one bffproxy (gunicorn, 2 workers) and
two nginx processes with the shipped site in front of it: one as shipped, one with the micro-cache
included. wrk asks the three for the same cached article list in interleaved rounds (order rotated
each round); ratios are medians of the per-round ratios.

Staleness: a document is edited in Strapi EDITS times. During each edit one reader loops on it
straight from bffproxy and one through the micro-cache. bffproxy drops its copy when the webhook
arrives, somewhere after the start of its last read of the old title; the longest stale read at
nginx is the end of nginx's last old read minus that start (an upper estimate), and is the figure
the 1 s bound is about. From the end of the write to Strapi: the same for both readers (webhook lag
included).

Knobs: BENCH_DURATION (5 s here), BENCH_CONNECTIONS (16), BENCH_ROUNDS (3), BENCH_WARMUP as for
`make bench`; BENCH_EDITS (20). About 2 minutes with Strapi's start.
Results: bench/results/microcache.{md,json} (git-ignored). Exit 0 when it ran: a missed target is a
figure, not a failure.
"""

from __future__ import annotations

import itertools
import json
import os
import platform
import secrets
import shutil
import statistics
import sys
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `python bench/microcache.py` puts bench/, not the project, on sys.path
    sys.path.insert(0, str(ROOT))

import requests  # noqa: E402

from bench import wrk  # noqa: E402
from bench.relay import WebhookRelay  # noqa: E402
from bench.report import command_line, paired_ratio  # noqa: E402
from bench.run import knobs_from_env, progress  # noqa: E402
from bench.stack import WORKERS, fresh_strapi, hits_env, started  # noqa: E402
from scripts.local_nginx import running_nginx  # noqa: E402
from tests.e2e.services import Gunicorn, Strapi, StrapiEditor, free_port  # noqa: E402

RESULTS = ROOT / "bench" / "results"
LIST = "/api/articles"
SYSTEMS = ("bffproxy", "nginx", "microcache")  # bffproxy alone, the shipped site, the site + micro-cache
LABELS = {
    "bffproxy": "bffproxy alone (gunicorn)",
    "nginx": "nginx (shipped site)",
    "microcache": "nginx + micro-cache",
}
WRK_THREADS = 2
TARGET = 5.0
BOUND_S = 1.0  # BFFPROXY_ACCEL_EXPIRES's default


@dataclass
class Read:
    """One read of the edited document: when it started and ended (monotonic) and the title it saw."""

    start: float
    end: float
    title: str


def throughput(urls: dict[str, str], knobs: Any) -> dict[str, list[wrk.WrkResult]]:
    """Interleaved wrk rounds on the list through each system, the order rotated each round."""
    runs: dict[str, list[wrk.WrkResult]] = {name: [] for name in urls}
    for url in urls.values():  # warm-up: every cache filled, connections made
        wrk.run(url, duration=knobs.warmup, connections=knobs.connections, threads=WRK_THREADS)
    for number in range(knobs.rounds):
        order = list(urls)[number % len(urls) :] + list(urls)[: number % len(urls)]
        for name in order:
            result = wrk.run(
                urls[name], duration=knobs.duration, connections=knobs.connections, threads=WRK_THREADS
            )
            runs[name].append(result)
            progress(f"round {number + 1}/{knobs.rounds} {name}: {result.requests_per_s:.0f} req/s")
    return runs


def reader(url: str, stop: threading.Event, reads: list[Read]) -> None:
    """Read ``url`` in a loop until ``stop``, recording each read."""
    with requests.Session() as session:
        for _ in range(1_000_000):  # bounded
            if stop.is_set():
                return
            start = time.monotonic()
            title = session.get(url, timeout=30).json()["data"]["title"]
            reads.append(Read(start, time.monotonic(), title))


def one_edit(editor: StrapiEditor, doc: str, urls: dict[str, str]) -> dict[str, float]:
    """Edit ``doc`` in Strapi while both readers run; how long each kept serving the old title."""
    reads: dict[str, list[Read]] = {"bffproxy": [], "microcache": []}
    stop = threading.Event()
    threads = [threading.Thread(target=reader, args=(urls[name], stop, reads[name])) for name in reads]
    for thread in threads:
        thread.start()
    try:
        # Both readers warm (nginx holds the old version), and the edit at a random point of the
        # second: nginx's entries end on whole seconds, so a fixed rhythm would measure one phase.
        time.sleep(0.3 + secrets.randbelow(1000) / 1000)
        title = f"bench-micro-{secrets.token_hex(4)}"
        editor.edit(doc, title=title)
        written = time.monotonic()
        deadline = written + 10
        while time.monotonic() < deadline and not all(r and r[-1].title == title for r in reads.values()):
            time.sleep(0.05)
        time.sleep(0.2)  # a few more reads after the switch: no flip back
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
    return staleness(reads, title, written)


def staleness(reads: dict[str, list[Read]], title: str, written: float) -> dict[str, float]:
    """Seconds of stale reads: at nginx after bffproxy had the change, and for each from the write."""
    last_old = {
        name: max((r for r in rs if r.title != title), key=lambda r: r.end) for name, rs in reads.items()
    }
    flips_back = sum(
        1
        for rs in reads.values()
        for before, after in itertools.pairwise(rs)
        if before.title == title and after.title != title
    )
    return {
        "nginx_after_bffproxy_s": max(0.0, last_old["microcache"].end - last_old["bffproxy"].start),
        "bffproxy_after_write_s": max(0.0, last_old["bffproxy"].end - written),
        "nginx_after_write_s": max(0.0, last_old["microcache"].end - written),
        "flips_back": flips_back,
    }


def edits(strapi: Strapi, urls: dict[str, str], count: int) -> list[dict[str, float]]:
    """``count`` edits of one new document, each measured by :func:`one_edit`."""
    editor = StrapiEditor(strapi)
    doc = editor.create("bench-micro")
    doc_urls = {name: f"{url}/{doc}" for name, url in urls.items()}
    results = []
    for number in range(count):
        results.append(one_edit(editor, doc, doc_urls))
        progress(
            f"edit {number + 1}/{count}: nginx stale {results[-1]['nginx_after_bffproxy_s'] * 1000:.0f} ms"
        )
    return results


def measure_all(knobs: Any, edit_count: int) -> dict[str, Any]:
    """Start the stack, measure throughput and staleness, stop everything."""
    work_dir = RESULTS / "microcache-run"
    shutil.rmtree(work_dir, ignore_errors=True)
    work_dir.mkdir(parents=True)
    bff_port, relay_port = free_port(), free_port()
    with ExitStack() as stack:
        stack.enter_context(WebhookRelay(relay_port, f"http://127.0.0.1:{bff_port}/webhooks/strapi"))
        progress("starting Strapi (fresh seed), bffproxy and two nginx")
        strapi = fresh_strapi(stack, relay_port)
        env = hits_env(strapi, work_dir / "cache", TRUSTED_PROXIES="1")
        started(stack, Gunicorn(bff_port, env, WORKERS, log_path=work_dir / "bffproxy.log"))
        ports = {"bffproxy": bff_port, "nginx": free_port(), "microcache": free_port()}
        for name in ("nginx", "microcache"):
            stack.enter_context(
                running_nginx(
                    work_dir / name, bff_port, ports[name], microcache=name == "microcache", workers="auto"
                )
            )
        urls = {name: f"http://127.0.0.1:{port}{LIST}" for name, port in ports.items()}
        runs = throughput(urls, knobs)
        stale = edits(strapi, urls, edit_count)
    return summarise(runs, stale, knobs)


def summarise(
    runs: dict[str, list[wrk.WrkResult]], stale: list[dict[str, float]], knobs: Any
) -> dict[str, Any]:
    """Medians per system, the paired ratios and the staleness figures."""
    rps = {name: [r.requests_per_s for r in results] for name, results in runs.items()}

    def worst(key: str) -> float:
        return round(max(s[key] for s in stale), 3)

    return {
        "knobs": {**asdict(knobs), "edits": len(stale), "wrk_threads": WRK_THREADS},
        "machine": {"cpus": os.cpu_count(), "load": os.getloadavg()[0], "python": platform.python_version()},
        "runs": {name: [r.as_dict() for r in results] for name, results in runs.items()},
        "median_rps": {name: round(statistics.median(values)) for name, values in rps.items()},
        "ratios": {
            "microcache / bffproxy alone": round(paired_ratio(rps["microcache"], rps["bffproxy"]), 2),
            "microcache / nginx": round(paired_ratio(rps["microcache"], rps["nginx"]), 2),
            "nginx / bffproxy alone": round(paired_ratio(rps["nginx"], rps["bffproxy"]), 2),
        },
        "staleness": {
            "nginx_after_bffproxy_max_s": worst("nginx_after_bffproxy_s"),
            "nginx_after_bffproxy_median_s": round(
                statistics.median(s["nginx_after_bffproxy_s"] for s in stale), 3
            ),
            "bffproxy_after_write_max_s": worst("bffproxy_after_write_s"),
            "nginx_after_write_max_s": worst("nginx_after_write_s"),
            "flips_back": sum(int(s["flips_back"]) for s in stale),
        },
        "errors": sum(r.errors for results in runs.values() for r in results),
    }


def table(result: dict[str, Any]) -> str:
    """The figures as Markdown."""
    knobs = result["knobs"]
    lines = [
        f"wrk -t{knobs['wrk_threads']} -c{knobs['connections']} -d{knobs['duration']:g}s, {knobs['rounds']} "
        f"interleaved rounds, {result['machine']['cpus']} cores, load {result['machine']['load']:.2f}; "
        f"bffproxy: gunicorn, {WORKERS} workers; `GET {LIST}` (a cached 25-article list)",
        "",
        "| system | req/s (median) | p50 ms | p99 ms | errors |",
        "|---|---:|---:|---:|---:|",
    ]
    for name in SYSTEMS:
        runs = result["runs"][name]
        p50 = statistics.median(r["p50_ms"] for r in runs)
        p99 = statistics.median(r["p99_ms"] for r in runs)
        errors = sum(r["errors"] for r in runs)
        lines.append(f"| {LABELS[name]} | {result['median_rps'][name]} | {p50:.2f} | {p99:.2f} | {errors} |")
    lines += ["", "| ratio (median of per-round ratios) | value | target |", "|---|---:|---|"]
    for name, value in result["ratios"].items():
        target = ""
        if name == "microcache / bffproxy alone":
            target = f">= {TARGET:g}: {'met' if value >= TARGET else 'MISSED'}"
        lines.append(f"| {name} | {value} | {target} |")
    stale = result["staleness"]
    met = "met" if stale["nginx_after_bffproxy_max_s"] <= BOUND_S else "MISSED"
    lines += [
        "",
        f"Staleness over {knobs['edits']} edits in Strapi (webhook -> bffproxy -> nginx micro-cache):",
        "",
        "| longest stale read | seconds |",
        "|---|---:|",
        f"| at nginx after bffproxy had the change (bound {BOUND_S:g} s: {met}) "
        f"| {stale['nginx_after_bffproxy_max_s']} |",
        f"| at nginx after bffproxy had the change, median | {stale['nginx_after_bffproxy_median_s']} |",
        f"| bffproxy alone, after Strapi's write (webhook lag) | {stale['bffproxy_after_write_max_s']} |",
        f"| through the micro-cache, after Strapi's write returned | {stale['nginx_after_write_max_s']} |",
        f"| reads that went back to the old version after the new one | {stale['flips_back']} |",
    ]
    return "\n".join(lines) + "\n"


def main(measure: Callable[[Any, int], dict[str, Any]] = measure_all) -> int:
    """Run, print the table, write results/microcache.{md,json}."""
    knobs = knobs_from_env(duration="5", rounds="3")
    edit_count = min(int(os.environ.get("BENCH_EDITS", "20")), 100)
    result = measure(knobs, edit_count)
    text = (
        command_line(result["knobs"], "bench-microcache") + f" (BENCH_EDITS={edit_count})\n\n" + table(result)
    )
    print(text)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "microcache.md").write_text(text)
    (RESULTS / "microcache.json").write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
