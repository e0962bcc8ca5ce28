"""Publishing end to end: real Strapi 5, bffproxy under gunicorn (2 workers), real users' tokens.

The bffproxy here is NOT the webhook target, so every "visible at once" below is bffproxy's own
invalidation after the write (read-your-writes), not Strapi's webhook. Each test makes documents
with unique titles and deletes them afterwards; the session's Strapi is shared with other tests.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests

from .services import Gunicorn, RedisServer, Strapi, wait_until

ADMIN = {"STRAPI_ADMIN_EMAIL": "admin@example.com", "STRAPI_ADMIN_PASSWORD": "Admin-Passw0rd!"}
POLICY = {
    "POLICIES__articles": "read=public,drafts=editor,write=editor",
    "POLICIES__categories": "read=public",
}


@pytest.fixture
def bff(start_bff: Callable[..., Gunicorn]) -> Gunicorn:
    """bffproxy (2 workers) that may write articles and unpublish; not Strapi's webhook target."""
    return start_bff(**POLICY, **ADMIN)


@pytest.fixture
def title() -> str:
    """A title no other test uses."""
    return f"E2E publishing {uuid.uuid4().hex[:12]}"


def in_strapi(strapi: Strapi, title: str) -> list[dict[str, Any]]:
    """Every document (draft or published) with this title, asked of Strapi directly."""
    answer = strapi.get(
        "api/articles", token=strapi.api_token, status="draft", **{"filters[title][$eq]": title}
    )
    assert answer.status_code == 200
    return list(answer.json()["data"])


def total_in_strapi(strapi: Strapi) -> int:
    """How many documents Strapi holds (drafts included)."""
    answer = strapi.get(
        "api/articles", token=strapi.api_token, status="draft", **{"pagination[withCount]": "true"}
    )
    return int(answer.json()["meta"]["pagination"]["total"])


@pytest.fixture
def cleanup(strapi_live: Strapi, title: str) -> Iterator[None]:
    """Delete, in Strapi directly, whatever the test created under its title."""
    yield
    for item in in_strapi(strapi_live, title):
        requests.delete(
            f"{strapi_live.url}/api/articles/{item['documentId']}",
            headers={"Authorization": f"Bearer {strapi_live.api_token}"},
            timeout=10,
        )


def audit_lines(bff: Gunicorn) -> list[dict[str, Any]]:
    """The audit lines gunicorn's workers wrote (JSON lines marked "log": "audit", not "access")."""
    lines = [json.loads(line) for line in bff.log().splitlines() if line.startswith('{"time"')]
    return [line for line in lines if line.get("log") == "audit"]


pytestmark = pytest.mark.usefixtures("cleanup")


def test_create_is_visible_on_the_very_next_read(
    bff: Gunicorn, strapi_live: Strapi, editor: Any, title: str
) -> None:
    params = {"filters[title][$eq]": title}
    url = f"{bff.url}/api/articles"
    requests.get(url, params=params, timeout=10)
    warm = requests.get(url, params=params, timeout=10)
    assert warm.headers["X-Cache"] == "HIT" and warm.json()["data"] == []

    created = requests.post(
        f"{url}/publish", json={"title": title, "content": "Hi"}, headers=editor, timeout=10
    )
    assert created.status_code == 201, created.text

    after = requests.get(url, params=params, timeout=10)
    assert after.headers["X-Cache"] == "MISS"
    assert [item["title"] for item in after.json()["data"]] == [title]
    one = requests.get(f"{url}/{created.json()['data']['documentId']}", timeout=10)
    assert one.status_code == 200 and one.json()["data"]["body"] == "Hi"

    (line,) = [a for a in audit_lines(bff) if a["action"] == "create_publish"]
    assert (line["outcome"], line["role"], line["documentId"]) == (
        "success",
        "editor",
        created.json()["data"]["documentId"],
    )


def test_five_concurrent_posts_with_one_key_make_one_document(
    bff: Gunicorn, strapi_live: Strapi, editor: Any, title: str
) -> None:
    assert_one_document_for_five_posts(bff, strapi_live, editor, title)


