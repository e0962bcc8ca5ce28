"""A 100 MB file through bffproxy under gunicorn, up and down: worker RSS idle, during and after.

``make bench-media`` (or ``python bench/media.py``; ``BENCH_MEDIA_MB`` changes the size) starts a
freshly seeded Strapi and bffproxy (gunicorn, 2 workers), warms both workers up with small uploads
and downloads, then uploads one file of ``BENCH_MEDIA_MB`` MiB through ``POST /api/upload`` and
downloads it from ``/uploads/<name>``, sampling every worker's RSS every 20 ms. The target (issue
14): no worker's RSS more than 20 MiB above its idle figure, during or after. Exit 1 if missed.
The file is checked byte for byte (SHA-256) and deleted from Strapi at the end.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import requests
from urllib3 import encode_multipart_formdata

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.stack import rss_mib, worker_pids  # noqa: E402
from tests.e2e.services import Gunicorn, Strapi, bff_env, free_port  # noqa: E402

TARGET_MIB = 20.0
SAMPLE_EVERY = 0.02
CHUNK = 1024 * 1024


@dataclass
class Worker:
    """One gunicorn worker's RSS figures, in MiB."""

    pid: int
    idle: float
    peaks: dict[str, float] = field(default_factory=dict)
    after: dict[str, float] = field(default_factory=dict)

    @property
    def worst(self) -> float:
        """The largest rise above idle seen in any phase."""
        return max([*self.peaks.values(), *self.after.values()]) - self.idle


@contextmanager
def peak_rss(workers: list[Worker], phase: str) -> Iterator[None]:
    """Sample every worker's RSS while the block runs; keep each one's peak and its value after."""
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            for worker in workers:
                worker.peaks[phase] = max(worker.peaks.get(phase, 0.0), rss_mib(worker.pid))
            time.sleep(SAMPLE_EVERY)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        yield
    finally:
        stop.set()
        sampler.join()
    time.sleep(0.5)  # let the worker finish closing the request
    for worker in workers:
        worker.after[phase] = rss_mib(worker.pid)


def write_source(path: Path, megabytes: int) -> str:
    """A file of random bytes on disk (never all in this process's memory); its SHA-256."""
    digest = hashlib.sha256()
    with path.open("wb") as out:
        for _ in range(megabytes):
            block = secrets.token_bytes(CHUNK)
            digest.update(block)
            out.write(block)
    return digest.hexdigest()


def write_multipart(source: Path, body: Path, name: str) -> str:
    """The upload's multipart body on disk, streamed from ``source``; its Content-Type."""
    marker = secrets.token_hex(8).encode()
    template, content_type = encode_multipart_formdata({"files": (name, marker, "application/octet-stream")})
    head, tail = template.split(marker)
    with body.open("wb") as out, source.open("rb") as data:
        out.write(head)
        while block := data.read(CHUNK):
            out.write(block)
        out.write(tail)
    return content_type


def login(strapi: Strapi) -> dict[str, str]:
    """The editor's Authorization header."""
    answer = requests.post(
        f"{strapi.url}/api/auth/local",
        json={"identifier": "editor", "password": "Editor-Passw0rd!"},
        timeout=10,
    )
    answer.raise_for_status()
    return {"Authorization": f"Bearer {answer.json()['jwt']}"}


def warm_up(bff: Gunicorn, editor: dict[str, str]) -> list[int]:
    """Small uploads and downloads on every worker, so idle RSS is measured after first-use costs."""
    ids = []
    for i in range(8):
        files = {"files": (f"warm-{i}.bin", secrets.token_bytes(256 * 1024), "application/octet-stream")}
        answer = requests.post(f"{bff.url}/api/upload", files=files, headers=editor, timeout=60)
        answer.raise_for_status()
        stored = answer.json()[0]
        ids.append(stored["id"])
        requests.get(f"{bff.url}{stored['url']}", timeout=60).raise_for_status()
        requests.get(f"{bff.url}{stored['url']}", headers={"Range": "bytes=0-99"}, timeout=60)
    return ids


def download(url: str) -> str:
    """Read the file in chunks as it arrives; its SHA-256."""
    digest = hashlib.sha256()
    with requests.get(url, stream=True, timeout=120) as answer:
        answer.raise_for_status()
        for block in answer.iter_content(CHUNK):
            digest.update(block)
    return digest.hexdigest()


def report(workers: list[Worker], megabytes: int, seconds: dict[str, float]) -> bool:
    """Print the table; True when every worker stayed within the target."""
    phases = list(workers[0].peaks)
    print(f"\n{megabytes} MiB through bffproxy (gunicorn, {len(workers)} workers); RSS per worker, MiB")
    print("| worker | idle | " + " | ".join(f"{p} peak | after {p}" for p in phases) + " | worst rise |")
    print("|---" * (2 + 2 * len(phases) + 1) + "|")
    for w in workers:
        cells = " | ".join(f"{w.peaks[p]:.1f} | {w.after[p]:.1f}" for p in phases)
        print(f"| {w.pid} | {w.idle:.1f} | {cells} | {w.worst:+.1f} |")
    rates = ", ".join(f"{p} {megabytes / s:.0f} MiB/s ({s:.1f} s)" for p, s in seconds.items())
    met = all(w.worst <= TARGET_MIB for w in workers)
    print(
        f"\n{rates}\ntarget: every worker within {TARGET_MIB:.0f} MiB of idle: {'met' if met else 'MISSED'}"
    )
    return met


def run(strapi: Strapi, bff: Gunicorn, work_dir: Path, megabytes: int) -> bool:
    """Upload then download one file, sampling RSS; clean up what was uploaded."""
    source, body, name = (
        work_dir / "source.bin",
        work_dir / "upload.multipart",
        f"bench-{secrets.token_hex(4)}.bin",
    )
    expected = write_source(source, megabytes)
    content_type = write_multipart(source, body, name)
    editor = login(strapi)
    ids = warm_up(bff, editor)
    time.sleep(1)
    workers = [Worker(pid, rss_mib(pid)) for pid in worker_pids(bff)]
    seconds = {}
    try:
        with peak_rss(workers, "upload"), body.open("rb") as data:
            started = time.monotonic()
            headers = {**editor, "Content-Type": content_type, "Content-Length": str(body.stat().st_size)}
            answer = requests.post(f"{bff.url}/api/upload", data=data, headers=headers, timeout=300)
            seconds["upload"] = time.monotonic() - started
        answer.raise_for_status()
        stored = answer.json()[0]
        ids.append(stored["id"])
        with peak_rss(workers, "download"):
            started = time.monotonic()
            got = download(f"{bff.url}{stored['url']}")
            seconds["download"] = time.monotonic() - started
        if got != expected:
            raise AssertionError("the downloaded file differs from the uploaded one")
        return report(workers, megabytes, seconds)
    finally:
        for file_id in ids:
            requests.delete(
                f"{strapi.url}/api/upload/files/{file_id}",
                headers={"Authorization": f"Bearer {strapi.api_token}"},
                timeout=30,
            )
        source.unlink(missing_ok=True)
        body.unlink(missing_ok=True)


def main() -> int:
    """Start Strapi and bffproxy, run, stop everything."""
    megabytes = int(os.environ.get("BENCH_MEDIA_MB", "100"))
    work_dir = ROOT / "bench" / "results" / "media"
    (work_dir / "cache").mkdir(parents=True, exist_ok=True)
    bff_port = free_port()
    strapi = Strapi(port=free_port(), webhook_port=bff_port)
    bff: Gunicorn | None = None
    try:
        print("[bench-media] starting Strapi (fresh seed) and bffproxy", file=sys.stderr, flush=True)
        strapi.reset()
        strapi.start()
        env = bff_env(
            strapi,
            work_dir / "cache",
            POLICIES__upload="read=public,write=editor",
            MAX_UPLOAD_BYTES=str((megabytes + 1) * 1024 * 1024),
            UPLOAD_TIMEOUT="300",
        )
        bff = Gunicorn(bff_port, env, 2, log_path=work_dir / "bffproxy.log").start()
        met = run(strapi, bff, work_dir, megabytes)
    finally:
        if bff is not None:
            bff.stop()
        strapi.reset()
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
