"""make bench-events' own code, end to end with tiny numbers, so the benchmark cannot rot.

The real Strapi's webhook reaches the API app, the events app fans the event out to a swarm of
50 subscribers; wrk runs once with 20 held and once with none. No timing is asserted: what must
hold is that every subscriber received the event, every figure was measured, the change made in
Strapi was undone and every process the bench started was stopped.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from bench import events, measure

from .services import Strapi

SETTINGS = events.Settings(
    subscribers=50,
    idle_subscribers=20,
    knobs=measure.Knobs(duration=1, connections=4, rounds=1, warmup=1),  # wrk takes whole seconds
    heartbeat=1,  # streams the swarm closed are let go within a second or two
)


def children() -> set[int]:
    """The processes this test process started and that still run."""
    pid = os.getpid()
    return {
        int(child)
        for task in os.listdir(f"/proc/{pid}/task")
        for child in Path(f"/proc/{pid}/task/{task}/children").read_text().split()
    }


def test_the_bench_holds_a_swarm_fans_one_strapi_change_out_and_measures_hits(
    strapi_live: Strapi, webhook_port: int, tmp_path: Path
) -> None:
    before = children()
    result = events.run_on(strapi_live, webhook_port, tmp_path, SETTINGS)
    fan = result["fanout"]
    assert (fan["subscribers"], fan["opened"], fan["refused"], fan["failed"]) == (50, 50, {}, 0)
    assert (fan["received"], fan["missed"], fan["ended"]) == (50, 0, 0)
    assert len(fan["latencies_ms"]) == 50 and fan["p50_ms"] <= fan["p99_ms"] <= fan["max_ms"]
    assert math.isfinite(fan["mib_per_1000"]) and fan["rss_idle_mib"] > 0
    for case in events.CASES:
        (run,) = result["rounds"][case]
        assert run["requests"] > 0 and run["errors"] == 0
    assert len(result["released_after_s"]) == 1  # none, then 20 held: let go once at the end
    assert set(result["verdicts"]) == {
        "0 missed",
        "p99 <= 1000 ms",
        "<= 30 MiB per 1,000 subscribers",
        "hits with subscribers >= 0.8x none",
    }
    assert "| 50 | 50 | 0 | 0 |" in events.markdown(result)
    left = strapi_live.get("api/articles", **{"filters[title][$startsWith]": "Bench events"}).json()
    assert left["data"] == []  # the article the bench created is deleted
    assert children() <= before  # the API, the events app and the swarm are stopped
