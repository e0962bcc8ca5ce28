"""The reconciler: finds the changes Strapi made that no webhook (and no write through bffproxy) reported.

Not reconciliation.py, which looks up the outcome of ONE write whose answer was lost. This module
watches whole collections, in the background, for changes whose webhook was lost: Strapi posts
each webhook once (10 s timeout, no retry, an in-memory queue lost on restart), so a redeploy or a
network blip would leave the cache stale until its TTL and the event feed silent.

Every ``BFFPROXY_RECONCILE_INTERVAL`` seconds, exactly one worker of all instances sharing the
store (a lease per tenant and interval, claimed with the store's atomic ``add``) asks each exposed
collection of each tenant, with the server's API token, what changed. Two views per collection
with draft and publish, one without (verified on Strapi 5.54):

* the draft view (``status=draft``: every document's draft row; a publish, REST or admin, also
  saves the draft row, so its ``updatedAt`` moves) finds creations, edits and publishes;
* the published view (``status=published``, ordered by ``publishedAt``) finds which version went
  live; an unpublish touches no draft row, so only this view's count shows it.

A view is scanned newest first (``fields`` = documentId, updatedAt, publishedAt; 20 rows a page)
down to its watermark minus ``BFFPROXY_RECONCILE_OVERLAP`` seconds, so equal timestamps, a
transaction that commits late and Strapi nodes whose clocks disagree lose nothing; once the
watermark has not moved for that long (this machine's clock, durations only), down to the
watermark itself. Watermarks are Strapi's own timestamps. The rows already handled inside the
overlap are remembered with the watermark, so an idle view costs one request and one store read.
A deletion leaves no row: each view keeps the map documentId -> version of every document
(``known``), and when Strapi's ``meta.pagination.total`` disagrees with it, the view is listed in
full (100 rows a request) and compared; past 5,000 documents, only the documentId-prefix buckets
whose counts disagree are listed (:func:`disagreeing`). A single type is one GET per view.

A change no webhook reported (``events.reported``: the dedupe claim of its version) drops its
collection and the related ones with :func:`~.invalidation.purge`, the webhook's own function, and
only then is announced with ``events.record`` as ``source: "reconcile"``. State lives in the
records store (never evicted under cache pressure): per view a small mark (watermark, count, recent
rows), the ``known`` map in 37 buckets by first character (an edit reads and writes one), and per
tenant the outcome of the last pass (``/readyz`` shows it). A
view seen for the first time is listed, announces nothing and drops its collection once: what was
cached may predate the baseline.

Known gaps: Strapi's "discard draft" stamps the new draft row with the published row's older
``updatedAt``, so only its webhook or a full listing sees it; a localized collection is watched in
its default locale (Strapi 5 has no all-locales query); a document published and unpublished
between two passes, both webhooks delivered, may be announced unpublished a second time (the
reconciler never saw the publishedAt the webhook's dedupe key carries); a save that commits more
than the overlap after the time it was stamped with is found only if the count moves.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import logging
import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from flask import Flask, current_app

from . import events, metrics
from .errors import ApiError, UpstreamError
from .invalidation import purge
from .schemas import spec_for
from .settings import as_number
from .store import SharedStore, StoreUnavailable, shared_store
from .strapi import StrapiClient
from .tenants import Tenant, registry

log = logging.getLogger(__name__)

DRAFT, PUBLISHED = "draft", "published"
FIELDS = ("documentId", "updatedAt", "publishedAt")
SCAN_PAGE = 20  # rows per page of a scan: an idle view reads one small page
LIST_PAGE = 100  # Strapi's default maxLimit: rows per request of a full listing
BISECT_ABOVE = 50 * LIST_PAGE  # a larger view finds deletions by documentId prefix (~40 requests)
BUCKET = 2 * LIST_PAGE  # a prefix with at most this many rows is listed rather than split again
MAX_BACKOFF = 4  # intervals skipped at most after consecutive failures
STATE_TTL = 365 * 86_400  # state outlives any outage; a view not seen for a year starts again
READY_REUSE = 1.0  # seconds /readyz reuses a worker's last read of the pass outcomes

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)

Rows = dict[str, str]  # documentId -> version (draft view: updatedAt; published view: publishedAt)


def parse_time(text: str) -> dt.datetime:
    """Strapi's ISO 8601 time (``2026-12-06T06:11:48.299Z``) or an operator's, as an aware datetime."""
    value = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def _time_or_epoch(text: str) -> dt.datetime:
    """A version's time; the beginning of time for none (a view never seen non-empty)."""
    return parse_time(text) if text else EPOCH


