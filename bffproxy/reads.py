"""The one read router: which collection, which document and which query a read sends to Strapi.

Both read paths — the Flask view (``content.py``) and the WSGI fast path (``hits.py``) — route a
request through :meth:`ReadRouter.route`, so a rule can never exist in one and not the other.
A route is built from the raw ``PATH_INFO`` and ``QUERY_STRING`` only:

* ``/api/<collection>`` or ``/api/<collection>/<documentId>``, the collection exposed by the tenant
  (else 404 ``not_found``), the documentId of Strapi's shape (else 404: no document can have it);
* every query parameter's top-level name, read as qs reads it (:mod:`bffproxy.query`), in the
  allow-list: Strapi's read parameters, ``status`` (``published``, or ``draft`` for callers the
  ``drafts`` policy allows), the v4 ``publicationState=live`` (Strapi 5 ignores it), plus the names
  a collection is configured to accept (``BFFPROXY_QUERY_PARAMS__articles=_q``); else 400
  ``invalid_parameter`` naming it, before Strapi is called;
* a single type (``BFFPROXY_SINGLE_TYPES``) is read at ``/api/<name>`` only: with an id it is 404;
* the Strapi path is built from quoted segments and the query from re-encoded pairs, never by
  pasting what the client sent.

Writes (publishing.py) check their query with the same parser and rules
(:meth:`ReadRouter.write_query`), against their own, shorter allow-list.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property, lru_cache
from typing import Any
from urllib.parse import quote

from .errors import NotFound
from .query import (
    STRAPI_READ_PARAMS,
    InvalidParameter,
    Param,
    canonical,
    encode,
    parse_query,
    refuse_failing_filters,
    refuse_unlisted,
)
from .relation_paths import ContentModel, PathWalker, draft_path
from .settings import ConfigError, as_mapping, env_name

# Strapi 5 documentIds are 24-character cuid2s; writes and purges accept this wider shape too.
DOCUMENT_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
# Values of the publication parameters that are accepted, and which of them mean drafts.
STATUS_VALUES = ("published", "draft")
LEGACY_PUBLICATION_STATE = "live"
PUBLICATION_PARAMS = frozenset({"status", "publicationState"})
ROUTE_CACHE_SIZE = 4096
_PARAM_NAME = re.compile(r"[A-Za-z0-9_$-]{1,64}")


def is_document_id(text: str) -> bool:
    """True when ``text`` has the shape of a Strapi documentId (the whole string)."""
    return DOCUMENT_ID.fullmatch(text) is not None


@dataclass(frozen=True)
class ReadRoute:
    """A validated read: the collection, the document (or None for a list) and the query."""

    collection: str
    document_id: str | None
    params: tuple[Param, ...]
    status: str | None  # "published", "draft", or None when the query has no status

    @property
    def drafts(self) -> bool:
        """True when the query asks Strapi for draft versions."""
        return self.status == "draft"

    @cached_property
    def strapi_path(self) -> str:
        """The path on Strapi, every segment quoted."""
        path = f"api/{quote(self.collection, safe='')}"
        return path if self.document_id is None else f"{path}/{quote(self.document_id, safe='')}"

    @cached_property
    def query_string(self) -> str:
        """The canonical, re-encoded query sent to Strapi."""
        return encode(self.params)

    def signature(self, response_format: str | None) -> str:
        """Everything that makes one answer differ from another (Strapi-Response-Format included)."""
        return f"{self.strapi_path}?{self.query_string}#format={response_format or ''}"


def response_format(header: str | None) -> str | None:
    """``v4`` when Strapi would answer in its v4 format for this header value, else None.

    Strapi compares the header to exactly ``v4`` (``useJsonAPIFormat``); ``V4``, ``v5`` or a
    repeated header are its default format, so they share the default's cache entry.
    """
    return "v4" if header is not None and header.strip() == "v4" else None


def split_read_path(path_info: str) -> tuple[str, str | None] | None:
    """(collection, documentId or None) for ``/api/<c>`` or ``/api/<c>/<id>``; None for other paths."""
    parts = path_info.split("/")
    if len(parts) not in (3, 4) or parts[0] != "" or parts[1] != "api" or not all(parts[2:]):
        return None
    return parts[2], parts[3] if len(parts) == 4 else None


def publication_status(params: tuple[Param, ...]) -> str | None:
    """The one ``status`` of the query (checked), after checking ``publicationState`` too."""
    found: dict[str, list[Param]] = {}
    for param in params:
        if param.name in PUBLICATION_PARAMS:
            found.setdefault(param.name, []).append(param)
    legacy = found.get("publicationState", [])
    if legacy and not _single_plain(legacy, (LEGACY_PUBLICATION_STATE,)):
        raise InvalidParameter(
            "publicationState is accepted only as publicationState=live (Strapi 5 ignores it).",
            details={"param": legacy[0].key, "value": legacy[0].value},
        )
    status = found.get("status", [])
    if not status:
        return None
    if not _single_plain(status, STATUS_VALUES):
        raise InvalidParameter(
            "status is accepted once, as status=published (or status=draft where drafts are allowed).",
            details={"param": status[0].key, "value": status[0].value},
        )
    return status[0].value


def _single_plain(params: list[Param], values: tuple[str, ...]) -> bool:
    """True for exactly one ``name=value`` pair, no brackets, with one of ``values``."""
    return len(params) == 1 and params[0].key == params[0].name and params[0].value in values


@dataclass(frozen=True)
class WriteQuery:
    """The checked query of a write: what Strapi receives with it, and the status it asks for."""

    params: tuple[Param, ...]
    status: str | None  # "published", "draft", or None (Strapi publishes: the same as "published")

    @property
    def drafts(self) -> bool:
        """True when the write touches the draft only (its answer is the draft)."""
        return self.status == "draft"

    @cached_property
    def query_string(self) -> str:
        """The canonical, re-encoded query sent to Strapi."""
        return encode(self.params)


NO_QUERY = WriteQuery((), None)


class ReadRouter:
    """Routes reads of one tenant's exposed collections and single types; checks write queries too."""

    def __init__(
        self,
        collections: tuple[str, ...],
        extra_params: Mapping[str, frozenset[str]],
        model: ContentModel | None = None,
        single_types: tuple[str, ...] = (),
    ) -> None:
        self.walker = PathWalker(model or {})
        base = STRAPI_READ_PARAMS | PUBLICATION_PARAMS
        self.allowed = {name: base | extra_params.get(name, frozenset()) for name in collections}
        self.single_types = frozenset(single_types)
        # Hits repeat the same few URLs: remember their routes (refusals are not remembered).
        self.route = lru_cache(maxsize=ROUTE_CACHE_SIZE)(self._route)

    def _route(self, path_info: str, query_string: str) -> ReadRoute:
        """The validated route of a read, or NotFound / InvalidParameter; Strapi is never asked."""
        split = split_read_path(path_info)
        if split is None or split[0] not in self.allowed:
            raise NotFound(f"There is no collection '{split[0] if split else path_info}'.")
        collection, document_id = split
        if document_id is not None and collection in self.single_types:
            raise NotFound(
                f"'{collection}' is a single type: it is read at /api/{collection}, without an id."
            )
        if document_id is not None and not is_document_id(document_id):
            raise NotFound(f"There is no document '{document_id}' in '{collection}'.")
        params, status = self._checked(collection, query_string, self.allowed[collection])
        return ReadRoute(collection, document_id, params, status)

    def write_query(self, collection: str, query_string: str, allowed: frozenset[str]) -> WriteQuery:
        """The checked query of a write to ``collection``: only ``allowed`` names, by the read rules."""
        params, status = self._checked(collection, query_string, allowed)
        return WriteQuery(params, status)

    def _checked(
        self, collection: str, query_string: str, allowed: frozenset[str]
    ) -> tuple[tuple[Param, ...], str | None]:
        """The query's pairs, read as qs reads them, and its status; InvalidParameter for the rest."""
        params = canonical(parse_query(query_string))
        refuse_unlisted(params, allowed)
        refuse_failing_filters(params)
        status = publication_status(params)
        leak = draft_path(self.walker, collection, params)
        if leak is not None and status != "draft":
            raise InvalidParameter(
                f"Query parameter {leak!r} filters or sorts through a relation into content that has "
                "drafts (or into fields bffproxy does not know): only status=draft may do that.",
                details={"param": leak},
            )
        return params, status


def extra_read_params(config: Mapping[str, Any]) -> dict[str, frozenset[str]]:
    """``BFFPROXY_QUERY_PARAMS__<collection>``: further top-level names a collection accepts."""
    key = "QUERY_PARAMS"
    raw = as_mapping(config, key, str, allowed=config["COLLECTIONS"])
    extras = {}
    for collection, text in raw.items():
        names = frozenset(n.strip() for n in text.replace("|", ",").split(",") if n.strip())
        for name in names:
            if not _PARAM_NAME.fullmatch(name) or name in PUBLICATION_PARAMS:
                raise ConfigError(
                    f"{env_name(key)}__{collection} cannot accept {name!r}: names are letters, digits, "
                    "'_', '$' or '-', and status/publicationState have their own rules"
                )
        extras[collection] = names
    return extras
