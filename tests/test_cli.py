"""The ``bffproxy`` command line: ``bffproxy purge`` against the same shared store as the app."""

from __future__ import annotations

from typing import Any

import pytest
import responses
from flask import Flask
from flask.testing import FlaskClient

from bffproxy.cli import cli

from .test_invalidation import warm_cache, x_cache

PATHS = ("/api/articles", "/api/articles/doc1", "/api/categories")


@pytest.fixture
def warm(client: FlaskClient, strapi: responses.RequestsMock) -> None:
    warm_cache(client, strapi, "doc1")


def run(app: Flask, *args: str) -> Any:
    return app.test_cli_runner().invoke(cli, ["purge", *args])


@pytest.mark.usefixtures("warm")
@pytest.mark.parametrize(
    ("args", "output", "after"),
    [
        (["--collection", "articles"], "purged collection: articles\n", ["MISS", "MISS", "HIT"]),
        (
            ["--collection", "articles", "--document-id", "doc1"],
            "purged document: articles\n",
            ["MISS", "MISS", "HIT"],
        ),
        (["--all"], "purged all: articles, categories\n", ["MISS", "MISS", "MISS"]),
    ],
)
def test_purge(app: Flask, client: FlaskClient, args: list[str], output: str, after: list[str]) -> None:
    result = run(app, *args)
    assert result.exit_code == 0, result.output
    assert result.output == output
    assert x_cache(client, PATHS) == after


@pytest.mark.parametrize(
    "args",
    [[], ["--document-id", "doc1"], ["--collection", "users"], ["--all", "--collection", "articles"]],
)
def test_a_bad_scope_is_a_usage_error(app: Flask, args: list[str]) -> None:
    result = run(app, *args)
    assert result.exit_code == 2
    assert "Error:" in result.output


def test_a_store_fault_exits_1(app: Flask) -> None:
    class BrokenStore:
        def set(self, *args: Any) -> None:
            raise ConnectionError("redis is down")

    app.extensions["bffproxy.cache"].store = BrokenStore()
    result = run(app, "--all")
    assert result.exit_code == 1
    assert "cannot be reached" in result.output