def strapi_time(value: dt.datetime) -> str:
    """``value`` written the way Strapi writes times, which its filters compare."""
    return value.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclasses.dataclass(frozen=True)
class View:
    """One status of one exposed collection (or single type) as the reconciler reads it."""

    collection: str
    status: str
    single: bool = False

    @property
    def field(self) -> str:
        """The row field whose change is this view's change."""
        return "updatedAt" if self.status == DRAFT else "publishedAt"

    def key(self, tenant: str, part: str) -> str:
        """The store key of this view's ``part`` (mark, known) for ``tenant``."""
        return f"reconcile:{tenant}:{self.collection}:{self.status}:{part}"


@dataclasses.dataclass
class Mark:
    """A view's small state, read every pass: watermark, document count, rows inside the overlap."""

    watermark: str = ""
    count: int = 0
    recent: Rows = dataclasses.field(default_factory=dict)
    moved_at: float = 0.0  # this machine's clock when the watermark last moved (durations only)
    sizes: dict[str, int] = dataclasses.field(default_factory=dict)  # known documents per bucket


@dataclasses.dataclass
class Diff:
    """What one view found: rows that are new or changed, and documents that are gone."""

    new: Rows = dataclasses.field(default_factory=dict)
    changed: Rows = dataclasses.field(default_factory=dict)
    gone: Rows = dataclasses.field(default_factory=dict)  # documentId -> its last known version


@dataclasses.dataclass
class Report:
    """One pass over one tenant: Strapi requests made, changes found, and which were missed."""

    tenant: str
    requests: int = 0
    found: dict[str, list[events.Change]] = dataclasses.field(default_factory=dict)
    missed: dict[str, list[events.Change]] = dataclasses.field(default_factory=dict)

    def summary(self) -> str:
        """One line: per collection, what was found and how much no webhook had reported."""
        parts = []
        for collection, found in self.found.items():
            missed = self.missed.get(collection, [])
            kinds = ", ".join(f"{c.type} {c.document_id}" for c in missed) or "none"
            parts.append(f"{collection}: {len(found)} found, {len(missed)} missed by webhooks ({kinds})")
        return f"{'; '.join(parts) or 'nothing changed'}; {self.requests} Strapi requests"


