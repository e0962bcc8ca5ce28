"""Input schemas: each Strapi constraint, unknown fields, the per-field error list."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bffproxy.errors import Unprocessable
from bffproxy.schemas import SPECS, field_errors, load_flat, load_wrapped, spec_for

ARTICLES = SPECS["articles"]
CATEGORIES = SPECS["categories"]


def problems(call: Any, *args: Any, **kwargs: Any) -> dict[str, str]:
    """{field: message} of the 422 that ``call`` raises."""
    with pytest.raises(Unprocessable) as caught:
        call(*args, **kwargs)
    assert caught.value.status == 422
    return {item["field"]: item["message"] for item in caught.value.details["errors"]}


def test_a_complete_article_is_accepted_as_is() -> None:
    data = {
        "title": "A title",
        "slug": "a-title",
        "excerpt": "short",
        "body": "# Body",
        "section": "opinion",
        "featured": True,
        "category": "abcdefghijklmnopqrstuvwx",
    }
    assert load_wrapped(ARTICLES, {"data": data}, partial=False) == data


def test_title_is_required_and_non_empty() -> None:
    assert problems(load_flat, ARTICLES, {"body": "x"}) == {"title": "This field is required."}
    assert "title" in problems(load_flat, ARTICLES, {"title": ""})
    assert problems(load_flat, ARTICLES, {"title": None}) == {"title": "This field cannot be empty (null)."}


def test_title_max_length_is_strapis() -> None:
    assert load_flat(ARTICLES, {"title": "x" * 200})["title"] == "x" * 200
    assert problems(load_flat, ARTICLES, {"title": "x" * 201}) == {
        "title": "Must be 1 to 200 characters long."
    }


@pytest.mark.parametrize("value", [5, 1.5, True, ["t"], {"t": 1}])
def test_strings_must_be_strings(value: Any) -> None:
    assert problems(load_flat, ARTICLES, {"title": value}) == {"title": "Must be text (a JSON string)."}


def test_section_is_an_enumeration() -> None:
    assert load_flat(ARTICLES, {"title": "t", "section": "guide"})["section"] == "guide"
    assert problems(load_flat, ARTICLES, {"title": "t", "section": "sport"}) == {
        "section": "Must be one of: news, opinion, guide."
    }


@pytest.mark.parametrize("value", [1, 0, "true", "yes", "on", None])
def test_featured_is_a_json_boolean(value: Any) -> None:
    if value is None:
        assert load_flat(ARTICLES, {"title": "t", "featured": None})["featured"] is None
        return
    assert problems(load_flat, ARTICLES, {"title": "t", "featured": value}) == {
        "featured": "Must be true or false."
    }


@pytest.mark.parametrize("slug", ["with space", "ümlaut", "a/b", "x" * 256, "a-slug\n"])
def test_slug_follows_strapis_uid_rules(slug: str) -> None:
    assert "slug" in problems(load_flat, ARTICLES, {"title": "t", "slug": slug})


@pytest.mark.parametrize(
    "value",
    [
        "abcdefghijklmnopqrstuvwx",
        3,
        None,
        {"documentId": "abc"},
        {"connect": ["abc"]},
        {"set": [{"documentId": "abc"}]},
        {"disconnect": [{"id": 4}]},
    ],
)
def test_to_one_relation_accepts_strapis_forms(value: Any) -> None:
    assert load_flat(ARTICLES, {"title": "t", "category": value})["category"] == value


@pytest.mark.parametrize("value", ["", "bad id!", 0, -1, True, ["abc"], {"connect": "abc"}, {"nope": []}, {}])
def test_to_one_relation_refuses_anything_else(value: Any) -> None:
    assert "category" in problems(load_flat, ARTICLES, {"title": "t", "category": value})


def test_to_many_relation_takes_a_list() -> None:
    data = {"name": "News", "articles": ["abc", "def"]}
    assert load_wrapped(CATEGORIES, {"data": data}, partial=False) == data
    assert "data.articles" in problems(
        load_wrapped, CATEGORIES, {"data": {"name": "n", "articles": "abc"}}, partial=False
    )


def test_unknown_fields_are_refused() -> None:
    found = problems(load_flat, ARTICLES, {"title": "t", "author": "me", "publishedAt": "2026-01-01"})
    assert found == {
        "author": "Unknown field: this collection has no such field.",
        "publishedAt": "Unknown field: this collection has no such field.",
    }


def test_every_problem_is_listed_at_once() -> None:
    found = problems(load_flat, ARTICLES, {"title": "x" * 300, "section": "x", "featured": "y", "nope": 1})
    assert set(found) == {"title", "section", "featured", "nope"}


def test_wrapped_body_names_fields_under_data() -> None:
    assert problems(load_wrapped, ARTICLES, {"data": {"title": 1}}, partial=False) == {
        "data.title": "Must be text (a JSON string)."
    }


def test_wrapped_body_needs_data_and_nothing_else() -> None:
    assert problems(load_wrapped, ARTICLES, {"title": "t"}, partial=False) == {
        "data": "This field is required.",
        "title": 'Unknown field: the body holds only "data".',
    }
    assert problems(load_wrapped, ARTICLES, {"data": "t"}, partial=False) == {
        "data": "Must be a JSON object."
    }
    assert problems(load_wrapped, ARTICLES, ["t"], partial=False) == {
        "(body)": 'Must be a JSON object like {"data": {...}}.'
    }


def test_partial_load_for_edits() -> None:
    assert load_wrapped(ARTICLES, {"data": {"excerpt": "e"}}, partial=True) == {"excerpt": "e"}
    assert "data.title" in problems(load_wrapped, ARTICLES, {"data": {"title": None}}, partial=True)


def test_flat_content_is_an_alias_of_body() -> None:
    assert load_flat(ARTICLES, {"title": "t", "content": "c"}) == {"title": "t", "body": "c"}
    assert problems(load_flat, ARTICLES, {"title": "t", "content": 5}) == {
        "content": "Must be text (a JSON string)."
    }
    assert "content" in problems(load_flat, ARTICLES, {"title": "t", "content": "a", "body": "b"})
    assert problems(load_flat, ARTICLES, "t") == {"(body)": "Must be a JSON object."}


def test_category_name_is_required_and_capped() -> None:
    assert problems(load_wrapped, CATEGORIES, {"data": {}}, partial=False) == {
        "data.name": "This field is required."
    }
    assert "data.name" in problems(load_wrapped, CATEGORIES, {"data": {"name": "n" * 256}}, partial=False)


def test_spec_registry() -> None:
    assert (
        spec_for("articles") is ARTICLES
        and ARTICLES.uid == "api::article.article"
        and ARTICLES.draft_and_publish
    )
    assert spec_for("categories") is CATEGORIES and not CATEGORIES.draft_and_publish
    assert spec_for("widgets") is None


def test_field_errors_flattens_nested_messages() -> None:
    assert field_errors({"data": {"title": ["a", "b"], "_schema": ["c"]}}) == [
        {"field": "data.title", "message": "a"},
        {"field": "data.title", "message": "b"},
        {"field": "data", "message": "c"},
    ]


def test_max_length_counts_utf16_units_like_strapi() -> None:
    """Strapi (yup) measures JavaScript string length: a character outside the BMP counts twice."""
    assert load_flat(ARTICLES, {"title": "é" * 200})["title"] == "é" * 200
    assert load_flat(ARTICLES, {"title": "\U0001f600" * 100})["title"] == "\U0001f600" * 100
    assert problems(load_flat, ARTICLES, {"title": "\U0001f600" * 101}) == {
        "title": "Must be 1 to 200 characters long."
    }
    assert "data.name" in problems(
        load_wrapped, CATEGORIES, {"data": {"name": "\U0001f600" * 128}}, partial=False
    )


STRAPI_APP = Path(__file__).resolve().parents[1] / "strapi" / "app" / "src" / "api"


@pytest.mark.parametrize("name", sorted(SPECS))
def test_each_spec_matches_the_project_apps_strapi_schema(name: str) -> None:
    """Kind, draft & publish, REST name, fields and required ones as the Strapi app declares them."""
    spec = SPECS[name]
    singular = spec.uid.split(".")[-1]
    declared = json.loads((STRAPI_APP / singular / "content-types" / singular / "schema.json").read_text())
    assert spec.single_type == (declared["kind"] == "singleType")
    assert spec.draft_and_publish == declared["options"]["draftAndPublish"]
    rest_name = declared["info"]["singularName" if spec.single_type else "pluralName"]
    assert spec.name == rest_name
    fields = spec.schema().fields
    assert set(fields) == set(declared["attributes"])
    assert {n for n, f in fields.items() if f.required} == {
        n for n, a in declared["attributes"].items() if a.get("required")
    }


def test_the_homepage_single_type() -> None:
    home = SPECS["homepage"]
    assert (home.single_type, home.api_path(), ARTICLES.api_path("d1")) == (
        True,
        "api/homepage",
        "api/articles/d1",
    )
    assert problems(load_wrapped, home, {"data": {"title": "x" * 121}}, partial=True) == {
        "data.title": "Must be 1 to 120 characters long."
    }
    assert load_wrapped(home, {"data": {"tagline": "t"}}, partial=True) == {"tagline": "t"}
