"""Hostile tests of issue 14 (Strapi's write semantics, single types, media) against the real Strapi.

One bffproxy (gunicorn, 2 workers) for the whole module, on Strapi's webhook port. Its roles: the
editor may write and read drafts; the reader (Strapi's ``authenticated`` role) may write articles,
categories and the homepage but never read drafts, the caller a draft leak would help. Every
answer must be JSON with the right status, never a draft for the reader, never a lost or doubled
write, and, where bffproxy claims to be a drop-in, what Strapi itself answers.
"""

from __future__ import annotations

import http.client
import json
import secrets
import time
import warnings
from collections.abc import Iterator
from typing import Any

import jwt
import pytest
import requests
from jwt.warnings import InsecureKeyLengthWarning
from urllib3 import encode_multipart_formdata

from .services import Gunicorn, Strapi, bff_env, login
from .test_bodies_e2e import chunks
from .test_media_e2e import strapi_settled
from .test_single_types_e2e import SEEDED

LIMIT = 256 * 1024
SETTINGS = {
    "COLLECTIONS": "articles,categories,homepage",
    "SINGLE_TYPES": "homepage",
    "POLICIES__articles": "read=public,drafts=editor,write=editor|authenticated",
    "POLICIES__categories": "read=public,write=authenticated",
    "POLICIES__homepage": "read=public,drafts=editor,write=editor|authenticated",
    "POLICIES__upload": "read=public,write=editor",
    "MEDIA_EMBEDDED_IN": "articles",
    "RELATIONS__categories": "articles",  # article answers embed their category (populate)
    "MAX_UPLOAD_BYTES": str(LIMIT),
}


@pytest.fixture(scope="module")
def bff(
    strapi_server: Strapi, webhook_port: int, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gunicorn]:
    """One bffproxy for the module (starting one per test would cost most of the time budget)."""
    from .services import http_ok

    if not http_ok(f"{strapi_server.url}/_health"):
        strapi_server.start()
    cache = tmp_path_factory.mktemp("attack-dropin")
    server = Gunicorn(
        webhook_port, bff_env(strapi_server, cache, **SETTINGS), 2, log_path=cache / "gunicorn.log"
    )
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def editor(strapi_server: Strapi) -> dict[str, str]:
    return login(strapi_server, "editor", "Editor-Passw0rd!")


@pytest.fixture(scope="module")
def reader(strapi_server: Strapi) -> dict[str, str]:
    return login(strapi_server, "reader", "Reader-Passw0rd!")


@pytest.fixture
def made(strapi_server: Strapi) -> Iterator[list[str]]:
    """Paths (``api/articles/<id>``, ``api/upload/files/<id>``…) deleted in Strapi after the test."""
    paths: list[str] = []
    yield paths
    for path in paths:
        requests.delete(f"{strapi_server.url}/{path}", headers=service(strapi_server), timeout=10)


def service(strapi: Strapi) -> dict[str, str]:
    return {"Authorization": f"Bearer {strapi.api_token}"}


def marker() -> str:
    return f"atk-dropin-{secrets.token_hex(6)}"


def in_strapi(strapi: Strapi, title: str) -> list[dict[str, Any]]:
    """Every version (draft or published) of the articles with this title, asked of Strapi."""
    answer = strapi.get(
        "api/articles", token=strapi.api_token, status="draft", **{"filters[title][$eq]": title}
    )
    return list(answer.json()["data"])


def strapi_draft(strapi: Strapi, made: list[str], data: dict[str, Any]) -> str:
    """A draft-only article made in Strapi directly; its documentId."""
    answer = requests.post(
        f"{strapi.url}/api/articles?status=draft", json={"data": data}, headers=service(strapi), timeout=10
    )
    assert answer.status_code == 201, answer.text
    document_id = str(answer.json()["data"]["documentId"])
    made.append(f"api/articles/{document_id}")
    return document_id


def a_category(strapi: Strapi) -> str:
    answer = strapi.get("api/categories", **{"sort": "id", "pagination[pageSize]": "1"})
    return str(answer.json()["data"][0]["documentId"])


def is_envelope(answer: requests.Response, status: int, code: str) -> bool:
    """bffproxy's JSON error envelope with this status and code."""
    if not answer.headers.get("Content-Type", "").startswith("application/json"):
        return False
    return (answer.status_code, answer.json()["error"]["code"]) == (status, code)


