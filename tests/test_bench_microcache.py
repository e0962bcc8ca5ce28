"""bench/microcache.py's staleness figures and verdicts say what happened (synthetic reads, no servers)."""

from __future__ import annotations

from bench import microcache, wrk
from bench.measure import Knobs
from bench.microcache import Read

NEW = "new"


def test_stale_time_at_nginx_counts_from_bffproxy_s_last_old_read() -> None:
    reads = {
        # bffproxy's last old read starts at 10.0: it dropped the old version after that.
        "bffproxy": [Read(9.0, 9.01, "old"), Read(10.0, 10.01, "old"), Read(10.05, 10.06, NEW)],
        # nginx still answered the old version until 10.7.
        "microcache": [Read(9.5, 9.51, "old"), Read(10.69, 10.7, "old"), Read(10.8, 10.81, NEW)],
    }
    figures = microcache.staleness(reads, NEW, written=9.9)
    assert round(figures["nginx_after_bffproxy_s"], 3) == 0.7
    assert round(figures["bffproxy_after_write_s"], 3) == 0.11
    assert round(figures["nginx_after_write_s"], 3) == 0.8
    assert figures["flips_back"] == 0


def test_a_read_that_goes_back_to_the_old_version_is_counted() -> None:
    reads = {
        "bffproxy": [Read(1.0, 1.1, "old"), Read(1.2, 1.3, NEW)],
        "microcache": [
            Read(1.0, 1.1, "old"),
            Read(1.2, 1.3, NEW),
            Read(1.4, 1.5, "old"),
            Read(1.6, 1.7, NEW),
        ],
    }
    assert microcache.staleness(reads, NEW, written=1.0)["flips_back"] == 1


def _runs(rps: dict[str, float]) -> dict[str, list[wrk.WrkResult]]:
    return {name: [wrk.WrkResult(value, 1.0, 2.0, 100, 0)] for name, value in rps.items()}


def test_the_table_says_whether_each_target_was_met() -> None:
    stale = [
        {
            "nginx_after_bffproxy_s": 0.9,
            "bffproxy_after_write_s": 0.1,
            "nginx_after_write_s": 1.0,
            "flips_back": 0,
        }
    ]
    knobs = Knobs(5, 16, 1, 1)
    met = microcache.table(
        microcache.summarise(_runs({"bffproxy": 2000, "nginx": 1500, "microcache": 12000}), stale, knobs)
    )
    assert "| microcache / bffproxy alone | 6.0 | >= 5: met |" in met
    assert "(bound 1 s: met) | 0.9 |" in met
    late = [{**stale[0], "nginx_after_bffproxy_s": 1.2}]
    missed = microcache.table(
        microcache.summarise(_runs({"bffproxy": 2000, "nginx": 1500, "microcache": 8000}), late, knobs)
    )
    assert "| microcache / bffproxy alone | 4.0 | >= 5: MISSED |" in missed
    assert "(bound 1 s: MISSED) | 1.2 |" in missed
