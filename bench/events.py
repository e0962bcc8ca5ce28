"""`make bench-events`: N SSE subscribers on the events app, one change in Strapi, the fan-out timed.

Issue 11's targets: N = 10,000 subscribers held on this 2-core machine with 0 missed; p99 <= 1 s
from bffproxy receiving the webhook to a subscriber receiving the event; the events worker's memory
<= 30 MiB per 1,000 subscribers; fresh-hit throughput of content with 1,000 subscribers connected
>= 0.8x the figure with none.

The deployment deploy/ ships, on loopback: a freshly seeded Strapi whose webhook targets the API app
(gunicorn.conf.py, gthread, 2 workers), and the events app (gunicorn.events.conf.py, one gevent
worker) on the same cache directory (the SQLite event log). The subscribers are a separate process
(bench/sse_swarm.py: asyncio on raw sockets), anonymous, each on ``/api/events?collections=articles``.
The bench raises its open-files soft limit to the hard limit, and gunicorn inherits it.

1. Hits with and without subscribers: wrk on the API app's cached article list in interleaved
   rounds, the order swapped each round, with 1,000 subscribers held by the events app and with
   none, measured as bench/tenants.py does (wrk -t2, a run one worker served alone measured again,
   the API workers' CPU time per hit). Between a run with subscribers and one without, the bench
   closes them (with a reset) and waits until the events worker has let every socket go: it only
   notices a client went away when its next heartbeat write fails, up to
   ``BFFPROXY_EVENTS_HEARTBEAT`` (15 s) later.
2. The fan-out: N subscribers open, the events worker's RSS before any and with them, then one
   article created in Strapi with the API token (one public ``published`` event). Each subscriber's
   latency is its arrival time (read when its bytes reach the client) minus the event's ``at``, the
   wall-clock time bffproxy logged it, right after the webhook's invalidation. Reported: p50, p99,
   max, how many of N received it, and the CPU the events worker and the client spent meanwhile.

Options: ``--subscribers`` (N, 10,000), ``--idle-subscribers`` (1,000, the throughput case),
``--events-workers`` (1, the events app's default; its figures are the workers' sums). Knobs:
BENCH_DURATION (3 s), BENCH_CONNECTIONS, BENCH_ROUNDS (6), BENCH_WARMUP as for `make bench`. 2 to 4
minutes with Strapi's start, depending on the machine's load. Results: bench/results/events.{md,json}
(git-ignored). Exit 0 when it ran: a missed target is a figure, not a failure.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import queue
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import requests

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `python bench/events.py` puts bench/, not the project, on sys.path
    sys.path.insert(0, str(ROOT))

from bench import measure, wrk  # noqa: E402
from bench.report import command_line  # noqa: E402
from bench.run import knobs_from_env, progress  # noqa: E402
from bench.stack import (  # noqa: E402
    WORKERS,
    bench_targets,
    cpu_seconds,
    fresh_strapi,
    hits_env,
    rss_mib,
    started,
    worker_pids,
)
from bench.tenants import (  # noqa: E402
    WRK_THREADS,
    balanced_run,
    cpu_snapshot,
    machine,
    others_share,
    per_second,
    ratio_row,
)
from tests.e2e.services import Gunicorn, Strapi, free_port, wait_until  # noqa: E402

RESULTS = ROOT / "bench" / "results"
STREAM_PATH = "/api/events?collections=articles"
HEARTBEAT = 15.0  # the events app's default BFFPROXY_EVENTS_HEARTBEAT
RECEIVE_WITHIN = 30.0  # seconds every subscriber has to receive the event
SPARE = 1000  # connections and slots the events worker may hold beyond the subscribers
TARGET_P99_MS = 1000.0
TARGET_MIB_PER_1000 = 30.0
TARGET_RATIO = 0.8
CASES = ("none", "with")


@dataclass(frozen=True)
class Settings:
    """How many subscribers, and how long and hard wrk loads the API."""

    subscribers: int
    idle_subscribers: int
    knobs: measure.Knobs
    heartbeat: float = HEARTBEAT  # the smoke test's is 1 s: closed streams are let go sooner
    events_workers: int = 1  # the events app's default (GUNICORN_EVENTS_WORKERS)


class Swarm:
    """The subscriber process (bench/sse_swarm.py): one command at a time, each answer awaited."""

    def __init__(self, port: int, log_path: Path) -> None:
        with open(log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "bench.sse_swarm", "127.0.0.1", str(port), STREAM_PATH],
                cwd=ROOT,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
                start_new_session=True,
            )
        self.answers: queue.Queue[str] = queue.Queue()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.answers.put(line)

    def ask(self, command: str, timeout: float) -> dict[str, Any]:
        """Send one command; its JSON answer within ``timeout`` seconds."""
        assert self.process.stdin is not None
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        try:
            answer: dict[str, Any] = json.loads(self.answers.get(timeout=timeout))
        except queue.Empty:
            raise RuntimeError(f"the subscriber process did not answer {command!r} in {timeout:g}s") from None
        if "error" in answer:
            raise RuntimeError(answer["error"])
        return answer

    def open(self, count: int) -> dict[str, Any]:
        """Open ``count`` streams: how many opened, were refused (by status) or failed."""
        return self.ask(f"open {count}", timeout=60 + count / 50)

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self) -> None:
        """End the process (it closes its streams) and close its pipes."""
        if self.process.poll() is None:
            try:
                assert self.process.stdin is not None
                self.process.stdin.write("quit\n")
                self.process.stdin.flush()
                self.process.wait(10)
            except (OSError, subprocess.TimeoutExpired):
                self.process.kill()
                self.process.wait(5)
        self.reader.join(5)  # it reads to the end of the process's output
        for pipe in (self.process.stdin, self.process.stdout):
            if pipe is not None:
                with contextlib.suppress(OSError):  # stdin's flush, when the process is gone
                    pipe.close()


def raise_open_files_limit(needed: int) -> int:
    """Raise this process's soft limit on open files to the hard one (gunicorn inherits it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < needed:
        raise SystemExit(f"bench-events: {needed} open files needed, the hard limit is {hard} (ulimit -Hn)")
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def open_sockets(pid: int) -> int:
    """How many sockets a process holds, from /proc."""
    count = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):  # closed meanwhile
            count += os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:")
    return count