def test_five_concurrent_posts_on_two_instances_sharing_redis_make_one_document(
    start_bff: Callable[..., Gunicorn],
    redis_server: RedisServer,
    strapi_live: Strapi,
    editor: Any,
    title: str,
) -> None:
    first = start_bff(REDIS_URL=redis_server.url, **POLICY)
    second = start_bff(REDIS_URL=redis_server.url, **POLICY)
    assert_one_document_for_five_posts(first, strapi_live, editor, title, also=second)


def assert_one_document_for_five_posts(
    bff: Gunicorn, strapi_live: Strapi, editor: Any, title: str, also: Gunicorn | None = None
) -> None:
    """Five concurrent POSTs with one Idempotency-Key (spread over ``also`` too): one document."""
    headers = {**editor, "Idempotency-Key": f"e2e-{uuid.uuid4()}"}
    before = total_in_strapi(strapi_live)

    def post(i: int) -> requests.Response:
        url = (also if also is not None and i % 2 else bff).url
        return requests.post(
            f"{url}/api/articles/publish", json={"title": title}, headers=headers, timeout=15
        )

    with ThreadPoolExecutor(5) as pool:
        answers = list(pool.map(post, range(5)))
    statuses = sorted(a.status_code for a in answers)
    assert set(statuses) <= {201, 409}, [a.text for a in answers]
    assert 201 in statuses
    assert len(in_strapi(strapi_live, title)) == 1
    assert total_in_strapi(strapi_live) == before + 1

    again = post(0)  # once settled, the key replays the first answer
    assert again.status_code == 201 and again.headers["Idempotent-Replayed"] == "true"
    assert len(in_strapi(strapi_live, title)) == 1


@pytest.mark.parametrize(
    "payload",
    [
        {"content": "no title"},
        {"title": "x" * 201},
        {"title": "T", "section": "sport"},
        {"title": "T", "featured": "yes"},
        {"title": "T", "author": "forged"},
    ],
)
def test_invalid_payloads_are_422_and_nothing_is_written(
    bff: Gunicorn, strapi_live: Strapi, editor: Any, title: str, payload: dict[str, Any]
) -> None:
    payload = {**payload, "title": title} if payload.get("title") == "T" else payload
    before = total_in_strapi(strapi_live)
    answer = requests.post(f"{bff.url}/api/articles/publish", json=payload, headers=editor, timeout=10)
    assert answer.status_code == 422
    assert answer.json()["error"]["details"]["errors"]
    draft = requests.post(f"{bff.url}/api/articles", json={"data": payload}, headers=editor, timeout=10)
    assert draft.status_code == 422
    assert total_in_strapi(strapi_live) == before
    assert in_strapi(strapi_live, title) == []


def test_draft_lifecycle_edit_publish_unpublish_delete(
    bff: Gunicorn, strapi_live: Strapi, editor: Any, title: str
) -> None:
    api = f"{bff.url}/api/articles"
    created = requests.post(
        f"{api}/publish", json={"title": title, "excerpt": "v1"}, headers=editor, timeout=10
    )
    assert created.status_code == 201, created.text
    doc = created.json()["data"]["documentId"]
    read = lambda: requests.get(f"{api}/{doc}", timeout=10)  # noqa: E731
    assert read().json()["data"]["excerpt"] == "v1"
    assert read().headers["X-Cache"] == "HIT"

    # A draft edit leaves the published version served unchanged.
    edited = requests.put(
        f"{api}/{doc}?status=draft", json={"data": {"excerpt": "v2"}}, headers=editor, timeout=10
    )
    assert edited.status_code == 200, edited.text
    assert edited.json()["data"]["publishedAt"] is None  # Strapi answers with the draft
    assert read().json()["data"]["excerpt"] == "v1"
    draft = strapi_live.get(f"api/articles/{doc}", token=strapi_live.api_token, status="draft").json()
    assert draft["data"]["excerpt"] == "v2"

    # Publishing makes the draft's content public at once.
    assert requests.post(f"{api}/{doc}/publish", headers=editor, timeout=10).status_code == 200
    assert read().json()["data"]["excerpt"] == "v2"

    # Unpublishing (admin Content-Manager API) takes it offline at once; the draft stays.
    unpublished = requests.post(f"{api}/{doc}/unpublish", headers=editor, timeout=10)
    assert unpublished.status_code == 200, unpublished.text
    assert read().status_code == 404
    assert (
        strapi_live.get(f"api/articles/{doc}", token=strapi_live.api_token, status="draft").status_code == 200
    )

    # Publish again, warm the cache, delete: 404 through bffproxy on the next read.
    assert requests.post(f"{api}/{doc}/publish", headers=editor, timeout=10).status_code == 200
    assert read().status_code == 200 and read().headers["X-Cache"] == "HIT"
    assert requests.delete(f"{api}/{doc}", headers=editor, timeout=10).status_code == 204
    assert read().status_code == 404
    assert in_strapi(strapi_live, title) == []

    actions = [(a["action"], a["outcome"]) for a in audit_lines(bff) if a["documentId"] == doc]
    assert actions == [
        ("create_publish", "success"),
        ("update_draft", "success"),
        ("publish", "success"),
        ("unpublish", "success"),
        ("publish", "success"),
        ("delete", "success"),
    ]


