"""Defects found attacking issue 14 (drop-in writes and media), each fixed: every test failed on 4daa1b5."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator

import pytest
import requests

from .services import Gunicorn, Strapi

SETTINGS = {
    "COLLECTIONS": "articles,categories,homepage",
    "SINGLE_TYPES": "homepage",
    "POLICIES__articles": "read=public,drafts=editor,write=editor",
    "POLICIES__categories": "read=public,write=authenticated",  # the reader may write categories only
    "POLICIES__homepage": "read=public,drafts=editor,write=editor",
    "POLICIES__upload": "read=public,write=editor",
}


@pytest.fixture
def bff(start_bff: Callable[..., Gunicorn]) -> Gunicorn:
    return start_bff(**SETTINGS)


@pytest.fixture
def made(strapi_live: Strapi) -> Iterator[list[str]]:
    paths: list[str] = []
    yield paths
    for path in paths:
        requests.delete(f"{strapi_live.url}/{path}", headers=service(strapi_live), timeout=10)


def service(strapi: Strapi) -> dict[str, str]:
    return {"Authorization": f"Bearer {strapi.api_token}"}


def upload_to_strapi(strapi: Strapi, made: list[str], data: bytes) -> str:
    answer = requests.post(
        f"{strapi.url}/api/upload",
        files={"files": (f"find-{secrets.token_hex(4)}.bin", data, "application/octet-stream")},
        headers=service(strapi),
        timeout=10,
    )
    stored = answer.json()[0]
    made.append(f"api/upload/files/{stored['id']}")
    return str(stored["url"])


def test_malformed_fileinfo_is_a_400_not_an_unknown_outcome(
    bff: Gunicorn, strapi_live: Strapi, editor: dict[str, str]
) -> None:
    """Strapi answers a fileInfo that is not JSON with a 500 (JSON.parse throws), nothing stored."""
    files = {"files": ("f.bin", b"x", "application/octet-stream"), "fileInfo": (None, "{not json")}
    direct = requests.post(
        f"{strapi_live.url}/api/upload", files=files, headers=service(strapi_live), timeout=10
    )
    assert direct.status_code == 500  # Strapi's own answer
    keyed = {**editor, "Idempotency-Key": secrets.token_hex(8)}
    answer = requests.post(f"{bff.url}/api/upload", files=files, headers=keyed, timeout=10)
    assert (answer.status_code, answer.json()["error"]["code"]) == (400, "invalid_parameter"), answer.text
    # ...and the key is not left "unknown": the corrected upload is not a 409 for a day.
    fixed = {"files": files["files"], "fileInfo": (None, '{"name": "fixed"}')}
    retry = requests.post(f"{bff.url}/api/upload", files=fixed, headers=keyed, timeout=10)
    assert retry.status_code in (201, 422), retry.text
    if retry.status_code == 201:
        requests.delete(
            f"{strapi_live.url}/api/upload/files/{retry.json()[0]['id']}",
            headers=service(strapi_live),
            timeout=10,
        )


def test_a_suffix_range_longer_than_the_file_is_the_whole_file(
    bff: Gunicorn, strapi_live: Strapi, made: list[str]
) -> None:
    """RFC 9110 14.1.3: "If the selected representation is shorter than the specified suffix-length,
    the entire representation is used." nginx answers 206 bytes 0-999/1000 here."""
    data = secrets.token_bytes(1000)
    url = f"{bff.url}{upload_to_strapi(strapi_live, made, data)}"
    answer = requests.get(url, headers={"Range": "bytes=-1001"}, timeout=10)
    assert (answer.status_code, answer.headers.get("Content-Range")) == (206, "bytes 0-999/1000"), answer.text
    assert answer.content == data


def test_a_categories_writer_cannot_rewrite_published_articles_through_the_inverse_relation(
    bff: Gunicorn, strapi_live: Strapi, reader: dict[str, str], made: list[str]
) -> None:
    """The reader may write categories, not articles: it must not move a published article."""
    article = strapi_live.get("api/articles", **{"populate": "category", "pagination[pageSize]": "1"}).json()[
        "data"
    ][0]
    was = article["category"]["documentId"] if article["category"] else None
    try:
        answer = requests.post(
            f"{bff.url}/api/categories",
            json={"data": {"name": f"hijack-{secrets.token_hex(4)}", "articles": [article["documentId"]]}},
            headers=reader,
            timeout=10,
        )
        if answer.ok:
            made.append(f"api/categories/{answer.json()['data']['documentId']}")
        public = strapi_live.get(f"api/articles/{article['documentId']}", populate="category").json()["data"]
        assert (public["category"] or {}).get("documentId") == was, (
            "a categories write moved a published article"
        )
        assert answer.status_code == 403, answer.text
    finally:
        requests.put(
            f"{strapi_live.url}/api/articles/{article['documentId']}",
            json={"data": {"category": was}},
            headers=service(strapi_live),
            timeout=10,
        )


def test_a_categories_write_drops_articles_that_embed_it_without_extra_configuration(
    start_bff: Callable[..., Gunicorn], strapi_live: Strapi, reader: dict[str, str]
) -> None:
    """schemas.py knows articles.category -> categories; the operator forgot RELATIONS__categories."""
    bff = start_bff(**SETTINGS)
    category = strapi_live.get("api/categories", **{"sort": "id", "pagination[pageSize]": "1"}).json()[
        "data"
    ][0]
    query = f"populate=category&filters[category][documentId][$eq]={category['documentId']}"
    url = f"{bff.url}/api/articles?{query}"
    requests.get(url, timeout=10)
    renamed = f"renamed-{secrets.token_hex(4)}"
    try:
        answer = requests.put(
            f"{bff.url}/api/categories/{category['documentId']}",
            json={"data": {"name": renamed}},
            headers=reader,
            timeout=10,
        )
        assert answer.status_code == 200, answer.text
        after = requests.get(url, timeout=10)
        assert {item["category"]["name"] for item in after.json()["data"]} == {renamed}, after.headers[
            "X-Cache"
        ]
    finally:
        requests.put(
            f"{strapi_live.url}/api/categories/{category['documentId']}",
            json={"data": {"name": category["name"]}},
            headers=service(strapi_live),
            timeout=10,
        )