@dataclass(frozen=True)
class EventsWorkers:
    """The events app's workers (one by default): what they hold and spend, added up."""

    pids: list[int]

    def rss_mib(self) -> float:
        """Their resident memory."""
        return sum(rss_mib(pid) for pid in self.pids)

    def cpu_seconds(self) -> float:
        """Their CPU time so far."""
        return sum(cpu_seconds(pid) for pid in self.pids)

    def sockets(self) -> int:
        """The sockets they hold: the listener's and one per open stream."""
        return sum(open_sockets(pid) for pid in self.pids)


def close_and_wait(swarm: Swarm, workers: EventsWorkers, idle_sockets: int, heartbeat: float) -> float:
    """Close every stream; the seconds until the events workers let their sockets go."""
    swarm.ask("close", timeout=30)
    started_at = time.monotonic()
    wait_until(lambda: workers.sockets() <= idle_sockets, heartbeat + 15, "the events workers' sockets")
    return time.monotonic() - started_at


def cpu_now(api: Gunicorn, events: Gunicorn, *pids: int) -> tuple[float, float, float]:
    """bench/tenants.py's CPU snapshot (the machine's busy and total, ours), ``pids`` counted as ours."""
    busy, total, ours = cpu_snapshot({"api": api, "events": events})
    return busy, total, ours + sum(cpu_seconds(pid) for pid in pids if pid)


def events_env(env: dict[str, str], settings: Settings) -> dict[str, str]:
    """The events app's environment: the API's settings, and room for every subscriber."""
    room = settings.subscribers + settings.idle_subscribers + SPARE
    return {
        **env,
        "BFFPROXY_EVENTS_MAX_SUBSCRIBERS": str(room),
        "BFFPROXY_EVENTS_HEARTBEAT": f"{settings.heartbeat:g}",
        "GUNICORN_EVENTS_WORKER_CONNECTIONS": str(room),
    }


