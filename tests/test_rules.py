"""Business rules: rich-text safety, slug from title, author stamping, and their configuration."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import pytest
import responses
from flask.testing import FlaskClient
from markdown_it import MarkdownIt

from bffproxy import ConfigError, create_app, rules
from bffproxy.errors import Unprocessable
from bffproxy.rules import (
    DEFAULT_POLICY,
    RichTextPolicy,
    WriteContext,
    apply_rules,
    rich_text_problems,
    slugify,
)
from bffproxy.schemas import ArticleSchema, CategorySchema

from .test_publishing import EDITOR, bearer, register_users
from .test_publishing import config as config  # the fixture: editors may write


@dataclass(frozen=True)
class User:
    user_id: str = "7"
    username: str = "editor"
    email: str = "editor@example.com"


def ctx(action: str = "create", **kwargs: Any) -> WriteContext:
    return WriteContext(collection="articles", action=action, schema=ArticleSchema(), **kwargs)


# OWASP XSS Filter Evasion Cheat Sheet style: every one must be refused.
XSS_VECTORS = [
    "<img src=x onerror=alert(1)>",
    "<IMG SRC=x OnErRoR=alert(1)>",
    '<img src="x" alt="" onerror="alert(1)"/>',
    '<img/src="x"/onerror=alert(1)>',
    "<img src=`x` onerror=alert(1)>",
    "<svg onload=alert(1)>",
    "<svg/onload=alert(1)>",
    "<body onload=alert(1)>",
    "<p onmouseover=alert(1)>x</p>",
    '<a href="https://example.com" onclick="alert(1)">x</a>',
    '<iframe srcdoc="<script>alert(1)</script>"></iframe>',
    "<iframe src=javascript:alert(1)></iframe>",
    "<script>alert(1)</script>",
    "<ScRiPt>alert(1)</sCrIpT>",
    "<scr<script>ipt>alert(1)</script>",
    "<script src=//evil.example/x.js></script>",
    "<script>never closed",
    '<a href="javascript:alert(1)">x</a>',
    "<a href=JaVaScRiPt:alert(1)>x</a>",
    '<a href=" javascript:alert(1)">x</a>',
    '<a href="\x01javascript:alert(1)">x</a>',
    '<a href="jav&#x09;ascript:alert(1)">x</a>',
    '<a href="jav\tascript:alert(1)">x</a>',
    '<a href="jav&#x0A;ascript:alert(1)">x</a>',
    '<a href="&#106;&#97;&#118;&#97;&#115;&#99;&#114;&#105;&#112;&#116;&#58;alert(1)">x</a>',
    '<a href="&#x6A;avascript&colon;alert(1)">x</a>',
    '<a href="javas&#99;ript:alert(1)">x</a>',
    '<a href="vbscript:msgbox(1)">x</a>',
    '<a href="data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==">x</a>',
    '<img src="data:image/svg+xml;base64,PHN2Zy8+">',
    '<p style="width: expression(alert(1))">x</p>',
    '<a href="https://example.com" style="background:url(javascript:alert(1))">x</a>',
    '<object data="javascript:alert(1)"></object>',
    "<embed src=javascript:alert(1)>",
    '<form><button formaction="javascript:alert(1)">x</button></form>',
    "<math><mtext><table><mglyph><style><img src=x onerror=alert(1)>",
    "<!--><img src=x onerror=alert(1)>-->",
    '<noscript><p title="</noscript><img src=x onerror=alert(1)>">',
    "<img src=x onerror=alert(1)//",
    '<a href="https://example.com" title=">" onclick=alert(1)>x</a>',
    # Inside a raw HTML block a browser reads an autolink as a tag: /onfocus=... is an attribute.
    "<p>\n<https://example.com/onfocus=alert(1)/autofocus/tabindex=0>\n</p>",
]

# Markdown links, images, references and autolinks a renderer turns into href/src. They were judged
# by hand-written link parsing and a "javascript: anywhere" safety net; now by the rendered HTML.
MARKDOWN_LINK_VECTORS = [
    "[x](javascript:alert(1))",
    "[x]( javascript:alert(1) )",
    "[x](<javascript:alert(1)>)",
    "[x](JaVaScRiPt:alert(1))",
    "[x](&#106;avascript:alert(1))",
    "[x](javascript&#58;alert(1))",
    "[x](javascript\\:alert(1))",
    "[x](java&#x09;script:alert(1))",
    "[x](<java\tscript:alert(1)>)",
    "[x](vbscript:msgbox(1))",
    "[x](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
    "![x](javascript:alert(1))",
    '[x](javascript:alert(1) "title")',
    "[x][1]\n\n[1]: javascript:alert(1)",
    "[x][1]\n\n[1]:\n  <javascript:alert(1)>",
    "> [x][1]\n>\n> [1]:\n> data:text/html,x",
    "<javascript:alert(1)>",
    # What the safety net was for: targets only a CommonMark parser finds.
    "<JavaScript:alert(1)>",
    "[x](<\x01javascript:alert(1)>)",
    "[x](&#x6A;ava&#x09;script&#x3A;alert(1))",
    '[x][1]\n\n[1]: javascript:alert(1) "title"',
    "[![ok](/ok.png)](javascript:alert(1))",
    "| a |\n|---|\n| [x](javascript:alert(1)) |",
    "- item\n\n  [x][ref]\n\n  [ref]: <javascript:alert(1)>",
]

# Found by a hostile review of the raw-HTML check: Markdown hides the markup from an HTML reading,
# and every one renders to a live <img onerror> in a CommonMark renderer with raw HTML on.
MARKDOWN_HIDES_HTML = [
    "Intro `<!--` <img src=x onerror=alert(1)> `-->`",
    "\\<!-- <img src=x onerror=alert(1)> -->",
    '`<a title="` <img src=x onerror=alert(1)> `">`',
    '\\<a title="<img src=x onerror=alert(1)>">x</a>',
    "```\n<!--\n```\n\n<img src=x onerror=alert(1)>\n\n```\n-->\n```",
    "    <!--\n\n<img src=x onerror=alert(1)>\n\n    -->",
    # Found while redesigning: a code span to CommonMark is table cells to GFM, and the reverse.
    "| `a | <img src=x onerror=alert(1)> | b` |\n|---|---|---|",
    "| a` | `<img src=x onerror=alert(1)>` | `b |\n|---|---|---|",
    # markdown-it drops what is nested past its limit; a renderer without one would not.
    ">" * 120 + " <img src=x onerror=alert(1)>",
    "- " * 60 + "<img src=x onerror=alert(1)>",
]

# Markdown as editors write it, and the HTML Markdown itself makes: it must pass unchanged.
BENIGN_MARKDOWN = [
    "> a quote\n> on two lines",
    "a < b and c > d, 5 > 3 < 4",
    "**bold**, _italic_, ~~struck~~ & more",
    "`a < b` and `x <= y` and `if (a && b)`",
    "```python\nif a < b and c > d:\n    pass\n```",
    "    indented code: a < b",
    '[a link](https://example.com "its title") and [mail](mailto:editor@example.com)',
    "[anchor](#section) and [relative](../other-page) and ![image](/uploads/photo.png)",
    "[ref][1]\n\n[1]: https://example.com/page?a=1&b=2",
    "<https://example.com/path> and <editor@example.com>",
    "# Title\n\n## Section\n\n1. one\n2. two\n\n- a\n- b\n\n---",
    "| a | b |\n|---|---|\n| 1 | 2 |",
    "Use &lt;div&gt;, &amp; and &copy; as entities",
    "say \"hi\" and 'bye'",
    "JavaScript: the good parts, and data: the numbers",
    "Intro\n\n<!-- more -->\n\nRest",
    "line one  \nline two\r\nline three",
    '<p>raw <em>HTML</em> <strong>too</strong></p>\n\n<a href="https://example.com" title="t">x</a>',
    '<img src="https://example.com/x.png" alt="x" title="t"><br><hr/>',
    "<table><tr><th>h</th></tr><tr><td>d</td></tr></table>",
    "<pre>\ncode\n</pre>",
    "<blockquote>q</blockquote>",
    # Refused by the raw-HTML check, harmless in every renderer.
    "<https://x/search?q=test>",
    "[x](<https://a/?a=1&timestamp=2>)",
    '<a href="https://a/?id=1&section=2">x</a> <img src="https://a/x.png?w=1&timestamp=2" alt="x">',
    '<a href="https://a/?x=1&region=eu" title="&copy=">x</a>',
    "*JavaScript:The Good Parts*",
    "[Click](https://example.com/?redirect=javascript:void)",
    "\\<div\\>",
    "`List<String>` and `#include <stdio.h>`",
    "```java\nList<String> xs = new ArrayList<>();\n```",
    "    Map<String, List<Integer>> m;",
    # Serialised differently by nh3, read the same by a browser.
    "<a title=t href='https://x/?a=1&#38;b=2'>x</a><br/><br><img alt=x src=/y.png />",
    # What markdown-it makes that raw HTML by default may not: classes, start numbers, alignment.
    "```python\nx = 1\n```\n\n3. three\n4. four\n\n| a | b |\n|--:|:-:|\n| 1 | 2 |",
    ">" * 40 + " deep, but not too deep",
]


@pytest.mark.parametrize("vector", XSS_VECTORS + MARKDOWN_LINK_VECTORS + MARKDOWN_HIDES_HTML)
def test_rich_text_with_script_is_refused(vector: str) -> None:
    with pytest.raises(Unprocessable) as refused:
        apply_rules(ctx(), {"title": "t", "slug": "s", "body": f"Intro\n\n{vector}\n\nEnd"})
    (error,) = refused.value.details["errors"]
    assert error["field"] == "body"
    assert error["message"].startswith("Unsafe content: ")


@pytest.mark.parametrize("text", BENIGN_MARKDOWN)
def test_benign_markdown_passes_unchanged(text: str) -> None:
    assert apply_rules(ctx(), {"title": "t", "slug": "s", "body": text})["body"] == text


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("<img src=x onerror=alert(1)>", "the onerror attribute of <img> is not allowed"),
        ("<svg onload=alert(1)>", "the HTML element <svg> is not allowed"),
        ('<a href="jav&#x09;ascript:alert(1)">x</a>', "the href of <a> is not an allowed URL"),
        ("[x](javascript:alert(1))", "the href of <a> is not an allowed URL ('javascript:alert(1)')"),
        ("![x](data:image/png;base64,AA==)", "the src of <img> is not an allowed URL"),
        ("Intro `<!--` <img src=x onerror=alert(1)> `-->`", "the onerror attribute of <img> is not allowed"),
        ("if x<y then", "'<y then' is text in Markdown but a tag to a browser"),
        ("- " * 60 + "x", "it nests quotes or lists deeper than markdown-it renders (100 levels)"),
    ],
)
def test_a_refusal_says_what_to_change(text: str, reason: str) -> None:
    assert any(problem.startswith(reason) for problem in rich_text_problems(text)), rich_text_problems(text)


@pytest.mark.parametrize("vector", MARKDOWN_LINK_VECTORS)
def test_markdown_links_are_judged_by_the_url_in_the_rendered_html(vector: str) -> None:
    """The hand-written link parsing and the "javascript: anywhere" safety net are gone: this covers them."""
    problems = rich_text_problems(vector)
    assert problems, vector
    assert all(re.match(r"the (href of <a>|src of <img>) is not an allowed URL", p) for p in problems)


def test_rendering_keeps_script_urls_that_markdown_it_would_have_refused_or_encoded() -> None:
    """markdown-it's own validateLink and percent-encoding are safeguards a front end may lack."""
    assert "[x](javascript:alert(1))" in MarkdownIt("commonmark").render("[x](javascript:alert(1))")
    assert 'href="javascript:alert(1)"' in rules.RENDERERS[0].render("[x](javascript:alert(1))")
    assert 'href="java\tscript:' in rules.RENDERERS[0].render("[x](java&#x09;script:alert(1))")


