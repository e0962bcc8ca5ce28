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

Rich text: judge the HTML a browser gets; refuse, do not rewrite
----------------------------------------------------------------
Strapi's ``richtext`` is Markdown, and Markdown may embed raw HTML that a renderer passes through.
The dangers are HTML that runs script (``<img onerror>``, ``<svg onload>``, ``<iframe srcdoc>``) and
script URLs in HTML or Markdown links (``<a href="jav&#x09;ascript:...">``, ``[x](javascript:...)``).
Whether a ``<`` starts a tag depends on the Markdown around it (a code span, a backslash escape, a
code block: ```` `<!--` <img onerror> `-->` ```` is a live ``<img>``), so the text is judged by the
HTML it renders to, never read as HTML itself:

1. markdown-it-py (the Python port of markdown-it) renders it: CommonMark, raw HTML on, linkify off,
   once plain and once with GFM tables and strikethrough, because the two read a line with pipes
   differently (what is a code span in one is table cells around a live ``<img>`` in the other).
   It is the most permissive renderer a Strapi front end plausibly uses: raw HTML passes, and link
   targets are kept as CommonMark decodes them, neither refused (markdown-it's ``validateLink``)
   nor percent-encoded, so ``[x](java&#x09;script:...)`` is judged as the script URL that a
   renderer without those safeguards would emit. Markdown nested past markdown-it's limit
   (:data:`MAX_NESTING`) is refused: markdown-it drops what is deeper, a renderer without a limit
   would not.
2. nh3 (ammonia, html5ever-based: it parses as a browser does) sanitizes the rendered HTML with the
   field's allow-list, ``BFFPROXY_RICH_TEXT_HTML__<collection>__<field>`` (default
   :data:`DEFAULT_RICH_TEXT_HTML`), plus what Markdown itself makes (:data:`MARKDOWN_HTML`: plain
   Markdown always passes), and ``BFFPROXY_RICH_TEXT_URL_SCHEMES`` (``http,https,mailto``) for every
   href and src, from Markdown or from raw HTML.
3. The rendered HTML and nh3's output are compared as parsed structures (start tags, attributes as a
   browser decodes them, text, comments), so serialisation (attribute order, ``&amp;`` or
   ``&#38;``, ``<br>`` or ``<br />``) is no difference. Anything nh3 removes (an element, an
   attribute, a URL) is a refusal naming it. Raw HTML in the Markdown must also be in the field's
   own allow-list (``none``: Markdown only).
4. Text that CommonMark does not take for HTML but a browser would (``x<y``, ``<img/src=x
   /onerror=...>``) is refused outside code: a renderer that passes it through unescaped would
   emit a tag. ``\\<`` or ``&lt;`` writes a literal ``<``; code spans and blocks may hold anything.

