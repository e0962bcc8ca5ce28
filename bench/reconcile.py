"""The reconciler's costs and reach (issue 12): Strapi requests per interval for 10 idle
collections, and the time from a change no webhook reported to fresh content (p50/p99 of 20).

One freshly seeded Strapi whose webhook points at a port nobody serves, so bffproxy hears of a
change only by reconciling. bffproxy runs under gunicorn (2 workers):

* idle cost: ten tenants of that Strapi, each exposing one collection (``articles``, with draft and
  publish, then ``categories``, without), interval 2 s; after the watermarks settle, the
  reconciler's requests in Strapi's own log over BENCH_IDLE_INTERVALS intervals, per interval;
* reach: one tenant at BENCH_RECONCILE_INTERVAL seconds (2 here; 30 by default in production);
  each of 20 title edits is made in Strapi (REST PUT with the API token) while bffproxy holds the
  old answer cached, then bffproxy is polled every 10 ms until it serves the new title.
  Each change lands at a random point of an interval: it waits for the next pass (half an
  interval on average, a whole one at worst), then that pass's few requests.

Run: ``.venv/bin/python -m bench.reconcile``. Results: printed, and bench/results/reconcile.json.
"""

from __future__ import annotations

import json
import os
import random
import statistics
import time
import uuid
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import requests

from tests.e2e.services import Gunicorn, Strapi, bff_env, free_port, wait_until

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
MARKER = "fields%5B0%5D=documentId"  # the reconciler's reads, as Strapi logs them
IDLE_INTERVALS = int(os.environ.get("BENCH_IDLE_INTERVALS", "10"))
IDLE_INTERVAL = 2  # seconds: at 1 s, ten tenants' passes outgrow the interval on a busy 2-core VM
INTERVAL = int(os.environ.get("BENCH_RECONCILE_INTERVAL", "2"))
CHANGES = 20


def tenants_file(path: Path, strapi: Strapi, collection: str) -> Path:
    """Ten tenants of one Strapi, each exposing ``collection`` only."""
    blocks = ['default_tenant = "t0"\n']
    for n in range(10):
        blocks.append(
            f'[tenants.t{n}]\nhosts = ["t{n}.bench.test"]\nstrapi_url = "{strapi.url}"\n'
            f'collections = ["{collection}"]\nsingle_types = []\n'
        )
    path.write_text("\n".join(blocks), encoding="utf-8")
    return path


def start(stack: ExitStack, port: int, env: dict[str, str], log: Path) -> Gunicorn:
    server = Gunicorn(port, env, 2, log_path=log).start(timeout=60)
    stack.callback(server.stop)
    return server


def idle_requests(stack: ExitStack, strapi: Strapi, work: Path, collection: str) -> float:
    """Strapi requests per interval for 10 idle collections (10 tenants x ``collection``)."""
    env = bff_env(
        strapi,
        _dir(work / f"cache-{collection}"),
        TENANTS_FILE=str(tenants_file(work / f"{collection}.toml", strapi, collection)),
        RECONCILE_INTERVAL=str(IDLE_INTERVAL),
        RECONCILE_OVERLAP="1",
    )
    bff = start(stack, free_port(), env, work / f"bff-{collection}.log")
    time.sleep(5)  # baselines listed, watermarks settled
    before = strapi.count_requests(MARKER)
    time.sleep(IDLE_INTERVALS * IDLE_INTERVAL)
    per_interval = (strapi.count_requests(MARKER) - before) / IDLE_INTERVALS
    bff.stop()
    return per_interval


def reach(stack: ExitStack, strapi: Strapi, work: Path) -> list[float]:
    """Seconds from each of 20 missed edits (made in Strapi) to bffproxy serving it."""
    env = bff_env(strapi, _dir(work / "cache-reach"), RECONCILE_INTERVAL=str(INTERVAL))
    bff = start(stack, free_port(), env, work / "bff-reach.log")
    wait_until(lambda: reconciled(bff), 30, "the first reconcile pass")
    doc = strapi.get("api/articles", **{"pagination[pageSize]": "1"}).json()["data"][0]["documentId"]
    url = f"{bff.url}/api/articles/{doc}"
    token = {"Authorization": f"Bearer {strapi.api_token}"}
    wait_until(lambda: requests.get(url, timeout=5).headers.get("X-Cache") == "HIT", 10, "a cached answer")
    delays = []
    for _ in range(CHANGES):
        requests.get(url, timeout=5)  # the old title is cached
        time.sleep(random.uniform(0, INTERVAL))  # changes land at any point of an interval
        title = f"bench reconcile {uuid.uuid4().hex[:10]}"
        answer = requests.put(
            f"{strapi.url}/api/articles/{doc}", json={"data": {"title": title}}, headers=token
        )
        answer.raise_for_status()
        changed = time.monotonic()
        wait_until(lambda expected=title: served(url) == expected, 3 * INTERVAL + 5, "fresh content")
        delays.append(time.monotonic() - changed)
    return delays


def served(url: str) -> str:
    """The title bffproxy serves for the article at ``url``."""
    return str(requests.get(url, timeout=5).json()["data"]["title"])


def reconciled(bff: Gunicorn) -> bool:
    """True once bffproxy's first reconcile pass (its silent baseline) is done."""
    answer = requests.get(f"{bff.url}/readyz", timeout=5)
    return answer.status_code == 200 and answer.json()["reconciled"]["default"] is not None


def _dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def main() -> int:
    work = ROOT / "bench" / "results" / "reconcile-work"
    work.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        strapi = Strapi(port=free_port(), webhook_port=free_port())  # the webhook reaches nobody
        strapi.reset()
        stack.callback(strapi.reset)
        strapi.start()
        result: dict[str, Any] = {
            "idle_requests_per_interval": {
                "10 collections with draft and publish": idle_requests(stack, strapi, work, "articles"),
                "10 collections without": idle_requests(stack, strapi, work, "categories"),
            },
        }
        delays = reach(stack, strapi, work)
    result["missed_change_to_fresh_s"] = {
        "interval_s": INTERVAL,
        "changes": len(delays),
        "p50": round(statistics.median(delays), 3),
        "p99": round(percentile(delays, 0.99), 3),
        "max": round(max(delays), 3),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "reconcile.json").write_text(json.dumps(result, indent=2), encoding="utf-8")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
