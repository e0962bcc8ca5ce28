"""invalidation.py: relations, the purge scopes, and store faults (no HTTP involved)."""

from __future__ import annotations

from typing import Any

import pytest
import responses
from flask import Flask
from flask.testing import FlaskClient

from bffproxy import ConfigError, create_app
from bffproxy.caching import StoreUnavailable
from bffproxy.errors import Unprocessable
from bffproxy.invalidation import CacheUnavailable, invalidate_collection, purge, related_collections

from .conftest import STRAPI, strapi_list


def warm_cache(client: FlaskClient, strapi: responses.RequestsMock, document_id: str) -> tuple[str, ...]:
    """Cache an article list, one article and the category list; return their paths (webhook,
    admin and CLI tests check what each invalidation dropped with :func:`x_cache`)."""
    strapi.get(f"{STRAPI}/api/articles", json=strapi_list("One"))
    strapi.get(f"{STRAPI}/api/articles/{document_id}", json={"data": {"documentId": document_id}, "meta": {}})
    strapi.get(f"{STRAPI}/api/categories", json=strapi_list("Technology"))
    paths = ("/api/articles", f"/api/articles/{document_id}", "/api/categories")
    for path in paths:
        client.get(path)
    return paths


def x_cache(client: FlaskClient, paths: tuple[str, ...]) -> list[str]:
    """The X-Cache of a GET on each path, in order."""
    return [client.get(path).headers["X-Cache"] for path in paths]


def generation(app: Flask, collection: str) -> tuple[str, str]:
    return app.extensions["bffproxy.cache"].generations("default", collection)  # type: ignore[no-any-return]


@pytest.fixture
def app(config: dict[str, Any]) -> Flask:
    return create_app({**config, "RELATIONS": {"articles": "categories"}})


def test_relations_are_parsed_and_validated(app: Flask, config: dict[str, Any]) -> None:
    with app.app_context():
        assert related_collections("default", "articles") == ("categories",)
        # Not configured, known from the content model: articles embed their category.
        assert related_collections("default", "categories") == ("articles",)
    with pytest.raises(ConfigError, match="BFFPROXY_RELATIONS__articles names unknown"):
        create_app({**config, "RELATIONS": {"articles": "tags"}})


def test_invalidate_collection_replaces_generations_of_it_its_relations_and_also(app: Flask) -> None:
    with app.app_context():
        before = {c: generation(app, c) for c in ("articles", "categories")}
        assert invalidate_collection("default", "articles", also=("categories", "unknown")) == [
            "articles",
            "categories",
        ]
        after = {c: generation(app, c) for c in ("articles", "categories")}
    for collection in before:
        assert before[collection][0] == after[collection][0]  # the tenant's generation is untouched
        assert before[collection][1] != after[collection][1]


def test_purge_all_replaces_the_tenant_generation(app: Flask) -> None:
    with app.app_context():
        before = generation(app, "articles")
        assert purge("default", everything=True)["invalidated"] == ["articles", "categories"]
        after = generation(app, "articles")
    assert before[0] != after[0] and before[1] == after[1]


def test_another_tenant_is_untouched(app: Flask) -> None:
    with app.app_context():
        cache = app.extensions["bffproxy.cache"]
        other = cache.generations("other", "articles")
        purge("default", everything=True)
        purge("default", collection="articles")
        assert cache.generations("other", "articles") == other


def test_a_document_purge_names_the_document(app: Flask) -> None:
    with app.app_context():
        result = purge("default", collection="categories", document_id="c1")
    assert result == {
        "scope": "document",
        "tenant": "default",
        "collection": "categories",
        "documentId": "c1",
        "invalidated": ["categories", "articles"],  # articles embed categories (the content model)
    }


@pytest.mark.parametrize(
    "scope",
    [{}, {"document_id": "d1"}, {"collection": "tags"}, {"everything": True, "collection": "articles"},
     {"collection": "articles", "document_id": "a b"}],
)  # fmt: skip
def test_bad_scopes(app: Flask, scope: dict[str, Any]) -> None:
    with app.app_context(), pytest.raises(Unprocessable):
        purge("default", **scope)


def test_a_store_fault_is_cache_unavailable(app: Flask) -> None:
    class BrokenStore:
        def set(self, *args: Any) -> None:
            raise ConnectionError("redis is down")

    app.extensions["bffproxy.cache"].store = BrokenStore()
    with app.app_context():
        for scope in ({"everything": True}, {"collection": "articles"}):
            with pytest.raises(CacheUnavailable) as caught:
                purge("default", **scope)
            assert caught.value.status == 503
        # The publishing path keeps seeing the store's own exception.
        with pytest.raises(StoreUnavailable):
            invalidate_collection("default", "articles")


def test_an_invalidation_right_after_a_store_blip_still_lands(app: Flask) -> None:
    cache = app.extensions["bffproxy.cache"]
    real = cache.store

    class BlipOnce:
        """The store fails one call (a Redis failover), then works again."""

        failed = False

        def __getattr__(self, name: str) -> Any:
            if not BlipOnce.failed:
                BlipOnce.failed = True
                raise ConnectionError("blip")
            return getattr(real, name)

    cache.store = BlipOnce()
    with app.app_context():
        with pytest.raises(StoreUnavailable):
            cache.generations("default", "articles")  # a read meets the blip: store marked down
        purge("default", collection="articles")  # the store works again: this must not be lost