nh3's *output* is not stored instead: the field holds Markdown, and sanitized HTML is not Markdown
(nh3 turns ``> quote`` into ``&gt; quote``). For a write API a 422 that names the field and the
element or attribute is the honest answer: the editor sees what to change, and nothing is silently
altered between what was written and what is published. Not covered: renderers that parse unlike
CommonMark (Markdown inside HTML blocks, as python-markdown's ``md_in_html``), and plugins that turn
Markdown syntax into attributes (markdown-it-attrs' ``{onclick=...}``).
"""

from __future__ import annotations

import html
import html.entities
import re
import secrets
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import Any, Protocol

import nh3
from flask import g, has_app_context
from markdown_it import MarkdownIt
from markdown_it.rules_core import StateCore
from markdown_it.token import Token

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
# What markdown-it makes of Markdown: always allowed, so plain Markdown passes whatever the field's
# allow-list says about raw HTML.
MARKDOWN_HTML = DEFAULT_RICH_TEXT_HTML + ", s, code[class], ol[start]"
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
MAX_NESTING = 100

_ALLOWED_ITEM = re.compile(r"([a-z][a-z0-9]*)\s*(?:\[([a-z0-9_\-,\s]*)\])?", re.IGNORECASE)
_SCHEME = re.compile(r"[a-z][a-z0-9+.\-]*")
_URL_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*):")
_C0_AND_SPACE = "".join(map(chr, range(0x21)))
# Where a browser's tokenizer leaves text: a tag, an end tag, a comment or declaration.
_TAG_LIKE = re.compile(r"<[A-Za-z!?/]")
# Start tags a tree builder inserts (<tbody> in a table, <p> for a stray </p>, <br> for </br>):
# without attributes they run nothing, present or not.
_INSERTED_TAGS = frozenset({"tbody", "p", "br"})
# One attribute of a start tag as a browser's tokenizer reads it: a name, then an optional value.
_ATTRIBUTE = re.compile(r"""[\s/]*([^\s/>][^\s/>=]*)(?:\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s>]*)))?""")
_CHARACTER_REFERENCE = re.compile(r"&(#[xX][0-9a-fA-F]+;?|#[0-9]+;?|[A-Za-z][A-Za-z0-9]*+;?)(=?)")
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

    def with_markdown(self) -> RichTextPolicy:
        """This allow-list plus the HTML Markdown itself makes (:data:`MARKDOWN_HTML`)."""
        tags = self.tags | MARKDOWN_POLICY.tags
        both = (self.attributes, MARKDOWN_POLICY.attributes)
        attributes = {tag: frozenset().union(*(a.get(tag, ()) for a in both)) for tag in tags}
        return RichTextPolicy(tags, {t: a for t, a in attributes.items() if a}, self.url_schemes)

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
            return [f"{text[:40]!r} reads differently to a browser (write '&lt;' for a '<' in HTML)"]
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
MARKDOWN_POLICY = RichTextPolicy.parse(MARKDOWN_HTML)


class PermissiveMarkdown(MarkdownIt):
    """CommonMark with raw HTML that keeps every link target as written, for nh3 to judge.

    markdown-it itself refuses ``javascript:`` targets and percent-encodes the rest (a tab in
    ``java&#x09;script:`` becomes the harmless ``%09``); a renderer without those safeguards emits
    them as written, so the check sees them that way.
    """

    def __init__(self, *extensions: str) -> None:
        # maxNesting: markdown-it's "default" preset (commonmark's is 20); see _nesting_problems.
        super().__init__("commonmark", {"html": True, "linkify": False, "maxNesting": MAX_NESTING})
        self.enable(list(extensions))
        self.core.ruler.push("drop_cell_alignment", _drop_cell_alignment)
        self.core.ruler.before("text_join", "find_tag_like_text", _find_tag_like_text)

    def validateLink(self, url: str) -> bool:
        """Every link target is rendered: nh3's URL schemes decide."""
        return True

    def normalizeLink(self, url: str) -> str:
        """The target as CommonMark decoded it, not percent-encoded."""
        return url


def _drop_cell_alignment(state: StateCore) -> None:
    """A table cell's ``style="text-align:..."`` is markdown-it's own, not the editor's: keep it out."""
    for token in state.tokens:
        if token.type in ("th_open", "td_open"):
            token.attrs.pop("style", None)


def _find_tag_like_text(state: StateCore) -> None:
    """Note text (not code; escapes and entities are not joined to it yet) a browser reads as markup."""
    for token in with_children(state.tokens):
        if token.type == "text" and (match := _TAG_LIKE.search(token.content)):
            state.env.setdefault("tag_like_text", []).append(token.content[match.start() :])


def with_children(tokens: list[Token]) -> list[Token]:
    """Block tokens and the inline tokens they hold."""
    return [*tokens, *(child for token in tokens for child in token.children or ())]


# CommonMark, and CommonMark with GFM tables (see the module docstring for why both).
RENDERERS = (PermissiveMarkdown(), PermissiveMarkdown("table", "strikethrough"))


class _MarkupEvents(HTMLParser):
    """What an HTML document holds, in order: start tags with their attributes, text, comments.

    End tags are left out: they run nothing, and a sanitizer adds the ones a document leaves implied.
    """

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.events: list[tuple[Any, ...]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        # Attributes are read again from the tag: Python's parser decodes them as text ("&section="
        # would hold "§"), a browser does not.
        attributes = start_tag_attributes(self.get_starttag_text() or "", len(tag) + 1)
        if tag not in _INSERTED_TAGS or attributes:
            self.events.append(("tag", tag, attributes))

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


def start_tag_attributes(start_tag: str, position: int) -> tuple[tuple[str, str], ...]:
    """The attributes of ``start_tag`` from ``position`` on, sorted, the first of a repeated name."""
    found: dict[str, str] = {}
    while match := _ATTRIBUTE.match(start_tag, position, len(start_tag) - 1):  # up to the ">"
        value = next((v for v in match.groups()[1:] if v is not None), "")
        found.setdefault(match[1].lower(), attribute_value(value))
        position = match.end()
    return tuple(sorted(found.items()))


def attribute_value(raw: str) -> str:
    """An attribute value as a browser decodes it: ``&amp;`` is ``&``, ``&section=`` stays as it is."""

    def decoded(match: re.Match[str]) -> str:
        reference, equals = match[1], match[2]
        legacy = reference[0] != "#" and not reference.endswith(";")
        if legacy and (equals or reference not in html.entities.html5):
            return match[0]  # "&sect" is "§" only when it is all there is and no "=" follows
        return html.unescape("&" + reference) + equals

    return _CHARACTER_REFERENCE.sub(decoded, raw)


def url_scheme(url: str) -> str | None:
    """The scheme a browser reads in ``url``, lower-case, or None for a relative URL."""
    match = _URL_SCHEME.match(re.sub(r"[\t\n\r]", "", url).lstrip(_C0_AND_SPACE))
    return match[1].lower() if match else None


def _html_problems(rendered: str, policy: RichTextPolicy) -> list[str]:
    """What nh3 would change in the rendered HTML, compared by what a parser reads in each."""
    before, after = markup_events(rendered), markup_events(policy.sanitized(rendered))
    if before == after:
        return []
    # Name the elements and attributes; text only when nothing else changed (the merged text
    # around a removed tag is a consequence, not a cause).
    changed = sorted(set(before) - set(after), key=lambda event: (event[0] == "text", before.index(event)))
    found = [reason for event in changed for reason in policy.refusals(event) if event[0] != "text"]
    found = found or [reason for event in changed for reason in policy.refusals(event)]
    return found or ["it has HTML that does not survive sanitizing"]


def _raw_html_problems(tokens: list[Token], policy: RichTextPolicy) -> list[str]:
    """Elements and attributes of the raw HTML in the Markdown that the field's allow-list lacks."""
    raw = "".join(t.content for t in with_children(tokens) if t.type in ("html_block", "html_inline"))
    return [reason for event in markup_events(raw) if event[0] == "tag" for reason in policy.refusals(event)]


def _nesting_problems(tokens: list[Token]) -> list[str]:
    """Markdown nested as deep as markdown-it goes: it drops the rest, a renderer without a limit not."""
    if any(token.level >= MAX_NESTING - 1 for token in with_children(tokens)):
        return [f"it nests quotes or lists deeper than markdown-it renders ({MAX_NESTING} levels)"]
    return []


def _tag_like_text_problems(env: Mapping[str, Any]) -> list[str]:
    """Text that CommonMark escapes but a browser would read as a tag if a renderer passed it on."""
    return [
        f"{text[:40]!r} is text in Markdown but a tag to a browser (write '\\<' for a '<' outside code)"
        for text in env.get("tag_like_text", [])
    ]


def rich_text_problems(text: str, policy: RichTextPolicy = DEFAULT_POLICY) -> list[str]:
    """Why ``text`` (Markdown that may embed HTML) is unsafe to render: [] when it is safe."""
    problems: list[str] = []
    for markdown in RENDERERS:
        env: dict[str, Any] = {}
        tokens = markdown.parse(text, env)
        rendered = markdown.renderer.render(tokens, markdown.options, env)
        problems += _nesting_problems(tokens) + _tag_like_text_problems(env)
        problems += _raw_html_problems(tokens, policy)
        problems += _html_problems(rendered, policy.with_markdown())
    return list(dict.fromkeys(problems))


def rich_text_policy(ctx: WriteContext, field_name: str) -> RichTextPolicy:
    """The allow-list of one rich-text field: from the context, the app's settings, or the default."""
    policies = ctx.rich_text
    if policies is None:  # the request's tenant's settings, when there is one
        tenant = g.get("tenant") if has_app_context() else None
        policies = tenant.config.get("RICH_TEXT_HTML", {}) if tenant is not None else {}
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


def configure_tenant(config: dict[str, Any]) -> None:
    """Validate one tenant's BFFPROXY_AUTHOR_FIELDS and rich-text allow-lists (BFFPROXY_RICH_TEXT_*)."""
    config.setdefault("AUTHOR_FIELDS", "")
    try:
        config["AUTHOR_FIELDS"] = as_mapping(
            config, "AUTHOR_FIELDS", _author_field, allowed=config["COLLECTIONS"]
        )
    except ConfigError as exc:
        expected = f"collection=field or collection=field:{'|'.join(AUTHOR_ATTRIBUTES)}"
        raise ConfigError(f"{exc} (expected {expected})") from exc
    config["RICH_TEXT_HTML"] = _rich_text_settings(config)
    config["RICH_TEXT_URL_SCHEMES"] = tuple(sorted(_url_schemes(config)))