class StrapiViews:
    """Reads views of one tenant's Strapi with the server's API token, counting its requests."""

    def __init__(self, client: StrapiClient) -> None:
        self.client = client
        self.requests = 0

    def _get(self, path: str, params: list[tuple[str, str]], *, missing_ok: bool = False) -> Any:
        """One GET's JSON object; None for a 404 that means "no document"; else UpstreamError."""
        self.requests += 1
        answer = self.client.request("GET", path, params=params, headers=self.client.service_authorization())
        if answer.status == 404 and missing_ok:
            return None
        if not answer.ok:  # a 404 on a collection is a wrong API id, never "everything was deleted"
            raise UpstreamError(f"Strapi refused the reconciler's read of {path} ({answer.status}).")
        try:
            body = answer.json()
        except ValueError:  # a proxy's HTML page, a body cut off: Strapi did not answer
            raise UpstreamError(f"Strapi's answer to {path} is not JSON.") from None
        if not isinstance(body, Mapping):
            raise UpstreamError(f"Strapi's answer to {path} is not a JSON object.")
        return body

    def _params(self, view: View) -> list[tuple[str, str]]:
        return [("status", view.status), *((f"fields[{n}]", f) for n, f in enumerate(FIELDS))]

    def _page(self, view: View, extra: list[tuple[str, str]]) -> tuple[Rows, bool, int, int]:
        """One page of a list: its rows, live flag, the view's total and how many items it held.

        An answer without a ``data`` list or an integer total is an UpstreamError: read as an
        empty collection, it would announce every document deleted.
        """
        body = self._get(f"/api/{view.collection}", [*self._params(view), *extra])
        meta = body.get("meta")
        items, pagination = body.get("data"), meta.get("pagination") if isinstance(meta, Mapping) else None
        total = pagination.get("total") if isinstance(pagination, Mapping) else None
        if not isinstance(items, list) or not isinstance(total, int):
            raise UpstreamError(f"Strapi's list of {view.collection} has no data or no total.")
        rows, live = rows_of(items, view)
        return rows, live, total, len(items)

    def single(self, view: View) -> tuple[Rows, bool]:
        """A single type's one row (none when it has no document) and whether it is live as saved."""
        body = self._get(f"/api/{view.collection}", self._params(view), missing_ok=True)
        data = body.get("data") if body else None
        return rows_of([data] if isinstance(data, Mapping) else [], view)

    def scan(self, view: View, since: dt.datetime) -> tuple[Rows, int, bool]:
        """Rows newer than ``since``, newest first; the view's total (-1 if it moved); live as saved.

        The first page is small (an idle pass reads only it); a burst is read 100 rows a request.
        Offsets advance by the rows Strapi returned, so a lower ``maxLimit`` skips nothing.
        """
        rows: Rows = {}
        totals, live, start, limit = set(), False, 0, SCAN_PAGE
        sort = [("sort[0]", f"{view.field}:desc"), ("sort[1]", "documentId:asc")]
        while True:
            window = [("pagination[start]", str(start)), ("pagination[limit]", str(limit))]
            found, page_live, total, held = self._page(view, [*sort, *window])
            live = live or page_live
            rows.update({d: v for d, v in found.items() if parse_time(v) > since})
            totals.add(total)
            oldest = min((parse_time(v) for v in found.values()), default=since)
            start, limit = start + held, LIST_PAGE
            if oldest <= since or not held or start >= total:
                return rows, (totals.pop() if len(totals) == 1 else -1), live

    def listing(self, view: View, prefix: str = "") -> tuple[Rows, bool]:
        """Every row of the view (whose documentId starts with ``prefix``), 100 per request."""
        rows: Rows = {}
        live, start = False, 0
        only = [("filters[documentId][$startsWith]", prefix)] if prefix else []
        while True:
            window = [("pagination[start]", str(start)), ("pagination[limit]", str(LIST_PAGE))]
            found, page_live, total, held = self._page(view, [*only, ("sort[0]", "documentId:asc"), *window])
            rows.update(found)
            live = live or page_live
            start += held
            if not held or start >= total:
                return rows, live

    def count(self, view: View, prefix: str) -> int:
        """How many rows of the view have a documentId starting with ``prefix`` (one small request)."""
        only = [("filters[documentId][$startsWith]", prefix), ("pagination[limit]", "1")]
        return self._page(view, only)[2]


