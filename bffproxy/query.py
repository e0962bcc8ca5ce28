"""Strapi's query string, read the way Strapi reads it, checked against an allow-list.

Strapi 5 parses ``ctx.querystring`` with ``qs`` 6.15 (``@strapi/core`` ``middlewares/query``:
``strictNullHandling: true, arrayLimit: 100, depth: 20``; ``allowDots`` off). A guard that parses
differently from the system behind it is a bypass (``[status]=draft`` is ``status`` to qs, and was
nothing to a ``name.split("[")`` check), so this module reproduces the parts of ``qs/lib/parse.js``
that decide *which top-level parameter* a pair sets:

* ``%5B``/``%5D`` become ``[``/``]`` before anything else; pairs are split on ``&`` only;
* a pair's key ends at the first ``]=`` (if any), else at the first ``=``; no ``=`` is a null value;
* keys and values are decoded like qs's ``utils.decode``: ``+`` is a space, then
  ``decodeURIComponent``, and on any error the whole string stays as it was;
* the top-level name is the text before the first ``[``, or, for a key that starts with ``[``, the
  content of its first balanced bracket group (``[status]`` -> ``status``);
* keys naming ``Object.prototype`` members are dropped by qs (and refused here).

Nothing is forwarded as received: every accepted pair is re-encoded from its decoded form (so qs
decodes exactly what was checked), pairs are grouped by top-level name in a stable order (so
``?a=1&b=2`` and ``?b=2&a=1`` are one cache entry) and pairs of one name keep their order
(``sort=title&sort=id`` is not ``sort=id&sort=title``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import quote

from .errors import BadRequest

# Strapi 5's REST read parameters (docs.strapi.io, "REST API parameters"); `status` and the v4
# `publicationState` are checked value by value in reads.py. Anything else needs configuration.
STRAPI_READ_PARAMS = frozenset({"filters", "populate", "fields", "sort", "pagination", "locale"})
# Strapi's qs depth: bracket groups past it stay one literal key.
QS_DEPTH = 20
# qs's default parameterLimit: Strapi silently ignores pairs past it, so we refuse them instead.
PARAMETER_LIMIT = 1000
# qs drops keys that name Object.prototype members (allowPrototypes: false).
_PROTOTYPE_NAMES = frozenset(
    {
        "__proto__",
        "__defineGetter__",
        "__defineSetter__",
        "__lookupGetter__",
        "__lookupSetter__",
        "constructor",
        "hasOwnProperty",
        "isPrototypeOf",
        "propertyIsEnumerable",
        "toLocaleString",
        "toString",
        "valueOf",
    }
)
_BRACKETS = re.compile(r"%5[bBdD]")
_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")
# Printable ASCII: what a conforming client sends in a request target (RFC 3986).
_RAW_QUERY = re.compile(r"[\x21-\x7e]*")


class InvalidParameter(BadRequest):
    code, message = "invalid_parameter", "A query parameter is not accepted."


@dataclass(frozen=True)
class Param:
    """One ``name=value`` pair as qs sees it: decoded key, its top-level name, decoded value."""

    key: str
    name: str
    value: str | None  # None: no "=" at all (qs strictNullHandling makes it null)

    @property
    def segments(self) -> list[str]:
        """The key's path as qs builds it (see :func:`key_segments`)."""
        return key_segments(self.key)

    def encoded(self) -> str:
        """The pair percent-encoded so that qs decodes exactly ``key`` and ``value`` back."""
        key = quote(self.key, safe="[]")
        return key if self.value is None else f"{key}={quote(self.value, safe='')}"