def check_hit(api: Gunicorn, path: str) -> None:
    """The measured path is a 200 cache HIT on the API."""
    measure.get_once(api.port, path)
    status, headers, _ = measure.get_once(api.port, path)
    if status != 200 or headers.get("x-cache") != "HIT":
        raise RuntimeError(f"expected a 200 HIT for {path}, got {status} {headers.get('x-cache')}")


def rounds_order(round_no: int) -> tuple[str, ...]:
    """none, with | with, none | ...: half the swaps keep the subscribers, half wait for their release."""
    return CASES if round_no % 2 == 0 else CASES[::-1]


@dataclass
class Hits:
    """The wrk runs of each case, the API workers' and the events worker's CPU per hit."""

    results: dict[str, list[wrk.WrkResult]]
    cpu_us: dict[str, list[float]]
    events_cpu_ms: dict[str, list[float]]
    released_s: list[float]
    redone: int = 0
    others: float = 0.0  # the share of the machine's CPU other processes took meanwhile


def hits(api: Gunicorn, events: Gunicorn, swarm: Swarm, path: str, settings: Settings) -> Hits:
    """wrk on the cached list with ``idle_subscribers`` held and with none, in interleaved rounds."""
    knobs, workers = settings.knobs, EventsWorkers(worker_pids(events))
    idle_sockets = workers.sockets()
    url = api.url + path
    progress(f"warm-up ({knobs.warmup:g}s)")
    wrk.run(url, duration=knobs.warmup, connections=4, threads=WRK_THREADS)
    out = Hits({c: [] for c in CASES}, {c: [] for c in CASES}, {c: [] for c in CASES}, [])
    held, before = False, cpu_now(api, events, swarm.pid)
    for round_no in range(knobs.rounds):
        for case in rounds_order(round_no):
            if case == "with" and not held:
                opened = swarm.open(settings.idle_subscribers)
                if opened["opened"] != settings.idle_subscribers:  # then "with" is not what it says
                    raise RuntimeError(f"{settings.idle_subscribers} streams asked for: {opened}")
            elif case == "none" and held:
                out.released_s.append(close_and_wait(swarm, workers, idle_sockets, settings.heartbeat))
            held = case == "with"
            events_before = workers.cpu_seconds()
            result, cpu_us, _, tries = balanced_run(api, url, {}, knobs)
            out.events_cpu_ms[case].append((workers.cpu_seconds() - events_before) * 1000)
            out.results[case].append(result)
            out.cpu_us[case].append(cpu_us)
            out.redone += tries - 1
            progress(
                f"round {round_no + 1}/{knobs.rounds} {case:4} subscribers "
                f"{result.requests_per_s:7.0f} req/s {cpu_us:5.0f} API worker CPU µs per hit"
            )
    out.others = others_share(before, cpu_now(api, events, swarm.pid))
    if held:
        out.released_s.append(close_and_wait(swarm, workers, idle_sockets, settings.heartbeat))
    return out


def create_article(strapi: Strapi, title: str) -> str:
    """One change in Strapi itself (REST, API token): a published article; its documentId."""
    answer = requests.post(
        f"{strapi.url}/api/articles",
        json={"data": {"title": title}},
        headers={"Authorization": f"Bearer {strapi.api_token}"},
        timeout=30,
    )
    answer.raise_for_status()
    return str(answer.json()["data"]["documentId"])


def delete_article(strapi: Strapi, document_id: str) -> None:
    """Remove what :func:`create_article` made."""
    requests.delete(
        f"{strapi.url}/api/articles/{document_id}",
        headers={"Authorization": f"Bearer {strapi.api_token}"},
        timeout=30,
    )