def disagreeing(views: StrapiViews, view: View, expected: Rows, prefix: str, total: int) -> Iterator[str]:
    """The documentId prefixes whose rows in Strapi differ in number from ``expected``'s.

    Each level asks one count per next character seen in ``expected`` (36 at most: Strapi's ids
    are lowercase letters and digits) and goes down only where the counts disagree, until a
    bucket is small enough to list: a deletion in 100,000 documents costs about 73 requests, not
    the 1,000 of a full listing. Children that do not add up to their parent (an id never seen)
    make the parent listed whole.
    """
    mine = [d for d in expected if d.startswith(prefix)]
    if total <= BUCKET or len(prefix) >= 24:
        yield prefix
        return
    chars = sorted({d[len(prefix)] for d in mine if len(d) > len(prefix)})
    counts = {c: views.count(view, prefix + c) for c in chars}
    if sum(counts.values()) != total:
        yield prefix
        return
    for char, count in counts.items():
        if count != sum(1 for d in mine if d.startswith(prefix + char)):
            yield from disagreeing(views, view, expected, prefix + char, count)


def rows_of(items: list[Any], view: View) -> tuple[Rows, bool]:
    """documentId -> version of each well-formed row; True when a draft row is already published."""
    rows, live = {}, False
    for item in items:
        if not isinstance(item, Mapping):
            continue
        document, version = item.get("documentId"), item.get(view.field)
        if isinstance(document, str) and isinstance(version, str):
            _check_time(version, view)
            rows[document] = version
            live = live or isinstance(item.get("publishedAt"), str)
    return rows, live


def _check_time(version: str, view: View) -> None:
    """UpstreamError for a row whose time is not ISO 8601: read on, it would fail the pass later
    with an error that neither backs off nor lets the next tenants' passes run."""
    try:
        parse_time(version)
    except ValueError:
        raise UpstreamError(f"Strapi's {view.collection} has a {view.field} that is not a time.") from None


def diff(before: Rows, after: Rows, *, complete: bool) -> Diff:
    """What changed from ``before`` to ``after``; documents can only be gone when ``after`` is complete."""
    result = Diff()
    for document, version in after.items():
        if document not in before:
            result.new[document] = version
        elif before[document] != version:
            result.changed[document] = version
    if complete:
        result.gone = {d: v for d, v in before.items() if d not in after}
    return result


class ViewState:
    """A tenant's views' marks and known maps in the records store (never evicted, only expired)."""

    def __init__(self, tenant: str, store: SharedStore) -> None:
        self.tenant = tenant
        self.store = store

    def mark(self, view: View) -> Mark | None:
        """The view's mark, or None when the reconciler has never seen it."""
        raw = self.store.get(view.key(self.tenant, "mark"))
        if not isinstance(raw, dict):
            return None
        names = {f.name for f in dataclasses.fields(Mark)}  # a mark written by another version
        return Mark(**{k: v for k, v in raw.items() if k in names})

    def known(self, view: View, mark: Mark, documents: Iterable[str] | None = None) -> Rows | None:
        """The view's documentId -> version map (only the buckets holding ``documents`` when
        given, so an edit in a large collection reads 1/36 of it); None when a bucket was lost."""
        buckets = sorted({bucket_of(d) for d in documents} if documents is not None else set(mark.sizes))
        if documents is None and sum(mark.sizes.values()) != mark.count:
            return None  # written by an older version, or damaged: rebuild
        known: Rows = {}
        for bucket in buckets:  # one get each: the records store (RedisRecords) has no get_many
            size = mark.sizes.get(bucket, 0)
            value = self.store.get(view.key(self.tenant, f"known:{bucket}")) if size else {}
            if not isinstance(value, dict) or len(value) != size:
                return None
            known.update(value)
        return known

    def save(self, view: View, mark: Mark, known: Rows | None, touched: set[str] | None = None) -> None:
        """Keep the view's mark and the buckets of its known map that were read or rebuilt
        (``touched``; None: all of them)."""
        if known is not None:
            buckets = touched if touched is not None else set(mark.sizes) | {bucket_of(d) for d in known}
            for bucket in sorted(buckets):
                part = {d: v for d, v in known.items() if bucket_of(d) == bucket}
                self.store.set(view.key(self.tenant, f"known:{bucket}"), part, STATE_TTL, must_land=True)
                mark.sizes[bucket] = len(part)
            mark.sizes = {b: n for b, n in mark.sizes.items() if n}
        self.store.set(view.key(self.tenant, "mark"), dataclasses.asdict(mark), STATE_TTL, must_land=True)


