"""Bounded wrk runs against loopback URLs, parsed into requests/s and latency percentiles."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import urlsplit

_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


@dataclass(frozen=True)
class WrkResult:
    """One wrk run: throughput, median and p99 latency, and anything that went wrong."""

    requests_per_s: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int  # socket errors plus non-2xx/3xx answers

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready copy."""
        return asdict(self)


def _to_ms(value: str, unit: str) -> float:
    return float(value) * _UNITS_MS[unit]


def parse(output: str) -> WrkResult:
    """Read wrk's ``--latency`` report."""
    rps = re.search(r"Requests/sec:\s+([\d.]+)", output)
    total = re.search(r"(\d+) requests in", output)
    rows = re.findall(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s|m)\s*$", output, re.M)
    percentiles = {int(p): _to_ms(v, u) for p, v, u in rows}
    if rps is None or total is None or set(percentiles) != {50, 99}:
        raise RuntimeError(f"could not parse wrk output:\n{output}")
    socket_errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", output))
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    errors = socket_errors + (int(non_2xx.group(1)) if non_2xx else 0)
    return WrkResult(float(rps.group(1)), percentiles[50], percentiles[99], int(total.group(1)), errors)


def run(
    url: str, *, duration: float, connections: int, threads: int = 1, headers: Mapping[str, str] | None = None
) -> WrkResult:
    """Run wrk for ``duration`` seconds on a loopback ``url`` (killed if it overruns), sending ``headers``."""
    if urlsplit(url).hostname not in ("127.0.0.1", "localhost"):
        raise ValueError(f"refusing to load-test a non-loopback URL: {url}")
    binary = shutil.which("wrk")
    if binary is None:
        raise RuntimeError("wrk is not installed: run `make system-deps` (apt-get install wrk)")
    command = [binary, f"-t{threads}", f"-c{connections}", f"-d{duration:g}s", "--timeout=10s", "--latency"]
    for name, value in (headers or {}).items():  # a Host header here replaces wrk's own
        command += ["-H", f"{name}: {value}"]
    result = subprocess.run(
        [*command, url], capture_output=True, text=True, timeout=duration + 30, check=True
    )
    return parse(result.stdout)