def percentile(values: Sequence[float], share: float) -> float:
    """The nearest-rank percentile of ``values`` (``share`` in 0-1), nan for none."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(math.ceil(share * len(ordered)) - 1, 0)]


def fanout(
    strapi: Strapi, apps: tuple[Gunicorn, Gunicorn], swarm: Swarm, settings: Settings, rss_idle: float
) -> dict[str, Any]:
    """N subscribers, one change in Strapi: latencies, receivers, memory and CPU of the fan-out."""
    workers, count = EventsWorkers(worker_pids(apps[1])), settings.subscribers
    progress(f"opening {count} subscribers")
    opened = swarm.open(count)
    time.sleep(1.0)  # every stream past its first bytes
    rss_held = workers.rss_mib()
    progress(
        f"{opened['opened']} of {count} open in {opened['seconds']:g}s (refused {opened['refused']}, failed "
        f"{opened['failed']}); events worker RSS {rss_idle:.1f} -> {rss_held:.1f} MiB"
    )
    ours = (swarm.pid, int(strapi.env.get("STRAPI_PID", "0")))  # Strapi's part: the change, the webhook
    cpu_before = (workers.cpu_seconds(), cpu_seconds(swarm.pid), cpu_now(*apps, *ours))
    requested = time.time()
    document_id = create_article(strapi, f"Bench events {int(requested)}")
    try:
        received = swarm.ask(f"wait {document_id} {RECEIVE_WITHIN:g}", timeout=RECEIVE_WITHIN + 60)
        cpu_after = (workers.cpu_seconds(), cpu_seconds(swarm.pid), cpu_now(*apps, *ours))
        swarm.ask("close", timeout=60)
    finally:
        delete_article(strapi, document_id)
    latencies, at = received.pop("latencies_ms"), received.pop("at")
    return {
        **received,
        "subscribers": count,
        "opened": opened["opened"],
        "refused": opened["refused"],
        "failed": opened["failed"],
        "missed": count - received["received"],  # a stream that did not open missed it too
        "open_seconds": opened["seconds"],
        "change_to_at_ms": round((at - requested) * 1000) if at is not None else None,
        "p50_ms": percentile(latencies, 0.50),
        "p99_ms": percentile(latencies, 0.99),
        "max_ms": max(latencies, default=math.nan),
        "min_ms": min(latencies, default=math.nan),
        "rss_idle_mib": round(rss_idle, 1),
        "rss_held_mib": round(rss_held, 1),
        "mib_per_1000": round((rss_held - rss_idle) * 1000 / max(opened["opened"], 1), 2),
        "events_worker_cpu_s": round(cpu_after[0] - cpu_before[0], 2),
        "client_cpu_s": round(cpu_after[1] - cpu_before[1], 2),
        "others_cpu_share": round(others_share(cpu_before[2], cpu_after[2]), 2),
        "latencies_ms": latencies,
    }


def summarise(runs: Hits) -> dict[str, Any]:
    """Medians per case; with / none by wrk req/s and by hits per API worker CPU second."""
    rps = {name: [r.requests_per_s for r in results] for name, results in runs.results.items()}
    by_wrk = ratio_row(rps, "with", "none")
    by_cpu = ratio_row(per_second(runs.cpu_us), "with", "none")
    return {
        "throughput": {
            name: {
                **measure.summarise(results),
                "worker_cpu_us": round(statistics.median(runs.cpu_us[name]), 1),
                "events_worker_cpu_ms": round(statistics.median(runs.events_cpu_ms[name]), 1),
            }
            for name, results in runs.results.items()
        },
        "ratio": {"wrk": by_wrk, "worker_cpu": by_cpu, "met": by_wrk["median"] >= TARGET_RATIO},
        "runs_redone": runs.redone,
        "others_cpu_share": round(runs.others, 2),
        "released_after_s": [round(s, 1) for s in runs.released_s],
        "rounds": {name: [r.as_dict() for r in results] for name, results in runs.results.items()},
    }


def verdicts(fan: dict[str, Any], ratio: dict[str, Any]) -> dict[str, bool]:
    """Each of issue 11's benchmark targets: met or not."""
    return {
        "0 missed": fan["missed"] == 0 and fan["subscribers"] > 0,
        f"p99 <= {TARGET_P99_MS:g} ms": fan["p99_ms"] <= TARGET_P99_MS,
        f"<= {TARGET_MIB_PER_1000:g} MiB per 1,000 subscribers": fan["mib_per_1000"] <= TARGET_MIB_PER_1000,
        f"hits with subscribers >= {TARGET_RATIO}x none": bool(ratio["met"]),
    }