def test_nh3_alone_would_keep_markdown_links_and_escape_markdown() -> None:
    """Why the rule refuses instead of storing nh3's output (see the module docstring)."""
    assert DEFAULT_POLICY.sanitized("[x](javascript:alert(1))") == "[x](javascript:alert(1))"
    assert DEFAULT_POLICY.sanitized("> a < b") == "&gt; a &lt; b"


def test_only_rich_text_fields_are_checked() -> None:
    data = {"title": "<b>t</b>", "excerpt": "<script>x</script>", "body": "ok", "slug": "s"}
    assert apply_rules(ctx(), data) == data  # plain text: the front end escapes it


def test_a_narrower_allow_list_refuses_more() -> None:
    markdown_only = RichTextPolicy.parse("none")
    assert rich_text_problems("**bold** [x](https://example.com) a < b", markdown_only) == []
    assert rich_text_problems("<em>x</em>", markdown_only) == ["the HTML element <em> is not allowed"]
    links = RichTextPolicy.parse("a[href]", url_schemes=["https"])
    assert rich_text_problems('<a href="https://x">x</a>', links) == []
    assert rich_text_problems('<a title="t" href="https://x">x</a>', links)
    assert rich_text_problems("[x](http://example.com)", links)
    # What Markdown makes always passes; the same element written as raw HTML needs the allow-list.
    markdown = "```python\nx\n```\n\n3. a\n\n![i](/x.png)\n\n| a |\n|--:|\n| 1 |\n\n~~s~~ <https://x>"
    assert rich_text_problems(markdown, markdown_only) == []
    assert rich_text_problems('<ol start="3"><li>a</li></ol>') == [
        "the start attribute of <ol> is not allowed"
    ]