def test_strapi_create_through_bffproxy_is_published_as_on_strapi(
    bff: Gunicorn, strapi_live: Strapi, editor: Any, title: str
) -> None:
    """@strapi/client's create(): 201, then an anonymous findOne through bffproxy is 200 (issue 14)."""
    url = f"{bff.url}/api/articles"
    created = requests.post(url, json={"data": {"title": title, "excerpt": "v1"}}, headers=editor, timeout=10)
    assert created.status_code == 201, created.text
    data = created.json()["data"]
    assert data["publishedAt"] is not None and created.json()["meta"] == {}
    found = requests.get(f"{url}/{data['documentId']}", timeout=10)
    assert found.status_code == 200, found.text
    assert found.json()["data"] == data  # the very version Strapi answered the create with
    direct = strapi_live.get(f"api/articles/{data['documentId']}").json()["data"]
    assert direct == data


def test_strapi_edit_through_bffproxy_publishes_the_change(
    bff: Gunicorn, strapi_live: Strapi, editor: Any, title: str
) -> None:
    url = f"{bff.url}/api/articles"
    created = requests.post(url, json={"data": {"title": title, "excerpt": "v1"}}, headers=editor, timeout=10)
    doc = created.json()["data"]["documentId"]
    assert requests.get(f"{url}/{doc}", timeout=10).json()["data"]["excerpt"] == "v1"
    assert requests.get(f"{url}/{doc}", timeout=10).headers["X-Cache"] == "HIT"

    edited = requests.put(f"{url}/{doc}", json={"data": {"excerpt": "v2"}}, headers=editor, timeout=10)
    assert edited.status_code == 200, edited.text
    assert edited.json()["data"]["publishedAt"] is not None
    after = requests.get(f"{url}/{doc}", timeout=10)
    assert (after.headers["X-Cache"], after.json()["data"]["excerpt"]) == ("MISS", "v2")

    shaped = requests.put(
        f"{url}/{doc}?fields[0]=excerpt&status=published",
        json={"data": {"excerpt": "v3"}},
        headers=editor,
        timeout=10,
    )
    assert shaped.status_code == 200, shaped.text
    assert set(shaped.json()["data"]) == {"id", "documentId", "excerpt"}  # fields shape Strapi's answer
    assert requests.get(f"{url}/{doc}", timeout=10).json()["data"]["excerpt"] == "v3"


@pytest.mark.parametrize("query", ["status=bogus", "status[]=draft", "locale=fr", "sort=title"])
def test_write_queries_strapi_would_misread_are_400_and_nothing_is_written(
    bff: Gunicorn, strapi_live: Strapi, editor: Any, title: str, query: str
) -> None:
    """Strapi 5 would take status=bogus (or status[]) as a draft-only create: bffproxy refuses it."""
    answer = requests.post(
        f"{bff.url}/api/articles?{query}", json={"data": {"title": title}}, headers=editor, timeout=10
    )
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "invalid_parameter"
    assert in_strapi(strapi_live, title) == []


def test_status_draft_needs_the_drafts_policy(
    start_bff: Callable[..., Gunicorn], strapi_live: Strapi, editor: Any, title: str
) -> None:
    bff = start_bff(POLICIES__articles="read=public,write=editor")
    answer = requests.post(
        f"{bff.url}/api/articles?status=draft", json={"data": {"title": title}}, headers=editor, timeout=10
    )
    assert answer.status_code == 403
    assert answer.json()["error"]["details"]["action"] == "drafts"
    assert in_strapi(strapi_live, title) == []


