"""Filter, sort and populate paths that walk relations into collections with drafts are refused."""

from __future__ import annotations

import pytest

from bffproxy.query import InvalidParameter
from bffproxy.reads import ReadRouter
from bffproxy.relation_paths import ModelledCollection
from bffproxy.tenants import content_model

MODEL = {
    "articles": ModelledCollection(True, {"category": "categories", "author": "authors"}),
    "categories": ModelledCollection(False, {"articles": "articles", "parent": "categories"}),
}
ROUTER = ReadRouter(("articles", "categories", "pages"), {}, MODEL)


@pytest.mark.parametrize(
    ("collection", "query"),
    [
        ("categories", "filters[articles][title][$eq]=x"),  # the oracle a hostile review used
        ("categories", "filters[$and][0][articles][title][$eq]=x"),
        ("categories", "filters[$or][1][$not][articles][body][$contains]=x"),
        ("categories", "filters[articles][$null]=true"),  # a relation compared directly joins too
        ("categories", "filters[articles][id][$eq]=31"),
        ("categories", "filters[parent][articles][title][$eq]=x"),  # through a draft-free hop
        ("articles", "filters[category][articles][title][$eq]=x"),
        ("articles", "filters[author][name][$eq]=x"),  # an unmodelled target: assume drafts
        ("articles", "filters[seo][title][$eq]=x"),  # an unknown field's insides (a component?)
        ("categories", "sort=articles.title:asc"),
        ("categories", "sort=name:asc,articles.title:desc"),
        ("categories", "sort[0]=articles.title"),
        ("categories", "sort[articles][title]=asc"),
        ("articles", "populate[category][filters][articles][title][$eq]=x"),
        ("articles", "populate[category][sort]=articles.title"),
        ("articles", "populate[category][populate][parent][filters][articles][slug][$eq]=x"),
        ("articles", "populate[blocks][on][shared.quote][filters][x][y]=1"),
        ("pages", "filters[section][title][$eq]=x"),  # an unmodelled collection: no traversal
    ],
)
def test_paths_into_drafts_are_refused(collection: str, query: str) -> None:
    with pytest.raises(InvalidParameter) as caught:
        ROUTER.route(f"/api/{collection}", query)
    assert caught.value.details["param"] == query.split("=")[0]


@pytest.mark.parametrize(
    ("collection", "query"),
    [
        ("articles", "filters[title][$eq]=x"),
        ("articles", "filters[$or][0][title][$eq]=x&filters[$or][1][section][$in][0]=news"),
        ("articles", "filters[category][name][$eq]=Science"),  # categories have no drafts
        ("articles", "filters[category][$null]=true"),
        ("articles", "filters[category][parent][slug][$eq]=x"),
        ("articles", "sort=category.name:asc,title"),
        ("articles", "sort[0][category][name]=desc"),
        ("categories", "populate[articles][filters][title][$eq]=x"),  # populated rows: published only
        ("categories", "populate[articles][sort]=title:asc"),
        ("categories", "populate[articles][count]=true&populate[articles][fields][0]=title"),
        ("categories", "populate=*"),
        ("categories", "populate[0]=articles"),
        ("pages", "filters[title][$eq]=x"),
    ],
)
def test_paths_that_stay_out_of_drafts_are_accepted(collection: str, query: str) -> None:
    assert ROUTER.route(f"/api/{collection}", query).status is None


def test_a_draft_read_may_filter_through_relations() -> None:
    route = ROUTER.route("/api/categories", "status=draft&filters[articles][title][$eq]=x")
    assert route.drafts  # the view still requires the drafts policy for it


def test_the_seeded_content_model_comes_from_the_write_schemas() -> None:
    model = content_model(("articles", "categories", "pages"))
    assert model == {
        "articles": ModelledCollection(True, {"category": "categories"}),
        "categories": ModelledCollection(False, {"articles": "articles"}),
    }