@pytest.mark.parametrize(
    ("title", "slug"),
    [
        ("Hello, World!", "hello-world"),
        ("  Crème brûlée à la carte ", "creme-brulee-a-la-carte"),
        ("Strapi 5 -- and the BFF", "strapi-5-and-the-bff"),
        ("日本語", ""),
    ],
)
def test_slugify(title: str, slug: str) -> None:
    assert slugify(title) == slug


def test_slug_from_title_on_create_is_unique() -> None:
    first = apply_rules(ctx(), {"title": "Hello World"})["slug"]
    second = apply_rules(ctx(), {"title": "Hello World"})["slug"]
    assert first.startswith("hello-world-") and len(first) == len("hello-world-") + 8
    assert first != second  # no key: a random suffix


def test_slug_suffix_comes_from_the_idempotency_scope() -> None:
    scoped = ctx(idempotency_scope="0123456789abcdef" * 4)
    assert apply_rules(scoped, {"title": "Hello"})["slug"] == "hello-01234567"
    assert apply_rules(scoped, {"title": "Hello"})["slug"] == "hello-01234567"  # the same on retry


def test_slug_of_a_title_without_latin_letters_is_the_suffix() -> None:
    assert apply_rules(ctx(idempotency_scope="f" * 64), {"title": "日本語"})["slug"] == "ffffffff"