# -- the write path: ?status=draft spelled every way qs reads it -------------------------------


STATUS_SPELLINGS = [
    ("status[]=draft", 400),
    ("status[0]=draft", 400),
    ("[status]=draft", 400),
    ("%5Bstatus%5D=draft", 400),
    ("status%5B%5D=draft", 400),
    ("status[status]=draft", 400),
    ("status=draft&status=published", 400),
    ("status=published&status=draft", 400),
    ("Status=draft", 400),
    ("status=Draft", 400),
    ("status=draft%00", 400),
    ("status=draft%20", 400),
    ("status%20=draft", 400),
    ("status", 400),
    ("status=", 400),
    ("status=draft,published", 400),
    ("status=published%26status=draft", 400),
    ("%73tatus=draft", 403),  # qs decodes it to status=draft: the drafts policy decides
    ("status=%64raft", 403),
    ("status=dr%61ft", 403),
]


def test_status_draft_spelled_any_way_never_writes_a_draft_for_a_writer_without_drafts(
    bff: Gunicorn, strapi_server: Strapi, reader: dict[str, str], made: list[str]
) -> None:
    title = marker()
    for query, status in STATUS_SPELLINGS:
        answer = requests.post(
            f"{bff.url}/api/articles?{query}", json={"data": {"title": title}}, headers=reader, timeout=10
        )
        code = "invalid_parameter" if status == 400 else "forbidden"
        assert is_envelope(answer, status, code), (query, answer.status_code, answer.text[:300])
    assert in_strapi(strapi_server, title) == []  # nothing reached Strapi
    # The same spellings on the homepage and on an article's PUT: refused the same way.
    for path in ("api/homepage", f"api/articles/{strapi_draft(strapi_server, made, {'title': title})}"):
        for query, status in STATUS_SPELLINGS[::4]:
            answer = requests.put(f"{bff.url}/{path}?{query}", json={"data": {}}, headers=reader, timeout=10)
            assert answer.status_code == status, (path, query, answer.text[:300])
    assert [item["publishedAt"] for item in in_strapi(strapi_server, title)] == [None]


POPULATES = [
    "populate=category.articles",
    "populate[category][populate]=articles",
    "populate[category][populate][articles][fields][0]=title",
    "populate[category][populate][articles][filters][title][$contains]=atk",
    "populate=*",
]


def test_populate_on_a_write_never_shows_a_draft_to_a_writer_without_drafts(
    bff: Gunicorn, strapi_server: Strapi, reader: dict[str, str], made: list[str]
) -> None:
    category, secret = a_category(strapi_server), marker()
    strapi_draft(strapi_server, made, {"title": secret, "body": secret, "category": category})
    published = strapi_server.get(
        "api/articles", **{"filters[category][documentId][$eq]": category, "pagination[pageSize]": "1"}
    ).json()["data"][0]["documentId"]
    for query in POPULATES:
        edit = requests.put(
            f"{bff.url}/api/articles/{published}?{query}", json={"data": {}}, headers=reader, timeout=10
        )
        create = requests.post(
            f"{bff.url}/api/articles?{query}",
            json={"data": {"title": marker(), "category": category}},
            headers=reader,
            timeout=10,
        )
        assert (edit.status_code, create.status_code) == (200, 201), (
            query,
            edit.text[:200],
            create.text[:200],
        )
        made.append(f"api/articles/{create.json()['data']['documentId']}")
        assert secret not in edit.text and secret not in create.text, query
    for path in (f"api/categories/{category}", "api/categories"):
        method = requests.put if path.count("/") == 2 else requests.post
        body = {"data": {}} if method is requests.put else {"data": {"name": marker()}}
        answer = method(f"{bff.url}/{path}?populate=articles", json=body, headers=reader, timeout=10)
        assert answer.ok and secret not in answer.text, answer.text[:300]
        if method is requests.post:
            made.append(f"api/categories/{answer.json()['data']['documentId']}")
    # Strapi itself populates only published rows on a published write: bffproxy adds nothing.
    direct = requests.put(
        f"{strapi_server.url}/api/categories/{category}?populate=articles",
        json={"data": {}},
        headers=service(strapi_server),
        timeout=10,
    )
    assert direct.ok and secret not in direct.text


