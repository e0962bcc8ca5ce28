"""What a change to one document invalidates: its collection and the collections related to it.

Used by every path that knows content changed: Strapi's webhooks, bffproxy's own successful writes
(read-your-writes, before the webhook arrives) and the purge API. Entries are dropped by replacing
generations (see caching.py), so invalidation is O(1) and immediately visible to every worker and
every instance that shares the store.

``BFFPROXY_RELATIONS__<collection>=<collection>,<collection>`` names, for each collection, the
collections whose answers can embed it (``populate``). ``entry.delete`` webhooks carry no
relations, so this configuration, not the payload, is the source of truth for them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from .caching import StoreUnavailable, content_cache
from .errors import ServiceUnavailable, Unprocessable
from .reads import DOCUMENT_ID, is_document_id  # noqa: F401  (DOCUMENT_ID: publishing imports it here)
from .schemas import spec_for
from .settings import ConfigError, as_mapping, env_name
from .tenants import registry

log = logging.getLogger(__name__)

# Strapi 5 documentIds are 24 lowercase alphanumerics; accept any plausible id, refuse junk.


class CacheUnavailable(ServiceUnavailable):
    """The shared store refused the invalidation: nothing was dropped, the caller should know."""

    code, message = "cache_unavailable", "The shared cache cannot be reached; nothing was invalidated."


def related_collections(tenant: str, collection: str) -> tuple[str, ...]:
    """The collections of ``tenant`` whose cached answers may embed ``collection``."""
    relations: dict[str, tuple[str, ...]] = registry().named(tenant).config["RELATIONS"]
    return relations.get(collection, ())


def invalidate_collection(tenant: str, collection: str, also: Iterable[str] = ()) -> list[str]:
    """Drop every entry of ``collection``, of its related collections and of ``also``."""
    exposed = registry().named(tenant).collections
    targets = [c for c in (collection, *related_collections(tenant, collection), *also) if c in exposed]
    return content_cache().invalidate(tenant, targets)


def purge(
    tenant: str,
    *,
    collection: str | None = None,
    document_id: str | None = None,
    everything: bool = False,
    also: Iterable[str] = (),
) -> dict[str, Any]:
    """Invalidate one scope (everything, a collection, or a document) and say what was dropped.

    The one entry point of the webhook, the purge API and ``bffproxy purge``. A document's entries
    live under its collection's generation, and every list of the collection may contain it, so a
    document purge drops the collection and its related collections: still O(1), never stale.
    Raises Unprocessable for a bad scope and CacheUnavailable when the store refuses the write.
    """
    scope = _check_scope(tenant, collection, document_id, everything)
    try:
        if everything:
            content_cache().invalidate_tenant(tenant)
            dropped = list(registry().named(tenant).collections)
        else:
            assert collection is not None  # _check_scope guarantees it
            dropped = invalidate_collection(tenant, collection, also)
    except StoreUnavailable as exc:
        # The store's text names its host and port: the log gets it, the client only the code.
        log.error("purge (%s) of tenant %s refused by the shared store: %s", scope, tenant, exc)
        raise CacheUnavailable() from exc
    result: dict[str, Any] = {"scope": scope, "tenant": tenant, "invalidated": dropped}
    if collection:
        result["collection"] = collection
    if document_id:
        result["documentId"] = document_id
    return result


def _check_scope(tenant: str, collection: str | None, document_id: str | None, everything: bool) -> str:
    """Name the scope of a purge ("all", "collection", "document") or raise Unprocessable."""
    if everything:
        if collection or document_id:
            raise Unprocessable("Purge either everything or one collection, not both.")
        return "all"
    if not collection:
        raise Unprocessable("Name a collection (and optionally a documentId), or purge everything.")
    known = registry().named(tenant).collections
    if collection not in known:
        raise Unprocessable(
            f"Unknown collection {collection!r}.", details={"collection": collection, "known": list(known)}
        )
    if document_id is None:
        return "collection"
    if not is_document_id(document_id):  # the whole string: match() let "id\n" through
        raise Unprocessable("documentId must be 1-64 letters, digits, '-' or '_'.")
    return "document"


def configure_tenant(config: dict[str, Any]) -> None:
    """Validate RELATIONS: every name on either side must be one of the tenant's collections."""
    exposed = config["COLLECTIONS"]
    raw = config.get("RELATIONS") or {}
    relations = as_mapping({"RELATIONS": raw}, "RELATIONS", _names, allowed=exposed)
    for collection, related in relations.items():
        unknown = [n for n in related if n not in exposed]
        if unknown:
            raise ConfigError(f"{env_name('RELATIONS')}__{collection} names unknown collection(s) {unknown}")
    config["RELATIONS"] = with_modelled_relations(exposed, relations)


def with_modelled_relations(
    exposed: tuple[str, ...], configured: dict[str, tuple[str, ...]]
) -> dict[str, tuple[str, ...]]:
    """The configured relations plus those the content model knows (schemas.py), both directions.

    A collection whose schema relates to another can embed it (``populate``), so a change to the
    other must drop its answers too: article.category means a changed category drops articles, and
    category.articles that a changed article drops categories. An operator who forgot
    ``BFFPROXY_RELATIONS__categories=articles`` no longer serves stale articles (found attacking
    issue 14); the setting still adds what the model cannot know.
    """
    merged = {name: list(related) for name, related in configured.items()}
    for collection in exposed:
        spec = spec_for(collection)
        for target in spec.relations.values() if spec is not None else ():
            if target in exposed and collection not in merged.setdefault(target, []):
                merged[target].append(collection)
    return {name: tuple(related) for name, related in merged.items()}


def _names(text: str) -> tuple[str, ...]:
    """``categories+tags`` or ``categories,tags``."""
    return tuple(n.strip() for n in text.replace("+", ",").split(",") if n.strip())