def start_apps(
    stack: ExitStack, strapi: Strapi, api_port: int, work_dir: Path, settings: Settings
) -> tuple[Gunicorn, Gunicorn]:
    """The API app on ``api_port`` (Strapi's webhook target) and the events app, one cache directory."""
    env = hits_env(strapi, work_dir / "cache")
    api = started(stack, Gunicorn(api_port, env, WORKERS, log_path=work_dir / "api.log"))
    events = Gunicorn(
        free_port(),
        events_env(env, settings),
        settings.events_workers,
        log_path=work_dir / "events.log",
        app="events_app",
    )
    return api, started(stack, events)


def run_on(strapi: Strapi, api_port: int, work_dir: Path, settings: Settings) -> dict[str, Any]:
    """Both measurements against ``strapi``, whose webhook targets ``api_port``; every process stopped."""
    load_before = machine()
    with ExitStack() as stack:
        api, events = start_apps(stack, strapi, api_port, work_dir, settings)
        path = bench_targets(strapi)["list"]
        check_hit(api, path)
        rss_idle = EventsWorkers(worker_pids(events)).rss_mib()
        swarm = Swarm(events.port, work_dir / "swarm.log")
        stack.callback(swarm.stop)
        progress(f"hits on {path} with {settings.idle_subscribers} subscribers and with none")
        runs = hits(api, events, swarm, path, settings)
        fan = fanout(strapi, (api, events), swarm, settings, rss_idle)
    progress("the apps and the subscribers stopped")
    summary = summarise(runs)
    return {
        "settings": {
            **asdict(settings.knobs),
            "subscribers": settings.subscribers,
            "idle_subscribers": settings.idle_subscribers,
            "events_workers": settings.events_workers,
            "api_workers": WORKERS,
        },
        "fanout": fan,
        **summary,
        "verdicts": verdicts(fan, summary["ratio"]),
        "machine": f"{load_before} before, {os.getloadavg()[0]:.2f} after",
    }


def measure_all(settings: Settings) -> dict[str, Any]:
    """A freshly seeded Strapi, then :func:`run_on`."""
    work_dir = RESULTS / "events-run"
    shutil.rmtree(work_dir, ignore_errors=True)
    work_dir.mkdir(parents=True)
    with ExitStack() as stack:
        api_port = free_port()
        progress(f"starting Strapi (fresh seed), the API and the events app; logs in {work_dir}")
        strapi = fresh_strapi(stack, webhook_port=api_port)
        return run_on(strapi, api_port, work_dir, settings)