def test_a_given_slug_is_kept_and_edits_never_invent_one() -> None:
    assert apply_rules(ctx(), {"title": "Hello", "slug": "mine"})["slug"] == "mine"
    assert "slug" not in apply_rules(ctx("update"), {"title": "Hello"})


def test_categories_slug_comes_from_name() -> None:
    context = WriteContext(collection="categories", action="create", schema=CategorySchema())
    assert apply_rules(context, {"name": "Science News"})["slug"].startswith("science-news-")


def test_author_stamping_is_off_unless_configured() -> None:
    assert "author" not in apply_rules(ctx(user=User()), {"title": "t"})


def test_author_is_stamped_from_the_user() -> None:
    fields = {"articles": ("author", "username")}
    assert apply_rules(ctx(user=User(), author_fields=fields), {"title": "t"})["author"] == "editor"
    by_id = {"articles": ("author_id", "user_id")}
    assert apply_rules(ctx(user=User(), author_fields=by_id), {"title": "t"})["author_id"] == "7"


def test_author_on_update_only_overrides_what_was_sent() -> None:
    fields = {"articles": ("author", "email")}
    assert "author" not in apply_rules(ctx("update", user=User(), author_fields=fields), {"title": "t"})
    out = apply_rules(ctx("update", user=User(), author_fields=fields), {"author": "forged"})
    assert out["author"] == "editor@example.com"