def bucket_of(document: str) -> str:
    """Which part of a view's known map holds ``document``: its first letter or digit."""
    first = document[:1].lower()
    return first if first.isascii() and first.isalnum() else "_"


@dataclasses.dataclass
class Outcome:
    """One view's diff and the state to keep once its changes are handled."""

    view: View
    diff: Diff
    mark: Mark
    known: Rows | None
    live: bool = False  # the draft rows are published as saved: a collection without drafts
    first: bool = False  # first sight: what is cached may predate it, and nobody can say what changed
    touched: set[str] | None = None  # the known map's buckets read and changed (None: all)
    unchanged: bool = False  # an idle view whose mark is as it was: nothing to write


class Reconciler:
    """One pass over one tenant: read each view, diff, invalidate and announce what was missed."""

    def __init__(
        self, tenant: Tenant, store: SharedStore, *, overlap: float, since: dt.datetime | None = None
    ) -> None:
        self.tenant = tenant
        self.views = StrapiViews(tenant.strapi)
        self.state = ViewState(tenant.name, store)
        self.overlap = dt.timedelta(seconds=overlap)
        self.since = since

    def run(self) -> Report:
        """Reconcile every exposed collection; raises ApiError/StoreUnavailable with nothing saved for it."""
        report = Report(self.tenant.name)
        for collection in self.tenant.collections:
            outcomes = list(self._outcomes(collection))
            found = changes_of(collection, outcomes)
            missed = [c for c in found if not events.reported(self.tenant.name, c)]
            first = any(outcome.first for outcome in outcomes)
            if missed or first:  # the webhook's own invalidation, then the event (never the reverse)
                purge(self.tenant.name, collection=collection)
                events.record(self.tenant.name, missed)
            for outcome in outcomes:
                if not outcome.unchanged:
                    self.state.save(outcome.view, outcome.mark, outcome.known, outcome.touched)
            if found:
                report.found[collection], report.missed[collection] = found, missed
        report.requests = self.views.requests
        return report

    def _outcomes(self, collection: str) -> Iterator[Outcome]:
        """The draft view's outcome, then the published view's when the collection has drafts."""
        single = collection in self.tenant.config["SINGLE_TYPES"]
        draft = self._reconcile(View(collection, DRAFT, single))
        spec = spec_for(collection)  # the content model knows; else the rows say (an empty one: drafts)
        draft.live = not spec.draft_and_publish if spec is not None else draft.live
        yield draft
        if not draft.live:
            yield self._reconcile(View(collection, PUBLISHED, single))

    def _reconcile(self, view: View) -> Outcome:
        """Read one view and diff it against what the reconciler knew."""
        mark = self.state.mark(view)
        if view.single:
            rows, live = self.views.single(view)
            before = mark.recent if mark is not None else self._baseline_of(rows)
            new_mark = Mark(max(rows.values(), default=""), len(rows), rows)
            found = diff(before, rows, complete=True)
            return Outcome(view, found, new_mark, None, live, first=mark is None, unchanged=new_mark == mark)
        if mark is None:
            return self._baseline(view)
        since = _time_or_epoch(mark.watermark)
        if clock() - mark.moved_at <= self.overlap.total_seconds():  # a late commit may still land
            since -= self.overlap
        since = min(since, self.since) if self.since else since
        rows, total, live = self.views.scan(view, since)
        fresh = {d: v for d, v in rows.items() if mark.recent.get(d) != v}
        if not fresh and total == mark.count:  # idle: one request, and no write when nothing moved
            idle = self._mark(mark, rows, total)
            return Outcome(view, Diff(), idle, None, live, unchanged=idle == mark)
        known = self.state.known(view, mark, fresh)
        if known is None:
            return self._baseline(view)
        found = diff(known, fresh, complete=False)
        if total != mark.count + len(found.new):  # something left, or the view moved while read
            known = self.state.known(view, mark)
            if known is None:
                return self._baseline(view)
            listed = self._current(view, {**known, **fresh}, total)
            return Outcome(
                view, diff(known, listed, complete=True), self._mark(mark, listed, len(listed)), listed, live
            )
        known.update(fresh)
        touched = {bucket_of(d) for d in fresh}
        return Outcome(view, found, self._mark(mark, rows, total), known, live, touched=touched)

    def _current(self, view: View, expected: Rows, total: int) -> Rows:
        """Every row of the view now: listed in full, or, for a large view, ``expected`` with each
        documentId-prefix bucket whose count disagrees listed again."""
        if total < 0 or len(expected) <= BISECT_ABOVE:
            return self.views.listing(view)[0]
        current = dict(expected)
        for prefix in disagreeing(self.views, view, expected, "", total):
            listed = self.views.listing(view, prefix)[0]
            current = {d: v for d, v in current.items() if not d.startswith(prefix)} | listed
        return current

    def _baseline_of(self, rows: Rows) -> Rows:
        """What a view seen for the first time is compared with: itself, or its rows before --since."""
        if self.since is None:
            return dict(rows)
        return {d: v for d, v in rows.items() if parse_time(v) <= self.since}

    def _baseline(self, view: View) -> Outcome:
        """A view seen for the first time (or whose known map was lost): list it, announce nothing
        (or, with --since, what changed after it)."""
        listed, live = self.views.listing(view)
        found = diff(self._baseline_of(listed), listed, complete=False)
        found.changed, found.new = found.new, {}  # new or edited since --since: no way to tell
        return Outcome(view, found, self._mark(Mark(), listed, len(listed)), listed, live, first=True)

    def _mark(self, old: Mark, rows: Rows, count: int) -> Mark:
        """The mark after a read: the newest version seen, the count, the rows inside the overlap."""
        newest = max([old.watermark, *rows.values()], key=_time_or_epoch)
        floor = parse_time(newest) - self.overlap if newest else None
        seen = {**old.recent, **rows}
        recent = {d: v for d, v in seen.items() if floor is not None and parse_time(v) > floor}
        moved_at = old.moved_at if newest == old.watermark else clock()
        return Mark(newest, count, recent, moved_at, dict(old.sizes))


