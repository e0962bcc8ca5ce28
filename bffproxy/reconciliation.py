"""Reconciliation: what Strapi already holds after a write whose outcome is unknown.

A retry with the same Idempotency-Key after an unknown outcome (idempotency.py) asks here before
writing again, so that a write Strapi did apply is answered, not applied twice. Each question is a
look-up in Strapi with the server's API token; a refused look-up is an ``UpstreamError`` that
leaves the outcome unknown, so the next retry asks again. publishing.py turns the findings into
the answer the client gets.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from .errors import UpstreamError
from .idempotency import Claim
from .request_id import HEADER as REQUEST_ID_HEADER
from .request_id import current_request_id
from .schemas import CollectionSpec, fields_with
from .strapi import StrapiResponse
from .tenants import current_tenant

RECONCILE_CLOCK_SKEW = 60.0  # seconds of clock difference tolerated between bffproxy and Strapi


def look_up(path: str, params: list[tuple[str, str]]) -> StrapiResponse:
    """One GET with the server's API token; an answer other than 2xx or 404 is an UpstreamError."""
    client = current_tenant().strapi
    headers = {REQUEST_ID_HEADER: current_request_id(), **client.service_authorization()}
    answer = client.request("GET", path, params=params, headers=headers)
    if not answer.ok and answer.status != 404:
        raise UpstreamError(f"Strapi refused the reconciliation look-up ({answer.status}).")
    return answer


def uid_field(spec: CollectionSpec) -> str | None:
    """The collection's uid (slug) field, which reconciliation looks documents up by."""
    names = list(fields_with(spec.schema(), "uid_target"))
    return names[0] if names else None


def find_created(
    spec: CollectionSpec, data: dict[str, Any], body: Any, claim: Claim
) -> dict[str, Any] | None:
    """The document (Strapi 5 format) an earlier attempt with this key created, or None.

    With draft & publish it is looked up among drafts: every document has a draft row, so a create
    that Strapi also published (its REST default) is found as surely as a draft-only one; the
    caller decides which version answers.

    The slug rules.py derived from the key is unique while the key lives, so finding it on a
    document created after the key's first attempt began is proof (a key reused after its TTL
    derives the same slug again). A slug the client chose is not: then the document must also hold
    exactly the sent values.
    """
    slug_name = uid_field(spec)
    slug = data.get(slug_name) if slug_name else None
    if not slug_name or not isinstance(slug, str):
        return None
    params = [(f"filters[{slug_name}][$eq]", slug), ("sort", "createdAt:asc")]
    if spec.draft_and_publish:
        params.append(("status", "draft"))  # every document has a draft, published or not
    answer = look_up(spec.api_path(), params)
    items = ((answer.json() or {}).get("data") or []) if answer.ok else []
    derived = slug_name not in (body.get("data", body) if isinstance(body, dict) else {})
    return next(
        (
            item
            for item in items
            if (derived and created_since_first_attempt(item, claim)) or same_document(item, data, claim)
        ),
        None,
    )


def created_since_first_attempt(item: dict[str, Any], claim: Claim) -> bool:
    """True when ``item`` was created after the key's first attempt began, not by an expired use of it."""
    created = parse_time(item.get("createdAt"))
    return created is not None and created >= claim.record.started_at - RECONCILE_CLOCK_SKEW


def same_document(item: dict[str, Any], data: dict[str, Any], claim: Claim) -> bool:
    """True when ``item`` holds the sent scalar values and was created after the first attempt."""
    if not created_since_first_attempt(item, claim):
        return False
    scalars = {k: v for k, v in data.items() if isinstance(v, (str, bool, int, float)) or v is None}
    return all(item.get(k) == v for k, v in scalars.items() if k in item)


def parse_time(value: Any) -> float | None:
    """Seconds since the epoch of Strapi's ISO 8601 timestamps."""
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def is_unpublished(spec: CollectionSpec, document_id: str) -> bool:
    """True when the document has no published version (an earlier unpublish took it offline).

    Strapi answers a second unpublish with 404, so a retry must not simply send it again.
    """
    return look_up(spec.api_path(document_id), []).status == 404


def is_deleted(spec: CollectionSpec, document_id: str | None) -> bool:
    """True when the document (or the single type's, for None) is gone, draft included."""
    params = [("status", "draft")] if spec.draft_and_publish else []  # every document has a draft
    return look_up(spec.api_path(document_id), params).status == 404