def test_rules_do_not_change_their_input() -> None:
    data = {"title": "Hello", "body": "**hi**"}
    out = apply_rules(ctx(), data)
    assert out["slug"].startswith("hello-")
    assert data == {"title": "Hello", "body": "**hi**"}


def test_rules_run_in_order_and_can_be_extended(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[dict[str, Any]] = []

    def shout(context: WriteContext, data: dict[str, Any]) -> dict[str, Any]:
        seen.append(dict(data))
        return {**data, "title": data["title"].upper()}

    monkeypatch.setattr(rules, "RULES", [*rules.RULES, shout])
    out = apply_rules(ctx(idempotency_scope="0" * 64), {"title": "Hi"})
    assert seen == [{"title": "Hi", "slug": "hi-00000000"}]  # after slug_from_title, before nothing
    assert out == {"title": "HI", "slug": "hi-00000000"}


def test_author_fields_setting_is_parsed(config: dict[str, Any]) -> None:
    config["AUTHOR_FIELDS"] = {"articles": "writer:user_id"}
    assert create_app(config).config["AUTHOR_FIELDS"] == {"articles": ("writer", "user_id")}
    config["AUTHOR_FIELDS"] = "articles=writer"
    assert create_app(config).config["AUTHOR_FIELDS"] == {"articles": ("writer", "username")}


@pytest.mark.parametrize("raw", ["articles=writer:password", "widgets=writer", "articles=:email"])
def test_bad_author_fields_setting_fails_at_start(config: dict[str, Any], raw: str) -> None:
    config["AUTHOR_FIELDS"] = raw
    with pytest.raises(ConfigError, match="BFFPROXY_AUTHOR_FIELDS"):
        create_app(config)


@pytest.mark.parametrize(
    ("title", "slug"),
    [("Größe", "grosse"), ("Łódź", "lodz"), ("Smørrebrød", "smorrebrod"), ("Œuvre", "oeuvre")],
)
def test_slugify_keeps_latin_letters_without_a_decomposition(title: str, slug: str) -> None:
    """ß, ø, ł, œ ... have no NFKD decomposition: they must be transliterated, not dropped."""
    assert slugify(title) == slug


# -- rich-text settings ----------------------------------------------------------------------------


def body_policy(config: dict[str, Any]) -> RichTextPolicy:
    policy: RichTextPolicy = create_app(config).config["RICH_TEXT_HTML"]["articles"]["body"]
    return policy


def test_every_rich_text_field_gets_the_default_allow_list(config: dict[str, Any]) -> None:
    app = create_app(config)
    assert app.config["RICH_TEXT_HTML"] == {"articles": {"body": DEFAULT_POLICY}, "categories": {}}


def test_a_field_allow_list_is_read_from_the_environment(
    config: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BFFPROXY_RICH_TEXT_HTML__articles__body", "p, em, a[href, title]")
    monkeypatch.setenv("BFFPROXY_RICH_TEXT_URL_SCHEMES", "https")
    policy = body_policy(config)
    assert policy == RichTextPolicy(
        frozenset({"p", "em", "a"}), {"a": frozenset({"href", "title"})}, frozenset({"https"})
    )
    assert str(policy) == "a[href, title], em, p; URL schemes https"


def test_the_app_allow_list_is_the_one_a_write_is_checked_with(config: dict[str, Any]) -> None:
    config["RICH_TEXT_HTML"] = {"articles": {"body": "none"}}
    app = create_app(config)
    with app.test_request_context():
        app.preprocess_request()  # the request's tenant, whose settings a write is checked with
        with pytest.raises(Unprocessable, match="problem"):
            apply_rules(ctx(), {"title": "t", "slug": "s", "body": "<em>x</em>"})
        assert apply_rules(ctx(), {"title": "t", "slug": "s", "body": "*x*"})["body"] == "*x*"


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ({"articles": {"title": "p"}}, "names articles.title, which is not a rich-text field"),
        ({"categories": {"body": "p"}}, "names categories.body, which is not a rich-text field"),
        ({"widgets": {"body": "p"}}, "names widgets.body"),
        ("p, em", "is set per field: BFFPROXY_RICH_TEXT_HTML__<collection>__<field>="),
        ({"articles": {"body": "a[href"}}, "BFFPROXY_RICH_TEXT_HTML__articles__body: 'a[href' is not"),
        ({"articles": {"body": "p, script"}}, "script can never be allowed"),
        ({"articles": {"body": "img[src, onerror]"}}, "onerror can never be allowed"),
        ({"articles": {"body": "a[style]"}}, "style can never be allowed"),
        ({"articles": {"body": 3}}, "expected an allow-list string"),
    ],
)
def test_a_bad_rich_text_setting_fails_at_start(config: dict[str, Any], setting: Any, message: str) -> None:
    config["RICH_TEXT_HTML"] = setting
    with pytest.raises(ConfigError, match=re.escape(message)):
        create_app(config)


