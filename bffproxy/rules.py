"""Business rules: the one place where a validated write is changed before it goes to Strapi.

A rule is a plain function ``rule(context, data) -> data`` that takes the fields the schema accepted
and returns the fields to send. :data:`RULES` runs them in order, after validation (schemas.py) and
before the write; a rule may also refuse a write by raising an :class:`~bffproxy.errors.ApiError`.
To add a rule, write the function here, give it a test in ``tests/test_rules.py`` and append it to
:data:`RULES`.

Shipped rules:

* :func:`refuse_unsafe_rich_text` refuses (422, naming the field) a rich-text field (schema field
  metadata ``strapi_type="richtext"``) that could run script when the front end renders it. It never
  rewrites the text; the reasons are below.
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

Rich text: refuse, do not rewrite
---------------------------------
Strapi's ``richtext`` is Markdown, and Markdown may embed raw HTML that a renderer passes through.
The dangers are HTML that runs script (``<img onerror>``, ``<svg onload>``, ``<iframe srcdoc>``) and
script URLs in HTML or Markdown links (``<a href="jav&#x09;ascript:...">``, ``[x](javascript:...)``).
The regex that stripped ``<script>`` caught neither, so HTML is judged by nh3 (ammonia, a maintained
html5ever-based sanitizer: it parses as a browser does, entities and broken tags included) with an
allow-list per field, ``BFFPROXY_RICH_TEXT_HTML__<collection>__<field>`` (default
:data:`DEFAULT_RICH_TEXT_HTML`: the elements Markdown itself produces) and
``BFFPROXY_RICH_TEXT_URL_SCHEMES`` (``http,https,mailto``).

nh3's *output* cannot be stored: it is HTML, so it escapes ``a < b`` to ``a &lt; b`` and ``> quote``
to ``&gt; quote`` (which a Markdown renderer then shows literally), and it keeps ``[x](javascript:
alert(1))``, which is only text to an HTML parser. Un-escaping "what nh3 introduced" would need to
know which ``<`` was text and which was markup -- the very question a sanitizer answers. So the rule
asks nh3 whether it *would change* the field and refuses the write if so. For a write API a 422 that
names the field and the element or attribute is the honest answer: the editor sees what to change,
and nothing is silently altered between what was written and what is published. In detail:

1. HTML: the text (autolinks such as ``<https://x>`` read as their URL, unless they hold a ``=``:
   inside an HTML block a browser reads ``<https://x/onfocus=...>`` as a tag) is sanitized by nh3, and
   Python's HTML parser reads start tags, attributes, text and comments in the text and in nh3's
   output; any difference (an element, an attribute or a URL removed, text re-read as markup) is a
   refusal. Comparing what a parser reads, not the strings, makes ``a < b`` equal to ``a &lt; b``.
2. Markdown links: the targets of ``[x](...)``, ``![x](...)``, ``[label]: ...`` and ``<scheme:...>``
   are decoded as CommonMark does (entities, backslash escapes) and as a browser does (tabs and
   newlines removed, leading control characters ignored); a scheme outside the allow-list is refused.
3. A safety net under (2): ``javascript:``, ``vbscript:`` or ``livescript:`` anywhere in the decoded
   text, followed by a non-space, is refused ("JavaScript: the good parts" passes).

The check reads the text as a browser would read raw HTML, everywhere, because inside a Markdown
HTML block even a code fence is raw HTML: it knows no Markdown code spans. The price is that code
containing a tag-like ``<`` (```` `List<String>` ````, ``x<y``) is refused too; write ``x < y``, or
``&lt;`` outside code. Knowing the Markdown structure would need a CommonMark parser (such as
markdown-it-py) that parses exactly as the front end's renderer; this project does not depend on one.
"""

from __future__ import annotations

import html
import re
import secrets
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import Any, Protocol

import nh3
from flask import Flask, current_app, has_app_context

from .schemas import StrapiSchema, fields_with, invalid, spec_for
from .settings import ConfigError, as_mapping, env_name

AUTHOR_ATTRIBUTES = ("username", "user_id", "email")
SLUG_BASE_MAX = 120

