"""The reconciler end to end: a real Strapi whose webhook reaches no bffproxy (it points at a port
nobody serves here), real gunicorn with 2 workers. Changes made directly in Strapi are served fresh
by every worker and announced once each (``source: "reconcile"``) within interval + 2 s; with the
webhook working, the reconciler adds no event; changes made while bffproxy was stopped are found
by its first pass."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests

from .services import Gunicorn, Strapi, StrapiEditor, bff_env, login, wait_until
from .subscribers import SseClient
from .test_events_e2e import POLICY

INTERVAL = 1  # seconds between passes in these tests
DEADLINE = INTERVAL + 2.0  # the bound: from a change in Strapi to fresh content and its event
OVERLAP = 2  # seconds a new watermark's window is read again
SETTINGS = {
    "RECONCILE_INTERVAL": str(INTERVAL),
    "RECONCILE_OVERLAP": str(OVERLAP),
    "EVENTS_HEARTBEAT": "1",
    **POLICY,
}


def title() -> str:
    return f"E2E reconcile {uuid.uuid4().hex[:12]}"


def reconciled(bff: Gunicorn) -> bool:
    """True once a pass has succeeded (``/readyz`` says when)."""
    try:
        answer = requests.get(f"{bff.url}/readyz", timeout=5)
    except requests.RequestException:
        return False
    return answer.status_code == 200 and answer.json()["reconciled"]["default"] is not None


@pytest.fixture
def deaf_bff(start_bff: Callable[..., Gunicorn]) -> Gunicorn:
    """bffproxy on a port Strapi's webhook does not target: it hears of changes only by reconciling."""
    bff = start_bff(**SETTINGS)
    wait_until(lambda: reconciled(bff), 15, "the first reconcile pass")
    return bff


def served_by_every_worker(bff: Gunicorn, doc: str, check: Callable[[requests.Response], bool]) -> None:
    """Both workers answer ``check``-passing content for ``doc`` (each seen at least once)."""
    fresh: set[str] = set()

    def both() -> bool:
        answer = requests.get(f"{bff.url}/api/articles/{doc}", timeout=5)
        if check(answer):
            fresh.add(answer.headers["X-BFF-Worker"])
        return len(fresh) == 2

    wait_until(both, DEADLINE, f"fresh {doc} from both workers")


def warm(bff: Gunicorn, doc: str) -> None:
    """Cache ``doc`` on both workers (the shared store and each one's memory tier)."""
    served_by_every_worker(bff, doc, lambda answer: answer.status_code == 200)


def one_event(stream: SseClient, kind: str, doc: str) -> None:
    (event,) = stream.take(1, within=DEADLINE)
    assert (event["event"], event["data"]["documentId"], event["data"]["source"]) == (kind, doc, "reconcile")


def test_changes_made_in_strapi_without_a_webhook_are_served_and_announced_once(
    deaf_bff: Gunicorn, strapi_editor: StrapiEditor, subscribers: list[SseClient]
) -> None:
    public = SseClient(f"{deaf_bff.url}/api/events?collections=articles")
    subscribers.append(public)
    doc = strapi_editor.create(title())
    one_event(public, "published", doc)
    warm(deaf_bff, doc)

    new_title = title()
    strapi_editor.edit(doc, title=new_title)  # REST PUT: saves the draft and publishes it
    one_event(public, "published", doc)
    served_by_every_worker(
        deaf_bff, doc, lambda a: a.status_code == 200 and a.json()["data"]["title"] == new_title
    )

    strapi_editor.unpublish(doc)  # the admin API: touches no draft row
    one_event(public, "unpublished", doc)
    served_by_every_worker(deaf_bff, doc, lambda a: a.status_code == 404)

    strapi_editor.publish(doc)
    one_event(public, "published", doc)
    served_by_every_worker(deaf_bff, doc, lambda a: a.status_code == 200)

    strapi_editor.delete(doc)
    one_event(public, "deleted", doc)
    served_by_every_worker(deaf_bff, doc, lambda a: a.status_code == 404)
    public.nothing_more()