def test_put_without_status_publishes_a_pending_draft_as_strapi_does(
    bff: Gunicorn, strapi_server: Strapi, reader: dict[str, str], made: list[str]
) -> None:
    """Strapi's REST update publishes the whole draft, pending edits included: bffproxy does the same.

    So a role with ``write`` but not ``drafts`` can publish (and read back) any draft: ``drafts``
    guards reads only. This pins that parity (README, Publishing) so a change to it is deliberate.
    """
    through_bff, direct = marker(), marker()
    ids = [
        strapi_draft(strapi_server, made, {"title": t, "excerpt": "pending"}) for t in (through_bff, direct)
    ]
    ours = requests.put(f"{bff.url}/api/articles/{ids[0]}", json={"data": {}}, headers=reader, timeout=10)
    theirs = requests.put(
        f"{strapi_server.url}/api/articles/{ids[1]}",
        json={"data": {}},
        headers=service(strapi_server),
        timeout=10,
    )
    assert (ours.status_code, theirs.status_code) == (200, 200)
    for answer, title in ((ours, through_bff), (theirs, direct)):
        data = answer.json()["data"]
        assert (data["title"], data["excerpt"]) == (title, "pending") and data["publishedAt"]
    public = requests.get(f"{bff.url}/api/articles/{ids[0]}", timeout=10)
    assert public.status_code == 200 and public.json()["data"]["excerpt"] == "pending"


def test_an_idempotency_key_is_bound_to_method_path_query_and_body(
    bff: Gunicorn, strapi_server: Strapi, editor: dict[str, str], reader: dict[str, str], made: list[str]
) -> None:
    title, key = marker(), secrets.token_hex(12)
    keyed = {**editor, "Idempotency-Key": key}
    first = requests.post(
        f"{bff.url}/api/articles?status=draft", json={"data": {"title": title}}, headers=keyed
    )
    assert first.status_code == 201, first.text
    document_id = first.json()["data"]["documentId"]
    made.append(f"api/articles/{document_id}")
    reuses = [
        ("POST", "api/articles", {"data": {"title": title}}),
        ("POST", "api/articles?status=published", {"data": {"title": title}}),
        ("POST", "api/articles?status=draft&fields=title", {"data": {"title": title}}),
        ("POST", "api/articles?status=draft", {"data": {"title": title, "excerpt": "x"}}),
        ("PUT", f"api/articles/{document_id}?status=draft", {"data": {"title": title}}),
        ("PUT", "api/homepage?status=draft", {"data": {"title": title}}),
        ("POST", "api/articles/publish", {"title": title}),
    ]
    for method, path, body in reuses:
        answer = requests.request(method, f"{bff.url}/{path}", json=body, headers=keyed, timeout=10)
        assert is_envelope(answer, 422, "idempotency_key_reused"), (method, path, answer.text[:200])
    # The same request spelled otherwise (qs decodes %64 to d; JSON whitespace) is the same request.
    for path, raw in (
        ("status=%64raft", '{"data":{"title":"%s"}}'),
        ("status=draft", '{ "data" : { "title" : "%s" } }'),
    ):
        again = requests.post(
            f"{bff.url}/api/articles?{path}",
            data=raw % title,
            headers={**keyed, "Content-Type": "application/json"},
            timeout=10,
        )
        assert (again.status_code, again.headers.get("Idempotent-Replayed")) == (201, "true"), again.text[
            :200
        ]
        assert again.json() == first.json()
    # Another user's same key is another key, but the drafts policy is checked before any replay.
    refused = requests.post(
        f"{bff.url}/api/articles?status=draft",
        json={"data": {"title": title}},
        headers={**reader, "Idempotency-Key": key},
        timeout=10,
    )
    assert is_envelope(refused, 403, "forbidden")
    assert [item["documentId"] for item in in_strapi(strapi_server, title)] == [document_id]


def test_a_categories_write_drops_cached_articles_that_show_the_category(
    bff: Gunicorn, strapi_server: Strapi, reader: dict[str, str], made: list[str]
) -> None:
    category = a_category(strapi_server)
    url = f"{bff.url}/api/articles?populate=category&filters[category][documentId][$eq]={category}"
    requests.get(url, timeout=10)
    assert requests.get(url, timeout=10).headers["X-Cache"] == "HIT"
    renamed = marker()
    before = strapi_server.get(f"api/categories/{category}").json()["data"]["name"]
    try:
        answer = requests.put(
            f"{bff.url}/api/categories/{category}",
            json={"data": {"name": renamed}},
            headers=reader,
            timeout=10,
        )
        assert answer.status_code == 200, answer.text
        after = requests.get(url, timeout=10)
        assert after.headers["X-Cache"] == "MISS"
        assert {item["category"]["name"] for item in after.json()["data"]} == {renamed}
    finally:
        requests.put(
            f"{strapi_server.url}/api/categories/{category}",
            json={"data": {"name": before}},
            headers=service(strapi_server),
            timeout=10,
        )


