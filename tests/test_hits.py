"""The WSGI fast path: same answers as the Flask path, and it only ever skips work."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import responses
from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from werkzeug.test import EnvironBuilder

from bffproxy import create_app
from bffproxy.hits import FreshHits
from bffproxy.tenant_routing import ENVIRON_KEY

from .conftest import STRAPI, FakeClock, strapi_list

LIST = f"{STRAPI}/api/articles"


def fast_hits(app: Flask) -> FreshHits:
    """The app's fast path, inside the tenant routing and CORS layers that wrap it."""
    layer = app.wsgi_app
    while not isinstance(layer, FreshHits):
        layer = layer.wsgi_app  # type: ignore[attr-defined]  # each middleware keeps the next
    return layer


@pytest.fixture
def fast(app: Flask) -> FreshHits:
    return fast_hits(app)


def environ(path: str = "/api/articles", **kwargs: Any) -> dict[str, Any]:
    """A request's environ as the fast path sees it: routed to the one tenant, ``default``."""
    env = EnvironBuilder(path=path, **kwargs).get_environ()
    env[ENVIRON_KEY] = _TENANT[0] if _TENANT else None
    return env


_TENANT: list[Any] = []


@pytest.fixture(autouse=True)
def _routed_to(app: Flask) -> Any:
    """The app's tenant, which environ() puts where tenant routing would."""
    _TENANT[:] = [app.extensions["bffproxy.tenants"].default]
    yield
    _TENANT.clear()


def warm(app: Flask, strapi: responses.RequestsMock, path: str = "/api/articles") -> None:
    strapi.get(f"{STRAPI}{path.split('?')[0]}", json=strapi_list("A", "B"))
    assert app.test_client().get(path).headers["X-Cache"] == "MISS"


def test_fast_hit_equals_the_flask_path_hit(
    app: Flask, config: dict[str, Any], clock: FakeClock, strapi: responses.RequestsMock
) -> None:
    warm(app, strapi, "/api/articles?sort=title&pagination[pageSize]=2")
    slow_app = create_app({**config, "FAST_HITS": False})
    slow_app.extensions["bffproxy.cache"].clock = clock
    clock.advance(7)
    query = "/api/articles?pagination[pageSize]=2&sort=title"
    fast = app.test_client().get(query, headers={"X-Request-ID": "r-1"})
    slow = slow_app.test_client().get(query, headers={"X-Request-ID": "r-1"})
    with pytest.raises(AttributeError):
        fast_hits(slow_app)
    assert fast.status_code == slow.status_code == 200
    assert fast.data == slow.data
    assert sorted(fast.headers.items()) == sorted(slow.headers.items())
    assert fast.headers["Age"] == "7" and fast.headers["X-Cache"] == "HIT"
    assert len(strapi.calls) == 1


def test_fast_path_answers_head_and_304(app: Flask, fast: FreshHits, strapi: responses.RequestsMock) -> None:
    warm(app, strapi)
    status, headers, body = fast.hit_for(environ(method="HEAD")) or ("", [], b"x")
    assert status == "200 OK" and body == b""
    assert dict(headers)["Content-Length"] != "0"
    etag = dict(headers)["ETag"]
    hit = fast.hit_for(environ(headers={"If-None-Match": f"W/{etag}"}))
    assert hit is not None and hit[0] == "304 NOT MODIFIED" and hit[2] == b""


@pytest.mark.parametrize(
    "request_kwargs",
    [
        {"headers": {"Authorization": "Bearer x.y.z"}},
        {"query_string": "status=draft"},
        {"query_string": "publicationState=preview"},
        {"method": "POST"},
        {"path": "/api/articles/"},
        {"path": "/api/users"},
        {"path": "/api/articles/abc/publish"},
        {"path": "/other/articles"},
        {"query_string": "sort=title"},  # a different key: not cached yet
    ],
    ids=lambda kw: str(kw),
)
def test_everything_but_a_fresh_anonymous_hit_falls_through(
    app: Flask, fast: FreshHits, strapi: responses.RequestsMock, request_kwargs: dict[str, Any]
) -> None:
    warm(app, strapi)
    assert fast.hit_for(environ()) is not None  # the control: this one is a fast hit
    assert fast.hit_for(environ(**request_kwargs)) is None


