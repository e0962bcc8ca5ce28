"""Query paths that walk relations: none may filter or sort by another collection's drafts.

Strapi 5 applies ``status=published`` to the documents it returns, not to the related rows a
filter or sort walks through: ``/api/categories?filters[articles][title][$eq]=<draft title>``
matches a category whose article is still a draft (checked on 5.54 with a draft-only article), so
a count or an order answers questions about unpublished text, one request at a time. Populated
relations themselves show published rows only; it is filtering and sorting *through* a relation
into a collection with draft & publish that leaks.

:func:`draft_path` walks every ``filters``, ``sort`` and ``populate[...][filters|sort]`` path of a
query with the content model (each collection's relations and whether it has drafts) and
names the first one that reaches a collection with drafts, or an unknown field's insides (a
component, a dynamic zone, an unmodelled collection: allow-list, not deny-list). Only a read of
drafts (``status=draft``, which the ``drafts`` policy guards) may use such paths.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from .query import Param

LOGICAL = frozenset({"$and", "$or", "$not"})
POPULATE_NESTED = "populate"
POPULATE_QUERIES = frozenset({"filters", "sort"})


@dataclass(frozen=True)
class ModelledCollection:
    """What the read path knows of a collection: whether it has drafts, and its relations."""

    draft_and_publish: bool
    relations: Mapping[str, str] = field(default_factory=dict)


ContentModel = Mapping[str, ModelledCollection]


def _is_index(segment: str) -> bool:
    return segment.isdigit() or segment == ""


class PathWalker:
    """Walks query paths through one tenant's content model."""

    def __init__(self, model: ContentModel) -> None:
        self.model = model

    def _target(self, collection: str | None, name: str) -> str | None:
        known = self.model.get(collection) if collection else None
        return known.relations.get(name) if known else None

    def _has_drafts(self, collection: str) -> bool:
        known = self.model.get(collection)
        return known is None or known.draft_and_publish  # unknown: assume it has drafts

    def _traverse(self, collection: str | None, name: str) -> str | None:
        """The relation's target when it may be walked; raise _Leak when it may not."""
        target = self._target(collection, name)
        if target is None or self._has_drafts(target):
            raise _Leak(f"{collection or '?'}.{name}")
        return target

    def filters(self, collection: str | None, path: list[str]) -> None:
        """Check a ``filters`` path (after ``filters``): fields, relations, then operators only."""
        current = collection
        for i, segment in enumerate(path):
            if _is_index(segment) or segment in LOGICAL:
                continue
            if segment.startswith("$"):
                return  # a comparison: what follows is its operand
            walks_on = any(not (s.startswith("$") or _is_index(s)) for s in path[i + 1 :])
            if walks_on or self._target(current, segment) is not None:
                # A relation, even compared directly ($null, $eq: id), joins the target's rows.
                current = self._traverse(current, segment)
                continue
            return  # a field of ``current`` compared by the operators that follow

    def sort(self, collection: str | None, path: list[str], value: str | None) -> None:
        """Check a ``sort`` path: ``sort=a.b:asc,c``, ``sort[0]=a.b``, ``sort[a][b]=asc``."""
        names = [s for s in path if not _is_index(s)]
        orders = (
            [names] if names else [item.split(":")[0].strip().split(".") for item in (value or "").split(",")]
        )
        for fields_path in orders:
            current = collection
            for name in fields_path[:-1]:
                current = self._traverse(current, name)

    def populate(self, collection: str | None, path: list[str], value: str | None) -> None:
        """Check ``populate[rel]...[filters|sort]...``: the query applies to the populated target."""
        current, i = collection, 0
        while i < len(path):
            name = path[i]
            if _is_index(name):
                i += 1
                continue
            target = self._target(current, name)
            following = path[i + 1] if i + 1 < len(path) else None
            if following == POPULATE_NESTED:
                current, i = target, i + 2
            elif following == "filters":
                return self.filters(target, path[i + 2 :])
            elif following == "sort":
                return self.sort(target, path[i + 2 :], value)
            elif following == "on":  # a dynamic zone: on[<component uid>] is queried like a relation
                current, i = None, i + 2
            else:
                return None  # fields, count, true/false, "*": nothing is filtered
        return None


class _Leak(Exception):
    """A path walks into drafts (internal: the walk stops at the first one)."""


def draft_path(walker: PathWalker, collection: str, params: Iterable[Param]) -> str | None:
    """The key of the first parameter whose path could reveal drafts, or None."""
    for param in params:
        path = param.segments[1:]
        try:
            if param.name == "filters":
                walker.filters(collection, path)
            elif param.name == "sort":
                walker.sort(collection, path, param.value)
            elif param.name == "populate":
                walker.populate(collection, path, param.value)
        except _Leak:
            return param.key
    return None
