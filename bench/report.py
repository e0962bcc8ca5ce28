"""The figures as a table with ratios against the issue's targets, printed and written to results/."""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

TARGETS = "hits >= 0.8x floor and >= 10x Strapi direct on the list; stampede -> 1; 0 stale reads"


def ratios(runs: dict[str, dict[str, list[Any]]]) -> dict[str, dict[str, float]]:
    """hits/floor and hits/Strapi per target: the median of the per-round ratios.

    Rounds are interleaved so that each round's three measurements share the machine's state;
    pairing them within a round cancels noise that hits all three (a busy neighbour, a CPU
    frequency drop), which the ratio of separately taken medians would not.
    """
    out = {}
    for target, systems in runs.items():
        rps = {system: [r.requests_per_s for r in rounds] for system, rounds in systems.items()}
        out[target] = {
            "hits_over_floor": round(paired_ratio(rps["bffproxy"], rps["floor"]), 2),
            "hits_over_strapi": round(paired_ratio(rps["bffproxy"], rps["strapi"]), 1),
        }
    return out


def paired_ratio(numerators: Sequence[float], denominators: Sequence[float]) -> float:
    """The median of the per-round ratios, round ``i`` of one series over round ``i`` of the other."""
    return statistics.median(n / d for n, d in zip(numerators, denominators, strict=True))


def verdicts(result: dict[str, Any]) -> dict[str, bool | None]:
    """Each target: met (True), missed (False), or not measurable in this run (None)."""
    listing = result["ratios"]["list"]
    webhook = result["webhook"]
    return {
        "list hits >= 0.8x floor": listing["hits_over_floor"] >= 0.8,
        "list hits >= 10x Strapi": listing["hits_over_strapi"] >= 10,
        "stampede -> 1 Strapi request": result["stampede"]["strapi_requests"] == 1,
        "0 stale reads after webhook ack": (
            webhook["stale_reads_after_ack"] == 0 if webhook.get("acknowledged") else None
        ),
    }


def command_line(knobs: dict[str, Any], target: str) -> str:
    """The command that repeats a run with these knobs, as Markdown code."""
    return (
        f"`BENCH_DURATION={knobs['duration']:g} BENCH_CONNECTIONS={knobs['connections']} "
        f"BENCH_ROUNDS={knobs['rounds']} make {target}`"
    )


def markdown(result: dict[str, Any]) -> str:
    """The README-ready table."""
    knobs = result["settings"]
    lines = [
        command_line(knobs, "bench"),
        "",
        f"wrk -t1 -c{knobs['connections']} -d{knobs['duration']:g}s, {knobs['rounds']} interleaved rounds "
        f"(medians; ratios: median of per-round ratios), {result['machine']}; "
        f"bffproxy and the floor: gunicorn, {knobs['workers']} workers",
        "",
        "| target | system | req/s | p50 ms | p99 ms | errors |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for target, systems in result["throughput"].items():
        for system, row in systems.items():
            lines.append(
                f"| {target} | {system} | {row['requests_per_s']:.0f} | {row['p50_ms']:.2f} "
                f"| {row['p99_ms']:.2f} | {row['errors']} |"
            )
    lines += ["", "| ratio | list | document |", "|---|---:|---:|"]
    for name in ("hits_over_floor", "hits_over_strapi"):
        lines.append(
            f"| {name.replace('_', ' ')} | {result['ratios']['list'][name]} "
            f"| {result['ratios']['document'][name]} |"
        )
    rss = result["rss_mib"]
    stampede, webhook = result["stampede"], result["webhook"]
    lines += [
        "",
        f"- RSS per worker (MiB): bffproxy {rss['bffproxy']}, floor {rss['floor']}; "
        f"Strapi process {rss['strapi']}",
        f"- stampede: {stampede['clients']} concurrent requests on a cold key -> "
        f"{stampede['strapi_requests']} Strapi request(s); statuses {stampede['statuses']}, "
        f"X-Cache {stampede['x_cache']}",
        f"- webhook: {_webhook_line(webhook)}",
        "",
        "| target | met |",
        "|---|---|",
    ]
    for name, met in result["verdicts"].items():
        lines.append(f"| {name} | {'yes' if met else 'n/a' if met is None else 'NO'} |")
    return "\n".join(lines) + "\n"


def _webhook_line(webhook: dict[str, Any]) -> str:
    if not webhook.get("acknowledged"):
        return f"not measured: {webhook.get('note')} ({webhook.get('webhook_status')})"
    return (
        f"acknowledged {webhook['ack_after_change_ms']} ms after the change in Strapi; fresh on all "
        f"{webhook['workers']} workers {webhook['fresh_on_every_worker_ms']} ms after the ack; "
        f"{webhook['stale_reads_after_ack']} stale of {webhook['reads_after_ack']} reads after the ack"
    )


def write(result: dict[str, Any], directory: Path) -> tuple[Path, Path]:
    """Write ``bench-<time>.json`` and ``.md`` plus ``latest.json``/``latest.md``."""
    directory.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%S")
    text, data = markdown(result), json.dumps(result, indent=2) + "\n"
    for name in (f"bench-{stamp}", "latest"):
        (directory / f"{name}.md").write_text(text, encoding="utf-8")
        (directory / f"{name}.json").write_text(data, encoding="utf-8")
    return directory / f"bench-{stamp}.json", directory / f"bench-{stamp}.md"
