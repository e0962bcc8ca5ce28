"""Content events: one normalised shape for every change, from Strapi's webhooks and bffproxy's writes.

An event on the wire is ``{"id", "tenant", "type", "collection", "documentId", "locale", "at",
"source"}``: ids and a type, never content (a client refetches through the warm cache). ``type`` is
one of :data:`TYPES`' values, ``source`` ``webhook``, ``write`` or ``reconcile``.

Strapi 5's webhooks, as the real Strapi sends them (tests/e2e/test_events_e2e.py checks them):

* a published create is ``entry.create`` (the draft row, ``publishedAt: null``) then
  ``entry.publish`` (the new published row); an edit that publishes is ``entry.update`` (draft
  row) then ``entry.publish``; ``?status=draft`` writes send ``entry.update``/``entry.create`` only;
* ``entry.unpublish`` carries the published row that was removed, ``entry.draft-discard`` the
  draft; a delete sends one ``entry.delete`` per row: the draft, and the published one if any.

Who sees what (the event's ``audience``, kept in the log, never sent): ``published`` and
``unpublished`` are for everyone; ``created``/``updated`` of a draft row (``publishedAt: null``) and
``draft_discarded`` only for subscribers allowed drafts (the public version did not change); a
change to a collection without drafts (``publishedAt`` set) for everyone. A delete is for everyone
when the document had a published version, else for drafts subscribers only; its two deliveries
collapse into one event per subscriber (the published row's, arriving second, goes to the public
alone).

Duplicates collapse on a short-lived key in the shared store (``add``: the first claim wins, in any
worker or instance): the tenant, document, type and the version the change made (``updatedAt`` of
a created/updated draft, ``publishedAt`` of a publish or unpublish). bffproxy's own write and
Strapi's webhook about it name the same version, so whichever comes first is the one event.
Created and updated share one key (a save stamps one ``updatedAt``): the reconciler, which sees
only the latest save, cannot always tell them apart. Claims live ``DEDUPE_TTL`` or the
reconciler's look-back, whichever is longer (reconciler.py), so it never repeats a webhook.

Emission is the caller's last step, after the invalidation the event stands for was committed:
a client refetching on the event never reads the old version.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from flask import current_app

from . import metrics
from .event_log import LoggedEvent, event_log
from .store import StoreUnavailable, shared_store

log = logging.getLogger(__name__)

TYPES = {
    "entry.create": "created",
    "entry.update": "updated",
    "entry.publish": "published",
    "entry.unpublish": "unpublished",
    "entry.delete": "deleted",
    "entry.draft-discard": "draft_discarded",
}
EVERYONE, DRAFTS, PUBLIC = "everyone", "drafts", "public"  # audiences: PUBLIC = those without drafts
# Long enough for Strapi's webhook to follow the write it reports (its timeout is 10 s).
DEDUPE_TTL = 60
WIRE_FIELDS = ("id", "tenant", "type", "collection", "documentId", "locale", "at", "source")

clock: Callable[[], float] = time.time


@dataclasses.dataclass(frozen=True)
class Change:
    """One change to one document, before it is deduplicated and logged."""

    type: str
    collection: str
    document_id: str
    source: str
    audience: str
    version: str = ""
    locale: str | None = None
    published_row: bool = False  # a delete: this delivery is the published row's


def from_webhook(event: str, collection: str, entry: Mapping[str, Any]) -> Change | None:
    """The change one Strapi entry webhook reports, or None for an event that is not a change."""
    kind = TYPES.get(event)
    document_id = entry.get("documentId")
    if kind is None or not isinstance(document_id, str):
        return None
    published = isinstance(entry.get("publishedAt"), str)
    locale = entry.get("locale") if isinstance(entry.get("locale"), str) else None
    return Change(
        kind,
        collection,
        document_id,
        "webhook",
        audience_of(kind, published),
        version_of(kind, entry),
        locale,
        published_row=published,
    )


def audience_of(kind: str, published_row: bool) -> str:
    """Who may see a change of ``kind`` to a row that is (or is not) a published version."""
    if kind in ("published", "unpublished"):
        return EVERYONE
    if kind == "draft_discarded":
        return DRAFTS
    return EVERYONE if published_row else DRAFTS


def version_of(kind: str, entry: Mapping[str, Any]) -> str:
    """What tells this change from the next one of the same kind: the time it stamped on the row."""
    if kind in ("published", "unpublished"):
        return str(entry.get("publishedAt") or "")
    if kind in ("created", "updated", "draft_discarded"):
        return str(entry.get("updatedAt") or "")
    return ""  # a document is deleted once


# Strapi's webhooks for each of bffproxy's writes (audit action names), in the order Strapi sends them.
WRITE_EVENTS = {
    "create": ("entry.create", "entry.publish"),
    "create_publish": ("entry.create", "entry.publish"),
    "create_draft": ("entry.create",),
    "update": ("entry.update", "entry.publish"),
    "update_draft": ("entry.update",),
    "publish": ("entry.update", "entry.publish"),
    "unpublish": ("entry.unpublish",),
    "delete": ("entry.delete",),
}


def from_write(action: str, collection: str, document: Mapping[str, Any], *, drafts: bool) -> list[Change]:
    """The changes a successful write made, as Strapi's webhooks will report them.

    ``document`` is Strapi's answer's ``data`` (a delete has none: only its documentId);
    ``drafts`` says whether the collection has draft and publish. A delete is reported as the
    draft row's: the published row's webhook, if the document had one, tells the public.
    """
    changes = []
    for event in WRITE_EVENTS.get(action, ()):
        if event == "entry.publish" and not drafts:
            continue  # without drafts the save itself is live: the create/update is the change
        row = dict(document)
        if event in ("entry.create", "entry.update", "entry.delete") and drafts:
            row["publishedAt"] = None  # the draft row's event
        change = from_webhook(event, collection, row)
        if change is not None:
            changes.append(with_source(change, "write"))
    return changes


def with_source(change: Change, source: str) -> Change:
    """The same change, reported by ``source`` (``write``, ``reconcile``)."""
    return dataclasses.replace(change, source=source)


def record(tenant: str, changes: list[Change]) -> list[str]:
    """Log each change not already logged; the new ids. Call it after the invalidation committed.

    A log that refuses the append loses the event (logged as an error): the invalidation it stands
    for is done, and a subscriber that reconnects later is no worse off than one that missed it.
    """
    ids = []
    for change in changes:
        audience = claimed_audience(tenant, change)
        if audience is None:
            continue
        fields = wire_fields(tenant, change, audience)
        try:
            ids.append(event_log().append(tenant, fields))
            metrics.count(metrics.EVENTS_PUBLISHED, tenant)
        except Exception as exc:  # sqlite3.Error, redis errors: the change itself happened
            log.error(
                "event %s %s %s not logged: %r", change.type, change.collection, change.document_id, exc
            )
    return ids


def claimed_audience(tenant: str, change: Change) -> str | None:
    """The audience of the change's event when this is its first report, else None (a duplicate).

    A delete's two rows share one key: the first report tells its own audience; the published row
    arriving after the draft row's tells the public (drafts subscribers already know).
    """
    base = seen_key(tenant, change)
    first = "published" if change.published_row else "draft"
    if _claim(base, first):
        return change.audience
    if change.type == "deleted" and change.published_row and _seen(base) == "draft":
        return PUBLIC if _claim(f"{base}:public", "published") else None
    return None


def seen_key(tenant: str, change: Change) -> str:
    """The dedupe key of a change: created and updated are one kind of save (same ``updatedAt``)."""
    kind = "saved" if change.type in ("created", "updated") else change.type
    return f"events:seen:{tenant}:{change.collection}:{change.document_id}:{kind}:{change.version}"


def reported(tenant: str, change: Change) -> bool:
    """True when a webhook, a write or a reconcile already claimed this change's event for all it concerns."""
    base = seen_key(tenant, change)
    seen = _seen(base)
    if change.type == "deleted" and change.published_row and seen == "draft":
        return _seen(f"{base}:public") is not None  # the public has not heard of it yet
    return seen is not None