def test_a_single_type_answers_like_strapi_after_a_delete_and_a_draft_only_put(
    bff: Gunicorn, strapi_server: Strapi, editor: dict[str, str], reader: dict[str, str]
) -> None:
    url = f"{bff.url}/api/homepage"
    try:
        assert requests.delete(url, headers=editor, timeout=10).status_code == 204
        ours, theirs = requests.get(url, timeout=10), strapi_server.get("api/homepage")
        assert (ours.status_code, ours.json()) == (theirs.status_code, theirs.json()) == (404, theirs.json())
        assert requests.delete(url, headers=editor, timeout=10).status_code == 204  # Strapi: 204 too
        secret = marker()
        draft = requests.put(
            f"{url}?status=draft", json={"data": {"title": secret}}, headers=editor, timeout=10
        )
        assert draft.status_code == 200 and draft.json()["data"]["publishedAt"] is None
        for headers, status in (({}, 400), (reader, 403)):
            asked = requests.get(f"{url}?status=draft", headers=headers, timeout=10)
            assert asked.status_code == status and secret not in asked.text
        assert requests.get(url, timeout=10).status_code == 404  # still nothing published
        assert (
            requests.post(url, json={"data": {"title": "x"}}, headers=editor, timeout=10).status_code == 405
        )
    finally:
        back = requests.put(url, json={"data": SEEDED}, headers=editor, timeout=10)
        assert back.status_code == 200, back.text
    assert requests.get(url, timeout=10).json()["data"]["title"] == SEEDED["title"]


# -- media: files ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def a_file(bff: Gunicorn, strapi_server: Strapi) -> Iterator[tuple[str, bytes]]:
    """A 1000-byte file uploaded to Strapi directly: (its URL path, its bytes)."""
    data = secrets.token_bytes(1000)
    answer = requests.post(
        f"{strapi_server.url}/api/upload",
        files={"files": (f"{marker()}.bin", data, "application/octet-stream")},
        headers=service(strapi_server),
        timeout=30,
    )
    stored = answer.json()[0]
    yield stored["url"], data
    requests.delete(
        f"{strapi_server.url}/api/upload/files/{stored['id']}", headers=service(strapi_server), timeout=10
    )


RANGES = [  # Range header -> (status, body slice or None for the whole file, Content-Range)
    ("bytes=0-0", 206, slice(0, 1), "bytes 0-0/1000"),
    ("bytes=999-", 206, slice(999, 1000), "bytes 999-999/1000"),
    ("bytes=-1000", 206, slice(0, 1000), "bytes 0-999/1000"),
    ("bytes=0-99999999999999999999999", 206, slice(0, 1000), "bytes 0-999/1000"),
    ("BYTES=0-1", 206, slice(0, 2), "bytes 0-1/1000"),  # range units are case-insensitive
    ("bytes=00000000000000000000000000000001-2", 206, slice(1, 3), "bytes 1-2/1000"),
    ("bytes=1000-", 416, None, "bytes */1000"),  # Strapi: a 206 with an empty body
    ("bytes=99999999999999999999999-", 416, None, "bytes */1000"),  # Strapi: "bytes 1e+23-999/1000"
    ("bytes=5-2", 200, slice(0, 1000), None),  # invalid: ignored (RFC 9110 14.2)
    ("bytes=-0", 200, slice(0, 1000), None),
    ("bytes=0-1,5-6", 200, slice(0, 1000), None),  # several ranges: the whole file
    ("bytes=a-b", 200, slice(0, 1000), None),
    ("items=0-1", 200, slice(0, 1000), None),
    ("bytes=-", 200, slice(0, 1000), None),  # Strapi: "bytes Infinity-999/1000"
]


def test_ranges_are_answered_by_rfc_9110_not_by_strapis_koa_range(
    bff: Gunicorn, a_file: tuple[str, bytes]
) -> None:
    path, data = a_file
    for header, status, part, content_range in RANGES:
        answer = requests.get(f"{bff.url}{path}", headers={"Range": header}, timeout=10)
        assert answer.status_code == status, (header, answer.status_code, answer.text[:200])
        assert answer.headers.get("Content-Range") == content_range, header
        if part is None:
            assert answer.json()["error"]["code"] == "range_not_satisfiable"
        else:
            assert answer.content == data[part], header
            assert answer.headers["Content-Length"] == str(len(data[part]))