def markdown(result: dict[str, Any]) -> str:
    """The README-ready figures."""
    knobs, fan = result["settings"], result["fanout"]
    hit_rows = result["throughput"]
    ratio = result["ratio"]
    lines = [
        command_line(knobs, "bench-events") + f" (`--subscribers {knobs['subscribers']}`)",
        "",
        f"{result['machine']}; API app: gunicorn gthread, {knobs['api_workers']} workers; events app: "
        f"gevent, {knobs['events_workers']} worker(s); subscribers: one asyncio process, anonymous SSE, "
        "loopback",
        "",
        "| subscribers | received | missed | ended | first ms | p50 ms | p99 ms | max ms "
        "| events worker RSS MiB | MiB per 1,000 | events worker CPU s | client CPU s |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        f"| {fan['subscribers']} | {fan['received']} | {fan['missed']} | {fan['ended']} "
        f"| {fan['min_ms']:.0f} | {fan['p50_ms']:.0f} | {fan['p99_ms']:.0f} | {fan['max_ms']:.0f} "
        f"| {fan['rss_idle_mib']} -> {fan['rss_held_mib']} "
        f"| {fan['mib_per_1000']:.1f} | {fan['events_worker_cpu_s']:.2f} | {fan['client_cpu_s']:.2f} |",
        "",
        f"Latency: from the event's `at` (bffproxy logged it, right after the webhook's invalidation) to its "
        f"bytes reaching each subscriber (first: the earliest); the event's `at` came "
        f"{fan['change_to_at_ms']} ms after the article was posted to Strapi; {fan['opened']} of "
        f"{fan['subscribers']} streams opened in {fan['open_seconds']:g} s (refused: {fan['refused'] or 0}, "
        f"failed: {fan['failed']}); CPU: user+system time while the event was fanned out, "
        f"when other processes took {fan['others_cpu_share']:.0%} of the machine's CPU.",
        "",
        f"wrk -t{WRK_THREADS} -c{knobs['connections']} -d{knobs['duration']:g}s on the API's cached list, "
        f"{knobs['rounds']} interleaved rounds (medians; ratio: median of per-round ratios, range in "
        "brackets); "
        f"{result['runs_redone']} runs measured again because one API worker had taken every connection; "
        f"other processes took {result['others_cpu_share']:.0%} of the CPU meanwhile; "
        f"subscribers released by the events worker {result['released_after_s']} s after they closed",
        "",
        "| subscribers held | req/s | p50 ms | p99 ms | errors | API worker CPU µs per hit "
        "| events worker CPU ms per run |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, label in (("none", "none"), ("with", str(knobs["idle_subscribers"]))):
        row = hit_rows[name]
        lines.append(
            f"| {label} | {row['requests_per_s']:.0f} | {row['p50_ms']:.2f} | {row['p99_ms']:.2f} "
            f"| {row['errors']} | {row['worker_cpu_us']:.0f} | {row['events_worker_cpu_ms']:.0f} |"
        )
    cells = [
        f"{r['median']:.2f} ({r['min']:.2f}-{r['max']:.2f})" for r in (ratio["wrk"], ratio["worker_cpu"])
    ]
    lines += [
        "",
        f"with / none: {cells[0]} by wrk req/s, {cells[1]} by hits per API worker CPU second",
        "",
        "| target | met |",
        "|---|---|",
        *(f"| {name} | {'yes' if met else 'NO'} |" for name, met in result["verdicts"].items()),
    ]
    return "\n".join(lines) + "\n"


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # SIGTERM unwinds like Ctrl-C: every process gets stopped


def parse_settings(argv: Sequence[str]) -> Settings:
    """The options, bounded so a typo cannot hold the machine."""
    parser = argparse.ArgumentParser(prog="bench/events.py", description=__doc__.split("\n")[0])
    parser.add_argument("--subscribers", type=int, default=10_000, help="held for the fan-out (10,000)")
    parser.add_argument("--idle-subscribers", type=int, default=1000, help="held during wrk (1,000)")
    parser.add_argument("--events-workers", type=int, default=1, help="the events app's workers (1)")
    args = parser.parse_args(argv)
    return Settings(
        max(1, min(args.subscribers, 15_000)),
        max(1, min(args.idle_subscribers, 5_000)),
        knobs_from_env(duration="3", rounds="6"),
        events_workers=max(1, min(args.events_workers, 4)),
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run, print and save; 0 when it ran (a missed target is a figure, not a failure)."""
    signal.signal(signal.SIGTERM, _interrupt)
    settings = parse_settings(sys.argv[1:] if argv is None else argv)
    raise_open_files_limit(settings.subscribers + settings.idle_subscribers + SPARE)
    try:
        result = measure_all(settings)
        progress("all processes stopped")
    except KeyboardInterrupt:
        progress("interrupted; every process was stopped")
        return 130
    text = markdown(result)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "events.md").write_text(text, encoding="utf-8")
    (RESULTS / "events.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(text)
    print(f"written: {RESULTS}/events.{{md,json}}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
