"""`make bench`: start Strapi, bffproxy and the Python floor; measure; print and save the figures.

Knobs (environment): BENCH_DURATION seconds per wrk run (10), BENCH_CONNECTIONS (16), BENCH_ROUNDS
interleaved rounds (3), BENCH_WARMUP seconds per server and target before measuring (3).
Results: bench/results/latest.{md,json} (git-ignored), plus a timestamped copy.
"""

from __future__ import annotations

import os
import platform
import shutil
import signal
import sys
import time
from pathlib import Path
from types import FrameType
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `python bench/run.py` puts bench/, not the project, on sys.path
    sys.path.insert(0, str(ROOT))

from bench import freshness, measure, report  # noqa: E402
from bench.stack import WORKERS, running_stack  # noqa: E402

RESULTS = ROOT / "bench" / "results"


def knobs_from_env(duration: str = "10", rounds: str = "3") -> measure.Knobs:
    """The BENCH_* knobs over these defaults, bounded so a typo cannot start an hour-long run."""
    seconds = min(float(os.environ.get("BENCH_DURATION", duration)), 120)
    connections = min(int(os.environ.get("BENCH_CONNECTIONS", "16")), 256)
    count = min(int(os.environ.get("BENCH_ROUNDS", rounds)), 10)
    warmup = min(float(os.environ.get("BENCH_WARMUP", "3")), 30)
    return measure.Knobs(seconds, connections, count, warmup)


def progress(message: str) -> None:
    """One progress line on stderr, so stdout stays the table."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def measure_all(knobs: measure.Knobs) -> dict[str, Any]:
    """Run every measurement against one freshly started stack."""
    work_dir = RESULTS / "last-run"
    shutil.rmtree(work_dir, ignore_errors=True)
    progress("starting Strapi (fresh seed), bffproxy and the floor")
    with running_stack(work_dir) as stack:
        progress(f"targets: {stack.targets}; logs in {work_dir}")
        runs = measure.throughput(stack, knobs, progress)
        rss = measure.worker_rss(stack)
        progress("stampede: 64 concurrent requests on a cold key")
        stampede = measure.stampede(stack)
        progress("webhook: change a document in Strapi, read it on every worker")
        webhook = freshness.webhook_to_fresh(stack)
    progress("all processes stopped")
    throughput = {t: {s: measure.summarise(r) for s, r in systems.items()} for t, systems in runs.items()}
    result: dict[str, Any] = {
        "settings": {**knobs.__dict__, "workers": WORKERS},
        "machine": f"{platform.node()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}",
        "throughput": throughput,
        "rounds": {t: {s: [r.as_dict() for r in rs] for s, rs in sy.items()} for t, sy in runs.items()},
        "ratios": report.ratios(runs),
        "rss_mib": rss,
        "stampede": stampede,
        "webhook": webhook,
    }
    result["verdicts"] = report.verdicts(result)
    return result


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # SIGTERM unwinds like Ctrl-C: every process gets stopped


def main() -> int:
    """Run the benchmark; 0 when it ran (targets missed are figures, not failures)."""
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        result = measure_all(knobs_from_env())
    except KeyboardInterrupt:
        progress("interrupted; every process was stopped")
        return 130
    json_path, md_path = report.write(result, RESULTS)
    print(report.markdown(result))
    print(f"targets: {report.TARGETS}\nwritten: {json_path} and {md_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