def changes_of(collection: str, outcomes: list[Outcome]) -> list[events.Change]:
    """The events the views' diffs stand for, typed and versioned as Strapi's webhooks would be."""
    draft = outcomes[0]
    published = outcomes[1] if len(outcomes) > 1 else None
    was_live = set(published.diff.gone) if published else set()
    changes = []
    for kind, rows in (("created", draft.diff.new), ("updated", draft.diff.changed)):
        changes += [_change(kind, collection, d, v, draft.live) for d, v in rows.items()]
    for document in draft.diff.gone:
        changes.append(_change("deleted", collection, document, "", draft.live or document in was_live))
    if published is not None:
        for document, version in {**published.diff.new, **published.diff.changed}.items():
            changes.append(_change("published", collection, document, version, True))
        for document, version in published.diff.gone.items():
            if document not in draft.diff.gone:  # a deleted document is one "deleted" event
                changes.append(_change("unpublished", collection, document, version, True))
    return changes


def _change(kind: str, collection: str, document: str, version: str, published_row: bool) -> events.Change:
    """One change as the reconciler reports it (``source: "reconcile"``)."""
    audience = events.audience_of(kind, published_row)
    return events.Change(kind, collection, document, "reconcile", audience, version, None, published_row)


# --- Running it: a lease per tenant and interval, back-off, the outcome /readyz reports ---------


