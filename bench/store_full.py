"""The embedded store empty and full: set (a miss), get, delete and a hit, before and after.

``before`` is cachelib's FileSystemCache at its threshold, as bffproxy used it until diskcache;
``after`` is :class:`bffproxy.disk_store.DiskStore` at its size limit. A hit is what a request pays
in the store: the two generation reads (stat-validated, their own FileSystemCache in both) plus the
entry's get; ``gens in sqlite`` shows what the generations would cost in the DiskStore instead.

Each store is filled straight to 0, 20k and 200k entries of 2-15 KB (random sizes, a fixed seed),
then timed. Sets on a full FileSystemCache take seconds each, so each cell stops after
``BENCH_STORE_BUDGET`` seconds (5) with at least 3 samples; ``n`` says how many were taken.
Run: ``.venv/bin/python bench/store_full.py`` (about 2 minutes, 4 GB of disk at most, removed
after). Results: bench/results/store_full.{md,json} (git-ignored).
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import random
import shutil
import statistics
import struct
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `python bench/store_full.py` puts bench/, not the project, on sys.path
    sys.path.insert(0, str(ROOT))

from cachelib import FileSystemCache  # noqa: E402

from bffproxy.disk_store import DiskStore  # noqa: E402
from bffproxy.generations import GENERATION_TIMEOUT, StatValidatedReads  # noqa: E402

RESULTS = ROOT / "bench" / "results"
LEVELS = (0, 20_000, 200_000)
SAMPLES = 2000  # per operation: a get takes about 20 us, fewer samples are noise
BUDGET = min(float(os.environ.get("BENCH_STORE_BUDGET", "5")), 60)  # seconds per slow cell
TTL = 300
GEN_KEYS = ("gen:default", "gen:default:articles")

Op = Callable[[int], Any]


def entry(rng: random.Random, body: bytes) -> tuple[Any, ...]:
    """An entry shaped like bffproxy's (see freshness.Entry.as_tuple), 2-15 KB of body."""
    size = rng.randint(2_000, 15_000)
    return ("v1", 200, body[:size], "application/json", time.time(), f'"{size}"')


def percentile(samples: list[float], fraction: float) -> float:
    """The ``fraction`` percentile (nearest rank) of ``samples``."""
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def timed(op: Op, samples: int, budget: float) -> dict[str, float]:
    """Median and p99 of ``op(i)`` in ms: ``samples`` calls, or fewer (at least 3) past ``budget`` s."""
    times: list[float] = []
    started = time.perf_counter()
    for i in range(samples):
        t0 = time.perf_counter()
        op(i)
        times.append((time.perf_counter() - t0) * 1000)
        if i >= 2 and time.perf_counter() - started > budget:
            break
    return {"median": statistics.median(times), "p99": percentile(times, 0.99), "n": len(times)}


def fill_files(directory: str, n: int, rng: random.Random, body: bytes) -> None:
    """Write ``n`` entries the way FileSystemCache stores them, without its per-file count updates."""
    expires = struct.pack("I", int(time.time()) + TTL)
    for i in range(n):
        name = hashlib.sha256(f"fill:{i}".encode()).hexdigest()
        fd = os.open(os.path.join(directory, name), os.O_WRONLY | os.O_CREAT, 0o600)
        os.write(fd, expires + pickle.dumps(entry(rng, body), pickle.HIGHEST_PROTOCOL))
        os.close(fd)


def file_store(directory: str, n: int, rng: random.Random, body: bytes) -> FileSystemCache:
    """FileSystemCache with ``n`` entries, just over its threshold when ``n`` > 0 (else the default 20k).

    Over it, as a full store stays: every set prunes (cachelib deletes one file per set).
    """
    os.makedirs(directory)
    fill_files(directory, n, rng, body)
    return FileSystemCache(directory, threshold=n - 1 if n else 20_000, default_timeout=TTL)


def disk_store(directory: str, n: int, rng: random.Random, body: bytes) -> DiskStore:
    """DiskStore with ``n`` entries, its size limit set to what they occupy when ``n`` > 0."""
    store = DiskStore(directory, size_limit=1 << 40, default_timeout=TTL)
    for start in range(0, n, 5_000):  # one transaction per 5,000: the WAL stays small
        with store.cache.transact():
            for i in range(start, min(n, start + 5_000)):
                store.cache.set(f"fill:{i}", entry(rng, body), expire=TTL)
    store.cache.reset("size_limit", store.volume() if n else 1 << 40)
    return store