def test_draft_saves_reach_only_drafts_subscribers(
    deaf_bff: Gunicorn, strapi_live: Strapi, strapi_editor: StrapiEditor, subscribers: list[SseClient]
) -> None:
    editor = login(strapi_live, "editor", "Editor-Passw0rd!")
    public = SseClient(f"{deaf_bff.url}/api/events?collections=articles")
    drafts = SseClient(f"{deaf_bff.url}/api/events?collections=articles&drafts=true", editor)
    subscribers += [public, drafts]
    doc = strapi_editor.create(title(), draft=True)
    one_event(drafts, "created", doc)
    strapi_editor.edit(doc, draft=True, excerpt="still a draft")
    one_event(drafts, "updated", doc)
    strapi_editor.delete(doc)
    one_event(drafts, "deleted", doc)
    public.nothing_more()
    drafts.nothing_more()


def test_with_the_webhook_working_the_reconciler_adds_no_event(
    start_bff: Callable[..., Gunicorn],
    webhook_port: int,
    strapi_live: Strapi,
    strapi_editor: StrapiEditor,
    subscribers: list[SseClient],
) -> None:
    bff = start_bff(port=webhook_port, **SETTINGS)
    wait_until(lambda: reconciled(bff), 15, "the first reconcile pass")
    editor = login(strapi_live, "editor", "Editor-Passw0rd!")
    drafts = SseClient(f"{bff.url}/api/events?collections=articles&drafts=true", editor)
    subscribers.append(drafts)
    doc = strapi_editor.create(title())  # webhooks: entry.create, entry.publish
    first = drafts.take(2, within=DEADLINE)
    strapi_editor.edit(doc, excerpt="edited")  # entry.update, entry.publish
    second = drafts.take(2, within=DEADLINE)
    strapi_editor.edit(doc, draft=True, excerpt="draft only")  # entry.update
    third = drafts.take(1, within=DEADLINE)
    strapi_editor.delete(doc)  # two entry.delete: one event
    fourth = drafts.take(1, within=DEADLINE)
    time.sleep(2 * INTERVAL)  # several passes see every one of these changes
    drafts.nothing_more()
    seen = [(e["event"], e["data"]["documentId"]) for e in first + second + third + fourth]
    assert sorted(seen[:2]) == [("created", doc), ("published", doc)]
    assert sorted(seen[2:4]) == [("published", doc), ("updated", doc)]
    assert seen[4:] == [("updated", doc), ("deleted", doc)]
    assert len({e["id"] for e in first + second + third + fourth}) == 6  # 6 changes, 6 events


def test_changes_made_while_bffproxy_was_stopped_are_found_by_its_first_pass(
    start_bff: Callable[..., Gunicorn], strapi_editor: StrapiEditor, tmp_path: Path
) -> None:
    docs = [strapi_editor.create(title()) for _ in range(3)]
    cache = tmp_path / "kept"
    bff = start_bff(cache_dir=cache, **SETTINGS)
    wait_until(lambda: reconciled(bff), 15, "the first reconcile pass")
    for doc in docs:
        warm(bff, doc)
    bff.stop()
    new_titles = {doc: title() for doc in docs}
    for doc, new_title in new_titles.items():
        strapi_editor.edit(doc, draft=True, excerpt=new_title)  # draft saves: no webhook would matter
    again = start_bff(cache_dir=cache, **SETTINGS)
    first_line: list[str] = []

    def found() -> bool:
        lines = [line for line in again.log().splitlines() if "reconcile: articles:" in line]
        first_line[:] = lines[:1]
        return bool(lines)

    wait_until(found, 15, "the first pass after the restart")
    assert "articles: 3 found, 3 missed by webhooks" in first_line[0]
    assert all(doc in first_line[0] for doc in docs)


def test_readyz_reports_the_last_reconcile(deaf_bff: Gunicorn) -> None:
    stamps = set()
    for _ in range(3):
        stamps.add(requests.get(f"{deaf_bff.url}/readyz", timeout=5).json()["reconciled"]["default"])
        time.sleep(INTERVAL + 0.5)
    assert len(stamps) >= 2  # it moves on, once per interval


