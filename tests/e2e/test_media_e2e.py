"""Media through bffproxy against the real Strapi 5: uploads, the library's reads, files, webhooks."""

from __future__ import annotations

import http.client
import json
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from urllib3 import encode_multipart_formdata

from tests.test_deploy import nginx_available

from .services import Gunicorn, Strapi, login, wait_until
from .test_bodies_e2e import chunks
from .test_nginx_e2e import Front, nginx_in_front_of

LIMIT = 4 * 1024 * 1024  # above the 1 MiB JSON body limit: the two are separate


@pytest.fixture
def bff(start_bff: Callable[..., Gunicorn], webhook_port: int) -> Gunicorn:
    """bffproxy on the port Strapi's webhook targets, editors may upload."""
    return start_bff(port=webhook_port, POLICIES__upload="read=public,write=editor", MAX_UPLOAD_BYTES=LIMIT)


@pytest.fixture
def uploaded(strapi_live: Strapi) -> Iterator[list[int]]:
    """Ids of the files a test uploads: deleted from Strapi (and its shared uploads folder) after it."""
    ids: list[int] = []
    yield ids
    auth = {"Authorization": f"Bearer {strapi_live.api_token}"}
    for file_id in ids:
        requests.delete(f"{strapi_live.url}/api/upload/files/{file_id}", headers=auth, timeout=10)


def upload(bff: Gunicorn, headers: dict[str, str], name: str, data: bytes, **extra: Any) -> requests.Response:
    files = {"files": (name, data, "application/octet-stream")}
    return requests.post(f"{bff.url}/api/upload", files=files, headers=headers, timeout=60, **extra)


def a_name() -> str:
    return f"media-e2e-{secrets.token_hex(6)}.bin"


def names_listed(bff: Gunicorn) -> list[str]:
    return [item["name"] for item in requests.get(f"{bff.url}/api/upload/files", timeout=10).json()]


def raw_get(bff: Gunicorn, path: str) -> tuple[int, bytes]:
    """GET ``path`` exactly as written (requests would normalise dot segments away)."""
    connection = http.client.HTTPConnection("127.0.0.1", bff.port, timeout=10)
    try:
        connection.request("GET", path)
        answer = connection.getresponse()
        return answer.status, answer.read()
    finally:
        connection.close()


def strapi_settled(strapi: Strapi) -> None:
    """Wait until Strapi has logged every request made before this call (a barrier request)."""
    marker = f"barrier-{secrets.token_hex(4)}"
    strapi.get(f"/api/categories?pagination[pageSize]=1&fields[0]={marker}")
    wait_until(lambda: strapi.count_requests(marker) == 1, 10, "Strapi's log")


def test_an_upload_is_listed_and_served_byte_for_byte_with_ranges_and_validators(
    bff: Gunicorn, strapi_live: Strapi, editor: dict[str, str], uploaded: list[int]
) -> None:
    data, name = secrets.token_bytes(3 * 1024 * 1024), a_name()
    before = requests.get(f"{bff.url}/api/upload/files", timeout=10)
    assert requests.get(f"{bff.url}/api/upload/files", timeout=10).headers["X-Cache"] == "HIT"
    answer = upload(bff, editor, name, data)
    assert answer.status_code == 201, answer.text
    (stored,) = answer.json()
    uploaded.append(stored["id"])
    assert (stored["name"], stored["mime"]) == (name, "application/octet-stream")
    after = requests.get(f"{bff.url}/api/upload/files", timeout=10)
    assert after.headers["X-Cache"] == "MISS"  # the upload dropped the cached list
    assert name in [item["name"] for item in after.json()] and name not in before.text
    one = requests.get(f"{bff.url}/api/upload/files/{stored['id']}", timeout=10).json()
    assert one["url"] == stored["url"]

    file_url = f"{bff.url}{stored['url']}"
    whole = requests.get(file_url, timeout=30)
    direct = requests.get(f"{strapi_live.url}{stored['url']}", timeout=30)
    assert (whole.status_code, whole.content) == (200, data)
    assert whole.content == direct.content
    assert whole.headers["Content-Length"] == str(len(data))
    assert whole.headers["Last-Modified"] == direct.headers["Last-Modified"]
    etag = whole.headers["ETag"]

    part = requests.get(file_url, headers={"Range": "bytes=1000-1999"}, timeout=10)
    assert (part.status_code, part.content) == (206, data[1000:2000])
    assert part.headers["Content-Range"] == f"bytes 1000-1999/{len(data)}"
    tail = requests.get(file_url, headers={"Range": "bytes=-100"}, timeout=10)  # Strapi alone: 416
    assert (tail.status_code, tail.content) == (206, data[-100:])
    past = requests.get(file_url, headers={"Range": f"bytes={len(data)}-"}, timeout=10)
    assert (past.status_code, past.json()["error"]["code"]) == (416, "range_not_satisfiable")

    for condition in ({"If-None-Match": etag}, {"If-Modified-Since": whole.headers["Last-Modified"]}):
        again = requests.get(file_url, headers=condition, timeout=10)
        assert (again.status_code, again.content, again.headers["ETag"]) == (304, b"", etag)
    head = requests.head(file_url, timeout=10)
    assert (head.status_code, head.headers["Content-Length"], head.content) == (200, str(len(data)), b"")


