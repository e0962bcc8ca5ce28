"""Business rules: script stripping, slug from title, author stamping, and their configuration."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import pytest

from bffproxy import ConfigError, create_app, rules
from bffproxy.rules import WriteContext, apply_rules, slugify, without_scripts
from bffproxy.schemas import ArticleSchema, CategorySchema


@dataclass(frozen=True)
class User:
    user_id: str = "7"
    username: str = "editor"
    email: str = "editor@example.com"


def ctx(action: str = "create", **kwargs: Any) -> WriteContext:
    return WriteContext(collection="articles", action=action, schema=ArticleSchema(), **kwargs)


@pytest.mark.parametrize(
    ("dirty", "clean"),
    [
        ("a<script>alert(1)</script>b", "ab"),
        ("a<SCRIPT type='text/javascript'>x\ny</ScRiPt >b", "ab"),
        ("a<script src=//evil.js></script>b", "ab"),
        ("a<scr<script>x</script>ipt>alert(1)</script>b", "aalert(1)b"),
        ("a<script>never closed", "anever closed"),
        ("keep <b>bold</b> and `<scripted>` words", "keep <b>bold</b> and `<scripted>` words"),
        ("no html at all", "no html at all"),
    ],
)
def test_script_tags_are_stripped(dirty: str, clean: str) -> None:
    assert without_scripts(dirty) == clean
    assert not re.search(r"<script\b", without_scripts(dirty), re.IGNORECASE)


def test_only_rich_text_fields_are_stripped() -> None:
    data = {"title": "t", "excerpt": "<script>x</script>", "body": "<script>x</script>ok", "slug": "s"}
    out = apply_rules(ctx(), data)
    assert out["body"] == "ok"
    assert out["excerpt"] == "<script>x</script>"  # plain text: the front end escapes it


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
    data = {"title": "Hello", "body": "<script></script>"}
    apply_rules(ctx(), data)
    assert data == {"title": "Hello", "body": "<script></script>"}


def test_rules_run_in_order_and_can_be_extended(monkeypatch: pytest.MonkeyPatch) -> None:
    def shout(context: WriteContext, data: dict[str, Any]) -> dict[str, Any]:
        return {**data, "title": data["title"].upper()}

    monkeypatch.setattr(rules, "RULES", [*rules.RULES, shout])
    assert apply_rules(ctx(), {"title": "Hi", "slug": "s"})["title"] == "HI"


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