def measure_store(store: Any, generations: Any, n: int, rng: random.Random, body: bytes) -> dict[str, Any]:
    """set (new keys: misses), get (random existing keys), delete, and a whole hit."""
    values = [entry(rng, body) for _ in range(64)]
    slow = n > 0 and isinstance(store, FileSystemCache)
    budget = BUDGET if slow else 60.0
    figures = {"set": timed(lambda i: store.set(f"miss:{i}", values[i % 64], TTL), SAMPLES, budget)}
    # From the newer half: the oldest entries are the ones a full DiskStore culls first.
    keys = [f"fill:{rng.randrange(n // 2, n)}" if n else f"miss:{i}" for i in range(SAMPLES)]
    figures["get"] = timed(lambda i: store.get(keys[i]), SAMPLES, 60.0)
    reader = StatValidatedReads(generations)
    reader.get_many(*GEN_KEYS)  # a worker's memo is warm

    def hit(i: int) -> None:
        reader.get_many(*GEN_KEYS)
        store.get(keys[i])

    figures["hit"] = timed(hit, SAMPLES, 60.0)
    figures["delete"] = timed(lambda i: store.delete(keys[i]), SAMPLES, 60.0)
    if isinstance(store, DiskStore):
        for key in GEN_KEYS:
            store.set(key, "0123456789abcdef", GENERATION_TIMEOUT)
        figures["gens in sqlite"] = timed(lambda i: store.get_many(*GEN_KEYS), SAMPLES, 60.0)
        figures["entries"] = store.count()
    figures["gens stat-validated"] = timed(lambda i: reader.get_many(*GEN_KEYS), SAMPLES, 60.0)
    return figures


@contextmanager
def work_dir() -> Iterator[str]:
    """A scratch directory on the cache's disk (bench/results), removed afterwards."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    directory = tempfile.mkdtemp(prefix="store-full-", dir=RESULTS)
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def progress(message: str) -> None:
    """One progress line on stderr, so stdout stays the table."""
    print(f"[store_full {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def run() -> dict[str, Any]:
    """Every store at every level, one directory at a time (the disk holds one full store)."""
    body = random.Random(1).randbytes(16_000)
    result: dict[str, Any] = {}
    for name, build in (("before", file_store), ("after", disk_store)):
        for n in LEVELS:
            rng = random.Random(n)
            with work_dir() as directory:
                progress(f"{name}: filling {n} entries")
                started = time.perf_counter()
                generations = FileSystemCache(os.path.join(directory, "generations"), threshold=0)
                for key in GEN_KEYS:
                    generations.set(key, "0123456789abcdef", GENERATION_TIMEOUT)
                store = build(os.path.join(directory, "store"), n, rng, body)
                progress(f"{name}: filled in {time.perf_counter() - started:.1f}s, measuring")
                result.setdefault(name, {})[str(n)] = measure_store(store, generations, n, rng, body)
    return result


def ratio(a: float, b: float) -> str:
    """``a / b`` as text."""
    return f"{a / b:.2f}x" if b else "-"


def markdown(result: dict[str, Any]) -> str:
    """The table: each operation's median / p99 per level, and full/empty ratios."""
    lines = [
        "| store | operation | "
        + " | ".join(f"{n:,} median / p99 ms (n)" for n in LEVELS)
        + " | 20k/empty | 200k/empty |",
        "|---|---|" + "---|" * (len(LEVELS) + 2),
    ]
    for name, levels in result.items():
        for op in ("set", "get", "delete", "hit", "gens stat-validated", "gens in sqlite"):
            if op not in levels["0"]:
                continue
            cells = [levels[str(n)][op] for n in LEVELS]
            shown = [f"{c['median']:.3f} / {c['p99']:.3f} ({c['n']})" for c in cells]
            ratios = [ratio(c["median"], cells[0]["median"]) for c in cells[1:]]
            lines.append(f"| {name} | {op} | " + " | ".join(shown + ratios) + " |")
    lines.append("")
    lines.append("| operation | after/before, empty | 20k | 200k |")
    lines.append("|---|---|---|---|")
    for op in ("set", "get", "hit"):
        cells = [
            ratio(result["after"][str(n)][op]["median"], result["before"][str(n)][op]["median"])
            for n in LEVELS
        ]
        lines.append(f"| {op} | " + " | ".join(cells) + " |")
    full = result["after"][str(LEVELS[-1])]
    lines.append(f"\nafter, {LEVELS[-1]:,} entries: {full['entries']:,} left (at most 10 deleted per set)")
    return "\n".join(lines)


def verdicts(result: dict[str, Any]) -> list[str]:
    """The issue's targets: a set when full <= 2x an empty one; a hit unchanged (<= 1.1x before)."""
    after, before = result["after"], result["before"]
    out = []
    for n in LEVELS[1:]:
        full_set = after[str(n)]["set"]["median"] / after["0"]["set"]["median"]
        out.append(
            f"set at {n:,} / empty: {full_set:.2f}x ({'met' if full_set <= 2 else 'MISSED'}, target <= 2x)"
        )
    for n in LEVELS:
        hit = after[str(n)]["hit"]["median"] / before[str(n)]["hit"]["median"]
        out.append(
            f"hit at {n:,}, after / before: {hit:.2f}x ({'met' if hit <= 1.1 else 'MISSED'}, target <= 1.1x)"
        )
    return out


def main() -> int:
    """Measure, print and save; 0 when it ran (a missed target is a figure, not a failure)."""
    started = time.perf_counter()
    result = run()
    report = markdown(result) + "\n\n" + "\n".join(verdicts(result))
    print(report)
    (RESULTS / "store_full.json").write_text(json.dumps(result, indent=2))
    (RESULTS / "store_full.md").write_text(report + "\n")
    progress(f"done in {time.perf_counter() - started:.0f}s; written: {RESULTS}/store_full.{{md,json}}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