def test_deleting_through_bffproxy_removes_the_file(
    bff: Gunicorn, strapi_live: Strapi, editor: dict[str, str], uploaded: list[int]
) -> None:
    (stored,) = upload(bff, editor, a_name(), b"short-lived").json()
    uploaded.append(stored["id"])
    assert requests.get(f"{bff.url}{stored['url']}", timeout=10).status_code == 200
    deleted = requests.delete(f"{bff.url}/api/upload/files/{stored['id']}", headers=editor, timeout=10)
    assert deleted.status_code == 200, deleted.text
    gone = requests.get(f"{bff.url}{stored['url']}", timeout=10)
    assert (gone.status_code, gone.json()["error"]["code"]) == (404, "not_found")
    assert strapi_live.get(stored["url"]).status_code == 404


def test_an_upload_through_strapi_itself_reaches_bffproxy_by_webhook(
    bff: Gunicorn, strapi_live: Strapi, uploaded: list[int]
) -> None:
    name = a_name()
    names_listed(bff)
    assert name not in names_listed(bff)  # a HIT now
    answer = requests.post(
        f"{strapi_live.url}/api/upload",
        files={"files": (name, b"from the admin", "application/octet-stream")},
        headers={"Authorization": f"Bearer {strapi_live.api_token}"},
        timeout=30,
    )
    uploaded.append(answer.json()[0]["id"])
    wait_until(lambda: name in names_listed(bff), 10, "the media.create webhook to drop the cached list")


@pytest.mark.parametrize(
    "path",
    [
        "/uploads/../package.json",
        "/uploads/..%2fpackage.json",
        "/uploads/%2e%2e%2fpackage.json",
        "/uploads/%2e%2e/package.json",
        "/uploads/..%5cpackage.json",
        "/uploads/.gitkeep",
        "/uploads/a%00.bin",
        "/uploads/%252e%252e%252fpackage.json",
    ],
)
def test_traversal_attempts_are_404_json_and_never_reach_strapi(
    bff: Gunicorn, strapi_live: Strapi, path: str
) -> None:
    seen = strapi_live.count_requests("package.json") + strapi_live.count_requests(".gitkeep")
    status, body = raw_get(bff, path)
    assert status == 404, body[:200]
    assert b'"code":"not_found"' in body.replace(b" ", b"")
    strapi_settled(strapi_live)
    assert strapi_live.count_requests("package.json") + strapi_live.count_requests(".gitkeep") == seen


def test_an_oversize_upload_is_a_413_requests_can_read(
    bff: Gunicorn, editor: dict[str, str], uploaded: list[int]
) -> None:
    answer = upload(bff, editor, a_name(), bytes(LIMIT + 1024))
    assert answer.status_code == 413, answer.text[:300]
    error = answer.json()["error"]
    assert (error["code"], error["details"]) == ("payload_too_large", {"max_bytes": LIMIT})
    assert "4 MiB" in error["message"]
    body, content_type = encode_multipart_formdata({"files": ("big.bin", bytes(LIMIT + 1024))})
    headers = {**editor, "Content-Type": content_type}
    chunked = requests.post(f"{bff.url}/api/upload", data=chunks(body), headers=headers, timeout=60)
    assert chunked.request.headers["Transfer-Encoding"] == "chunked"
    assert (chunked.status_code, chunked.json()["error"]["code"]) == (413, "payload_too_large")


def test_a_chunked_upload_within_the_limit_is_stored_whole(
    bff: Gunicorn, strapi_live: Strapi, editor: dict[str, str], uploaded: list[int]
) -> None:
    data, name = secrets.token_bytes(2 * 1024 * 1024), a_name()
    body, content_type = encode_multipart_formdata({"files": (name, data)})
    headers = {**editor, "Content-Type": content_type}
    answer = requests.post(f"{bff.url}/api/upload", data=chunks(body), headers=headers, timeout=60)
    assert answer.status_code == 201, answer.text
    uploaded.append(answer.json()[0]["id"])
    assert strapi_live.get(answer.json()[0]["url"]).content == data


def test_uploads_need_the_write_policy_and_never_attach_to_entries(
    bff: Gunicorn, strapi_live: Strapi, uploaded: list[int]
) -> None:
    reader = login(strapi_live, "reader", "Reader-Passw0rd!")
    assert upload(bff, {}, a_name(), b"x").status_code == 401
    assert upload(bff, reader, a_name(), b"x").status_code == 403
    editor = login(strapi_live, "editor", "Editor-Passw0rd!")
    fields = {"files": ("x.bin", b"x", "application/octet-stream"), "ref": (None, "api::article.article")}
    refused = requests.post(f"{bff.url}/api/upload", files=fields, headers=editor, timeout=10)
    assert (refused.status_code, refused.json()["error"]["details"]["field"]) == (400, "ref")