@pytest.mark.parametrize("schemes", ["https, javascript", "http,VBScript", "not a scheme"])
def test_script_url_schemes_cannot_be_allowed(config: dict[str, Any], schemes: str) -> None:
    config["RICH_TEXT_URL_SCHEMES"] = schemes
    with pytest.raises(ConfigError, match="BFFPROXY_RICH_TEXT_URL_SCHEMES cannot allow"):
        create_app(config)


@pytest.mark.parametrize(
    ("url", "body", "field"),
    [
        ("/api/articles/publish", {"title": "t", "content": "<img src=x onerror=alert(1)>"}, "body"),
        ("/api/articles", {"data": {"title": "t", "body": "[x](javascript:alert(1))"}}, "body"),
    ],
)
def test_a_write_with_unsafe_rich_text_is_a_422_and_never_reaches_strapi(
    client: FlaskClient, strapi: responses.RequestsMock, url: str, body: Any, field: str
) -> None:
    register_users(strapi)
    answer = client.post(url, json=body, headers={**bearer(EDITOR), "Content-Type": "application/json"})
    assert answer.status_code == 422, answer.get_data(as_text=True)
    error = answer.get_json()["error"]
    assert error["code"] == "validation_failed"
    assert [e["field"] for e in error["details"]["errors"]] == [field]
    assert [call.request.method for call in strapi.calls] == ["GET"]  # the role look-up, no write


@pytest.mark.parametrize(
    "text", ["if x<y then", "<img/src=x/onerror=alert(1)>", "x </p onclick=alert(1)> y", "a <!x b"]
)
def test_a_tag_like_less_than_is_refused_outside_code(text: str) -> None:
    """CommonMark leaves these as text; a renderer that passes them on unescaped would make a tag."""
    assert rich_text_problems(text)
    assert rich_text_problems(text.replace("<", "\\<")) == []
    assert rich_text_problems(f"`{text}`") == []


def test_a_code_span_hiding_a_comment_is_a_422_and_never_reaches_strapi(
    client: FlaskClient, strapi: responses.RequestsMock
) -> None:
    register_users(strapi)
    body = {"data": {"title": "t", "body": MARKDOWN_HIDES_HTML[0]}}
    answer = client.post("/api/articles", json=body, headers=bearer(EDITOR))
    assert answer.status_code == 422, answer.get_data(as_text=True)
    (error,) = answer.get_json()["error"]["details"]["errors"]
    assert error["field"] == "body"
    assert "the onerror attribute of <img> is not allowed" in error["message"]
    # The role look-up, and no write.
    assert [(c.request.method, urlsplit(c.request.url).path) for c in strapi.calls] == [
        ("GET", f"/api/users/{EDITOR}")
    ]
