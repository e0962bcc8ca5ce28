"""What a cached answer is, and how long it may be served: TTL and RFC 5861's grace windows.

* fresh: younger than the TTL, served as a HIT;
* inside ``stale-while-revalidate``: served at once (STALE) while one background refresh runs;
* inside ``stale-if-error``: served (STALE) only when Strapi fails.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from flask import g

ENTRY_VERSION = "v1"


@dataclass(frozen=True, slots=True)
class Entry:
    """One answer from Strapi as stored: status, body, type, when, and its strong ETag."""

    status: int
    body: bytes
    content_type: str
    stored_at: float
    etag: str

    @classmethod
    def build(cls, status: int, body: bytes, content_type: str, now: float) -> Entry:
        """An entry with its ETag computed from the body."""
        digest = hashlib.sha256(body).hexdigest()[:32]
        return cls(status, body, content_type, now, digest)

    def age(self, now: float) -> float:
        """Seconds since Strapi produced this answer (never negative)."""
        return max(0.0, now - self.stored_at)

    def as_tuple(self) -> tuple[Any, ...]:
        """The compact form written to the store."""
        return (ENTRY_VERSION, self.status, self.body, self.content_type, self.stored_at, self.etag)

    @classmethod
    def from_stored(cls, value: Any) -> Entry | None:
        """Read a stored tuple back; anything malformed is a miss."""
        if not isinstance(value, tuple) or len(value) != 6 or value[0] != ENTRY_VERSION:
            return None
        _, status, body, content_type, stored_at, etag = value
        if not (isinstance(status, int) and isinstance(body, bytes) and isinstance(stored_at, float)):
            return None
        return cls(status, body, str(content_type), stored_at, str(etag))


@dataclass(frozen=True)
class Freshness:
    """How long an entry is fresh, and how long past that it may still be served stale."""

    ttl: int
    stale_while_revalidate: int
    stale_if_error: int

    @property
    def keep_for(self) -> int:
        """How long the store keeps an entry: its TTL plus the longer grace window."""
        return self.ttl + max(self.stale_while_revalidate, self.stale_if_error)

    @property
    def caches(self) -> bool:
        """False when caching is off for the collection (a TTL of 0)."""
        return self.ttl > 0

    def is_fresh(self, entry: Entry, now: float) -> bool:
        """Young enough to be served as a HIT."""
        return entry.age(now) < self.ttl

    def may_revalidate(self, entry: Entry, now: float) -> bool:
        """Past its TTL but inside stale-while-revalidate: serve it and refresh in the background."""
        return entry.age(now) < self.ttl + self.stale_while_revalidate

    def may_serve_on_error(self, entry: Entry, now: float) -> bool:
        """Inside stale-if-error: serve it when Strapi fails."""
        return entry.age(now) < self.ttl + self.stale_if_error


@dataclass(frozen=True)
class Served:
    """What the cache answers with, and the X-Cache word that says how."""

    entry: Entry
    x_cache: str  # HIT | MISS | STALE | BYPASS


def freshness_for(collection: str) -> Freshness:
    """The current tenant's TTL and grace windows of ``collection`` (resolved once at start-up)."""
    resolved: dict[str, Freshness] = g.tenant.config["FRESHNESS"]
    return resolved[collection]


def resolve_freshness(config: Any) -> dict[str, Freshness]:
    """Every exposed collection's TTL and grace windows."""
    return {
        collection: Freshness(
            config["CACHE_TTLS"].get(collection, config["CACHE_TTL"]),
            config["STALE_WHILE_REVALIDATE"],
            config["STALE_IF_ERROR"],
        )
        for collection in config["COLLECTIONS"]
    }