def test_an_idempotent_upload_is_stored_once(
    bff: Gunicorn, strapi_live: Strapi, editor: dict[str, str], uploaded: list[int]
) -> None:
    name = a_name()
    keyed = {**editor, "Idempotency-Key": secrets.token_hex(8)}
    first, second = upload(bff, keyed, name, b"once"), upload(bff, keyed, name, b"once")
    uploaded.append(first.json()[0]["id"])
    assert (first.status_code, second.status_code) == (201, 201)
    assert second.headers["Idempotent-Replayed"] == "true"
    stored = strapi_live.get("/api/upload/files", token=strapi_live.api_token, **{"filters[name][$eq]": name})
    assert len(stored.json()) == 1


def test_the_librarys_queries_are_checked_before_strapi(bff: Gunicorn, strapi_live: Strapi) -> None:
    seen = strapi_live.count_requests("/api/upload/files")
    for query in ("populate=related", "populate=*", "status=draft", "filters[related][title][$eq]=x"):
        answer = requests.get(f"{bff.url}/api/upload/files?{query}", timeout=10)
        assert (answer.status_code, answer.json()["error"]["code"]) == (400, "invalid_parameter")
    ok = requests.get(f"{bff.url}/api/upload/files?sort=id:desc&fields[0]=name", timeout=10)
    assert ok.status_code == 200 and all(
        set(item) <= {"id", "documentId", "name", "isUrlSigned"} for item in ok.json()
    )
    page = requests.get(f"{bff.url}/api/upload/files/page?pagination[pageSize]=1", timeout=10).json()
    assert page["meta"]["pagination"]["pageSize"] == 1
    strapi_settled(strapi_live)
    assert strapi_live.count_requests("/api/upload/files") == seen + 2


# -- behind the shipped nginx site: its /uploads/ cache and the upload location ----------------


@pytest.fixture
def media_front(start_bff: Callable[..., Gunicorn], tmp_path: Path) -> Iterator[Front]:
    """bffproxy behind the shipped nginx, files fresh in nginx's cache for 1 s."""
    if not nginx_available():
        pytest.skip("nginx is not installed (make system-deps)")
    bff = start_bff(TRUSTED_PROXIES=1, MEDIA_CACHE_CONTROL="public, max-age=0, s-maxage=1")
    with nginx_in_front_of(bff, tmp_path) as front:
        yield front


def test_nginx_caches_files_serves_ranges_and_revalidates_with_bffproxy(
    media_front: Front, strapi_live: Strapi, uploaded: list[int]
) -> None:
    data, name = secrets.token_bytes(512 * 1024), a_name()
    answer = requests.post(
        f"{strapi_live.url}/api/upload",
        files={"files": (name, data, "application/octet-stream")},
        headers={"Authorization": f"Bearer {strapi_live.api_token}"},
        timeout=30,
    )
    stored = answer.json()[0]
    uploaded.append(stored["id"])
    url = f"{media_front.url}{stored['url']}"
    first, second = requests.get(url, timeout=10), requests.get(f"{url}?v=2", timeout=10)
    assert (first.headers["X-Cache-Status"], second.headers["X-Cache-Status"]) == ("MISS", "HIT")
    assert first.content == second.content == data
    part = requests.get(url, headers={"Range": "bytes=-10"}, timeout=10)
    assert (part.status_code, part.content) == (206, data[-10:])
    not_modified = requests.get(url, headers={"If-None-Match": first.headers["ETag"]}, timeout=10)
    assert not_modified.status_code == 304
    # Past s-maxage, nginx asks bffproxy with its validators: a 304, the copy is kept.
    wait_until(
        lambda: requests.get(url, timeout=10).headers["X-Cache-Status"] == "REVALIDATED", 10, "a revalidation"
    )
    # Deleted in Strapi: gone through nginx too once s-maxage has passed, never served for ever.
    auth = {"Authorization": f"Bearer {strapi_live.api_token}"}
    requests.delete(f"{strapi_live.url}/api/upload/files/{stored['id']}", headers=auth, timeout=10)
    wait_until(lambda: requests.get(url, timeout=10).status_code == 404, 10, "nginx to drop the deleted file")


def test_nginx_refuses_an_upload_over_its_own_limit_in_the_envelope(media_front: Front) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", media_front.port, timeout=10)
    try:
        connection.putrequest("POST", "/api/upload")
        connection.putheader("Content-Type", "multipart/form-data; boundary=x")
        connection.putheader("Content-Length", str(50 * 1024 * 1024 + 1))
        connection.endheaders()
        answer = connection.getresponse()
        status, body = answer.status, json.loads(answer.read())
    finally:
        connection.close()
    assert (status, body["error"]["code"]) == (413, "payload_too_large")
    assert body["error"]["details"] == {"max_bytes": 50 * 1024 * 1024}
    assert "50 MiB" in body["error"]["message"]