def records() -> SharedStore:
    """The records store: never evicted, so a watermark or known map cannot vanish under cache pressure."""
    store: SharedStore = current_app.extensions["bffproxy.records"]
    return store


def status_key(tenant: str) -> str:
    """Where a tenant's last pass outcome is kept (last success, consecutive failures, next slot)."""
    return f"reconcile:{tenant}:status"


def reconcile_tenant(tenant: Tenant, *, since: dt.datetime | None = None, slot: int | None = None) -> Report:
    """One pass over ``tenant`` now (the lease's ``slot``); its outcome is kept. Raises what failed it."""
    config = current_app.config
    try:
        report = Reconciler(tenant, records(), overlap=config["RECONCILE_OVERLAP"], since=since).run()
    except (ApiError, StoreUnavailable) as exc:
        metrics.reconciled(tenant.name, None)
        _failed(tenant.name, exc, slot)
        raise
    metrics.reconciled(tenant.name, report.missed)
    _set_status(tenant.name, {"last_success": strapi_time(now()), "failures": 0, "retry_slot": 0})
    level = logging.INFO if report.missed else logging.DEBUG
    log.log(level, "reconcile: %s", report.summary(), extra=_log_context(tenant.name))
    return report


def now() -> dt.datetime:
    """This machine's time (only for the outcome and the lease's slot: watermarks are Strapi's)."""
    return dt.datetime.fromtimestamp(clock(), dt.UTC)


clock: Callable[[], float] = time.time


def _log_context(tenant: str) -> dict[str, str]:
    return {"tenant": tenant, "request_id": "reconcile"}


def _status(tenant: str) -> dict[str, Any]:
    try:
        raw = records().get(status_key(tenant))
    except StoreUnavailable:
        return {}
    return raw if isinstance(raw, dict) else {}


def _set_status(tenant: str, changes: Mapping[str, Any]) -> None:
    with contextlib.suppress(StoreUnavailable):  # the store logs its own error; the next pass retries
        records().set(status_key(tenant), {**_status(tenant), **changes}, STATE_TTL, must_land=True)


