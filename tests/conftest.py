"""Unit-test fixtures: apps built with their own config, a fake Strapi (responses), a fake clock."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import responses
from flask import Flask
from flask.testing import FlaskClient

from bffproxy import create_app

STRAPI = "http://strapi.test"


class FakeClock:
    """A clock tests move by hand, so TTL and grace windows are checked without sleeping."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    """No developer's BFFPROXY_* variables or .env file leak into a unit test."""
    import os

    for name in list(os.environ):
        if name.startswith("BFFPROXY_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("BFFPROXY_ENV_FILE", str(tmp_path / "absent.env"))


@pytest.fixture
def config(tmp_path: Any) -> dict[str, Any]:
    """The config every unit-test app starts from; tests update it before building the app."""
    return {
        "TESTING": True,
        "STRAPI_URL": STRAPI,
        "STRAPI_API_TOKEN": "server-api-token",
        "COLLECTIONS": "articles,categories",
        "CACHE_DIR": str(tmp_path / "cache"),
        "STRAPI_RETRIES": 0,
    }


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def app(config: dict[str, Any], clock: FakeClock) -> Flask:
    application = create_app(config)
    application.extensions["bffproxy.cache"].clock = clock
    return application


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def strapi() -> Iterator[responses.RequestsMock]:
    """A fake Strapi: register answers with strapi.get(f"{STRAPI}/api/...", json=...)."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


def strapi_list(*titles: str) -> dict[str, Any]:
    """A Strapi 5 list body with one item per title."""
    data = [{"id": i, "documentId": f"doc{i:021d}", "title": t} for i, t in enumerate(titles, 1)]
    pagination = {"page": 1, "pageSize": 25, "pageCount": 1, "total": len(data)}
    return {"data": data, "meta": {"pagination": pagination}}