def test_stale_and_invalidated_entries_fall_through(
    app: Flask, fast: FreshHits, clock: FakeClock, strapi: responses.RequestsMock
) -> None:
    warm(app, strapi)
    clock.advance(301)
    assert fast.hit_for(environ()) is None
    assert app.test_client().get("/api/articles").headers["X-Cache"] == "STALE"
    app.extensions["bffproxy.cache"].join_refreshes()
    clock.advance(1)
    assert fast.hit_for(environ()) is not None
    app.extensions["bffproxy.cache"].invalidate("default", ["articles"])
    assert fast.hit_for(environ()) is None


def test_non_public_collections_are_never_served_by_the_fast_path(
    config: dict[str, Any], strapi: responses.RequestsMock
) -> None:
    config.update(POLICIES={"articles": "read=*"}, STRAPI_JWT_SECRET="s" * 32)
    app = create_app(config)
    assert "articles" not in fast_hits(app).public["default"]
    assert app.test_client().get("/api/articles").status_code == 401


def test_a_fast_path_failure_still_gets_an_answer(
    app: Flask, fast: FreshHits, strapi: responses.RequestsMock, monkeypatch: pytest.MonkeyPatch
) -> None:
    warm(app, strapi)

    def broken(environ: dict[str, Any]) -> None:
        raise RuntimeError("bug")

    monkeypatch.setattr(fast, "hit_for", broken)
    response = app.test_client().get("/api/articles")
    assert response.status_code == 200
    assert response.headers["X-Cache"] == "HIT"  # served by the Flask path


_NAMES = st.sampled_from(
    [
        "status",
        "[status]",
        "%5Bstatus%5D",
        "status[]",
        "st%61tus",
        "publicationState",
        "sort",
        "sort[0]",
        "filters[title][$eq]",
        "filters%5Bslug%5D",
        "pagination[page]",
        "locale",
        "foo",
        "[]",
        "__proto__",
        "a[>=]",
        "",
    ]
)
_VALUES = st.sampled_from(["draft", "published", "bogus", "live", "", "title:asc", "%3F", "%FF", "a+b", "1"])
_PAIRS = st.lists(st.tuples(_NAMES, st.none() | _VALUES), max_size=4)
_PATHS = st.sampled_from(
    ["/api/articles", "/api/categories", "/api/articles/abc", "/api/articles/a%3Fb", "/api/users"]
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=_PATHS, pairs=_PAIRS, twice=st.booleans())
def test_the_fast_path_and_the_flask_view_route_alike(
    config: dict[str, Any],
    clock: FakeClock,
    strapi: responses.RequestsMock,
    path: str,
    pairs: list[tuple[str, str | None]],
    twice: bool,
) -> None:
    """Generated queries: the fast path serves exactly what the Flask view would serve as a HIT."""
    if not strapi.registered():
        strapi.add_callback(
            responses.GET,
            re.compile(f"{re.escape(STRAPI)}/api/.*"),
            callback=lambda request: (200, {}, json.dumps({"data": [], "meta": {"url": request.url}})),
        )
    query = "&".join(name if value is None else f"{name}={value}" for name, value in pairs)
    target = f"{path}?{query}"
    fast_app, slow_app = _apps(config, clock)
    fast = fast_hits(fast_app)
    _TENANT[:] = [fast_app.extensions["bffproxy.tenants"].default]
    slow = slow_app.test_client()
    for _ in range(2 if twice else 1):
        slow.get(target, headers={"X-Request-ID": "r-1"})  # warms the shared store when cacheable
    hit = fast.hit_for(environ(path, query_string=query, headers={"X-Request-ID": "r-1"}))
    answer = slow.get(target, headers={"X-Request-ID": "r-1"})
    # The fast path serves every fresh anonymous hit, and nothing else.
    assert (hit is not None) == (answer.headers.get("X-Cache") == "HIT"), (target, answer.status)
    if hit is None:
        return
    status, headers, body = hit
    assert (status, body) == ("200 OK", answer.data)
    assert answer.headers["X-Cache"] == "HIT"
    assert sorted(headers) == sorted(answer.headers.items())


_APPS: dict[str, tuple[Flask, Flask]] = {}


def _apps(config: dict[str, Any], clock: FakeClock) -> tuple[Flask, Flask]:
    """One fast and one Flask-only app over the same store, built once per test (hypothesis runs many)."""
    key = config["CACHE_DIR"]
    if key not in _APPS:
        fast_app, slow_app = create_app(config), create_app({**config, "FAST_HITS": False})
        for application in (fast_app, slow_app):
            application.extensions["bffproxy.cache"].clock = clock
        _APPS.clear()
        _APPS[key] = (fast_app, slow_app)
    return _APPS[key]
