"""The reconciler: changes no webhook reported are found, invalidated and announced once; idle passes
cost a fixed number of small requests; one worker per interval; Strapi failures back off."""

from __future__ import annotations

import datetime as dt
import json
import random
import re
import threading
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
import responses
from click.testing import CliRunner
from flask import Flask

from bffproxy import create_app, events, reconciler
from bffproxy.caching import content_cache
from bffproxy.errors import ApiError
from bffproxy.event_log import event_log
from bffproxy.settings import ConfigError

from .conftest import STRAPI, FakeClock

WEBHOOK_SECRET = "unit-webhook-secret"
BASE = dt.datetime(2026, 12, 6, 6, 0, tzinfo=dt.UTC)


def at(seconds: float) -> str:
    """A Strapi time ``seconds`` after BASE."""
    return reconciler.strapi_time(BASE + dt.timedelta(seconds=seconds))


def doc_id(n: int) -> str:
    return f"doc{n:021d}"


class FakeStrapi:
    """Strapi 5's REST views as the reconciler reads them (shapes checked on the real Strapi 5.54)."""

    DRAFTS = {"articles": True, "categories": False, "homepage": True}

    def __init__(self, mock: responses.RequestsMock) -> None:
        self.docs: dict[str, dict[str, dict[str, Any]]] = {name: {} for name in self.DRAFTS}
        self.calls: list[tuple[str, dict[str, str]]] = []
        self.down = False
        self.strange: tuple[int, str] | None = None  # this answer for articles, whatever was asked
        self.max_limit = 100  # Strapi's api.rest.maxLimit: larger pages are silently clamped
        mock.add_callback(responses.GET, re.compile(rf"{STRAPI}/api/\w+.*"), callback=self.answer)

    def save(self, collection: str, doc: str, when: float, *, publish: bool = False) -> None:
        """A draft save (a publish also saves the draft row, as Strapi does)."""
        row = self.docs[collection].setdefault(doc, {"published": None})
        row["updated"] = at(when)
        if publish or not self.DRAFTS[collection]:
            row["published"], row["published_updated"] = at(when + 0.003), at(when)

    def unpublish(self, collection: str, doc: str) -> None:
        self.docs[collection][doc]["published"] = None  # the draft row is not touched

    def delete(self, collection: str, doc: str) -> None:
        del self.docs[collection][doc]

    def rows(self, collection: str, status: str) -> list[dict[str, Any]]:
        drafts = self.DRAFTS[collection]
        out = []
        for doc, row in self.docs[collection].items():
            if status == "draft":
                published = None if drafts else row["published"]
                out.append({"documentId": doc, "updatedAt": row["updated"], "publishedAt": published})
            elif row["published"]:
                updated = row["published_updated"]
                out.append({"documentId": doc, "updatedAt": updated, "publishedAt": row["published"]})
        return out

    def answer(self, request: Any) -> tuple[int, dict[str, str], str]:
        url = urlsplit(request.url)
        params = dict(parse_qsl(url.query))
        collection = url.path.split("/")[2]
        self.calls.append((collection, params))
        if self.down:
            return 503, {}, "{}"
        if self.strange is not None and collection == "articles":
            return self.strange[0], {}, self.strange[1]
        if request.headers.get("Authorization") != "Bearer server-api-token":
            return 401, {}, "{}"
        rows = self.rows(collection, params.get("status", "published"))
        prefix = params.get("filters[documentId][$startsWith]", "").lower()  # SQLite: any case
        rows = [r for r in rows if r["documentId"].lower().startswith(prefix)]
        if collection == "homepage":
            return (200, {}, json.dumps({"data": rows[0], "meta": {}})) if rows else (404, {}, "{}")
        field, _, direction = params.get("sort[0]", "documentId:asc").partition(":")
        rows.sort(key=lambda r: r["documentId"])
        rows.sort(key=lambda r: r[field] or "", reverse=direction == "desc")
        if "pagination[start]" in params:  # offset pagination, as the reconciler asks
            start, size = (
                int(params["pagination[start]"]),
                min(int(params["pagination[limit]"]), self.max_limit),
            )
            meta = {"start": start, "limit": size, "total": len(rows)}
        else:
            size = min(int(params.get("pagination[pageSize]", 25)), self.max_limit)
            start = (int(params.get("pagination[page]", 1)) - 1) * size
            meta = {"page": start // size + 1, "pageSize": size, "pageCount": -(-len(rows) // size)}
            meta["total"] = len(rows)
        body = {"data": rows[start : start + size], "meta": {"pagination": meta}}
        return 200, {}, json.dumps(body)

    def count(self) -> int:
        n = len(self.calls)
        self.calls.clear()
        return n


@pytest.fixture
def config(config: dict[str, Any]) -> dict[str, Any]:
    return {
        **config,
        "COLLECTIONS": "articles,categories,homepage",
        "SINGLE_TYPES": "homepage",
        "WEBHOOK_SECRET": WEBHOOK_SECRET,
        "RECONCILE_INTERVAL": 30,
        "RECONCILE_OVERLAP": 10,
    }


@pytest.fixture
def fake(strapi: responses.RequestsMock) -> FakeStrapi:
    fake = FakeStrapi(strapi)
    for n in range(3):
        fake.save("articles", doc_id(n), n, publish=n < 2)
    fake.save("categories", doc_id(10), 0)
    fake.save("homepage", doc_id(20), 0, publish=True)
    return fake


@pytest.fixture
def bff_clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    """bffproxy's own clock (lease slots, the outcome's time): never Strapi's timestamps."""
    clock = FakeClock(BASE.timestamp() + 3600)
    monkeypatch.setattr(reconciler, "clock", clock)
    return clock


def run(app: Flask) -> reconciler.Report:
    with app.app_context():
        return reconciler.reconcile_tenant(app.extensions["bffproxy.tenants"].named("default"))


def announced(app: Flask) -> list[tuple[str, str, str, str]]:
    """(type, documentId, audience, source) of every logged event, in order."""
    with app.app_context():
        found = event_log().read_after("default", "0", 1000)
    f = [e.fields for e in found]
    return [(e["type"], e["documentId"], e["audience"], e["source"]) for e in f]


def generation(app: Flask, collection: str) -> Any:
    with app.app_context():
        return content_cache().generations("default", collection)


def test_the_first_pass_is_a_silent_baseline_and_an_idle_pass_costs_one_request_per_view(
    app: Flask, fake: FakeStrapi
) -> None:
    before = generation(app, "articles")
    run(app)
    assert announced(app) == []
    assert generation(app, "articles") != before  # what was cached may predate the baseline
    fake.count()
    report = run(app)
    # articles: draft + published view; categories (no drafts): one; homepage (drafts): two.
    assert report.requests == fake.count() == 5
    assert report.found == {} and announced(app) == []


def test_an_edit_nobody_reported_is_invalidated_then_announced_once(
    app: Flask, fake: FakeStrapi, monkeypatch: pytest.MonkeyPatch
) -> None:
    run(app)
    order: list[str] = []
    purge = reconciler.purge
    monkeypatch.setattr(reconciler, "purge", lambda *a, **k: order.append("purge") or purge(*a, **k))
    record = events.record
    monkeypatch.setattr(events, "record", lambda *a: order.append("record") or record(*a))
    before = generation(app, "articles")
    fake.save("articles", doc_id(2), 100)  # a draft save
    run(app)
    assert announced(app) == [("updated", doc_id(2), "drafts", "reconcile")]
    assert order == ["purge", "record"]  # the cache is dropped before anyone hears of the change
    assert generation(app, "articles") != before
    run(app)
    assert len(announced(app)) == 1  # the row inside the overlap is not announced again


def test_publish_and_unpublish_are_seen_on_the_published_view(app: Flask, fake: FakeStrapi) -> None:
    run(app)
    fake.save("articles", doc_id(2), 100, publish=True)
    run(app)
    assert announced(app) == [
        ("updated", doc_id(2), "drafts", "reconcile"),  # Strapi's publish saves the draft row too
        ("published", doc_id(2), "everyone", "reconcile"),
    ]
    fake.unpublish("articles", doc_id(0))  # touches no draft row: only the published count shows it
    run(app)
    assert announced(app)[2:] == [("unpublished", doc_id(0), "everyone", "reconcile")]


def test_deletes_are_found_by_the_count_and_named_by_a_listing(app: Flask, fake: FakeStrapi) -> None:
    run(app)
    fake.delete("articles", doc_id(0))  # published: everyone hears, once
    fake.delete("articles", doc_id(2))  # draft only: drafts subscribers only
    fake.delete("categories", doc_id(10))  # no drafts: everyone
    run(app)
    assert sorted(announced(app)) == [
        ("deleted", doc_id(0), "everyone", "reconcile"),
        ("deleted", doc_id(2), "drafts", "reconcile"),
        ("deleted", doc_id(10), "everyone", "reconcile"),
    ]


def test_a_delete_and_a_create_in_one_interval_are_both_found(app: Flask, fake: FakeStrapi) -> None:
    run(app)
    fake.delete("articles", doc_id(1))
    fake.save("articles", doc_id(7), 100)  # the count is unchanged: the known set is what tells
    run(app)
    assert sorted(announced(app)) == [
        ("created", doc_id(7), "drafts", "reconcile"),
        ("deleted", doc_id(1), "everyone", "reconcile"),
    ]


def test_equal_timestamps_and_a_late_commit_inside_the_overlap_are_not_lost(
    app: Flask, fake: FakeStrapi
) -> None:
    run(app)
    fake.save("articles", doc_id(0), 100)
    run(app)
    fake.save("articles", doc_id(1), 100)  # same millisecond, committed after the pass read
    fake.save("articles", doc_id(2), 95)  # stamped before the watermark, committed late
    run(app)
    assert sorted(d for _, d, _, _ in announced(app)) == [doc_id(0), doc_id(1), doc_id(2)]


def test_a_commit_later_than_the_overlap_is_found_only_by_the_count(app: Flask, fake: FakeStrapi) -> None:
    run(app)
    fake.save("articles", doc_id(0), 100)
    run(app)
    fake.save("articles", doc_id(1), 50)  # 50 s before the watermark, past the 10 s overlap
    run(app)
    assert [d for _, d, _, _ in announced(app)] == [doc_id(0)]  # documented limit: widen the overlap


def test_a_change_a_webhook_already_reported_is_neither_invalidated_nor_announced(
    app: Flask, fake: FakeStrapi
) -> None:
    run(app)
    fake.save("articles", doc_id(2), 100)
    body = {
        "event": "entry.update",
        "model": "article",
        "entry": {"documentId": doc_id(2), "updatedAt": at(100), "publishedAt": None},
    }
    answer = app.test_client().post(
        "/webhooks/strapi", json=body, headers={"X-Webhook-Secret": WEBHOOK_SECRET}
    )
    assert answer.status_code == 200
    after_webhook = generation(app, "articles")
    report = run(app)
    assert report.missed == {"articles": []} and len(report.found["articles"]) == 1
    assert generation(app, "articles") == after_webhook  # no second cache drop
    assert announced(app) == [("updated", doc_id(2), "drafts", "webhook")]


def test_a_create_then_edit_between_passes_matches_the_webhooks_of_both(app: Flask, fake: FakeStrapi) -> None:
    """The reconciler sees only the latest save; created and updated share one dedupe key."""
    run(app)
    fake.save("articles", doc_id(5), 100)
    with app.app_context():
        for kind, when in (("created", 99), ("updated", 100)):
            change = events.Change(kind, "articles", doc_id(5), "webhook", "drafts", at(when))
            events.record("default", [change])
    run(app)
    assert [s for *_, s in announced(app)] == ["webhook", "webhook"]


def test_many_changes_are_read_page_by_page(app: Flask, fake: FakeStrapi) -> None:
    run(app)
    for n in range(45):
        fake.save("articles", doc_id(100 + n), 100 + n * 0.001)
    fake.count()
    run(app)
    assert len(announced(app)) == 45
    assert fake.count() == 2 + 1 + 1 + 2  # 20 rows then 100: two scan requests, then the others


def test_an_empty_collection_then_its_first_document(app: Flask, fake: FakeStrapi) -> None:
    fake.docs["articles"].clear()
    run(app)
    fake.save("articles", doc_id(1), 100, publish=True)
    run(app)
    assert sorted(announced(app)) == [
        ("created", doc_id(1), "drafts", "reconcile"),
        ("published", doc_id(1), "everyone", "reconcile"),
    ]


def test_a_single_type_is_one_document(app: Flask, fake: FakeStrapi) -> None:
    run(app)
    fake.save("homepage", doc_id(20), 100, publish=True)
    run(app)
    assert announced(app) == [
        ("updated", doc_id(20), "drafts", "reconcile"),
        ("published", doc_id(20), "everyone", "reconcile"),
    ]
    fake.delete("homepage", doc_id(20))
    run(app)
    assert announced(app)[2:] == [("deleted", doc_id(20), "everyone", "reconcile")]


def test_bffproxys_own_clock_plays_no_part(app: Flask, fake: FakeStrapi, bff_clock: FakeClock) -> None:
    run(app)
    bff_clock.advance(-10 * 365 * 86_400)  # this machine ten years behind Strapi
    fake.save("articles", doc_id(2), 100)
    run(app)
    assert announced(app) == [("updated", doc_id(2), "drafts", "reconcile")]


def test_one_pass_per_interval_across_workers_sharing_the_store(
    config: dict[str, Any], fake: FakeStrapi, bff_clock: FakeClock
) -> None:
    workers = [create_app(config), create_app(config)]  # one CACHE_DIR: one machine's two workers
    slot = int(bff_clock() // 30)
    fake.count()
    ran = []
    for worker in workers:
        with worker.app_context():
            ran.append(len(reconciler.tick(slot)))
    assert ran == [1, 0]
    assert fake.count() == 5  # the one baseline pass: 2 views of articles and homepage, 1 of categories
    with workers[1].app_context():
        assert len(reconciler.tick(slot + 1)) == 1  # the next interval: whoever claims it first


def test_strapi_down_backs_off_logs_once_per_pass_and_catches_up(
    app: Flask, fake: FakeStrapi, bff_clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    slot = int(bff_clock() // 30)
    with app.app_context():
        reconciler.tick(slot)
        fake.down = True
        fake.save("articles", doc_id(2), 100)  # changed while the reconciler cannot see it
        bff_clock.advance(30)
        assert reconciler.tick(slot + 1) == []  # first failure: try again next interval
        fake.count()
        assert reconciler.tick(slot + 2) == [] and fake.count() > 0  # tried, failed again
        assert reconciler.tick(slot + 3) == [] and fake.count() == 0  # backing off: not even tried
        failures = [r for r in caplog.records if r.name == "bffproxy.reconciler"]
        assert len(failures) == 2 and all(r.levelname == "WARNING" for r in failures)
        assert failures[0].tenant == "default"
        fake.down = False
        assert reconciler.tick(slot + 4) != []  # Strapi is back: the pass catches up
    assert announced(app) == [("updated", doc_id(2), "drafts", "reconcile")]
    with app.app_context():
        assert reconciler.last_successes()["default"] is not None


def test_a_pass_that_fails_midway_keeps_its_state_and_finds_the_change_again(
    app: Flask, fake: FakeStrapi, monkeypatch: pytest.MonkeyPatch
) -> None:
    run(app)
    fake.save("articles", doc_id(2), 100)
    monkeypatch.setattr(
        reconciler, "purge", lambda *a, **k: (_ for _ in ()).throw(reconciler.StoreUnavailable())
    )
    with pytest.raises(reconciler.StoreUnavailable):
        run(app)
    monkeypatch.undo()
    run(app)
    assert announced(app) == [("updated", doc_id(2), "drafts", "reconcile")]


def test_readyz_reports_the_last_successful_pass(app: Flask, fake: FakeStrapi, strapi: Any) -> None:
    strapi.get(f"{STRAPI}/_health", status=204)
    run(app)
    reconciler._last_read.clear()
    body = app.test_client().get("/readyz").get_json()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT[\d:.]+Z", body["reconciled"]["default"])


def test_the_command_reports_each_tenant_and_refuses_a_bad_since(app: Flask, fake: FakeStrapi) -> None:
    from bffproxy.cli import reconcile_command

    runner = CliRunner()
    with app.app_context():
        result = runner.invoke(reconcile_command, [])
        assert result.exit_code == 0, result.output
        assert "[default] nothing changed; 5 Strapi requests" in result.output
        fake.save("articles", doc_id(2), 100)
        result = runner.invoke(reconcile_command, ["--tenant", "default"])
        assert "articles: 1 found, 1 missed by webhooks (updated " in result.output
        assert runner.invoke(reconcile_command, ["--since", "yesterday"]).exit_code == 2
        assert runner.invoke(reconcile_command, ["--tenant", "nope"]).exit_code == 2
        fake.down = True
        assert runner.invoke(reconcile_command, []).exit_code == 1


def test_since_announces_what_changed_after_it_on_a_first_pass(app: Flask, fake: FakeStrapi) -> None:
    with app.app_context():
        tenant = app.extensions["bffproxy.tenants"].named("default")
        reconciler.reconcile_tenant(tenant, since=BASE + dt.timedelta(seconds=1.5))
    assert sorted(announced(app)) == [("updated", doc_id(2), "drafts", "reconcile")]


def test_settings_are_checked_and_size_the_dedupe_memory(config: dict[str, Any]) -> None:
    app = create_app({**config, "RECONCILE_INTERVAL": "2", "RECONCILE_OVERLAP": "100"})
    assert app.extensions["bffproxy.dedupe_ttl"] == 5 * 2 + 100  # longest back-off + overlap
    assert create_app(config).extensions["bffproxy.dedupe_ttl"] == 5 * 30 + 10
    with pytest.raises(ConfigError, match="BFFPROXY_RECONCILE_INTERVAL"):
        create_app({**config, "RECONCILE_INTERVAL": "-1"})
    with pytest.raises(ConfigError, match="BFFPROXY_RECONCILE_OVERLAP"):
        create_app({**config, "RECONCILE_OVERLAP": "ten"})


def test_the_thread_starts_in_a_worker_only(config: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    threads = threading.active_count()
    app = create_app(config)
    assert threading.active_count() == threads  # never in create_app (the arbiter builds one)
    other = create_app(config)
    del other.extensions["bffproxy.reconciler"]  # an app that does not reconcile (the events app)
    assert reconciler.start_in_worker(other) is None
    assert reconciler.start_in_worker(create_app({**config, "RECONCILE_INTERVAL": 0})) is None
    started: list[Any] = []
    monkeypatch.setattr(threading.Thread, "start", lambda self: started.append(self))
    runner = reconciler.start_in_worker(app)
    assert runner is not None and started == [runner.thread] and runner.thread.daemon
    assert reconciler.start_in_worker(app) is None  # once per worker


def test_the_runner_survives_a_failing_tick(
    app: Flask, monkeypatch: pytest.MonkeyPatch, bff_clock: FakeClock
) -> None:
    runner = reconciler.Runner(app, sleep=lambda seconds: None)
    slot, wait = runner.next_slot()
    assert slot == int(bff_clock() // 30) + 1 and 0 < wait <= 31
    ticks: list[int] = []

    def tick(slot: int) -> None:
        ticks.append(slot)
        if len(ticks) == 1:
            raise RuntimeError("a bug")
        raise SystemExit  # ends the test's loop

    monkeypatch.setattr(reconciler, "tick", tick)
    with pytest.raises(SystemExit):
        runner.loop()
    assert len(ticks) == 2


def test_once_the_watermark_settles_an_idle_pass_reads_one_page_whatever_came_before(
    app: Flask, fake: FakeStrapi, bff_clock: FakeClock
) -> None:
    run(app)
    for n in range(45):  # a bulk import: 45 rows inside one overlap window
        fake.save("articles", doc_id(100 + n), 100 + n * 0.001)
    run(app)
    fake.count()
    run(app)
    assert fake.count() == 2 + 1 + 1 + 2  # inside the overlap: the window is read again
    bff_clock.advance(11)
    run(app)
    assert fake.count() == 5  # settled: one request per view
    fake.save("articles", doc_id(1), 99.5)  # stamped before the settled watermark: missed (README)
    fake.save("articles", doc_id(0), 200)
    run(app)
    assert [d for _, d, _, _ in announced(app)[45:]] == [doc_id(0)]


@pytest.mark.parametrize(
    "answer",
    [
        (404, "{}"),  # a wrong API id: never "every document was deleted"
        (403, "{}"),  # a token without find permission
        (200, '{"data": []}'),  # no pagination
        (200, '{"data": null, "meta": {"pagination": {"total": 0, "pageCount": 0}}}'),
        (200, '{"data": [], "meta": {"pagination": {"total": "0"}}}'),
        (200, '{"data": [], "meta": []}'),
        (200, "[]"),
        (200, "<html>Down for maintenance</html>"),  # a proxy's page: not JSON (hostile review)
        (200, '{"data": [], "meta": {"pagination": {"total": 0}'),  # cut off
        (
            200,
            '{"data": [{"documentId": "a", "updatedAt": "yesterday"}], "meta": {"pagination": {"total": 1}}}',
        ),
    ],
)
def test_a_strange_answer_fails_the_pass_and_announces_nothing(
    app: Flask, fake: FakeStrapi, answer: tuple[int, str]
) -> None:
    run(app)
    fake.strange = answer
    fake.delete("categories", doc_id(10))
    with pytest.raises(reconciler.UpstreamError):
        run(app)
    assert announced(app) == []
    fake.strange = None
    run(app)  # and the state was kept: the articles are all still known, the category is found gone
    assert announced(app) == [("deleted", doc_id(10), "everyone", "reconcile")]


def test_reads_ask_strapi_for_four_fields_and_nothing_strapi_refuses(app: Flask, fake: FakeStrapi) -> None:
    run(app)
    fake.count()
    run(app)
    for _, params in fake.calls:
        assert {k: v for k, v in params.items() if k.startswith("fields")} == {
            "fields[0]": "documentId",
            "fields[1]": "updatedAt",
            "fields[2]": "publishedAt",
        }  # no fields[3]=locale: Strapi 5.54 answers 400 "Invalid key locale" without i18n
        assert params["status"] in ("draft", "published")


def test_a_mark_written_by_another_version_still_reads(app: Flask, fake: FakeStrapi) -> None:
    run(app)
    view = reconciler.View("articles", reconciler.DRAFT)
    with app.app_context():
        store = reconciler.records()
        raw = store.get(view.key("default", "mark"))
        store.set(view.key("default", "mark"), {**raw, "from_the_future": 1}, 60)
    fake.save("articles", doc_id(2), 100)
    run(app)
    assert announced(app) == [("updated", doc_id(2), "drafts", "reconcile")]


def test_each_pass_is_counted_for_metrics(
    app: Flask, fake: FakeStrapi, monkeypatch: pytest.MonkeyPatch
) -> None:
    passes: list[tuple[str, Any]] = []
    monkeypatch.setattr(
        reconciler.metrics, "reconciled", lambda tenant, missed: passes.append((tenant, missed))
    )
    run(app)
    fake.save("articles", doc_id(2), 100)
    run(app)
    fake.down = True
    with pytest.raises(ApiError):
        run(app)
    assert passes[0] == ("default", {})
    assert [c.type for c in passes[1][1]["articles"]] == ["updated"]
    assert passes[2] == ("default", None)


def test_a_delete_in_a_large_collection_lists_only_the_prefixes_that_disagree(
    app: Flask, fake: FakeStrapi, bff_clock: FakeClock
) -> None:
    rng = random.Random(12)
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"  # Strapi's documentIds (checked on 5.54)
    ids = ["".join(rng.choice(alphabet) for _ in range(24)) for _ in range(6000)]
    for n, document in enumerate(ids):
        fake.save("articles", document, n * 0.001)
    run(app)
    bff_clock.advance(11)  # the bulk import's window has settled
    fake.delete("articles", ids[5])
    fake.delete("articles", ids[4000])
    fake.save("articles", "zzzznew0000000000000000a", 100)  # the count alone would not tell
    fake.count()
    run(app)
    assert sorted(announced(app)) == [
        ("created", "zzzznew0000000000000000a", "drafts", "reconcile"),
        ("deleted", ids[5], "drafts", "reconcile"),
        ("deleted", ids[4000], "drafts", "reconcile"),
    ]
    requests = fake.count()
    assert requests < 50  # 1 scan + 36 counts + 2 buckets + 5 others; a full listing alone is 60
    fake.delete("articles", ids[6])
    run(app)
    assert announced(app)[-1] == ("deleted", ids[6], "drafts", "reconcile")


def test_a_lower_maxlimit_skips_no_row(app: Flask, fake: FakeStrapi) -> None:
    fake.max_limit = 7  # Strapi configured with api.rest.maxLimit = 7
    run(app)
    for n in range(30):
        fake.save("articles", doc_id(100 + n), 100 + n * 0.001)
    fake.delete("articles", doc_id(1))
    run(app)
    assert len(announced(app)) == 31


def test_an_edit_reads_and_writes_one_bucket_of_the_known_map(
    app: Flask, fake: FakeStrapi, monkeypatch: pytest.MonkeyPatch
) -> None:
    for first in "abc":
        fake.save("articles", f"{first}{'0' * 23}", 1)
    run(app)
    with app.app_context():
        store = reconciler.records()
    touched: list[str] = []
    call = store.call

    def spy(method: str, *args: Any, **kwargs: Any) -> Any:
        touched.extend(a for a in args[:1] if ":known:" in str(a))
        return call(method, *args, **kwargs)

    monkeypatch.setattr(store, "call", spy)
    fake.save("articles", f"b{'0' * 23}", 100)
    run(app)
    assert announced(app) == [("updated", f"b{'0' * 23}", "drafts", "reconcile")]
    assert touched == ["reconcile:default:articles:draft:known:b"] * 2  # read once, written once


def test_a_lost_bucket_rebuilds_the_view_instead_of_announcing_its_documents(
    app: Flask, fake: FakeStrapi
) -> None:
    run(app)
    with app.app_context():
        reconciler.records().delete("reconcile:default:articles:draft:known:d")
    fake.delete("articles", doc_id(2))
    run(app)  # cannot name what it never knew: silent, like a first sight
    assert announced(app) == []
    fake.save("articles", doc_id(1), 100)
    run(app)
    assert announced(app) == [("updated", doc_id(1), "drafts", "reconcile")]


def test_a_tick_longer_than_its_interval_skips_no_interval(app: Flask, bff_clock: FakeClock) -> None:
    runner = reconciler.Runner(app)
    start = int(bff_clock() // 30)
    slot, wait = runner.next_slot()
    assert slot == start + 1 and 0 < wait <= 31  # a new worker waits for the next interval
    runner.last = slot
    bff_clock.advance(30 * 1.5 + wait)  # that tick ran one and a half intervals
    slot, wait = runner.next_slot()
    assert slot == start + 2 and wait <= 3  # the interval under way: claimed at once
    runner.last = slot
    bff_clock.advance(60)  # and two more intervals went by: no backlog replayed
    slot, _ = runner.next_slot()
    assert slot == int(bff_clock() // 30)


def test_an_idle_pass_writes_only_its_outcome(
    app: Flask, fake: FakeStrapi, monkeypatch: pytest.MonkeyPatch, bff_clock: FakeClock
) -> None:
    run(app)
    bff_clock.advance(11)
    run(app)  # settles
    with app.app_context():
        store = reconciler.records()
    written: list[str] = []
    call = store.call
    monkeypatch.setattr(
        store, "call", lambda m, *a, **k: (m == "set" and written.append(a[0])) or call(m, *a, **k)
    )
    run(app)
    assert written == ["reconcile:default:status"]  # for /readyz: the last successful pass
