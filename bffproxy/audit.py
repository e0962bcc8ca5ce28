"""The audit trail: one structured JSON line per write request, on the logger ``bffproxy.audit``.

A write view's blueprint calls :func:`begin` before anything else runs (so a request refused by
authentication is audited too) and :func:`emit` after the response is built; views add what they
learn with :func:`note` (the documentId of a create, an outcome more precise than the status).
Fields: ``time`` (UTC, ISO 8601), ``tenant``, ``user_id``, ``role``, ``collection``,
``documentId``, ``action``, ``outcome``, ``status``, ``request_id``.

Outcomes: ``success``, ``replayed`` (idempotent replay), ``reconciled`` (an unknown outcome found
done in Strapi), ``rejected`` (Strapi's own 4xx), ``invalid`` (400/413/415/422), ``unauthenticated``,
``forbidden``, ``not_found``, ``conflict``, ``unknown`` (sent, no answer: may have happened),
``failed`` (did not happen).

When nothing else configured logging, the audit logger writes the bare JSON to stderr (no prefix),
so a log shipper can parse each line as is.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from flask import Flask, Response, g

from .request_id import current_request_id

log = logging.getLogger("bffproxy.audit")

OUTCOME_BY_STATUS = {
    400: "invalid",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    409: "conflict",
    413: "invalid",
    415: "invalid",
    422: "invalid",
}


@dataclass
class AuditEntry:
    """What is known of the write so far."""

    action: str
    collection: str
    document_id: str | None = None
    outcome: str | None = None


def begin(action: str, collection: str, document_id: str | None = None) -> None:
    """Start the request's audit entry."""
    g.audit = AuditEntry(action, collection, document_id)


def note(*, document_id: str | None = None, outcome: str | None = None) -> None:
    """Add the documentId or a precise outcome to the request's entry."""
    entry: AuditEntry | None = g.get("audit")
    if entry is None:
        return
    if document_id:
        entry.document_id = document_id
    if outcome:
        entry.outcome = outcome


def outcome_for(status: int) -> str:
    """The outcome a status means when the view did not say more."""
    if 200 <= status < 300:
        return "success"
    if status >= 500:
        return "failed"
    return OUTCOME_BY_STATUS.get(status, "rejected")


def _identity() -> Any:
    """The authenticated user, if auth ran and found one.

    Only what auth.current_identity() already resolved for this request: calling it again after it
    failed would repeat the role look-up in Strapi (a second timeout before the error is answered).
    """
    return g.get("bffproxy_identity")


def record_for(entry: AuditEntry, status: int) -> dict[str, Any]:
    """The audit line's fields."""
    identity = _identity()
    tenant = g.get("tenant")
    return {
        "time": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "log": "audit",  # beside the access log's "access" lines in the same journal
        "tenant": tenant.name if tenant is not None else None,
        "user_id": getattr(identity, "user_id", None),
        "role": getattr(identity, "role", None),
        "collection": entry.collection,
        "documentId": entry.document_id,
        "action": entry.action,
        "outcome": entry.outcome or outcome_for(status),
        "status": status,
        "request_id": current_request_id(),
    }


def emit(response: Response) -> Response:
    """Write the request's audit line (once), whatever the outcome."""
    entry: AuditEntry | None = g.pop("audit", None)
    if entry is not None:
        log.info(json.dumps(record_for(entry, response.status_code), separators=(",", ":")))
    return response


def init_app(app: Flask) -> None:
    """Give the audit logger a bare-JSON stderr handler unless logging is configured elsewhere."""
    if not log.handlers and not logging.getLogger().handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        log.addHandler(handler)
        log.propagate = False
    log.setLevel(logging.INFO)