# The HTML a rich-text field may embed unless BFFPROXY_RICH_TEXT_HTML__<collection>__<field> says
# otherwise: what Markdown itself produces, so raw HTML can do nothing a Markdown renderer would not.
DEFAULT_RICH_TEXT_HTML = (
    "p, br, hr, em, strong, code, pre, blockquote, ul, ol, li, h1, h2, h3, h4, h5, h6,"
    " a[href, title], img[src, alt, title], table, thead, tbody, tfoot, tr, th, td, caption"
)
DEFAULT_URL_SCHEMES = ("http", "https", "mailto")
# Refused in the configuration too: they run script, load documents or restyle the page.
NEVER_ALLOWED_TAGS = frozenset(
    [
        "script",
        "style",
        "iframe",
        "frame",
        "frameset",
        "object",
        "embed",
        "applet",
        "base",
        "meta",
        "link",
        "form",
        "svg",
        "math",
        "template",
        "noscript",
        "textarea",
        "xmp",
        "plaintext",
    ]
)
NEVER_ALLOWED_ATTRIBUTES = frozenset({"style", "srcdoc", "formaction", "srcset"})
SCRIPT_SCHEMES = frozenset({"javascript", "vbscript", "livescript"})
PROBLEMS_SHOWN = 5

_ALLOWED_ITEM = re.compile(r"([a-z][a-z0-9]*)\s*(?:\[([a-z0-9_\-,\s]*)\])?", re.IGNORECASE)
_SCHEME = re.compile(r"[a-z][a-z0-9+.\-]*")
_URL_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*):")
# Where Markdown puts a URL: [text](url), ![alt](url), [label]: url -- in <...> or bare. Blockquote
# markers (">") may sit between the parts when they span lines; reading them as part of the gap
# can only find more targets, never fewer.
_LINK_TARGETS = (re.compile(r"\]\([\s>]*(<[^<>\n]*>?|\S*)"), re.compile(r"\]:[\s>]*(<[^<>\n]*>?|\S*)"))
# CommonMark autolinks, <scheme:...> and <user@host>: links, not HTML, to a Markdown renderer.
_AUTOLINK = re.compile(
    r"<([A-Za-z][A-Za-z0-9+.\-]{1,31}:[^\x00-\x20<>]*|[A-Za-z0-9.!#$%&'*+/?^_`{|}~\-]+@[A-Za-z0-9.\-]+)>"
)
# CommonMark's decoding of a link target: backslash-escaped punctuation and entity references.
_BACKSLASH_ESCAPE = r"\\([!-/:-@\[-`{-~])"
_MARKDOWN_ESCAPE = re.compile(
    _BACKSLASH_ESCAPE + r"|(&(?:#[0-9]{1,7}|#[xX][0-9a-fA-F]{1,6}|[A-Za-z][A-Za-z0-9]{1,31});)"
)
# A script URL anywhere in the decoded text: the safety net under the link parsing above.
_SCRIPT_URL = re.compile(r"(?<![a-z0-9+.\-])(?:java|vb|live)script:(?=\S)", re.IGNORECASE)
_C0_AND_SPACE = "".join(map(chr, range(0x21)))
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
    # collection -> rich-text field -> allow-list; None: the app's BFFPROXY_RICH_TEXT_HTML.
    rich_text: Mapping[str, Mapping[str, RichTextPolicy]] | None = None


Rule = Callable[[WriteContext, dict[str, Any]], dict[str, Any]]


