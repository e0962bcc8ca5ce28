"""bffproxy's query parser against the real thing: Strapi's own qs, in Strapi's node_modules.

Generated query strings go to ``qs.parse`` with Strapi 5's options (``qs_parse.js``) and through
``bffproxy.query`` / the read router. For every query the router accepts:

* every top-level key qs produces is a name the router saw and allowed (nothing slips past);
* qs's ``status`` is exactly the router's decision (None, "published" or "draft");
* qs parses the re-encoded query bffproxy forwards into the same object as the client's query.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bffproxy.errors import ApiError
from bffproxy.query import parse_query
from bffproxy.reads import ReadRouter

HERE = Path(__file__).resolve().parent
ROUTER = ReadRouter(("articles",), {})
_FRAGMENTS = [
    "status", "[", "]", "%5B", "%5D", "%5b", "%5d", "=", "]=", "&", "filters", "sort", "populate",
    "pagination", "0", "1", "a", "%", "+", "%2", "%FF", "%E2%82%AC", "__proto__", "constructor",
    ".", "$eq", "draft", "published", "%26", "%3D", "[]", "%20", "?", "#", "%23", "%3F",
]  # fmt: skip


def _strapi_node_modules() -> Path:
    app_dir = os.environ.get("STRAPI_APP_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "bffproxy", "strapi-app"
    )
    return Path(app_dir) / "node_modules"


class StrapiQs:
    """A long-running node process answering qs.parse for one query string per line."""

    def __init__(self) -> None:
        modules = _strapi_node_modules()
        if not (modules / "qs").is_dir() or not shutil.which("node"):
            pytest.fail(f"Strapi's qs is not installed under {modules}: run make install")
        self.process = subprocess.Popen(
            ["node", str(HERE / "qs_parse.js")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "NODE_PATH": str(modules)},
        )

    def parse(self, query: str) -> Any:
        assert self.process.stdin and self.process.stdout
        self.process.stdin.write(json.dumps(query) + "\n")
        self.process.stdin.flush()
        answer = json.loads(self.process.stdout.readline())
        assert "error" not in answer, answer
        return answer["parsed"]

    def close(self) -> None:
        assert self.process.stdin and self.process.stdout
        self.process.stdin.close()
        self.process.wait(timeout=10)
        self.process.stdout.close()


@pytest.fixture(scope="module")
def strapi_qs() -> Iterator[StrapiQs]:
    qs = StrapiQs()
    yield qs
    qs.close()


def _query(parts: list[list[str]]) -> str:
    return "&".join("".join(part) for part in parts)


_QUERIES = st.lists(st.lists(st.sampled_from(_FRAGMENTS), min_size=1, max_size=7), max_size=4).map(_query)
_SETTINGS = settings(
    max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@_SETTINGS
@given(query=_QUERIES)
def test_qs_sees_no_top_level_key_the_parser_did_not(strapi_qs: StrapiQs, query: str) -> None:
    try:
        names = {param.name for param in parse_query(query)}
    except ApiError:
        return  # refused: Strapi never sees it
    keys = set(strapi_qs.parse(query))
    if "" in names:  # "[]=x" at the top: qs makes array indices of it
        keys = {key for key in keys if not key.isdigit()}
    assert keys <= names, query


@_SETTINGS
@given(query=_QUERIES)
def test_what_bffproxy_forwards_means_what_the_client_sent(strapi_qs: StrapiQs, query: str) -> None:
    try:
        route = ROUTER.route("/api/articles", query)
    except ApiError:
        return
    sent = strapi_qs.parse(query)
    assert sent.get("status") == route.status, query
    assert strapi_qs.parse(route.query_string) == sent, (query, route.query_string)


@pytest.mark.parametrize(
    "query",
    [
        "%5Bstatus%5D=draft",
        "[status]=draft",
        "status[]=draft",
        "status[0]=draft",
        "status",
        "status=published&status=draft",
        "[status=x]=draft",
        "a]=1&[status]=draft",
        "status%5D=x&%5Bstatus=draft",
    ],
)
def test_known_bypasses_are_refused_and_qs_confirms_they_mean_status(strapi_qs: StrapiQs, query: str) -> None:
    parsed = strapi_qs.parse(query)
    with pytest.raises(ApiError):
        ROUTER.route("/api/articles", query)
    if "status" in parsed:
        assert parsed["status"] != "published"