def _failed(tenant: str, exc: Exception, slot: int | None) -> None:
    """Log the failure (one line: one pass per interval) and back off: 1, 2, 4 intervals, then 4."""
    failures = int(_status(tenant).get("failures", 0)) + 1
    skip = min(2 ** (failures - 1), MAX_BACKOFF)
    interval = current_app.config["RECONCILE_INTERVAL"]
    if slot is None:  # the command: the interval it falls in
        slot = int(clock() // interval) if interval else 0
    _set_status(tenant, {"failures": failures, "retry_slot": slot + skip, "last_error": type(exc).__name__})
    log.warning(
        "reconcile failed (%s: %s); failure %d in a row, next try in %d interval(s)",
        type(exc).__name__,
        getattr(exc, "message", exc),
        failures,
        skip,
        extra=_log_context(tenant),
    )


def claim(tenant: str, slot: int, interval: int) -> bool:
    """True for the one worker, of all instances sharing the store, that runs ``tenant``'s ``slot``."""
    key = f"reconcile:lease:{tenant}:{slot}"
    try:
        return bool(shared_store().call("add", key, 1, 2 * interval + 1, must_land=True))
    except StoreUnavailable:
        return False  # no lease, no pass: two at once would be harmless, but the store is down anyway


def tick(slot: int) -> list[Report]:
    """Run each tenant's pass of ``slot`` that this worker claims and no back-off defers."""
    interval = current_app.config["RECONCILE_INTERVAL"]
    reports = []
    for tenant in registry():
        if not claim(tenant.name, slot, interval) or int(_status(tenant.name).get("retry_slot", 0)) > slot:
            continue
        try:
            reports.append(reconcile_tenant(tenant, slot=slot))
        except (ApiError, StoreUnavailable):
            continue  # logged by reconcile_tenant; the other tenants still get their pass
    return reports


class Runner:
    """A worker's daemon thread: at each interval's start (plus a little jitter), one tick."""

    def __init__(self, app: Flask, sleep: Callable[[float], None] = time.sleep) -> None:
        self.app = app
        self.sleep = sleep
        self.interval: int = app.config["RECONCILE_INTERVAL"]
        self.last = -1  # the last slot this worker ticked
        self.thread = threading.Thread(target=self.loop, name="bffproxy-reconciler", daemon=True)

    def next_slot(self) -> tuple[int, float]:
        """The slot to tick next and how long to wait for it (jitter spreads the workers' claims).

        After a tick that outlasted its interval, the slot under way now is still claimed (at once),
        so a slow pass skips no interval; slots already over are not replayed.
        """
        current = clock()
        slot = max(self.last + 1, int(current // self.interval))
        if self.last < 0:
            slot += 1  # a worker just started: from the next interval's start
        jitter = random.uniform(0, min(1.0, self.interval / 10))
        return slot, max(0.0, slot * self.interval - current) + jitter

    def loop(self) -> None:
        """Forever: wait for the next slot, tick; nothing it raises reaches request serving."""
        while True:
            slot, wait = self.next_slot()
            self.sleep(wait)
            self.last = slot
            try:
                with self.app.app_context():
                    tick(slot)
            except Exception:  # a bug must not end the thread: log it, try next interval
                log.exception("reconcile tick failed", extra=_log_context("-"))


def start_in_worker(app: Any) -> Runner | None:
    """Start the reconciler thread in this gunicorn worker (post_worker_init), unless disabled.

    Never called by create_app: gunicorn's arbiter builds the app before it forks, and a thread
    started there would not survive the fork (nor should the arbiter reconcile).
    """
    place = app.extensions.get("bffproxy.reconciler") if isinstance(app, Flask) else None
    if place is None or place["runner"] is not None or not app.config["RECONCILE_INTERVAL"]:
        return None  # not the API app (the events app's gevent worker must not), started, or off
    runner = place["runner"] = Runner(app)
    runner.thread.start()
    return runner


_last_read: dict[int, tuple[float, dict[str, str | None]]] = {}


def last_successes() -> dict[str, str | None]:
    """Each tenant's last successful pass (Strapi-style UTC time, None: never), reused for a second."""
    app_id = id(current_app._get_current_object())  # type: ignore[attr-defined]
    cached = _last_read.get(app_id)
    if cached is not None and time.monotonic() - cached[0] < READY_REUSE:
        return cached[1]
    result = {tenant.name: _status(tenant.name).get("last_success") for tenant in registry()}
    _last_read[app_id] = (time.monotonic(), result)
    return result


def lookback(config: Mapping[str, Any]) -> int:
    """Seconds after a change that a pass may still find it: a webhook's dedupe claim must live as long."""
    return int((MAX_BACKOFF + 1) * config["RECONCILE_INTERVAL"] + config["RECONCILE_OVERLAP"])


def configure(config: Any) -> None:
    """Validate BFFPROXY_RECONCILE_INTERVAL (seconds, 0: off) and _OVERLAP; size events' dedupe memory."""
    config.setdefault("RECONCILE_INTERVAL", 30)
    config.setdefault("RECONCILE_OVERLAP", 10)
    config["RECONCILE_INTERVAL"] = as_number(config, "RECONCILE_INTERVAL", int, minimum=0, maximum=86_400)
    config["RECONCILE_OVERLAP"] = as_number(config, "RECONCILE_OVERLAP", int, minimum=0, maximum=86_400)


def init_app(app: Flask) -> None:
    """Let events' dedupe claims outlive the reconciler's look-back, so it never repeats a webhook."""
    app.extensions["bffproxy.dedupe_ttl"] = max(events.DEDUPE_TTL, lookback(app.config))
    app.extensions["bffproxy.reconciler"] = {"runner": None}  # this app reconciles (the API app)
