"""Business rules: the one place where a validated write is changed before it goes to Strapi.

A rule is a plain function ``rule(context, data) -> data`` that takes the fields the schema accepted
and returns the fields to send. :data:`RULES` runs them in order, after validation (schemas.py) and
before the write; a rule may also refuse a write by raising an :class:`~bffproxy.errors.ApiError`.
To add a rule, write the function here, give it a test in ``tests/test_rules.py`` and append it to
:data:`RULES`.

Shipped rules:

* :func:`strip_script_tags` removes ``<script>`` elements from every rich-text field (schema field
  metadata ``strapi_type="richtext"``); Markdown may embed raw HTML, and the front end renders it.
* :func:`slug_from_title` fills an absent uid field (``slug``) on create from its target field:
  ``<slugified title>-<8 hex>``. Strapi 5 does not enforce uid uniqueness over REST, so the suffix
  keeps slugs unique without a look-up. With an ``Idempotency-Key`` the suffix is derived from the
  key, so a retry carries the same slug: that is how idempotency.py finds the document a timed-out
  create may have made (reconciliation). Without a key it is random.
* :func:`stamp_author` writes the authenticated user into a configured field. The seeded Strapi
  article type has **no author field**, so it is off by default; enable it per collection with
  ``BFFPROXY_AUTHOR_FIELDS__articles=author`` (the username) or ``=author:user_id`` / ``:email``
  once the content type has such a field. The client can never set that field itself: the schema
  does not list it, so sending it is a 422, and the rule writes it after validation.
"""

from __future__ import annotations

import re
import secrets
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from flask import Flask

from .schemas import StrapiSchema, fields_with
from .settings import ConfigError, as_mapping

AUTHOR_ATTRIBUTES = ("username", "user_id", "email")
SLUG_BASE_MAX = 120

_SCRIPT_ELEMENT = re.compile(r"<script\b[^>]*>.*?</script\s*>", re.IGNORECASE | re.DOTALL)
_SCRIPT_TAG = re.compile(r"</?script\b[^>]*>?", re.IGNORECASE)
# Latin letters NFKD does not decompose: without this, slugify would drop them ("Łódź" -> "odz").
_TRANSLITERATE = str.maketrans(
    {
        "ß": "ss",
        "ẞ": "SS",
        "Æ": "AE",
        "æ": "ae",
        "Œ": "OE",
        "œ": "oe",
        "Ø": "O",
        "ø": "o",
        "Ł": "L",
        "ł": "l",
        "Đ": "D",
        "đ": "d",
        "Ð": "D",
        "ð": "d",
        "Þ": "TH",
        "þ": "th",
        "\u0131": "i",  # dotless i
        "Ħ": "H",
        "ħ": "h",
    }
)


class User(Protocol):
    """What the rules need to know of the authenticated user (auth.Identity has it)."""

    @property
    def user_id(self) -> Any: ...

    @property
    def username(self) -> Any: ...

    @property
    def email(self) -> Any: ...


@dataclass(frozen=True)
class WriteContext:
    """What a rule may look at: the collection, the kind of write, who writes, and the settings."""

    collection: str
    action: str  # "create" or "update"
    schema: StrapiSchema
    user: User | None = None
    # A stable digest of (tenant, user, Idempotency-Key) when the client sent a key.
    idempotency_scope: str | None = None
    author_fields: Mapping[str, tuple[str, str]] | None = None


Rule = Callable[[WriteContext, dict[str, Any]], dict[str, Any]]


def without_scripts(value: str) -> str:
    """``value`` with every script element and stray script tag removed (until none is left)."""
    previous = None
    while previous != value:  # "<scr<script></script>ipt>" must not reassemble into a tag
        previous = value
        value = _SCRIPT_TAG.sub("", _SCRIPT_ELEMENT.sub("", value))
    return value


def strip_script_tags(ctx: WriteContext, data: dict[str, Any]) -> dict[str, Any]:
    """Remove <script> elements from rich-text fields."""
    for name, kind in fields_with(ctx.schema, "strapi_type").items():
        if kind == "richtext" and isinstance(data.get(name), str):
            data[name] = without_scripts(data[name])
    return data


def slugify(text: str) -> str:
    """ASCII, lower-case, words joined by single dashes (what Strapi's admin UI would make)."""
    ascii_text = (
        unicodedata.normalize("NFKD", text.translate(_TRANSLITERATE)).encode("ascii", "ignore").decode()
    )
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")
    return slug[:SLUG_BASE_MAX].rstrip("-")


def slug_suffix(ctx: WriteContext) -> str:
    """8 hex digits: from the idempotency scope when there is one (stable on retry), else random."""
    return ctx.idempotency_scope[:8] if ctx.idempotency_scope else secrets.token_hex(4)


def slug_from_title(ctx: WriteContext, data: dict[str, Any]) -> dict[str, Any]:
    """On create, fill an absent uid field from its target: ``<slugified target>-<suffix>``."""
    if ctx.action != "create":
        return data
    for name, target in fields_with(ctx.schema, "uid_target").items():
        source = data.get(target)
        if not data.get(name) and isinstance(source, str) and source.strip():
            data[name] = "-".join(filter(None, (slugify(source), slug_suffix(ctx))))
    return data


def stamp_author(ctx: WriteContext, data: dict[str, Any]) -> dict[str, Any]:
    """Write the authenticated user into the collection's configured author field, if any."""
    configured = (ctx.author_fields or {}).get(ctx.collection)
    if configured is None or ctx.user is None:
        return data
    field_name, attribute = configured
    if ctx.action == "create" or field_name in data:
        data[field_name] = getattr(ctx.user, attribute)
    return data


RULES: list[Rule] = [strip_script_tags, slug_from_title, stamp_author]


def apply_rules(ctx: WriteContext, data: Mapping[str, Any]) -> dict[str, Any]:
    """Run every rule, in order, on a copy of ``data``."""
    result = dict(data)
    for rule in RULES:
        result = rule(ctx, result)
    return result


def _author_field(value: str) -> tuple[str, str]:
    """Parse ``field`` or ``field:attribute``."""
    name, _, attribute = value.partition(":")
    attribute = attribute.strip() or "username"
    if not name.strip() or attribute not in AUTHOR_ATTRIBUTES:
        raise ValueError(value)
    return name.strip(), attribute


def init_app(app: Flask) -> None:
    """Validate BFFPROXY_AUTHOR_FIELDS (collection=field[:username|user_id|email])."""
    app.config.setdefault("AUTHOR_FIELDS", "")
    try:
        app.config["AUTHOR_FIELDS"] = as_mapping(
            app.config, "AUTHOR_FIELDS", _author_field, allowed=app.config["COLLECTIONS"]
        )
    except ConfigError as exc:
        expected = f"collection=field or collection=field:{'|'.join(AUTHOR_ATTRIBUTES)}"
        raise ConfigError(f"{exc} (expected {expected})") from exc