def qs_decode(text: str) -> str:
    """qs's ``utils.decode``: ``+`` is a space, then decodeURIComponent; unchanged on any error."""
    spaced = text.replace("+", " ")
    if "%" not in spaced:
        return spaced
    if _PERCENT.search(spaced):
        return spaced  # decodeURIComponent throws on a "%" without two hex digits
    raw = bytearray()
    i = 0
    while i < len(spaced):
        if spaced[i] == "%":
            raw.append(int(spaced[i + 1 : i + 3], 16))
            i += 3
        else:
            raw.extend(spaced[i].encode("utf-8"))
            i += 1
    try:
        return raw.decode("utf-8")  # strict, like decodeURIComponent (no surrogates, no overlongs)
    except UnicodeDecodeError:
        return spaced


def top_level_name(key: str) -> str | None:
    """The top-level parameter qs assigns ``key`` to, or None when qs drops the pair."""
    first = key.find("[")
    if first < 0:
        name = key
    elif first > 0:
        name = key[:first]
    else:
        close = _balanced_close(key, first)
        # An unterminated group stays one literal segment: qs wraps it in brackets, then unwraps.
        name = key if close < 0 else key[1:close]
    if not key or name in _PROTOTYPE_NAMES:
        return None
    return name


def key_segments(key: str, depth: int = QS_DEPTH) -> list[str]:
    """The key's path as qs builds it: ``filters[$and][0][title]`` -> filters, $and, 0, title.

    Up to ``depth`` bracket groups; what follows them (or an unterminated group) stays one segment.
    """
    first = key.find("[")
    segments = [key if first < 0 else key[:first]] if first != 0 else []
    open_at = first
    while open_at >= 0 and len(segments) < depth + (1 if first > 0 else 0):
        close = _balanced_close(key, open_at)
        if close < 0:
            break
        segments.append(key[open_at + 1 : close])
        open_at = key.find("[", close + 1)
    if open_at >= 0:
        segments.append(key[open_at:])
    return segments


def _balanced_close(key: str, open_at: int) -> int:
    """The index of the ``]`` that closes the group opened at ``open_at``, or -1 (qs's scan)."""
    level = 0
    for i in range(open_at, len(key)):
        if key[i] == "[":
            level += 1
        elif key[i] == "]":
            level -= 1
            if level == 0:
                return i
    return -1


def split_pairs(query_string: str) -> list[tuple[str, str | None]]:
    """The raw query as qs splits it: (decoded key, decoded value or None), empty keys skipped."""
    if not _RAW_QUERY.fullmatch(query_string):
        raise InvalidParameter("The query string must be percent-encoded ASCII.", details={"param": None})
    pairs = []
    for part in _BRACKETS.sub(lambda m: "[" if m.group()[2] in "bB" else "]", query_string).split("&"):
        bracket_equals = part.find("]=")
        pos = part.find("=") if bracket_equals < 0 else bracket_equals + 1
        key = qs_decode(part if pos < 0 else part[:pos])
        if key:
            pairs.append((key, None if pos < 0 else qs_decode(part[pos + 1 :])))
    return pairs


def parse_query(query_string: str) -> list[Param]:
    """Every pair of ``query_string`` with the top-level name qs gives it (refusing dropped ones)."""
    params = []
    for key, value in split_pairs(query_string):
        name = top_level_name(key)
        if name is None:
            raise InvalidParameter(f"Query parameter {key!r} is not accepted.", details={"param": key})
        params.append(Param(key, name, value))
    if len(params) > PARAMETER_LIMIT:
        raise InvalidParameter(
            f"At most {PARAMETER_LIMIT} query parameters are accepted.", details={"param": None}
        )
    return params


def refuse_unlisted(params: Iterable[Param], allowed: frozenset[str]) -> None:
    """400 ``invalid_parameter`` naming the first pair whose top-level name is not allowed."""
    for param in params:
        if param.name not in allowed:
            raise InvalidParameter(
                f"Query parameter {param.name!r} is not accepted here.",
                details={"param": param.key, "allowed": sorted(allowed)},
            )


