"""`make bench-metrics`: fresh-hit throughput with metrics on and off, side by side in one run.

Issue 13's target: counting every request (metrics.py's WSGI layer, in front of the fast path)
costs at most 5% of fresh-hit throughput (metrics on / off >= 0.95).

One freshly seeded Strapi stands behind two bffproxy instances (gunicorn, 2 workers each, own cache
directory and metrics directory) that differ in one setting, ``BFFPROXY_METRICS=true`` or
``false``. Both answer the same cached article list, checked first to be a 200 HIT with the same
body. Then, as bench/tenants.py does (and with its code): wrk rounds interleaved, the order swapped
each round, a run that one worker served almost alone measured again; the workers' CPU time per
hit (/proc); and the same two configurations built in this process, one fresh hit timed as a WSGI
call through the whole stack, in prometheus-client's multiprocess mode like the workers (an
increment writes to a memory-mapped file). At the end the "on" instance's /metrics must show every
hit wrk made, so the layer measured is the one that counts.

Knobs: BENCH_DURATION (3 s), BENCH_CONNECTIONS, BENCH_ROUNDS (10), BENCH_WARMUP as for `make bench`;
BENCH_MICRO_ROUNDS (60). About 2 minutes with Strapi's start.
Results: bench/results/metrics.{md,json} (git-ignored). Exit 0 when it ran: a missed target is a
figure, not a failure.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import requests
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `python bench/metrics.py` puts bench/, not the project, on sys.path
    sys.path.insert(0, str(ROOT))
if __name__ == "__main__":  # the in-process apps count as gunicorn's workers do: in files
    os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="bench-metrics-"))

from bench import measure, tenants  # noqa: E402
from bench.run import progress  # noqa: E402
from bench.stack import WORKERS, bench_targets, fresh_strapi, hits_env, started  # noqa: E402
from bench.tenants import (  # noqa: E402
    WRK_THREADS,
    Case,
    check_servers,
    cpu_snapshot,
    in_process_app,
    machine,
    micro,
    others_share,
    throughput,
)
from tests.e2e.services import Gunicorn, Strapi, free_port  # noqa: E402

RESULTS = ROOT / "bench" / "results"
TARGET = 0.95
RATIOS = (("metrics on / off", "on", "off", TARGET),)
SERVERS = {"on": "true", "off": "false"}  # instance name -> BFFPROXY_METRICS
ADMIN_TOKEN = "bench-admin-token"


def cases(path: str) -> tuple[Case, ...]:
    """The same cached list from each instance."""
    return (Case("on", "metrics on", "on", path), Case("off", "metrics off", "off", path))


def server_env(strapi: Strapi, cache_dir: Path, switch: str) -> dict[str, str]:
    """One instance's environment: its own cache and metrics directory, metrics on or off, a token."""
    env = hits_env(strapi, cache_dir, METRICS=switch, ADMIN_TOKEN=ADMIN_TOKEN)
    return {**env, "PROMETHEUS_MULTIPROC_DIR": str(cache_dir.parent / "metrics")}


def start_servers(stack: ExitStack, strapi: Strapi, work_dir: Path) -> dict[str, Gunicorn]:
    """One bffproxy under gunicorn per switch value; each gets a metrics directory of its own."""
    return {
        name: started(
            stack,
            Gunicorn(
                free_port(),
                server_env(strapi, work_dir / name / "cache", switch),
                WORKERS,
                log_path=work_dir / f"{name}.log",
            ),
        )
        for name, switch in SERVERS.items()
    }


def hits_counted(server: Gunicorn) -> float:
    """The cache hits the instance's /metrics shows (all workers added up)."""
    answer = requests.get(
        f"{server.url}/metrics", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=10
    )
    answer.raise_for_status()
    return sum(
        sample.value
        for family in text_string_to_metric_families(answer.text)
        for sample in family.samples
        if sample.name == "bffproxy_cache_requests_total" and sample.labels.get("result") == "hit"
    )


def measure_all(knobs: measure.Knobs, micro_rounds: int) -> dict[str, Any]:
    """Start Strapi and both instances, time in process, run wrk, then read the counted hits.

    The "on" instance must have counted at least every hit of the kept wrk runs: the layer
    measured is the one that counts.
    """
    work_dir = RESULTS / "metrics-run"
    shutil.rmtree(work_dir, ignore_errors=True)
    work_dir.mkdir(parents=True)
    load_before = machine()
    with ExitStack() as stack:
        progress(f"starting Strapi (fresh seed) and two bffproxy instances; logs in {work_dir}")
        strapi = fresh_strapi(stack, webhook_port=free_port())
        servers = start_servers(stack, strapi, work_dir)
        all_cases = cases(bench_targets(strapi)["list"])
        check_servers(servers, all_cases)
        progress(f"in process: {micro_rounds} rounds of WSGI calls per configuration")
        apps = {
            name: in_process_app(server_env(strapi, work_dir / name / "in-process-cache", switch))
            for name, switch in SERVERS.items()
        }
        calls_us = micro(apps, all_cases, micro_rounds)
        before = cpu_snapshot(servers)
        counted_before = hits_counted(servers["on"])
        runs = throughput(servers, all_cases, knobs)
        others = others_share(before, cpu_snapshot(servers))
        counted = hits_counted(servers["on"]) - counted_before
    progress("all processes stopped")
    made = sum(r.requests for r in runs.results["on"])
    if counted < made:
        raise RuntimeError(f"the metrics-on instance counted {counted:.0f} hits of at least {made}")
    settings = {**knobs.__dict__, "workers": WORKERS, "wrk_threads": WRK_THREADS}
    settings.update(micro_rounds=micro_rounds, micro_calls=tenants.MICRO_CALLS)
    return {
        "settings": settings,
        "machine": f"{load_before} before; other processes took {others:.0%} of the CPU during wrk",
        "cases": {c.name: {"label": c.label, "path": c.path, "headers": c.headers} for c in all_cases},
        "hits_counted": {"wrk_requests": made, "counted_by_metrics": counted},
        **tenants.summarise(
            runs.results, runs.cpu_us, calls_us, (("metrics on / off", "on", "off", TARGET),)
        ),
        "runs_redone": runs.redone,
        "runs_unbalanced": runs.unbalanced,
        "rounds": {name: [r.as_dict() for r in results] for name, results in runs.results.items()},
        "worker_cpu_rounds_us": {name: [round(us, 1) for us in v] for name, v in runs.cpu_us.items()},
        "micro_rounds_us": {name: [round(us, 2) for us in v] for name, v in calls_us.items()},
    }


def markdown(result: dict[str, Any]) -> str:
    """bench/tenants.py's tables, and how many hits the metrics-on instance counted."""
    counted = result["hits_counted"]
    return tenants.markdown(result, "bench-metrics") + (
        f"\nThe metrics-on instance's /metrics counted {counted['counted_by_metrics']:.0f} hits during the "
        f"wrk runs, which made {counted['wrk_requests']} (plus the warm-up and the runs measured again).\n"
    )


def main() -> int:
    """Run, print and save; 0 when it ran (a missed target is a figure, not a failure)."""
    targets = f"target: metrics on / off >= {TARGET} (met: wrk / worker CPU)"
    return tenants.run_and_save("metrics", measure_all, markdown, targets)


if __name__ == "__main__":
    sys.exit(main())