def test_strapi_requests_when_nothing_changes(deaf_bff: Gunicorn, strapi_live: Strapi) -> None:
    """The README's figure: per interval, 2 requests for articles (drafts) and 1 for categories."""
    marker = "fields%5B0%5D=documentId"  # the reconciler's reads, as Strapi logs them
    time.sleep(OVERLAP + INTERVAL)  # the watermark settles: no window is read again
    before = strapi_live.count_requests(marker)
    time.sleep(5 * INTERVAL)
    after = strapi_live.count_requests(marker)
    assert 3 * 4 <= after - before <= 3 * 6  # 3 a pass, one pass an interval (not one per worker)


def test_two_instances_on_one_redis_make_one_pass_an_interval_and_one_event_a_change(
    start_bff: Callable[..., Gunicorn],
    redis_server: Any,
    strapi_live: Strapi,
    strapi_editor: StrapiEditor,
    subscribers: list[SseClient],
) -> None:
    settings = {**SETTINGS, "REDIS_URL": redis_server.url}
    instances = [start_bff(**settings), start_bff(**settings)]  # own cache dirs, one Redis
    for bff in instances:
        wait_until(lambda bff=bff: reconciled(bff), 15, "the first reconcile pass")
    time.sleep(OVERLAP + INTERVAL)  # the watermarks settle
    marker = "fields%5B0%5D=documentId"
    before = strapi_live.count_requests(marker)
    time.sleep(4 * INTERVAL)
    assert 3 * 3 <= strapi_live.count_requests(marker) - before <= 3 * 5  # 4 workers, one pass

    watchers = [SseClient(f"{bff.url}/api/events?collections=articles") for bff in instances]
    subscribers += watchers
    doc = strapi_editor.create(title())
    for watcher in watchers:
        one_event(watcher, "published", doc)
    strapi_editor.delete(doc)
    for watcher in watchers:
        one_event(watcher, "deleted", doc)
        watcher.nothing_more()


def test_counting_by_documentid_prefix_finds_a_deletion_on_the_real_strapi(
    strapi_live: Strapi, strapi_editor: StrapiEditor, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The large-collection path (over 5,000 documents), run small: Strapi's $startsWith counts."""
    from bffproxy import reconciler
    from bffproxy.strapi import StrapiClient

    monkeypatch.setattr(reconciler, "BUCKET", 2)  # split down to buckets of 2 rows
    views = reconciler.StrapiViews(StrapiClient(strapi_live.url, api_token=strapi_live.api_token))
    view = reconciler.View("articles", reconciler.DRAFT)
    doc = strapi_editor.create(title(), draft=True)
    before, _ = views.listing(view)
    strapi_editor.delete(doc)
    total = views.count(view, "")
    assert total == len(before) - 1
    buckets = list(reconciler.disagreeing(views, view, before, "", total))
    assert all(doc.startswith(b) for b in buckets) and buckets
    listed = {d for b in buckets for d in views.listing(view, b)[0]}
    assert doc not in listed and {d for d in before if d.startswith(buckets[0])} - listed == {doc}


def test_the_command_finds_what_changed_since_the_last_pass_and_since_a_time(
    strapi_live: Strapi, strapi_editor: StrapiEditor, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BFFPROXY_")}
    env |= bff_env(strapi_live, tmp_path, RECONCILE_INTERVAL="0")  # the command alone, as under cron

    def reconcile(*args: str) -> subprocess.CompletedProcess[str]:
        command = [str(Path(sys.executable).parent / "bffproxy"), "reconcile", *args]
        return subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)

    first = reconcile()
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == "[default] nothing changed; 3 Strapi requests"  # first sight: listings
    doc = strapi_editor.create(title(), draft=True)
    second = reconcile("--tenant", "default")
    assert f"articles: 1 found, 1 missed by webhooks (created {doc})" in second.stdout
    fresh = tmp_path / "fresh"  # a new store: --since announces what changed after that time
    fresh.mkdir()
    env["BFFPROXY_CACHE_DIR"] = str(fresh)
    third = reconcile("--since", "2000-01-01T00:00:00Z")
    assert "articles: " in third.stdout and doc in third.stdout
    assert reconcile("--since", "soon").returncode == 2
