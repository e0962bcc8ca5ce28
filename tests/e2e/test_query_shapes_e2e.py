"""Issue 8 end to end: no query or path shape returns a draft to an anonymous caller or a reader.

Each row of ``query_shapes.SHAPES`` is sent byte for byte (http.client: nothing re-encoded) to the
real Strapi, to prove what Strapi does with it, then to bffproxy under gunicorn as an anonymous
caller and as a signed-in reader, with GET and HEAD, three times each, so that answers served
from the cache (the WSGI fast path included) are checked as well as misses.
"""

from __future__ import annotations

import http.client
import json
from typing import Any
from urllib.parse import quote, urlsplit

import pytest

from .query_shapes import SHAPES, Shape
from .services import Gunicorn, Strapi
from .test_auth_e2e import POLICY, READER, login

Answer = tuple[int, dict[str, str], bytes]


def send(base: str, target: str, method: str = "GET", headers: dict[str, str] | None = None) -> Answer:
    """One request with ``target`` exactly as given (no quoting, no normalisation)."""
    url = urlsplit(base)
    connection = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=15)
    try:
        connection.request(method, target, headers=headers or {})
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


def items(body: Any) -> list[dict[str, Any]]:
    """Every document in a Strapi answer, populated relations included."""
    data = body.get("data") if isinstance(body, dict) else None
    found = data if isinstance(data, list) else [data] if isinstance(data, dict) else []
    nested = [
        related
        for item in found
        for value in item.values()
        if isinstance(value, list)
        for related in value
        if isinstance(related, dict)
    ]
    return found + nested


def has_drafts(body: Any) -> bool:
    """True when any document in the answer is a draft version (publishedAt null)."""
    return any("publishedAt" in item and item["publishedAt"] is None for item in items(body))


@pytest.fixture(scope="module")
def documents(strapi_server: Strapi) -> dict[str, str]:
    """A published documentId and a draft-only one, from the seeded Strapi."""
    published = strapi_server.get("api/articles", **{"pagination[pageSize]": "100"}).json()["data"]
    every = strapi_server.get("api/articles", status="draft", **{"pagination[pageSize]": "100"}).json()
    published_ids = {item["documentId"] for item in published}
    draft_only = [item["documentId"] for item in every["data"] if item["documentId"] not in published_ids]
    title = next(item["title"] for item in every["data"] if item["documentId"] == draft_only[0])
    return {"doc": published[0]["documentId"], "draft": draft_only[0], "draft_title": quote(title)}


def target_of(shape: Shape, documents: dict[str, str]) -> str:
    path = shape.path.format(**documents)
    query = shape.query.replace("{draft_title}", documents["draft_title"])
    return f"{path}?{query}" if query else path


def draft_matches(shape: Shape, body: Any) -> bool:
    """True when a filter on a draft-only title selected something (only a draft has that title)."""
    if "{draft_title}" not in shape.query:
        return False
    if shape.query.startswith("filters"):
        return bool(body["data"])
    relations = ("category", "articles")  # inside populate: a relation selected by a draft's title
    return any(item.get(name) for item in body["data"] for name in relations)


def strapi_effect(shape: Shape, answer: Answer) -> str:
    """What Strapi did, in the table's words."""
    status, _, raw = answer
    if status != 200:
        return str(status)
    body = json.loads(raw)
    if has_drafts(body):
        return "drafts"
    if draft_matches(shape, body):
        return "drafts-match"
    return "published" if items(body) else "empty"


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{s.path}?{s.query}")
def test_the_table_says_what_strapi_does(
    strapi_live: Strapi, documents: dict[str, str], shape: Shape
) -> None:
    assert strapi_effect(shape, send(strapi_live.url, target_of(shape, documents))) == shape.strapi


@pytest.fixture(scope="module")
def shapes_bff(strapi_server: Strapi, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """One bffproxy (2 workers, fast hits on) for the whole table, with a reader's token."""
    from .services import bff_env, free_port

    cache = tmp_path_factory.mktemp("shapes-cache")
    env = bff_env(strapi_server, cache, **POLICY)
    server = Gunicorn(free_port(), env, 2, log_path=cache / "gunicorn.log").start()
    reader = login(server, READER)["jwt"]
    yield server, reader
    server.stop()


def expected_status(shape: Shape, signed_in: bool) -> int:
    """The status the table's ``bff`` column means for this caller."""
    if shape.bff == "200":
        return 200
    if shape.bff.startswith("strapi-"):
        return int(shape.bff.removeprefix("strapi-"))
    if shape.bff == "drafts_not_allowed" and signed_in:
        return 403  # a reader lacks the drafts policy
    return 404 if shape.bff == "not_found" else 400


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{s.path}?{s.query}")
@pytest.mark.parametrize("caller", ["anonymous", "reader"])
def test_no_shape_returns_a_draft_through_bffproxy(
    shapes_bff: Any, strapi_live: Strapi, documents: dict[str, str], shape: Shape, caller: str
) -> None:
    server, reader = shapes_bff
    target = target_of(shape, documents)
    headers = {"Authorization": f"Bearer {reader}"} if caller == "reader" else {}
    want = expected_status(shape, caller == "reader")
    seen = []
    for method in ("GET", "HEAD", "GET", "GET"):
        status, answer_headers, raw = send(server.url, target, method, headers)
        assert status == want, (method, raw[:300])
        seen.append(answer_headers.get("x-cache"))
        if method == "HEAD":
            assert raw == b""
            continue
        body = json.loads(raw)
        assert not has_drafts(body)
        if status == 200:
            assert body == json.loads(send(strapi_live.url, target)[2]), (
                "differs from Strapi's published answer"
            )
        elif not shape.bff.startswith("strapi-"):
            assert body["error"]["code"] == ("forbidden" if want == 403 else shape.bff)
    if want == 200 and caller == "anonymous":
        assert seen[-1] == "HIT"  # served from the cache (the fast path for a fresh anonymous hit)
