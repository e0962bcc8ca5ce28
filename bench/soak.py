"""`make soak`: mixed traffic through bffproxy to a real Strapi for SOAK_SECONDS (600), then figures.

Client threads, each on its own keep-alive session, send for the whole run:

* hits: a few cached lists and documents, half of them with ``If-None-Match`` (200 or 304);
* misses: a list filtered on a title nobody has, a new query string per request (200);
* writes as the seeded editor: create-and-publish with an Idempotency-Key (201), one in three sent
  again with the same key (201, ``Idempotent-Replayed``), one in four deleted again (204); a keyed
  write refused at once (503) or with an unknown outcome is retried with its key until it lands;
* logins through bffproxy (``/api/auth/local``), then ``/api/me`` and a signed-in read with the
  token; and the webhooks Strapi itself sends for every write (bffproxy is its webhook target).

Afterwards: requests by kind and status, unexpected answers (5xx other than the documented
``503 upstream_busy`` load shedding; any other status a kind should not get; connection errors),
RSS and open file descriptors per gunicorn worker after the warm-up and at the end, and the
documents Strapi holds against the writes answered 201 (nothing lost, nothing doubled). Whatever
the soak created is deleted at the end. ``run_soak`` is what the suite's 45-second version calls.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import re
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `python bench/soak.py` puts bench/, not the project, on sys.path
    sys.path.insert(0, str(ROOT))

from bench.stack import rss_mib, worker_pids  # noqa: E402
from tests.e2e.services import Gunicorn, Strapi, bff_env, free_port  # noqa: E402

# bffproxy's settings for the soak: the editor may write; logins are counted, never refused. The
# per-worker memory tier is bounded (CACHE_MEMORY_MB, 32 by default) and keeps entries of superseded
# generations until it is full, so at its default it grows RSS by up to 32 MiB by design; at 2 MiB it
# is full within the warm-up, and any growth after that is something else holding on.
SOAK_SETTINGS = {
    "CACHE_MEMORY_MB": "2",
    "POLICIES__articles": "read=public,write=editor",
    "POLICIES__categories": "read=public",
    "LOGIN_RATE_LIMIT": "100000/60",
}
USERS = (("editor", "Editor-Passw0rd!"), ("reader", "Reader-Passw0rd!"))
EXPECTED = {  # what each kind of request may answer while Strapi is healthy
    "hit": {200, 304},
    "miss": {200},
    "write": {201},
    "replay": {201},
    "delete": {204},
    "login": {200},
    "me": {200},
    "private": {200},
}
# Load shedding the README documents: the bulkhead's 503 (writes are retried with their key).
SHED = {(503, "upstream_busy")}
RSS_GROWTH = 0.10  # at most +10% per worker between the end of the warm-up and the end
FD_SLACK = 16  # open descriptors a worker may hold beyond its warm-up count (client sockets come and go)
# gunicorn's access line for each webhook Strapi posted, in either format (BFFPROXY_ACCESS_LOG_FORMAT).
WEBHOOK_LINE = re.compile(
    r'"POST /webhooks/strapi HTTP/1\.1" (\d{3}) '
    r'|"method":"POST","path":"/webhooks/strapi",[^\n]*?"status":(\d{3})'
)


def webhook_statuses(log: str) -> list[int]:
    """The status of each webhook in gunicorn's log, oldest first."""
    return [int(text or json_) for text, json_ in WEBHOOK_LINE.findall(log)]


@dataclass
class Worker:
    """One gunicorn worker's figures."""

    pid: int
    rss_warm: float = 0.0
    rss_end: float = 0.0
    fds_warm: int = 0
    fds_end: int = 0
    fds_max: int = 0
    rss_path: list[float] = field(default_factory=list)  # every sample after the warm-up, in MiB