@dataclass(frozen=True, repr=False)
class RichTextPolicy:
    """What a rich-text field may embed: HTML elements with their attributes, and URL schemes."""

    tags: frozenset[str]
    attributes: Mapping[str, frozenset[str]]
    url_schemes: frozenset[str]

    @classmethod
    def parse(cls, allowed: str, url_schemes: Iterable[str] = DEFAULT_URL_SCHEMES) -> RichTextPolicy:
        """Read ``p, em, a[href, title], ...`` (``none``: no HTML at all); raise ValueError."""
        tags: set[str] = set()
        attributes: dict[str, frozenset[str]] = {}
        items = [] if allowed.strip().lower() == "none" else re.split(r",(?![^\[]*\])", allowed)
        for item in filter(None, map(str.strip, items)):
            match = _ALLOWED_ITEM.fullmatch(item)
            if match is None:
                raise ValueError(f"{item!r} is not tag or tag[attribute, ...]")
            tag, names = match[1].lower(), set(re.split(r"[\s,]+", (match[2] or "").lower())) - {""}
            refused = sorted(({tag} & NEVER_ALLOWED_TAGS) | {n for n in names if _never_allowed(n)})
            if refused:
                raise ValueError(f"{', '.join(refused)} can never be allowed: it can run script")
            tags.add(tag)
            attributes[tag] = attributes.get(tag, frozenset()) | names
        return cls(frozenset(tags), {t: a for t, a in attributes.items() if a}, frozenset(url_schemes))

    def __str__(self) -> str:
        """The allow-list as it is configured: ``a[href, title], em, ...``."""
        items = [
            f"{t}[{', '.join(sorted(self.attributes[t]))}]" if t in self.attributes else t
            for t in sorted(self.tags)
        ]
        return f"{', '.join(items) or 'none'}; URL schemes {', '.join(sorted(self.url_schemes))}"

    def __repr__(self) -> str:
        """What ``bffproxy check-config`` shows."""
        return f"RichTextPolicy({str(self)!r})"

    def sanitized(self, markup: str) -> str:
        """``markup`` as nh3 leaves it under this allow-list."""
        return nh3.clean(
            markup,
            tags=set(self.tags),
            # "*" too: without it nh3 keeps lang and title on every element.
            attributes={"*": set(), **{tag: set(names) for tag, names in self.attributes.items()}},
            url_schemes=set(self.url_schemes),
            link_rel=None,  # rel="noopener" would be a change to report, not a danger
            strip_comments=False,  # "<!-- more -->" is common in Markdown and runs nothing
        )

    def refusals(self, event: tuple[Any, ...]) -> list[str]:
        """Why the sanitizer changed this piece of markup, in an editor's words."""
        kind, *rest = event
        if kind == "tag":
            tag, attributes = rest
            if tag not in self.tags:
                return [f"the HTML element <{tag}> is not allowed"]
            allowed = self.attributes.get(tag, frozenset())
            return [
                f"the {name} attribute of <{tag}> is not allowed"
                if name not in allowed
                else f"the {name} of <{tag}> is not an allowed URL ({value[:40]!r})"
                for name, value in attributes
                if name not in allowed or (name in ("href", "src") and not self.allows_url(value))
            ]
        if kind == "text":
            text = rest[0][max(rest[0].find("<"), 0) :]
            return [f"{text[:40]!r} reads as HTML to a browser (write '&lt;' or '< ' for a '<')"]
        if kind == "comment":
            return [f"the HTML comment {rest[0][:40]!r} reads differently to a browser"]
        return [f"HTML {kind}s are not allowed"]

    def allows_url(self, url: str) -> bool:
        """True for a relative URL or one whose scheme is allowed."""
        scheme = url_scheme(url)
        return scheme is None or scheme in self.url_schemes


def _never_allowed(attribute: str) -> bool:
    """Event handlers and attributes that embed documents, styles or actions."""
    return attribute.startswith("on") or attribute in NEVER_ALLOWED_ATTRIBUTES


DEFAULT_POLICY = RichTextPolicy.parse(DEFAULT_RICH_TEXT_HTML)


class _MarkupEvents(HTMLParser):
    """What an HTML document holds, in order: start tags with their attributes, text, comments.

    End tags are left out: they run nothing, and a sanitizer adds the ones a document leaves implied.
    """

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.events: list[tuple[Any, ...]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag != "tbody" or attrs:  # a tree builder inserts <tbody> into every table
            self.events.append(("tag", tag, tuple(sorted((n, v or "") for n, v in attrs))))

    handle_startendtag = handle_starttag

    def handle_data(self, data: str) -> None:
        # What a browser does before it parses: CR LF to LF, NUL dropped, a newline after <pre> dropped.
        data = data.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "")
        last = self.events[-1] if self.events else ("",)
        if last[0] == "text":
            self.events[-1] = ("text", last[1] + data)
            return
        if last[0] == "tag" and last[1] in ("pre", "listing") and data.startswith("\n"):
            data = data[1:]
        if data:
            self.events.append(("text", data))

    def handle_comment(self, data: str) -> None:
        self.events.append(("comment", data))

    def handle_decl(self, decl: str) -> None:
        self.events.append(("declaration", decl))

    def unknown_decl(self, data: str) -> None:
        self.events.append(("declaration", data))

    def handle_pi(self, data: str) -> None:
        self.events.append(("processing instruction", data))


def markup_events(html: str) -> list[tuple[Any, ...]]:
    """The start tags, text and comments Python's HTML parser reads in ``html``."""
    parser = _MarkupEvents()
    parser.feed(html)
    parser.close()
    return parser.events