def test_conditional_requests_on_a_file(bff: Gunicorn, a_file: tuple[str, bytes]) -> None:
    path, data = a_file
    url = f"{bff.url}{path}"
    whole = requests.get(url, timeout=10)
    etag, modified = whole.headers["ETag"], whole.headers["Last-Modified"]
    cases = [
        ({"Range": "bytes=0-1", "If-Range": f"W/{etag}"}, 200, data),  # a weak validator never matches
        ({"Range": "bytes=0-1", "If-Range": etag}, 206, data[:2]),
        ({"Range": "bytes=0-1", "If-Range": modified}, 206, data[:2]),
        ({"Range": "bytes=0-1", "If-Range": '"other"'}, 200, data),
        ({"Range": "bytes=0-1", "If-Range": "garbage"}, 200, data),
        ({"If-None-Match": "*"}, 304, b""),
        ({"If-None-Match": f"W/{etag}"}, 304, b""),  # If-None-Match compares weakly
        ({"If-None-Match": f'"x", {etag}'}, 304, b""),
        ({"If-None-Match": '"x"', "If-Modified-Since": "Fri, 01 Jan 2100 00:00:00 GMT"}, 200, data),
        ({"If-Modified-Since": "garbage"}, 200, data),
        ({"If-Modified-Since": "Thu, 01 Jan 1970 00:00:00 GMT"}, 200, data),
    ]
    for headers, status, body in cases:
        answer = requests.get(url, headers=headers, timeout=10)
        assert (answer.status_code, answer.content) == (status, body), headers
        assert answer.headers["ETag"] == etag
    for headers in ({}, {"Range": "bytes=0-1"}):  # HEAD ignores Range (defined for GET only)
        head = requests.head(url, headers=headers, timeout=10)
        assert (head.status_code, head.headers["Content-Length"], head.content) == (200, "1000", b"")
    assert requests.head(url, headers={"If-None-Match": etag}, timeout=10).status_code == 304


def raw_status(bff: Gunicorn, target: str) -> tuple[int, str, bytes]:
    """GET ``target`` byte for byte as written (no client normalisation)."""
    connection = http.client.HTTPConnection("127.0.0.1", bff.port, timeout=10)
    try:
        connection.putrequest("GET", target, skip_host=False, skip_accept_encoding=True)
        connection.endheaders()
        answer = connection.getresponse()
        return answer.status, answer.getheader("Content-Type", ""), answer.read()
    finally:
        connection.close()


def test_file_names_bent_out_of_shape_are_404_json_and_never_reach_strapi(
    bff: Gunicorn, strapi_server: Strapi, a_file: tuple[str, bytes]
) -> None:
    path, _ = a_file
    name = path.rsplit("/", 1)[1]
    targets = [
        "/uploads/%2e%2e",
        "/uploads/..%2f..%2fpackage.json",
        "/uploads/..\\package.json",
        "/uploads/%c0%ae%c0%ae%c0%afpackage.json",  # overlong UTF-8 for ../
        "/uploads/%ef%bc%8e%ef%bc%8e%ef%bc%8fpackage.json",  # fullwidth ../
        "/uploads/%ff",
        "/uploads/%zz",
        f"/uploads/{'a' * 300}.bin",
        f"/uploads/{name}%00",
        f"/uploads/{name}%00.png",
        f"/uploads/{name}%20",
        f"/uploads/{name};x",
        f"/uploads/{name}%3f",
        f"/uploads/{name}%23",
        f"/uploads/{name}/..",
        f"/uploads/.{name}",
        "/uploads/a..b",
        "/uploads/",
    ]
    seen = strapi_server.count_requests("/uploads/")
    for target in targets:
        status, content_type, body = raw_status(bff, target)
        assert (status, content_type) == (404, "application/json"), (target, status, body[:200])
        assert json.loads(body)["error"]["code"] == "not_found"
    strapi_settled(strapi_server)
    assert strapi_server.count_requests("/uploads/") == seen
    for plain_but_absent in (f"/uploads/{name.upper()}", f"/uploads/{name}."):  # Strapi's 404, as JSON
        status, content_type, body = raw_status(bff, plain_but_absent)
        assert (status, content_type) == (404, "application/json"), (plain_but_absent, body[:200])
    status, _, body = raw_status(bff, f"/uploads/{name.replace('a', '%61')}")  # an encoded letter: the file
    assert status == 200 and body == a_file[1]