def test_draft_create_stays_private(bff: Gunicorn, strapi_live: Strapi, editor: Any, title: str) -> None:
    created = requests.post(
        f"{bff.url}/api/articles?status=draft", json={"data": {"title": title}}, headers=editor, timeout=10
    )
    assert created.status_code == 201, created.text
    assert created.json()["data"]["publishedAt"] is None
    doc = created.json()["data"]["documentId"]
    assert requests.get(f"{bff.url}/api/articles/{doc}", timeout=10).status_code == 404
    assert len(in_strapi(strapi_live, title)) == 1


def test_reader_gets_403_on_every_write(bff: Gunicorn, strapi_live: Strapi, reader: Any, title: str) -> None:
    doc = "abcdefghijklmnopqrstuvwx"
    api = f"{bff.url}/api/articles"
    before = total_in_strapi(strapi_live)
    attempts = [
        ("POST", f"{api}/publish", {"title": title}),
        ("POST", api, {"data": {"title": title}}),
        ("POST", f"{api}?status=draft", {"data": {"title": title}}),
        ("PUT", f"{api}/{doc}", {"data": {"title": title}}),
        ("POST", f"{api}/{doc}/publish", None),
        ("POST", f"{api}/{doc}/unpublish", None),
        ("DELETE", f"{api}/{doc}", None),
    ]
    for method, url, body in attempts:
        answer = requests.request(method, url, json=body, headers=reader, timeout=10)
        assert answer.status_code == 403, (method, url, answer.text)
    assert total_in_strapi(strapi_live) == before
    denied = [a for a in audit_lines(bff) if a["outcome"] == "forbidden"]
    assert len(denied) == len(attempts) and {a["role"] for a in denied} == {"authenticated"}


def test_strapi_refusal_passes_through(bff: Gunicorn, editor: Any) -> None:
    answer = requests.put(
        f"{bff.url}/api/articles/zzzzzzzzzzzzzzzzzzzzzzzz",
        json={"data": {"excerpt": "x"}},
        headers=editor,
        timeout=10,
    )
    assert answer.status_code == 404
    assert answer.json()["error"]["name"] == "NotFoundError"  # Strapi's own body


def test_unpublish_without_admin_credentials_is_501(
    start_bff: Callable[..., Gunicorn], editor: Any, title: str
) -> None:
    bff = start_bff(**POLICY)
    answer = requests.post(
        f"{bff.url}/api/articles/abcdefghijklmnopqrstuvwx/unpublish", headers=editor, timeout=10
    )
    assert answer.status_code == 501
    assert "BFFPROXY_STRAPI_ADMIN_EMAIL" in answer.json()["error"]["message"]


def patient_and_hasty(
    start_bff: Callable[..., Gunicorn], editor: Any, tmp_path: Any, settle: str
) -> tuple[Gunicorn, Gunicorn]:
    """Two instances sharing one store: ``hasty`` times out on every write after sending it."""
    shared = tmp_path / "shared-cache"
    shared.mkdir()
    patient = start_bff(cache_dir=shared, IDEMPOTENCY_SETTLE=settle, **POLICY)
    hasty = start_bff(cache_dir=shared, STRAPI_READ_TIMEOUT="0.001", **POLICY)
    # The editor's role is resolved (and cached in the shared store) by the patient instance.
    assert (
        requests.post(f"{patient.url}/api/articles/publish", json={}, headers=editor, timeout=10).status_code
        == 422
    )
    return patient, hasty