def _claim(key: str, value: str) -> bool:
    """True when ``key`` was not set (now it is); a store fault counts as a first claim."""
    ttl = current_app.extensions.get("bffproxy.dedupe_ttl", DEDUPE_TTL)
    try:
        return bool(shared_store().call("add", key, value, ttl, must_land=True))
    except StoreUnavailable:  # a duplicate event costs a refetch; a lost one, a stale page
        return True


def _seen(key: str) -> Any:
    try:
        return shared_store().get(key)
    except StoreUnavailable:
        return None


def wire_fields(tenant: str, change: Change, audience: str) -> dict[str, Any]:
    """The event as it is logged: the wire fields (its id is the log's) and its audience."""
    at = dt.datetime.fromtimestamp(clock(), dt.UTC).isoformat(timespec="milliseconds")
    return {
        "tenant": tenant,
        "type": change.type,
        "collection": change.collection,
        "documentId": change.document_id,
        "locale": change.locale,
        "at": at.replace("+00:00", "Z"),
        "source": change.source,
        "audience": audience,
    }


def visible(event: LoggedEvent, *, drafts: bool) -> bool:
    """True when a subscriber (allowed drafts or not) may receive ``event``."""
    audience = event.fields.get("audience")
    return audience == EVERYONE or audience == (DRAFTS if drafts else PUBLIC)


def wire_json(event: LoggedEvent) -> str:
    """The event's ``data:`` line: the wire fields only, with the log's id; made once per event."""
    text = event.rendered.get("wire")
    if text is None:  # a worker's 10,000 subscribers share one LoggedEvent: one dumps, not 10,000
        fields = {**event.fields, "id": event.id}
        text = json.dumps({name: fields.get(name) for name in WIRE_FIELDS}, separators=(",", ":"))
        event.rendered["wire"] = text
    return text


def document_of(body: bytes) -> dict[str, Any]:
    """The ``data`` object of a Strapi answer, or {}."""
    try:
        data = json.loads(body).get("data") if body else None
    except (ValueError, AttributeError):
        return {}
    return data if isinstance(data, dict) else {}