# -- media: uploads ----------------------------------------------------------------------------


def multipart(*parts: bytes) -> bytes:
    return b"".join(parts) + b"--XyZ--\r\n"


def part(name: str, data: bytes, filename: str | None = None, content_type: str | None = None) -> bytes:
    head = f'Content-Disposition: form-data; name="{name}"'
    head += "" if filename is None else f'; filename="{filename}"'
    head += "" if content_type is None else f"\r\nContent-Type: {content_type}"
    return b"--XyZ\r\n" + head.encode() + b"\r\n\r\n" + data + b"\r\n"


def post_upload(
    bff: Gunicorn, headers: dict[str, str], body: Any, boundary: str = "XyZ"
) -> requests.Response:
    headers = {**headers, "Content-Type": f"multipart/form-data; boundary={boundary}"}
    return requests.post(f"{bff.url}/api/upload", data=body, headers=headers, timeout=30)


def library_size(strapi: Strapi) -> int:
    return len(strapi.get("api/upload/files", token=strapi.api_token, **{"fields[0]": "name"}).json())


SMUGGLED = {
    "ref in another case": multipart(part("files", b"x", "x.bin"), part("REF", b"api::article.article")),
    "refId in another case": multipart(part("files", b"x", "x.bin"), part("RefId", b"1")),
    "field": multipart(part("files", b"x", "x.bin"), part("field", b"cover")),
    "path": multipart(part("files", b"x", "x.bin"), part("path", b"/tmp")),
    "name*= (RFC 5987)": b"--XyZ\r\nContent-Disposition: form-data; name=\"files\"; name*=UTF-8''ref; "
    b'filename="a.bin"\r\n\r\nx\r\n--XyZ--\r\n',
    "a quote in the name": b'--XyZ\r\nContent-Disposition: form-data; name="files\\"; ref="; '
    b'filename="a.bin"\r\n\r\nx\r\n--XyZ--\r\n',
    "bare LF line breaks": b'--XyZ\nContent-Disposition: form-data; name="ref"\n\nx\n--XyZ--\n',
}
MALFORMED = {
    "the boundary inside a part": multipart(part("files", b"before\r\n--XyZ\r\nafter", "b.bin")),
    "a part without Content-Disposition": b"--XyZ\r\nContent-Type: text/plain\r\n\r\nx\r\n--XyZ--\r\n",
    "101 parts": multipart(*(part("files", b"x", f"t{i}.bin") for i in range(101))),
    "no closing boundary": part("files", b"x", "x.bin"),
    "an empty body": b"",
}


def test_smuggled_and_malformed_parts_are_refused_before_strapi(
    bff: Gunicorn, strapi_server: Strapi, editor: dict[str, str]
) -> None:
    before = library_size(strapi_server)
    for what, body in SMUGGLED.items():
        answer = post_upload(bff, editor, body)
        assert is_envelope(answer, 400, "invalid_parameter"), (what, answer.text[:300])
    for what, body in MALFORMED.items():
        answer = post_upload(bff, editor, body)
        assert is_envelope(answer, 400, "bad_request"), (what, answer.text[:300])
    for query in ("ref=x", "id=0", "id[]=1", "id=1&id=2", "[id]=1"):
        answer = requests.post(f"{bff.url}/api/upload?{query}", headers=editor, files={"files": ("x", b"x")})
        assert is_envelope(answer, 400, "invalid_parameter"), (query, answer.text[:300])
    for content_type in ("application/json", "text/plain", "multipart/mixed; boundary=XyZ"):
        refused = requests.post(
            f"{bff.url}/api/upload", data=b"{}", headers={**editor, "Content-Type": content_type}, timeout=10
        )
        assert is_envelope(refused, 415, "unsupported_media_type"), content_type
    assert library_size(strapi_server) == before