def url_scheme(url: str) -> str | None:
    """The scheme a browser reads in ``url``, lower-case, or None for a relative URL."""
    match = _URL_SCHEME.match(re.sub(r"[\t\n\r]", "", url).lstrip(_C0_AND_SPACE))
    return match[1].lower() if match else None


def markdown_unescaped(text: str) -> str:
    """``text`` as CommonMark decodes a link target: ``\\:`` is ``:``, ``&#106;`` is ``j``."""
    return _MARKDOWN_ESCAPE.sub(lambda m: m[1] or html.unescape(m[2]), text)


def _link_problems(text: str, policy: RichTextPolicy) -> Iterator[str]:
    """Markdown link and image targets, and autolinks, whose scheme is not allowed."""
    targets = [m[1] for pattern in _LINK_TARGETS for m in pattern.finditer(text)]
    targets += [m[1] for m in _AUTOLINK.finditer(text) if ":" in m[1]]
    for target in targets:
        if not policy.allows_url(markdown_unescaped(target.strip("<>"))):
            yield f"the link target {target[:40]!r} is not an allowed URL"


def _script_url_problems(text: str) -> Iterator[str]:
    """A script URL anywhere, however it is escaped: what the link parsing may have missed."""
    spaced = re.sub(r"[\r\n]", " ", text)  # a raw line break ends a URL; an encoded one does not
    unescaped = html.unescape(re.sub(_BACKSLASH_ESCAPE, r"\1", spaced))
    for variant in (markdown_unescaped(spaced), unescaped):
        match = _SCRIPT_URL.search(re.sub(r"[\t\n\r]", "", variant))
        if match:
            yield f"{match[0]} URLs are not allowed"
            return


def _plain_autolinks(text: str) -> str:
    """``text`` with each autolink replaced by its URL, where no browser could read it as a tag.

    A Markdown renderer makes ``<https://x>`` a link, but inside a raw HTML block a browser reads it
    as a tag named ``https:`` whose attributes come from the rest: ``/onfocus=...`` would be one.
    Without ``=`` no attribute has a value, so only such autolinks are taken as plain URLs.
    """
    return _AUTOLINK.sub(lambda m: m[0] if "=" in m[1] else m[1], text)


def _html_problems(text: str, policy: RichTextPolicy) -> list[str]:
    """What nh3 would change in ``text`` read as HTML, compared by what a parser reads in each."""
    candidate = _plain_autolinks(text)
    before, after = markup_events(candidate), markup_events(policy.sanitized(candidate))
    if before == after:
        return []
    # Name the elements and attributes; text only when nothing else changed (the merged text
    # around a removed tag is a consequence, not a cause).
    changed = sorted(set(before) - set(after), key=lambda event: (event[0] == "text", before.index(event)))
    found = [reason for event in changed for reason in policy.refusals(event) if event[0] != "text"]
    found = found or [reason for event in changed for reason in policy.refusals(event)]
    return found or ["it has HTML that does not survive sanitizing"]


def rich_text_problems(text: str, policy: RichTextPolicy = DEFAULT_POLICY) -> list[str]:
    """Why ``text`` (Markdown that may embed HTML) is unsafe to render: [] when it is safe."""
    problems = [*_link_problems(text, policy), *_script_url_problems(text), *_html_problems(text, policy)]
    return list(dict.fromkeys(problems))


def rich_text_policy(ctx: WriteContext, field_name: str) -> RichTextPolicy:
    """The allow-list of one rich-text field: from the context, the app's settings, or the default."""
    policies = ctx.rich_text
    if policies is None:
        policies = current_app.config.get("RICH_TEXT_HTML", {}) if has_app_context() else {}
    return policies.get(ctx.collection, {}).get(field_name, DEFAULT_POLICY)


def refuse_unsafe_rich_text(ctx: WriteContext, data: dict[str, Any]) -> dict[str, Any]:
    """Refuse (422) rich-text fields with HTML or links the allow-list does not take, naming each."""
    errors = []
    for name, kind in fields_with(ctx.schema, "strapi_type").items():
        value = data.get(name)
        if kind != "richtext" or not isinstance(value, str):
            continue
        policy = rich_text_policy(ctx, name)
        problems = rich_text_problems(value, policy)
        if problems:
            shown = "; ".join(problems[:PROBLEMS_SHOWN]) + ("; ..." if len(problems) > PROBLEMS_SHOWN else "")
            errors.append({"field": name, "message": f"Unsafe content: {shown}. Allowed HTML: {policy}."})
    if errors:
        raise invalid(errors)
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