def test_retry_after_a_timeout_reconciles_instead_of_creating_twice(
    start_bff: Callable[..., Gunicorn], strapi_live: Strapi, editor: Any, title: str, tmp_path: Any
) -> None:
    """Worker A times out after sending; Strapi creates anyway; the retry on B finds that document."""
    patient, hasty = patient_and_hasty(start_bff, editor, tmp_path, settle="4")
    headers = {**editor, "Idempotency-Key": f"e2e-{uuid.uuid4()}"}
    body = {"title": title, "content": "sent once"}

    lost = requests.post(f"{hasty.url}/api/articles/publish", json=body, headers=headers, timeout=10)
    assert lost.status_code == 504
    assert "Retrying with the same Idempotency-Key is safe" in lost.json()["error"]["message"]
    wait_until(lambda: len(in_strapi(strapi_live, title)) == 1, 10, "Strapi to finish the lost create")

    too_soon = requests.post(f"{patient.url}/api/articles/publish", json=body, headers=headers, timeout=10)
    assert too_soon.status_code == 409 and int(too_soon.headers["Retry-After"]) >= 1
    time.sleep(int(too_soon.headers["Retry-After"]) + 0.2)
    retry = requests.post(f"{patient.url}/api/articles/publish", json=body, headers=headers, timeout=10)
    assert retry.status_code == 201, retry.text
    assert retry.json()["data"]["publishedAt"] is not None
    (document,) = in_strapi(strapi_live, title)
    assert retry.json()["data"]["documentId"] == document["documentId"]
    assert [a["outcome"] for a in audit_lines(patient) if a["action"] == "create_publish"][-1] == "reconciled"
    replay = requests.post(f"{patient.url}/api/articles/publish", json=body, headers=headers, timeout=10)
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert len(in_strapi(strapi_live, title)) == 1


@pytest.mark.parametrize(
    ("route", "flat", "published"),
    [("/publish", True, True), ("", False, True), ("?status=draft", False, False)],
    ids=["publish", "strapi", "draft"],
)
def test_retried_v4_create_finds_the_document_and_answers_in_v4(
    start_bff: Callable[..., Gunicorn],
    strapi_live: Strapi,
    editor: Any,
    title: str,
    tmp_path: Any,
    route: str,
    flat: bool,
    published: bool,
) -> None:
    """The client's Strapi-Response-Format: v4 never reaches the look-up, which reads Strapi 5's format."""
    patient, hasty = patient_and_hasty(start_bff, editor, tmp_path, settle="0")
    headers = {**editor, "Idempotency-Key": f"e2e-{uuid.uuid4()}", "Strapi-Response-Format": "v4"}
    body = {"title": title} if flat else {"data": {"title": title}}
    path = f"/api/articles{route}"

    lost = requests.post(f"{hasty.url}{path}", json=body, headers=headers, timeout=10)
    assert lost.status_code == 504
    wait_until(lambda: len(in_strapi(strapi_live, title)) == 1, 10, "Strapi to finish the lost create")

    retry = requests.post(f"{patient.url}{path}", json=body, headers=headers, timeout=10)
    assert retry.status_code == 201, retry.text
    (document,) = in_strapi(strapi_live, title)  # found, not created twice
    data = retry.json()["data"]
    assert data["documentId"] == document["documentId"]
    assert data["attributes"]["title"] == title  # Strapi's v4 shape, as the client asked
    assert (data["attributes"]["publishedAt"] is not None) is published
    action = "create_publish" if flat else "create" if published else "create_draft"
    assert [a["outcome"] for a in audit_lines(patient) if a["action"] == action][-1] == "reconciled"


def test_retried_delete_after_a_timeout_is_done_not_sent_again(
    start_bff: Callable[..., Gunicorn], strapi_live: Strapi, editor: Any, title: str, tmp_path: Any
) -> None:
    """The lost delete worked: the retry answers as Strapi answers a delete, without a second DELETE."""
    patient, hasty = patient_and_hasty(start_bff, editor, tmp_path, settle="0")
    created = requests.post(
        f"{patient.url}/api/articles/publish", json={"title": title}, headers=editor, timeout=10
    )
    assert created.status_code == 201, created.text
    doc = created.json()["data"]["documentId"]
    headers = {**editor, "Idempotency-Key": f"e2e-{uuid.uuid4()}"}

    lost = requests.delete(f"{hasty.url}/api/articles/{doc}", headers=headers, timeout=10)
    assert lost.status_code == 504
    wait_until(lambda: in_strapi(strapi_live, title) == [], 10, "Strapi to finish the lost delete")

    retry = requests.delete(f"{patient.url}/api/articles/{doc}", headers=headers, timeout=10)
    assert (retry.status_code, retry.content) == (204, b"")
    assert strapi_live.count_requests(f"DELETE /api/articles/{doc}") == 1
    assert [a["outcome"] for a in audit_lines(patient) if a["action"] == "delete"] == ["reconciled"]
    replay = requests.delete(f"{patient.url}/api/articles/{doc}", headers=headers, timeout=10)
    assert (replay.status_code, replay.headers["Idempotent-Replayed"]) == (204, "true")