@dataclass
class SoakReport:
    """What one soak saw; ``verdicts`` are its pass/fail lines."""

    seconds: float
    warmup: float
    counts: Counter[tuple[str, int]] = field(default_factory=Counter)
    shed: Counter[tuple[str, str]] = field(default_factory=Counter)
    unexpected: list[str] = field(default_factory=list)
    workers: list[Worker] = field(default_factory=list)
    workers_replaced: bool = False
    webhooks: Counter[int] = field(default_factory=Counter)
    accepted: int = 0  # writes answered 201 for the first time (replays not counted)
    deleted: int = 0
    lost: list[str] = field(default_factory=list)
    doubled: list[str] = field(default_factory=list)

    @property
    def unexpected_5xx(self) -> int:
        return sum(1 for line in self.unexpected if line.startswith("5"))

    def verdicts(self) -> dict[str, bool]:
        """Each target and whether it was met."""
        return {
            "0 unexpected answers (5xx, statuses, resets)": not self.unexpected,
            "every webhook acknowledged (2xx)": all(200 <= s < 300 for s in self.webhooks),
            f"RSS per worker <= +{RSS_GROWTH:.0%} after warm-up": all(
                w.rss_end <= w.rss_warm * (1 + RSS_GROWTH) for w in self.workers
            ),
            f"open fds per worker <= warm-up + {FD_SLACK}": all(
                w.fds_end <= w.fds_warm + FD_SLACK for w in self.workers
            ),
            "same workers throughout": not self.workers_replaced and bool(self.workers),
            "nothing lost or doubled in Strapi": not self.lost and not self.doubled and self.accepted > 0,
        }

    def text(self) -> str:
        """The figures, as printed by `make soak` and the suite's soak test."""
        rate = sum(self.counts.values()) / self.seconds
        lines = [f"soak: {self.seconds:.0f} s ({self.warmup:.0f} s warm-up), {rate:.0f} requests/s"]
        for kind in EXPECTED:
            statuses = {s: n for (k, s), n in sorted(self.counts.items()) if k == kind}
            lines.append(f"  {kind:8} {sum(statuses.values()):6}  {statuses}")
        lines.append(f"  webhooks from Strapi: {dict(sorted(self.webhooks.items()))}")
        lines.append(f"  shed (documented 503, retried): {dict(self.shed) or 0}")
        lines.append(
            f"  unexpected: {len(self.unexpected)} (5xx: {self.unexpected_5xx}) {self.unexpected[:5]}"
        )
        for w in self.workers:
            growth = (w.rss_end / w.rss_warm - 1) * 100 if w.rss_warm else float("nan")
            lines.append(
                f"  worker {w.pid}: RSS {w.rss_warm:.1f} -> {w.rss_end:.1f} MiB ({growth:+.1f}%), "
                f"fds {w.fds_warm} -> {w.fds_end} (max {w.fds_max})"
            )
            quarters = [w.rss_path[len(w.rss_path) * q // 4 - 1] for q in (1, 2, 3, 4) if w.rss_path]
            lines.append(f"    RSS at each quarter after the warm-up: {[round(r, 1) for r in quarters]} MiB")
        lines.append(
            f"  documents: {self.accepted} accepted (201), {self.deleted} deleted, "
            f"{len(self.lost)} lost, {len(self.doubled)} doubled or unexpected in Strapi"
        )
        lines += [f"  [{'met' if ok else 'MISSED'}] {name}" for name, ok in self.verdicts().items()]
        return "\n".join(lines)


class Traffic:
    """The client threads of one soak and what they saw."""

    def __init__(self, bff: Gunicorn, strapi: Strapi, prefix: str) -> None:
        self.bff, self.strapi, self.prefix = bff, strapi, prefix
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.counts: Counter[tuple[str, int]] = Counter()
        self.shed: Counter[tuple[str, str]] = Counter()
        self.unexpected: list[str] = []
        self.created: dict[str, str] = {}  # documentId -> title, from first 201s
        self.deleted: set[str] = set()
        self.serial = itertools.count()

    def send(
        self, session: requests.Session, kind: str, method: str, path: str, **kw: Any
    ) -> requests.Response | None:
        """One request; its status counted, anything unexpected noted."""
        try:
            answer = session.request(method, f"{self.bff.url}{path}", timeout=30, **kw)
        except requests.RequestException as exc:
            self.note_unexpected(f"reset {kind} {method} {path}: {exc.__class__.__name__}")
            return None
        code = error_code(answer)
        with self.lock:
            self.counts[(kind, answer.status_code)] += 1
            if (answer.status_code, code) in SHED:
                self.shed[(kind, code or "")] += 1
                return answer
        if answer.status_code not in EXPECTED[kind]:
            self.note_unexpected(f"{answer.status_code} {kind} {method} {path} {code}")
        return answer

    def note_unexpected(self, line: str) -> None:
        with self.lock:
            self.unexpected.append(line)

    def loop(self, step: Callable[[requests.Session], None], pause: float) -> Callable[[], None]:
        """A thread body: ``step`` then ``pause`` seconds, until stopped."""

        def run() -> None:
            with requests.Session() as session:
                while not self.stop.is_set():
                    step(session)
                    self.stop.wait(pause)

        return run

    # -- the kinds of traffic ------------------------------------------------------------------

    def hits(self, paths: list[str], etags: dict[str, str]) -> Callable[[requests.Session], None]:
        def step(session: requests.Session) -> None:
            path = random.choice(paths)
            conditional = random.random() < 0.5 and path in etags
            headers = {"If-None-Match": etags[path]} if conditional else {}
            answer = self.send(session, "hit", "GET", path, headers=headers)
            if answer is not None and answer.status_code == 200 and "ETag" in answer.headers:
                etags[path] = answer.headers["ETag"]

        return step

    def miss(self, session: requests.Session) -> None:
        self.send(session, "miss", "GET", f"/api/articles?filters[title][$eq]=soak-miss-{uuid.uuid4().hex}")

    def write(self, editor: dict[str, str]) -> Callable[[requests.Session], None]:
        def step(session: requests.Session) -> None:
            n = next(self.serial)
            title = f"{self.prefix} {n}"
            headers = {**editor, "Idempotency-Key": f"soak-{uuid.uuid4()}"}
            body = {"title": title, "content": f"soak write {n}"}
            answer = self.keyed(session, "write", headers, body)
            if answer is None:
                return
            document_id = answer.json()["data"]["documentId"]
            with self.lock:
                self.created[document_id] = title
            if n % 3 == 0:
                again = self.keyed(session, "replay", headers, body)
                if again is not None and (
                    again.headers.get("Idempotent-Replayed") != "true"
                    or again.json()["data"]["documentId"] != document_id
                ):
                    self.note_unexpected(f"replay of {title} was not the first answer")
            if n % 4 == 0:
                gone = self.send(session, "delete", "DELETE", f"/api/articles/{document_id}", headers=editor)
                if gone is not None and gone.status_code == 204:
                    with self.lock:
                        self.deleted.add(document_id)

        return step

    def keyed(
        self, session: requests.Session, kind: str, headers: dict[str, str], body: dict[str, Any]
    ) -> requests.Response | None:
        """POST a keyed create until it is answered 201; retries keep the key (that is the point)."""
        for _ in range(20):
            answer = self.send(session, kind, "POST", "/api/articles/publish", json=body, headers=headers)
            if answer is None or answer.status_code == 201:
                return answer
            if answer.status_code not in (409, 502, 503, 504):
                return None  # counted as unexpected (or a 4xx bug): nothing to retry
            time.sleep(float(answer.headers.get("Retry-After", "0.5")))
        self.note_unexpected(f"write {body['title']} never settled")
        return None

    def login(self, session: requests.Session) -> None:
        username, password = random.choice(USERS)
        answer = self.send(
            session, "login", "POST", "/api/auth/local", json={"identifier": username, "password": password}
        )
        if answer is None or answer.status_code != 200:
            return
        token = {"Authorization": f"Bearer {answer.json()['jwt']}"}
        self.send(session, "me", "GET", "/api/me", headers=token)
        self.send(session, "private", "GET", "/api/articles?pagination[pageSize]=5", headers=token)


def error_code(answer: requests.Response) -> str | None:
    """The envelope's error code of a 4xx/5xx, or None."""
    if answer.status_code < 400:
        return None
    try:
        return str(answer.json()["error"]["code"])
    except (ValueError, KeyError, TypeError):
        return "not-json"


def login_header(strapi: Strapi, username: str, password: str) -> dict[str, str]:
    """A user's Authorization header, asked of Strapi directly."""
    answer = requests.post(
        f"{strapi.url}/api/auth/local", json={"identifier": username, "password": password}, timeout=30
    )
    answer.raise_for_status()
    return {"Authorization": f"Bearer {answer.json()['jwt']}"}


def hit_paths(strapi: Strapi) -> list[str]:
    """Cached lists and documents for the hit readers."""
    first = strapi.get("api/articles", **{"pagination[pageSize]": "3"}).json()["data"]
    return [
        "/api/articles",
        "/api/articles?pagination[pageSize]=5&fields[0]=title",
        "/api/categories",
        *(f"/api/articles/{item['documentId']}" for item in first),
    ]


def open_fds(pid: int) -> int:
    """How many file descriptors a process holds open."""
    return len(os.listdir(f"/proc/{pid}/fd"))


def in_strapi(strapi: Strapi, prefix: str) -> list[dict[str, Any]]:
    """Every document whose title starts with ``prefix`` (drafts included), asked of Strapi."""
    found: list[dict[str, Any]] = []
    for page in itertools.count(1):
        answer = strapi.get(
            "api/articles",
            token=strapi.api_token,
            status="draft",
            **{"filters[title][$startsWith]": prefix, "pagination[page]": page, "pagination[pageSize]": 100},
        )
        answer.raise_for_status()
        payload = answer.json()
        found += payload["data"]
        if page >= payload["meta"]["pagination"]["pageCount"]:
            return found
    raise AssertionError("unreachable")


def delete_in_strapi(strapi: Strapi, documents: list[dict[str, Any]]) -> None:
    """Delete documents directly with the API token (the soak's clean-up)."""
    for item in documents:
        requests.delete(
            f"{strapi.url}/api/articles/{item['documentId']}",
            headers={"Authorization": f"Bearer {strapi.api_token}"},
            timeout=30,
        )


def sample(report: SoakReport, pids: list[int], *, warm: bool) -> None:
    """Read RSS and open fds of every worker into the report."""
    for worker, pid in zip(report.workers, pids, strict=True):
        fds = open_fds(pid)
        worker.fds_max = max(worker.fds_max, fds)
        if warm:
            worker.rss_warm, worker.fds_warm = rss_mib(pid), fds
        else:
            worker.rss_end, worker.fds_end = rss_mib(pid), fds
            worker.rss_path.append(worker.rss_end)


def run_soak(
    bff: Gunicorn, strapi: Strapi, seconds: float, progress: Callable[[str], None] = lambda _: None
) -> SoakReport:
    """Send mixed traffic for ``seconds``, measure, check Strapi's documents, clean up."""
    warmup = min(60.0, max(10.0, seconds / 6))
    report = SoakReport(seconds=seconds, warmup=warmup)
    prefix = f"Soak {uuid.uuid4().hex[:10]}"
    traffic = Traffic(bff, strapi, prefix)
    editor = login_header(strapi, *USERS[0])
    pids = worker_pids(bff)
    report.workers = [Worker(pid) for pid in pids]
    webhooks_before = len(webhook_statuses(bff.log()))
    bodies = [
        (traffic.hits(hit_paths(strapi), {}), 0.005),
        (traffic.hits(hit_paths(strapi), {}), 0.005),
        (traffic.miss, 0.05),
        (traffic.write(editor), 0.2),
        (traffic.login, 0.5),
    ]
    threads = [threading.Thread(target=traffic.loop(step, pause), daemon=True) for step, pause in bodies]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    try:
        time.sleep(warmup)
        sample(report, pids, warm=True)
        progress(f"warm-up done: {[(w.pid, round(w.rss_warm, 1), w.fds_warm) for w in report.workers]}")
        while (left := started + seconds - time.monotonic()) > 0:
            time.sleep(min(5.0, left))
            sample(report, pids, warm=False)
            rss = [round(w.rss_end, 1) for w in report.workers]
            progress(
                f"{time.monotonic() - started:.0f} s: {sum(traffic.counts.values())} requests, RSS {rss}"
            )
    finally:
        traffic.stop.set()
        for thread in threads:
            thread.join(60)
    report.workers_replaced = worker_pids(bff) != pids
    report.counts, report.shed, report.unexpected = traffic.counts, traffic.shed, traffic.unexpected
    report.webhooks = Counter(webhook_statuses(bff.log())[webhooks_before:])
    check_documents(report, traffic, strapi)
    return report


def check_documents(report: SoakReport, traffic: Traffic, strapi: Strapi) -> None:
    """Strapi's documents against the writes answered 201 and deleted 204; then delete them all."""
    found = in_strapi(strapi, traffic.prefix)
    expected = set(traffic.created) - traffic.deleted
    ids = Counter(item["documentId"] for item in found)
    titles = Counter(item["title"] for item in found)
    report.accepted, report.deleted = len(traffic.created), len(traffic.deleted)
    report.lost = sorted(expected - set(ids))
    report.doubled = sorted(
        {i for i in ids if i not in expected} | {f"title {t}" for t, n in titles.items() if n > 1}
    )
    delete_in_strapi(strapi, found)


def main() -> int:
    """Start a fresh Strapi and bffproxy (its webhook target), soak, print the figures."""
    seconds = float(os.environ.get("SOAK_SECONDS", "600"))
    work_dir = ROOT / "bench" / "results" / "soak"
    work_dir.mkdir(parents=True, exist_ok=True)
    bff_port = free_port()
    strapi = Strapi(port=free_port(), webhook_port=bff_port)
    bff: Gunicorn | None = None

    def progress(message: str) -> None:
        print(f"[soak {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)

    try:
        progress("starting Strapi (fresh seed) and bffproxy")
        strapi.reset()
        strapi.start()
        (work_dir / "bffproxy.log").unlink(missing_ok=True)
        env = bff_env(strapi, work_dir / "cache", **SOAK_SETTINGS)
        (work_dir / "cache").mkdir(exist_ok=True)
        bff = Gunicorn(bff_port, env, 2, log_path=work_dir / "bffproxy.log").start()
        progress(f"soaking for {seconds:.0f} s; logs in {work_dir}")
        report = run_soak(bff, strapi, seconds, progress)
    except KeyboardInterrupt:
        progress("interrupted")
        return 130
    finally:
        if bff is not None:
            bff.stop()
        strapi.reset()
    print(report.text())
    (work_dir / "latest.json").write_text(json.dumps(report.verdicts(), indent=2), encoding="utf-8")
    return 0 if all(report.verdicts().values()) else 1


if __name__ == "__main__":
    sys.exit(main())
