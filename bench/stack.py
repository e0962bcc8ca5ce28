"""The processes one benchmark run needs: Strapi, bffproxy, the Python floor and a webhook relay.

Built on the end-to-end test helpers (tests/e2e/services.py). Everything binds to 127.0.0.1 on free
ports, and :func:`running_stack` stops every process it started, also on errors and Ctrl-C.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from bench.relay import WebhookRelay
from tests.e2e.services import Gunicorn, Strapi, bff_env, free_port

WORKERS = 2  # the figure: bffproxy under gunicorn with 2 workers
AnyGunicorn = TypeVar("AnyGunicorn", bound=Gunicorn)


class FloorGunicorn(Gunicorn):
    """The floor app under the very same gunicorn.conf.py, workers and threads as bffproxy."""

    def command(self) -> list[str]:
        return [*super().command()[:-1], "bench.floor_app:app"]


@dataclass
class Stack:
    """The running services of one benchmark run."""

    strapi: Strapi
    bff: Gunicorn
    floor: FloorGunicorn
    relay: WebhookRelay
    targets: dict[str, str]  # name -> request path, the same on all three servers
    work_dir: Path


def bench_targets(strapi: Strapi) -> dict[str, str]:
    """The measured paths: the default 25-item article list and one article by documentId."""
    first = strapi.get("api/articles", **{"pagination[pageSize]": "1"}).json()["data"][0]
    return {"list": "/api/articles", "document": f"/api/articles/{first['documentId']}"}


@contextmanager
def running_stack(work_dir: Path) -> Iterator[Stack]:
    """Start a freshly seeded Strapi, bffproxy, the floor and the relay; stop them all on exit."""
    work_dir.mkdir(parents=True, exist_ok=True)
    bff_port, relay_port = free_port(), free_port()
    with ExitStack() as stack:
        relay = WebhookRelay(relay_port, f"http://127.0.0.1:{bff_port}/webhooks/strapi")
        stack.enter_context(relay)
        strapi = fresh_strapi(stack, relay_port)
        env = hits_env(strapi, work_dir / "cache")
        bff = started(stack, Gunicorn(bff_port, env, WORKERS, log_path=work_dir / "bffproxy.log"))
        targets = bench_targets(strapi)
        bodies_file = work_dir / "floor-bodies.json"
        write_floor_bodies(bodies_file, bff, targets)
        floor_env = {**env, "BENCH_FLOOR_BODIES": str(bodies_file)}
        floor = started(
            stack, FloorGunicorn(free_port(), floor_env, WORKERS, log_path=work_dir / "floor.log")
        )
        yield Stack(strapi, bff, floor, relay, targets, work_dir)


def fresh_strapi(stack: ExitStack, webhook_port: int) -> Strapi:
    """A freshly seeded Strapi, stopped and its throw-away database dropped when ``stack`` closes."""
    strapi = Strapi(port=free_port(), webhook_port=webhook_port)
    stack.callback(strapi.reset)  # its log stays
    strapi.reset()
    strapi.start()
    return strapi


def hits_env(strapi: Strapi, cache_dir: Path, **extra: str) -> dict[str, str]:
    """bffproxy's environment for measuring hits: its own cache directory, a TTL longer than the run."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    return bff_env(strapi, cache_dir, CACHE_TTL="3600", **extra)


def started(stack: ExitStack, server: AnyGunicorn) -> AnyGunicorn:
    """Start ``server`` (waiting for /healthz); it is stopped when ``stack`` closes."""
    stack.callback(server.stop)
    server.start()
    return server


def write_floor_bodies(path: Path, bff: Gunicorn, paths: dict[str, str]) -> None:
    """Fetch each path through bffproxy once and store its exact bytes for the floor."""
    import requests

    bodies = {}
    for request_path in paths.values():
        response = requests.get(f"{bff.url}{request_path}", timeout=30)
        response.raise_for_status()
        bodies[request_path] = response.content.decode()
    path.write_text(json.dumps(bodies), encoding="utf-8")


def worker_pids(server: Gunicorn) -> list[int]:
    """The pids of a gunicorn arbiter's worker processes."""
    assert server.process is not None
    pid = server.process.pid
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return sorted(int(child) for child in children)


def rss_mib(pid: int) -> float:
    """Resident set size of a process, from /proc, in MiB."""
    match = re.search(r"^VmRSS:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text(), re.M)
    return int(match.group(1)) / 1024 if match else float("nan")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time a process has used so far, from /proc (10 ms resolution)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime
