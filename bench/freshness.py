"""Webhook to fresh content: after bffproxy acknowledges Strapi's webhook, does any worker serve stale?

Readers fetch one document through bffproxy continuously, each read on a new connection so both
gunicorn workers serve them. The benchmark then changes the document's title in Strapi. Strapi sends
its webhooks through the relay (bench/relay.py), which notes when bffproxy acknowledged
``entry.publish``. Every read that *started* after that moment must show the new title.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any

import requests

from bench.measure import get_once
from bench.stack import Stack, worker_pids


@dataclass(frozen=True)
class Read:
    """One read of the document: when, by which worker, and whether it had the new title."""

    started: float
    ended: float
    worker: str
    fresh: bool


def _read_forever(stack: Stack, path: str, new_title: str, reads: list[Read], stop: threading.Event) -> None:
    while not stop.is_set():
        started = time.monotonic()
        status, headers, body = get_once(stack.bff.port, path)
        ended = time.monotonic()
        title = json.loads(body)["data"]["title"] if status == 200 else None
        reads.append(Read(started, ended, headers.get("x-bff-worker", "?"), title == new_title))


def _warm_every_worker(stack: Stack, path: str) -> set[str]:
    """Make sure the old version is cached and served by every worker; return the workers' pids."""
    seen: set[str] = set()
    wanted = len(worker_pids(stack.bff))
    for _ in range(500):
        seen.add(get_once(stack.bff.port, path)[1].get("x-bff-worker", "?"))
        if len(seen) >= wanted:
            return seen
    raise RuntimeError(f"only workers {seen} answered; cannot check every worker")


def _change_title(stack: Stack, document_id: str, title: str) -> None:
    response = requests.put(
        f"{stack.strapi.url}/api/articles/{document_id}",
        json={"data": {"title": title}},
        headers={"Authorization": f"Bearer {stack.strapi.api_token}"},
        timeout=30,
    )
    response.raise_for_status()


def _wait(predicate: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return False


def webhook_to_fresh(stack: Stack, readers: int = 4, timeout: float = 15.0) -> dict[str, Any]:
    """Measure acknowledgement-to-fresh time on every worker and count stale reads after it."""
    path = stack.targets["document"]
    document_id = path.rsplit("/", 1)[1]
    workers = _warm_every_worker(stack, path)
    new_title = f"Bench {secrets.token_hex(4)}"
    reads: list[Read] = []
    stop = threading.Event()
    threads = [
        threading.Thread(target=_read_forever, args=(stack, path, new_title, reads, stop), daemon=True)
        for _ in range(readers)
    ]
    for thread in threads:
        thread.start()
    try:
        time.sleep(0.3)
        put_at = time.monotonic()
        _change_title(stack, document_id, new_title)
        _wait(lambda: stack.relay.find("entry.publish", document_id, put_at) is not None, timeout)
        delivery = stack.relay.find("entry.publish", document_id, put_at)
        if delivery is None or not 200 <= delivery.status < 300:
            status = delivery.status if delivery else "no delivery"
            return {"acknowledged": False, "webhook_status": status, "note": "webhook not acknowledged"}
        acked_at = delivery.acked_at
        _wait(lambda: workers <= {r.worker for r in list(reads) if r.fresh and r.started > acked_at}, 10)
        time.sleep(0.5)  # keep reading a little: no worker may flip back to the old version
    finally:
        stop.set()
        for thread in threads:
            thread.join(35)
    return _summary(reads, delivery.acked_at, put_at, workers)


def _summary(reads: list[Read], acked_at: float, put_at: float, workers: set[str]) -> dict[str, Any]:
    after = [r for r in reads if r.started > acked_at]
    first_fresh: dict[str, float] = {}
    for read in sorted(after, key=lambda r: r.ended):
        if read.fresh:
            first_fresh.setdefault(read.worker, read.ended - acked_at)
    fresh_everywhere = set(first_fresh) >= workers
    return {
        "acknowledged": True,
        "ack_after_change_ms": round((acked_at - put_at) * 1000, 1),
        "fresh_on_every_worker_ms": round(max(first_fresh.values()) * 1000, 1) if fresh_everywhere else None,
        "workers": len(workers),
        "reads_after_ack": len(after),
        "stale_reads_after_ack": sum(1 for r in after if not r.fresh),
    }
