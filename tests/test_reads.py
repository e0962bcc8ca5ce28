"""The one read router: paths, documentIds, the allow-list and publication status."""

from __future__ import annotations

import pytest

from bffproxy.errors import NotFound
from bffproxy.query import InvalidParameter
from bffproxy.reads import (
    NO_QUERY,
    ReadRouter,
    extra_read_params,
    is_document_id,
    response_format,
    split_read_path,
)
from bffproxy.settings import ConfigError

ROUTER = ReadRouter(("articles", "categories"), {"articles": frozenset({"_q"})})


@pytest.mark.parametrize(
    ("path", "split"),
    [
        ("/api/articles", ("articles", None)),
        ("/api/articles/abc", ("articles", "abc")),
        ("/api/articles/", None),
        ("/api//abc", None),
        ("/api/articles/a/b", None),
        ("/x/articles", None),
        ("api/articles", None),
    ],
)
def test_split_read_path(path: str, split: tuple[str, str | None] | None) -> None:
    assert split_read_path(path) == split


@pytest.mark.parametrize("text", ["abc", "ihgenj7ahpul9v0826hzcrlz", "A_b-9", "x" * 64])
def test_document_ids_of_strapis_shape(text: str) -> None:
    assert is_document_id(text)


@pytest.mark.parametrize("text", ["", "x" * 65, "a?status=draft", "#", "a b", "id\n", "a/b", "a.b", "%3F"])
def test_anything_else_is_not_a_document_id(text: str) -> None:
    assert not is_document_id(text)


def test_a_route_quotes_its_path_and_reencodes_its_query() -> None:
    route = ROUTER.route("/api/articles/abc", "sort=title:asc&%5Blocale%5D=en")
    assert (route.collection, route.document_id, route.status) == ("articles", "abc", None)
    assert route.strapi_path == "api/articles/abc"
    assert route.query_string == "[locale]=en&sort=title%3Aasc"


@pytest.mark.parametrize(
    ("path", "query"),
    [("/api/users", ""), ("/api/articles/a%3Fb", ""), ("/api/articles/?status=draft", "")],
)
def test_unknown_collections_and_bad_document_ids_are_404(path: str, query: str) -> None:
    with pytest.raises(NotFound):
        ROUTER.route(path, query)


def test_extra_parameters_are_per_collection() -> None:
    assert ROUTER.route("/api/articles", "_q=x").query_string == "_q=x"
    with pytest.raises(InvalidParameter):
        ROUTER.route("/api/categories", "_q=x")


@pytest.mark.parametrize(
    ("query", "status"), [("", None), ("status=published", "published"), ("status=draft", "draft")]
)
def test_status_values(query: str, status: str | None) -> None:
    route = ROUTER.route("/api/articles", query)
    assert route.status == status
    assert route.drafts is (status == "draft")


@pytest.mark.parametrize(
    "query",
    [
        "status",
        "status=",
        "status=bogus",
        "status=Draft",
        "status[0]=published",
        "status[]=draft",
        "[status]=published",
        "status=published&status=published",
        "status=published&[status]=draft",
        "status=published&status[x]=draft",
        "publicationState=preview",
        "publicationState[0]=live",
        "publicationState=live&publicationState=live",
    ],
)
def test_every_other_status_shape_is_refused(query: str) -> None:
    with pytest.raises(InvalidParameter):
        ROUTER.route("/api/articles", query)


def test_publication_state_live_is_accepted_and_forwarded() -> None:
    route = ROUTER.route("/api/articles", "publicationState=live")
    assert (route.status, route.query_string) == (None, "publicationState=live")


def test_signature_separates_formats_and_documents() -> None:
    a = ROUTER.route("/api/articles", "sort=a")
    b = ROUTER.route("/api/articles/x", "sort=a")
    assert len({a.signature(None), a.signature("v4"), b.signature(None)}) == 3
    assert a.signature(None) == a.signature("")


def test_configured_extras_are_validated() -> None:
    config = {"COLLECTIONS": ("articles",), "QUERY_PARAMS": {"articles": "_q,hasPublishedVersion"}}
    assert extra_read_params(config) == {"articles": frozenset({"_q", "hasPublishedVersion"})}
    for bad in ({"articles": "status"}, {"articles": "a b"}, {"posts": "_q"}):
        with pytest.raises(ConfigError):
            extra_read_params({"COLLECTIONS": ("articles",), "QUERY_PARAMS": bad})


def test_routes_are_remembered_and_refusals_are_not() -> None:
    router = ReadRouter(("articles",), {})
    assert router.route("/api/articles", "sort=a") is router.route("/api/articles", "sort=a")
    for _ in range(2):
        with pytest.raises(InvalidParameter):
            router.route("/api/articles", "[status]=draft")


@pytest.mark.parametrize(
    ("header", "variant"),
    [("v4", "v4"), (" v4 ", "v4"), ("V4", None), ("v5", None), ("v4,v4", None), ("", None), (None, None)],
)
def test_response_format_is_v4_exactly_as_strapi_decides(header: str | None, variant: str | None) -> None:
    assert response_format(header) == variant


def test_a_write_query_is_read_by_the_same_rules_against_its_own_allow_list() -> None:
    allowed = frozenset({"status", "fields"})
    query = ROUTER.write_query("articles", "status=draft&fields%5B0%5D=title", allowed)
    assert (query.status, query.drafts, query.query_string) == ("draft", True, "fields[0]=title&status=draft")
    assert ROUTER.write_query("articles", "", allowed) == NO_QUERY
    for refused in ("sort=title", "status=bogus", "[status]=draft", "_q=x"):  # _q: a read extra only
        with pytest.raises(InvalidParameter):
            ROUTER.write_query("articles", refused, allowed)
