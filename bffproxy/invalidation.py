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

from collections.abc import Iterable

from flask import Flask, current_app

from .caching import content_cache
from .settings import ConfigError, as_mapping, env_name


def related_collections(collection: str) -> tuple[str, ...]:
    """The configured collections whose cached answers may embed ``collection``."""
    relations: dict[str, tuple[str, ...]] = current_app.config["RELATIONS"]
    return relations.get(collection, ())


def invalidate_collection(tenant: str, collection: str, also: Iterable[str] = ()) -> list[str]:
    """Drop every entry of ``collection``, of its related collections and of ``also``."""
    exposed = current_app.config["COLLECTIONS"]
    targets = [c for c in (collection, *related_collections(collection), *also) if c in exposed]
    return content_cache().invalidate(tenant, targets)


def _parse_relations(app: Flask) -> dict[str, tuple[str, ...]]:
    """Validate RELATIONS: every name on either side must be an exposed collection."""
    exposed = app.config["COLLECTIONS"]
    raw = app.config.get("RELATIONS") or {}
    relations = as_mapping({"RELATIONS": raw}, "RELATIONS", str, allowed=exposed)
    parsed: dict[str, tuple[str, ...]] = {}
    for collection, names in relations.items():
        related = tuple(n.strip() for n in names.replace("+", ",").split(",") if n.strip())
        unknown = [n for n in related if n not in exposed]
        if unknown:
            raise ConfigError(f"{env_name('RELATIONS')}__{collection} names unknown collection(s) {unknown}")
        parsed[collection] = related
    return parsed


def init_app(app: Flask) -> None:
    """Validate the relation map once at start-up."""
    app.config["RELATIONS"] = _parse_relations(app)