RULES: list[Rule] = [refuse_unsafe_rich_text, slug_from_title, stamp_author]


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


def _url_schemes(config: Mapping[str, Any]) -> frozenset[str]:
    """BFFPROXY_RICH_TEXT_URL_SCHEMES: comma-separated, never a script scheme."""
    raw = config.get("RICH_TEXT_URL_SCHEMES", DEFAULT_URL_SCHEMES)
    items = raw if isinstance(raw, (list, tuple, set, frozenset)) else str(raw).split(",")
    schemes = frozenset(str(item).strip().lower() for item in items if str(item).strip())
    bad = sorted(s for s in schemes if not _SCHEME.fullmatch(s) or s in SCRIPT_SCHEMES)
    if bad:
        raise ConfigError(f"{env_name('RICH_TEXT_URL_SCHEMES')} cannot allow {', '.join(bad)}")
    return schemes


def rich_text_fields(collection: str) -> list[str]:
    """The rich-text fields of a collection's input schema (none for a read-only collection)."""
    spec = spec_for(collection)
    kinds = fields_with(spec.schema(), "strapi_type") if spec else {}
    return [name for name, kind in kinds.items() if kind == "richtext"]


def _rich_text_settings(config: Mapping[str, Any]) -> dict[str, dict[str, RichTextPolicy]]:
    """BFFPROXY_RICH_TEXT_HTML__<collection>__<field>=<allow-list>: every rich-text field's policy."""
    schemes = _url_schemes(config)
    default = RichTextPolicy.parse(DEFAULT_RICH_TEXT_HTML, schemes)
    policies = {c: dict.fromkeys(rich_text_fields(c), default) for c in config["COLLECTIONS"]}
    raw = config.get("RICH_TEXT_HTML") or {}
    form = f"{env_name('RICH_TEXT_HTML')}__<collection>__<field>=p, em, a[href, title], ..."
    if not isinstance(raw, Mapping) or not all(isinstance(v, Mapping) for v in raw.values()):
        raise ConfigError(f"{env_name('RICH_TEXT_HTML')} is set per field: {form}")
    for collection, fields in raw.items():
        for name, allowed in fields.items():
            if name not in policies.get(collection, {}):
                known = [f"{c}.{f}" for c, names in policies.items() for f in names]
                raise ConfigError(
                    f"{env_name('RICH_TEXT_HTML')} names {collection}.{name}, which is not a rich-text "
                    f"field of {env_name('COLLECTIONS')} (rich-text fields: {', '.join(known) or 'none'})"
                )
            try:
                policies[collection][name] = _configured_policy(allowed, schemes)
            except (TypeError, ValueError) as exc:
                variable = f"{env_name('RICH_TEXT_HTML')}__{collection}__{name}"
                raise ConfigError(f"{variable}: {exc} ({form})") from exc
    return policies


def _configured_policy(allowed: Any, schemes: frozenset[str]) -> RichTextPolicy:
    """One field's allow-list: already parsed (a config given twice) or an allow-list string."""
    if isinstance(allowed, RichTextPolicy):
        return allowed
    if not isinstance(allowed, str):
        raise TypeError(f"expected an allow-list string, got {allowed!r}")
    return RichTextPolicy.parse(allowed, schemes)


def init_app(app: Flask) -> None:
    """Validate BFFPROXY_AUTHOR_FIELDS and the rich-text allow-lists (BFFPROXY_RICH_TEXT_*)."""
    app.config.setdefault("AUTHOR_FIELDS", "")
    try:
        app.config["AUTHOR_FIELDS"] = as_mapping(
            app.config, "AUTHOR_FIELDS", _author_field, allowed=app.config["COLLECTIONS"]
        )
    except ConfigError as exc:
        expected = f"collection=field or collection=field:{'|'.join(AUTHOR_ATTRIBUTES)}"
        raise ConfigError(f"{exc} (expected {expected})") from exc
    app.config["RICH_TEXT_URL_SCHEMES"] = tuple(sorted(_url_schemes(app.config)))
    app.config["RICH_TEXT_HTML"] = _rich_text_settings(app.config)