def test_uploads_strapi_refuses_pass_its_400_and_store_nothing(
    bff: Gunicorn, strapi_server: Strapi, editor: dict[str, str]
) -> None:
    before = library_size(strapi_server)
    for body in (
        multipart(part("files", b"x")),  # a files part without a filename
        multipart(part("fileInfo", b'{"name": "alone"}')),
        multipart(),
        multipart(part("files", b"x", "../../etc/passwd")),
        multipart(part("files", b"x", "")),
        multipart(part("files", b"x", "x.bin"), part("fileInfo", b'{"name": {"$gt": 1}}')),
    ):
        answer = post_upload(bff, editor, body)
        assert answer.status_code == 400, answer.text[:300]
        assert answer.json()["error"]["name"] in ("ValidationError", "ApplicationError")
    assert library_size(strapi_server) == before


def test_who_may_upload_and_what_an_upload_over_the_limit_costs(
    bff: Gunicorn, strapi_server: Strapi, reader: dict[str, str], editor: dict[str, str]
) -> None:
    before = library_size(strapi_server)
    user_id = jwt.decode(editor["Authorization"].split()[1], options={"verify_signature": False})["id"]
    with warnings.catch_warnings():  # Strapi's secret is 24 bytes: PyJWT warns about it
        warnings.simplefilter("ignore", InsecureKeyLengthWarning)
        expired = jwt.encode(
            {"id": user_id, "iat": int(time.time()) - 7200, "exp": int(time.time()) - 3600},
            strapi_server.jwt_secret,
            algorithm="HS256",
        )
    forged = jwt.encode({"id": user_id}, "not-strapis-secret-but-32-bytes-long!", algorithm="HS256")
    body = multipart(part("files", b"x", "x.bin"))
    for headers, status in (
        ({}, 401),
        ({"Authorization": f"Bearer {expired}"}, 401),
        ({"Authorization": f"Bearer {forged}"}, 401),
        ({"Authorization": f"Bearer {strapi_server.api_token}"}, 401),  # opaque to bffproxy
        (reader, 403),
    ):
        answer = post_upload(bff, headers, body)
        assert answer.status_code == status and answer.json()["error"]["code"], answer.text[:200]
    many_tiny = multipart(*(part("files", b"y" * 3000, f"t{i}.bin") for i in range(99)))
    assert len(many_tiny) > LIMIT
    for data in (many_tiny, chunks(many_tiny, 1000)):
        answer = post_upload(bff, editor, data)
        assert is_envelope(answer, 413, "payload_too_large"), answer.text[:200]
    big, content_type = encode_multipart_formdata({"files": ("big.bin", bytes(LIMIT))})
    refused = requests.post(
        f"{bff.url}/api/upload",
        data=chunks(big),
        headers={**editor, "Content-Type": content_type},
        timeout=30,
    )
    assert is_envelope(refused, 413, "payload_too_large")
    assert library_size(strapi_server) == before


def test_an_upload_and_a_delete_drop_the_cached_library_and_the_collections_embedding_media(
    bff: Gunicorn, strapi_server: Strapi, editor: dict[str, str], made: list[str]
) -> None:
    lists = [f"{bff.url}/api/upload/files", f"{bff.url}/api/upload/files/page", f"{bff.url}/api/articles"]

    def warm() -> None:
        for url in lists:
            requests.get(url, timeout=10)
            assert requests.get(url, timeout=10).headers["X-Cache"] == "HIT", url

    name = f"{marker()}.bin"
    warm()
    answer = post_upload(bff, editor, multipart(part("files", b"payload", name, "application/octet-stream")))
    assert answer.status_code == 201, answer.text
    (stored,) = answer.json()
    made.append(f"api/upload/files/{stored['id']}")
    assert [requests.get(url, timeout=10).headers["X-Cache"] for url in lists] == ["MISS"] * 3
    assert name in requests.get(lists[0], timeout=10).text
    warm()
    deleted = requests.delete(f"{bff.url}/api/upload/files/{stored['id']}", headers=editor, timeout=10)
    assert deleted.status_code == 200, deleted.text
    assert [requests.get(url, timeout=10).headers["X-Cache"] for url in lists] == ["MISS"] * 3
    assert name not in requests.get(lists[0], timeout=10).text
    gone = requests.delete(f"{bff.url}/api/upload/files/{stored['id']}", headers=editor, timeout=10)
    assert gone.status_code == 404 and gone.json()["error"]
    for bad in ("0", "-1", "1.0", "1e3", "abc", "9" * 19):
        answer = requests.delete(f"{bff.url}/api/upload/files/{bad}", headers=editor, timeout=10)
        assert is_envelope(answer, 404, "not_found"), bad