def canonical(params: Iterable[Param]) -> tuple[Param, ...]:
    """Pairs grouped by top-level name (names sorted), each name's pairs in their original order."""
    return tuple(sorted(params, key=lambda param: param.name))  # sorted() is stable


def encode(params: Iterable[Param]) -> str:
    """The query string sent to Strapi (and hashed into the cache key)."""
    return "&".join(param.encoded() for param in params)


# -- filter shapes Strapi fails on ------------------------------------------------------------------
#
# Strapi 5.54 answers 500 (not 400) to some filter shapes, so a client's typo would read as "Strapi
# failed" (502 upstream_error). Found by fuzzing the OpenAPI document against the real Strapi:
# ``filters[$or]=x``, ``filters[$or][0]=x``, ``filters[$not]=``, ``filters[$not][0]=x`` (a logical
# operator with a value, or an index, where it needs conditions) and ``$between`` with anything but
# two values. Those are refused here (400). Two more need the content model and are left to Strapi
# (a 502): ``$and``/``$or`` under a plain field (``filters[title][$or][0][$eq]=x``; under a relation
# they work) and ``$not`` right under a relation (``filters[category][$not][name]=x``).

LOGICAL_LISTS = frozenset({"$and", "$or"})
BETWEEN = "$between"


def refuse_failing_filters(params: Iterable[Param]) -> None:
    """400 ``invalid_parameter`` for a ``filters`` shape Strapi fails on (also under ``populate``)."""
    betweens: dict[tuple[str, ...], list[str]] = {}
    for param in params:
        for path in _filter_paths(param):
            problem = _conditions(path, betweens, tuple(param.segments[: len(param.segments) - len(path)]))
            if problem:
                raise InvalidParameter(
                    f"Query parameter {param.key!r}: {problem}", details={"param": param.key}
                )
    for prefix, items in betweens.items():
        if len(items) != 2 or (items[0] != "" and sorted(items) != ["0", "1"]):
            key = prefix[0] + "".join(f"[{s}]" for s in prefix[1:])
            raise InvalidParameter(f"{key} takes exactly two values ([0] and [1]).", details={"param": key})


def _filter_paths(param: Param) -> list[list[str]]:
    """The segments after each ``filters`` the pair sets: its own, or ``populate[...][filters]``'s."""
    segments = param.segments
    if param.name == "filters":
        return [segments[1:]]
    if param.name == "populate":
        return [segments[i + 1 :] for i in range(2, len(segments)) if segments[i] == "filters"]
    return []


def _conditions(
    path: list[str], betweens: dict[tuple[str, ...], list[str]], prefix: tuple[str, ...]
) -> str | None:
    """Where conditions go (fields, $and/$or/$not): what is wrong with ``path`` there, or None."""
    if not path:
        return "a value where conditions are needed (a field, or $and/$or/$not with conditions)."
    head, rest = path[0], path[1:]
    if head in LOGICAL_LISTS:
        if not rest:
            return f"{head} takes a list of conditions ({head}[0][field]...)."
        return _conditions(rest[1:], betweens, (*prefix, head, rest[0]))
    if head == "$not":
        return _conditions(rest, betweens, (*prefix, head))
    if head.isdigit() or head == "":
        return f"[{head}] where a field name is needed."
    return _operators(rest, betweens, (*prefix, head))


def _operators(
    path: list[str], betweens: dict[tuple[str, ...], list[str]], prefix: tuple[str, ...]
) -> str | None:
    """After a field: operators (or a relation's own conditions); what is wrong there, or None."""
    if not path:
        return None  # field=value: $eq
    head, rest = path[0], path[1:]
    if head == BETWEEN:
        if len(rest) > 1:
            return f"{BETWEEN} takes two plain values."
        betweens.setdefault((*prefix, head), []).append(rest[0] if rest else "")
        return None
    if head.startswith("$"):
        return None  # a comparison: Strapi checks its operand
    return _conditions(path, betweens, prefix)  # a relation's field, with conditions of its own
