"""Idempotency-Key: every state (new, in flight, done, unknown, released) and reconciliation."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import responses
from flask import Flask
from flask.testing import FlaskClient
from redis.exceptions import LockNotOwnedError

from bffproxy import ConfigError, create_app
from bffproxy.idempotency import IdempotencyInFlight, IdempotencyStore, fingerprint

from .conftest import STRAPI, FakeClock
from .test_publishing import DOC, EDITOR, bearer, document, register_users, sent_json, writes
from .test_publishing import config as config  # the auth-enabled config fixture
from .test_strapi import connect_timed_out, connection_refused, name_unresolved

BODY = {"title": "Hello"}
URL = "/api/articles/publish"


@pytest.fixture
def store(app: Flask, clock: FakeClock) -> IdempotencyStore:
    """The app's idempotency store on the test's fake clock."""
    idem: IdempotencyStore = app.extensions["bffproxy.idempotency"]
    idem.clock = clock
    return idem


@pytest.fixture
def editor(strapi: responses.RequestsMock, store: IdempotencyStore) -> dict[str, str]:
    register_users(strapi)
    return {**bearer(EDITOR), "Content-Type": "application/json"}


def keyed(headers: dict[str, str], key: str = "key-1") -> dict[str, str]:
    return {**headers, "Idempotency-Key": key}


def posts(strapi: Any, path: str = "/api/articles") -> list[Any]:
    return [c for c in writes(strapi) if c.request.method == "POST" and urlsplit(c.request.url).path == path]


def lookups(strapi: Any) -> list[dict[str, list[str]]]:
    """The query strings of the reconciliation look-ups (GETs filtered by slug)."""
    queries = [parse_qs(urlsplit(c.request.url).query) for c in strapi.calls if c.request.method == "GET"]
    return [q for q in queries if "filters[slug][$eq]" in q]


def test_same_key_same_body_replays_without_a_second_write(
    client: FlaskClient, strapi: Any, editor: Any
) -> None:
    strapi.post(f"{STRAPI}/api/articles", json=document(title="Hello"), status=201)
    first = client.post(URL, json=BODY, headers=keyed(editor))
    second = client.post(URL, json=BODY, headers=keyed(editor))
    assert first.status_code == second.status_code == 201
    assert second.data == first.data
    assert second.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert len(posts(strapi)) == 1


def test_same_key_different_body_is_422(client: FlaskClient, strapi: Any, editor: Any) -> None:
    strapi.post(f"{STRAPI}/api/articles", json=document(), status=201)
    client.post(URL, json=BODY, headers=keyed(editor))
    other = client.post(URL, json={"title": "Other"}, headers=keyed(editor))
    assert other.status_code == 422
    assert other.get_json()["error"]["code"] == "idempotency_key_reused"
    elsewhere = client.post("/api/articles", json={"data": BODY}, headers=keyed(editor))
    assert elsewhere.status_code == 422  # another route is another request
    assert len(posts(strapi)) == 1


def test_duplicate_while_in_flight_is_409(
    client: FlaskClient, strapi: Any, editor: Any, store: IdempotencyStore
) -> None:
    store.claim("default", str(EDITOR), "key-1", fingerprint("POST", URL, BODY))  # another worker holds it
    answer = client.post(URL, json=BODY, headers=keyed(editor))
    assert answer.status_code == 409
    assert answer.get_json()["error"]["code"] == "idempotency_in_flight"
    assert answer.headers["Retry-After"] == "1"
    assert writes(strapi) == []


def test_concurrent_claims_of_one_key_admit_exactly_one(store: IdempotencyStore, app: Flask) -> None:
    outcomes: list[str] = []
    barrier = threading.Barrier(8)

    def claim() -> None:
        barrier.wait()
        try:
            store.claim("default", "7", "race", "fp")
            outcomes.append("claimed")
        except IdempotencyInFlight:
            outcomes.append("409")

    threads = [threading.Thread(target=claim) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["409"] * 7 + ["claimed"]


def test_keys_belong_to_one_user(client: FlaskClient, strapi: Any, editor: Any) -> None:
    strapi.get(
        f"{STRAPI}/api/users/9",
        json={"id": 9, "username": "e2", "email": "e2@x", "blocked": False, "role": {"type": "editor"}},
    )
    strapi.post(f"{STRAPI}/api/articles", json=document(), status=201)
    client.post(URL, json=BODY, headers=keyed(editor))
    other_user = {**bearer(9), "Content-Type": "application/json", "Idempotency-Key": "key-1"}
    assert client.post(URL, json=BODY, headers=other_user).status_code == 201
    assert len(posts(strapi)) == 2
    slugs = [sent_json(call)["data"]["slug"] for call in posts(strapi)]
    assert slugs[0] != slugs[1]  # the derived slug is per (tenant, user, key)


def test_strapis_refusal_is_remembered_too(client: FlaskClient, strapi: Any, editor: Any) -> None:
    strapi.post(f"{STRAPI}/api/articles", json={"error": {"status": 400}}, status=400)
    assert client.post(URL, json=BODY, headers=keyed(editor)).status_code == 400
    replay = client.post(URL, json=BODY, headers=keyed(editor))
    assert replay.status_code == 400 and replay.headers["Idempotent-Replayed"] == "true"
    assert len(posts(strapi)) == 1


def test_an_invalid_body_does_not_use_up_the_key(client: FlaskClient, strapi: Any, editor: Any) -> None:
    strapi.post(f"{STRAPI}/api/articles", json=document(), status=201)
    assert client.post(URL, json={"title": 5}, headers=keyed(editor)).status_code == 422
    assert client.post(URL, json=BODY, headers=keyed(editor)).status_code == 201


@pytest.mark.parametrize("key", ["", "x" * 256, "clé"])
def test_unusable_key_is_400(client: FlaskClient, strapi: Any, editor: Any, key: str) -> None:
    answer = client.post(URL, json=BODY, headers=keyed(editor, key))
    assert answer.status_code == 400
    assert writes(strapi) == []


# -- unknown outcomes and reconciliation -----------------------------------------------------------


def time_out_first_create(client: FlaskClient, strapi: Any, editor: Any, body: Any = BODY) -> str:
    """A keyed create whose POST times out; returns the slug it sent."""
    strapi.post(f"{STRAPI}/api/articles", body=requests.exceptions.ReadTimeout("read timed out"))
    answer = client.post(URL, json=body, headers=keyed(editor))
    assert answer.status_code == 504
    error = answer.get_json()["error"]
    assert "Retrying with the same Idempotency-Key is safe" in error["message"]
    assert error["details"] == {"outcome": "unknown", "safe_to_retry_with_same_key": True}
    return str(sent_json(posts(strapi)[0])["data"]["slug"])


def test_retry_while_the_outcome_may_still_settle_is_409(
    client: FlaskClient, strapi: Any, editor: Any, clock: FakeClock
) -> None:
    time_out_first_create(client, strapi, editor)
    clock.advance(3)
    retry = client.post(URL, json=BODY, headers=keyed(editor))
    assert retry.status_code == 409
    assert retry.headers["Retry-After"] == "7"  # BFFPROXY_IDEMPOTENCY_SETTLE defaults to the read timeout
    assert "unknown" in retry.get_json()["error"]["message"]
    assert len(posts(strapi)) == 1


def test_retry_after_a_timeout_finds_the_created_document(
    client: FlaskClient, strapi: Any, editor: Any, clock: FakeClock
) -> None:
    slug = time_out_first_create(client, strapi, editor)
    created = document(title="Hello", slug=slug, publishedAt=None)["data"]
    strapi.get(f"{STRAPI}/api/articles", json={"data": [created], "meta": {}})
    strapi.get(f"{STRAPI}/api/articles/{DOC}", status=404, json={"data": None, "error": {"status": 404}})
    strapi.put(
        f"{STRAPI}/api/articles/{DOC}",
        json=document(title="Hello", slug=slug, publishedAt="2026-11-23T21:00:00Z"),
    )
    clock.advance(11)
    retry = client.post(URL, json=BODY, headers=keyed(editor))
    assert retry.status_code == 201
    assert retry.get_json()["data"]["slug"] == slug
    assert len(posts(strapi)) == 1  # never created twice
    (query,) = lookups(strapi)
    assert query["filters[slug][$eq]"] == [slug] and query["status"] == ["draft"]
    (publish,) = [c for c in writes(strapi) if c.request.method == "PUT"]
    assert publish.request.url == f"{STRAPI}/api/articles/{DOC}"  # no published version yet: publish it
    replay = client.post(URL, json=BODY, headers=keyed(editor))
    assert replay.headers["Idempotent-Replayed"] == "true" and replay.data == retry.data


@pytest.mark.parametrize("url", [URL, "/api/articles"])
def test_retry_finds_a_created_and_published_document_and_answers_it_as_it_stands(
    client: FlaskClient, strapi: Any, editor: Any, clock: FakeClock, url: str
) -> None:
    """Strapi's own create publishes: its draft row is found by slug, its published version is the answer."""
    strapi.post(f"{STRAPI}/api/articles", body=requests.exceptions.ReadTimeout("read timed out"))
    body = BODY if url == URL else {"data": BODY}
    assert client.post(url, json=body, headers=keyed(editor)).status_code == 504
    slug = sent_json(posts(strapi)[0])["data"]["slug"]
    strapi.get(f"{STRAPI}/api/articles", json={"data": [document(slug=slug, publishedAt=None)["data"]]})
    published = document(status=200, slug=slug, publishedAt="2026-11-23T21:00:00Z")
    strapi.get(f"{STRAPI}/api/articles/{DOC}", json=published)
    clock.advance(11)
    retry = client.post(url, json=body, headers=keyed(editor))
    assert (retry.status_code, retry.get_json()) == (201, published)
    assert [c.request.method for c in writes(strapi)] == ["POST"]  # not created again, not re-published


def test_reconciled_draft_create_answers_the_found_draft(
    client: FlaskClient, strapi: Any, editor: Any, clock: FakeClock
) -> None:
    strapi.post(f"{STRAPI}/api/articles", body=requests.exceptions.ReadTimeout("read timed out"))
    body = {"data": BODY}
    assert client.post("/api/articles?status=draft", json=body, headers=keyed(editor)).status_code == 504
    slug = sent_json(posts(strapi)[0])["data"]["slug"]
    found = document(slug=slug, publishedAt=None)["data"]
    strapi.get(f"{STRAPI}/api/articles", json={"data": [found], "meta": {}})
    strapi.get(f"{STRAPI}/api/articles/{DOC}?status=draft", json={"data": found, "meta": {}})
    clock.advance(11)
    retry = client.post("/api/articles?status=draft", json=body, headers=keyed(editor))
    assert retry.status_code == 201
    assert retry.get_json() == {"data": found, "meta": {}}  # as Strapi answers the draft's read
    assert [c.request.method for c in writes(strapi)] == ["POST"]


def test_retry_after_a_timeout_that_created_nothing_creates_once(
    client: FlaskClient, strapi: Any, editor: Any, clock: FakeClock
) -> None:
    slug = time_out_first_create(client, strapi, editor)
    strapi.get(f"{STRAPI}/api/articles", json={"data": [], "meta": {}})
    strapi.replace(responses.POST, f"{STRAPI}/api/articles", json=document(slug=slug), status=201)
    clock.advance(11)
    assert client.post(URL, json=BODY, headers=keyed(editor)).status_code == 201
    assert [sent_json(c)["data"]["slug"] for c in posts(strapi)] == [slug, slug]  # the same derived slug
    assert client.post(URL, json=BODY, headers=keyed(editor)).headers["Idempotent-Replayed"] == "true"
    assert len(posts(strapi)) == 2


def test_a_client_chosen_slug_must_also_match_the_content(
    client: FlaskClient, strapi: Any, editor: Any, clock: FakeClock
) -> None:
    body = {"title": "Hello", "slug": "hello"}
    time_out_first_create(client, strapi, editor, body)
    someone_elses = document(title="Another", slug="hello", createdAt="2026-11-23T20:00:00Z")["data"]
    strapi.get(f"{STRAPI}/api/articles", json={"data": [someone_elses], "meta": {}})
    strapi.replace(responses.POST, f"{STRAPI}/api/articles", json=document(slug="hello"), status=201)
    clock.advance(11)
    assert client.post(URL, json=body, headers=keyed(editor)).status_code == 201
    assert len(posts(strapi)) == 2  # the found document was not ours: create


def test_a_client_chosen_slug_with_the_same_content_after_the_first_try_is_ours(
    client: FlaskClient, strapi: Any, editor: Any, clock: FakeClock
) -> None:
    body = {"title": "Hello", "slug": "hello"}
    clock.now = 1_795_000_000.0  # 2026-11-18T11:06:40Z
    time_out_first_create(client, strapi, editor, body)
    created = "2026-11-18T11:06:41.123Z"
    ours = document(title="Hello", slug="hello", createdAt=created, publishedAt=None)["data"]
    strapi.get(f"{STRAPI}/api/articles", json={"data": [ours], "meta": {}})
    strapi.get(f"{STRAPI}/api/articles/{DOC}", json=document(title="Hello", slug="hello"))
    clock.advance(11)
    assert client.post(URL, json=body, headers=keyed(editor)).status_code == 201
    assert len(posts(strapi)) == 1


@pytest.mark.parametrize(
    ("never_left", "status", "code"),
    [
        (connection_refused, 502, "upstream_unavailable"),
        (name_unresolved, 502, "upstream_unavailable"),
        (connect_timed_out, 504, "upstream_timeout"),
    ],
)
def test_a_write_that_never_left_releases_its_key(
    client: FlaskClient, strapi: Any, editor: Any, never_left: Callable[[], Exception], status: int, code: str
) -> None:
    strapi.post(f"{STRAPI}/api/articles", body=never_left())
    failed = client.post(URL, json=BODY, headers=keyed(editor))
    assert (failed.status_code, failed.get_json()["error"]["code"]) == (status, code)
    strapi.replace(responses.POST, f"{STRAPI}/api/articles", json=document(), status=201)
    assert client.post(URL, json=BODY, headers=keyed(editor)).status_code == 201  # at once, no 409
    assert lookups(strapi) == []  # nothing to reconcile
    assert len(posts(strapi)) == 2


def test_an_abandoned_claim_is_reconciled_once_its_lease_runs_out(
    client: FlaskClient, strapi: Any, editor: Any, store: IdempotencyStore, clock: FakeClock
) -> None:
    store.claim("default", str(EDITOR), "key-1", fingerprint("POST", URL, BODY))  # its worker then died
    clock.advance(store.lease - 1)
    assert client.post(URL, json=BODY, headers=keyed(editor)).status_code == 409  # the lease still runs
    clock.advance(1 + store.settle - 1)
    assert client.post(URL, json=BODY, headers=keyed(editor)).status_code == 409  # then it settles
    strapi.get(f"{STRAPI}/api/articles", json={"data": [], "meta": {}})
    strapi.post(f"{STRAPI}/api/articles", json=document(), status=201)
    clock.advance(1)
    assert client.post(URL, json=BODY, headers=keyed(editor)).status_code == 201
    assert len(lookups(strapi)) == 1


def renewal_seen(recording: RecordingStore, since: float) -> bool:
    """Wait (real time, at most 2 s) for a record written with a lease renewed at or after ``since``."""
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        if any(getattr(value[1], "renewed_at", 0) >= since for value in recording.values):
            return True
        time.sleep(0.005)
    return False


def test_a_live_write_that_outlasts_every_timeout_keeps_its_claim(
    client: FlaskClient, strapi: Any, editor: Any, store: IdempotencyStore, clock: FakeClock, recording: Any
) -> None:
    """The owner's heartbeat renews its claim while Strapi works: a retry meanwhile is 409, not a write."""
    store.renew_every = 0.01  # real seconds between heartbeats
    seen: list[bool] = []
    retries: list[str] = []

    def slow_create(request: Any) -> tuple[int, dict[str, str], str]:
        for _ in range(3):  # Strapi takes an hour: far longer than connect + read timeout + settle
            clock.advance(1200)
            seen.append(renewal_seen(recording, since=clock.now))
        try:
            store.claim("default", str(EDITOR), "key-1", fingerprint("POST", URL, BODY))  # another worker
            retries.append("claimed")
        except IdempotencyInFlight as exc:
            retries.append(f"409 Retry-After: {exc.headers['Retry-After']}")
        return 201, {"Content-Type": "application/json"}, json.dumps(document())

    strapi.add_callback(responses.POST, f"{STRAPI}/api/articles", callback=slow_create)
    assert client.post(URL, json=BODY, headers=keyed(editor)).status_code == 201
    assert (seen, retries) == ([True] * 3, ["409 Retry-After: 1"])
    assert lookups(strapi) == [] and len(posts(strapi)) == 1
    replay = client.post(URL, json=BODY, headers=keyed(editor))
    assert (replay.status_code, replay.headers["Idempotent-Replayed"]) == (201, "true")


def test_the_heartbeat_stops_with_the_write(
    client: FlaskClient, strapi: Any, editor: Any, store: IdempotencyStore, recording: Any
) -> None:
    store.renew_every = 0.005
    strapi.post(f"{STRAPI}/api/articles", json=document(), status=201)
    assert client.post(URL, json=BODY, headers=keyed(editor)).status_code == 201
    written = len(recording.values)
    time.sleep(0.05)  # ten heartbeats' worth: none may come after the answer
    assert len(recording.values) == written
    assert [t.name for t in threading.enumerate() if t.name.startswith("idempotency-lease")] == []


def test_a_failed_look_up_leaves_the_outcome_unknown(
    client: FlaskClient, strapi: Any, editor: Any, clock: FakeClock
) -> None:
    time_out_first_create(client, strapi, editor)
    strapi.get(f"{STRAPI}/api/articles", body=requests.exceptions.ConnectionError("Connection refused"))
    clock.advance(11)
    assert client.post(URL, json=BODY, headers=keyed(editor)).status_code == 502
    strapi.replace(responses.GET, f"{STRAPI}/api/articles", json={"data": [], "meta": {}})
    strapi.replace(responses.POST, f"{STRAPI}/api/articles", json=document(), status=201)
    assert client.post(URL, json=BODY, headers=keyed(editor)).status_code == 201  # looks again at once
    assert len(posts(strapi)) == 2


CM_UNPUBLISH = f"{STRAPI}/content-manager/collection-types/api::article.article/{DOC}/actions/unpublish"


def time_out_first_unpublish(
    config: dict[str, Any], strapi: Any, clock: FakeClock, headers: dict[str, str]
) -> FlaskClient:
    """An app with admin credentials whose keyed unpublish (``headers``) timed out."""
    config.update(STRAPI_ADMIN_EMAIL="admin@example.com", STRAPI_ADMIN_PASSWORD="pw")
    app = create_app(config)
    app.extensions["bffproxy.idempotency"].clock = clock
    client = app.test_client()
    register_users(strapi)
    strapi.post(f"{STRAPI}/admin/login", json={"data": {"token": "a.b.c"}})
    strapi.post(CM_UNPUBLISH, body=requests.exceptions.ReadTimeout("read timed out"))
    assert client.post(f"/api/articles/{DOC}/unpublish", headers=headers).status_code == 504
    return client


def test_unknown_unpublish_is_reconciled_not_repeated(
    config: dict[str, Any], strapi: Any, clock: FakeClock
) -> None:
    url, headers = f"/api/articles/{DOC}/unpublish", {**bearer(EDITOR), "Idempotency-Key": "u-1"}
    client = time_out_first_unpublish(config, strapi, clock, headers)
    strapi.get(f"{STRAPI}/api/articles/{DOC}", status=404, json={"data": None})
    strapi.get(f"{STRAPI}/api/articles/{DOC}?status=draft", json=document(publishedAt=None))
    clock.advance(11)
    retry = client.post(url, headers=headers)
    assert retry.status_code == 200
    assert retry.get_json()["data"]["publishedAt"] is None
    assert len([c for c in strapi.calls if c.request.url == CM_UNPUBLISH]) == 1


def time_out_first_delete(
    client: FlaskClient, strapi: Any, editor: Any, collection: str = "articles"
) -> None:
    """A keyed DELETE whose answer never came; Strapi answers any later DELETE with 404."""
    strapi.delete(f"{STRAPI}/api/{collection}/{DOC}", body=requests.exceptions.ReadTimeout("read timed out"))
    assert client.delete(f"/api/{collection}/{DOC}", headers=keyed(editor)).status_code == 504
    strapi.replace(
        responses.DELETE, f"{STRAPI}/api/{collection}/{DOC}", status=404, json={"data": None, "error": {}}
    )


@pytest.mark.parametrize(("collection", "query"), [("articles", "?status=draft"), ("categories", "")])
def test_unknown_delete_of_a_document_now_absent_is_reconciled_as_done(
    client: FlaskClient, strapi: Any, editor: Any, clock: FakeClock, collection: str, query: str
) -> None:
    time_out_first_delete(client, strapi, editor, collection)
    strapi.get(f"{STRAPI}/api/{collection}/{DOC}{query}", status=404, json={"data": None, "error": {}})
    clock.advance(11)
    retry = client.delete(f"/api/{collection}/{DOC}", headers=keyed(editor))
    assert (retry.status_code, retry.data) == (204, b"")  # as Strapi answers a delete that worked
    assert len(writes(strapi)) == 1  # not sent again
    (look_up,) = [
        c.request for c in strapi.calls if c.request.method == "GET" and "/users/" not in c.request.url
    ]
    assert look_up.url == f"{STRAPI}/api/{collection}/{DOC}{query}"
    replay = client.delete(f"/api/{collection}/{DOC}", headers=keyed(editor))
    assert (replay.status_code, replay.headers["Idempotent-Replayed"]) == (204, "true")


def test_unknown_delete_of_a_document_still_there_is_sent_again(
    client: FlaskClient, strapi: Any, editor: Any, clock: FakeClock
) -> None:
    time_out_first_delete(client, strapi, editor)
    strapi.get(f"{STRAPI}/api/articles/{DOC}?status=draft", json=document(status=200))
    strapi.replace(responses.DELETE, f"{STRAPI}/api/articles/{DOC}", status=204)
    clock.advance(11)
    retry = client.delete(f"/api/articles/{DOC}", headers=keyed(editor))
    assert (retry.status_code, retry.data) == (204, b"")
    assert [c.request.method for c in writes(strapi)] == ["DELETE", "DELETE"]


def test_unknown_edit_is_simply_sent_again(
    client: FlaskClient, strapi: Any, editor: Any, clock: FakeClock
) -> None:
    strapi.put(f"{STRAPI}/api/articles/{DOC}", body=requests.exceptions.ReadTimeout("read timed out"))
    body = {"data": {"excerpt": "e"}}
    assert client.put(f"/api/articles/{DOC}", json=body, headers=keyed(editor)).status_code == 504
    strapi.replace(responses.PUT, f"{STRAPI}/api/articles/{DOC}", json=document(status=200))
    clock.advance(11)
    assert client.put(f"/api/articles/{DOC}", json=body, headers=keyed(editor)).status_code == 200
    assert len(writes(strapi)) == 2  # an edit of the draft is idempotent in Strapi


# -- the store -----------------------------------------------------------------------------------------


class RecordingStore:
    """Wraps the real store and records the timeouts records are written with."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.timeouts: list[Any] = []
        self.values: list[Any] = []

    def get(self, key: str) -> Any:
        return self.inner.get(key)

    def set(self, key: str, value: Any, timeout: Any = None) -> Any:
        self.timeouts.append(timeout)
        self.values.append(value)
        return self.inner.set(key, value, timeout)

    def delete(self, key: str) -> Any:
        return self.inner.delete(key)


@pytest.fixture
def recording(store: IdempotencyStore) -> RecordingStore:
    """The app's idempotency store, recorded."""
    wrapped = RecordingStore(store.store)
    store.store = wrapped
    return wrapped


def test_records_live_24_hours(
    client: FlaskClient, strapi: Any, editor: Any, recording: RecordingStore
) -> None:
    strapi.post(f"{STRAPI}/api/articles", json=document(), status=201)
    client.post(URL, json=BODY, headers=keyed(editor))
    assert recording.timeouts == [24 * 3600, 24 * 3600]  # claimed, then done


def test_store_down_refuses_the_write(
    client: FlaskClient, strapi: Any, editor: Any, store: IdempotencyStore
) -> None:
    class Down:
        def get(self, key: str) -> Any:
            raise ConnectionError("redis down")

    store.store = Down()
    answer = client.post(URL, json=BODY, headers=keyed(editor))
    assert answer.status_code == 503
    assert answer.get_json()["error"]["code"] == "idempotency_unavailable"
    assert writes(strapi) == []


def test_store_failing_after_the_write_still_answers_success(
    client: FlaskClient, strapi: Any, editor: Any, recording: RecordingStore
) -> None:
    strapi.post(f"{STRAPI}/api/articles", json=document(), status=201)

    def fail_after_claim(key: str, value: Any, timeout: Any = None) -> Any:
        if recording.timeouts:
            raise ConnectionError("redis down")
        recording.timeouts.append(timeout)
        return recording.inner.set(key, value, timeout)

    recording.set = fail_after_claim  # type: ignore[method-assign]
    assert client.post(URL, json=BODY, headers=keyed(editor)).status_code == 201


class ExpiringLocks:
    """The app's locks, but once ``expired`` is set each is lost before its release, as a Redis lock
    is when it outlives its TTL: its release raises redis-py's LockNotOwnedError."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.expired = False
        self.raised = 0

    def try_acquire(self, key: str, ttl: float) -> Any:
        lock = self.inner.try_acquire(key, ttl)
        return None if lock is None else ExpiredLock(self, lock)


class ExpiredLock:
    def __init__(self, locks: ExpiringLocks, inner: Any) -> None:
        self.locks, self.inner = locks, inner

    def release(self) -> None:
        self.inner.release()
        if self.locks.expired:
            self.locks.raised += 1
            raise LockNotOwnedError("Cannot release a lock that's no longer owned")


@pytest.fixture
def expiring(store: IdempotencyStore) -> ExpiringLocks:
    locks = ExpiringLocks(store.locks)
    store.locks = locks
    return locks


def test_a_lock_lost_after_a_committed_write_does_not_make_it_a_500(
    client: FlaskClient, strapi: Any, editor: Any, expiring: ExpiringLocks
) -> None:
    def create(request: Any) -> tuple[int, dict[str, str], str]:
        expiring.expired = True  # Strapi commits; the lock of the answer's check-and-set will be lost
        return 201, {"Content-Type": "application/json"}, json.dumps(document())

    strapi.add_callback(responses.POST, f"{STRAPI}/api/articles", callback=create)
    answer = client.post(URL, json=BODY, headers=keyed(editor))
    assert (answer.status_code, answer.get_json(), expiring.raised) == (201, document(), 1)
    expiring.expired = False
    replay = client.post(URL, json=BODY, headers=keyed(editor))  # the answer was recorded all the same
    assert (replay.status_code, replay.headers["Idempotent-Replayed"]) == (201, "true")
    assert len(posts(strapi)) == 1


def test_a_lock_lost_while_claiming_still_sends_the_write_once(
    client: FlaskClient, strapi: Any, editor: Any, expiring: ExpiringLocks
) -> None:
    expiring.expired = True
    strapi.post(f"{STRAPI}/api/articles", json=document(), status=201)
    answer = client.post(URL, json=BODY, headers=keyed(editor))
    assert (answer.status_code, expiring.raised) == (201, 2)  # claim and finish both lost theirs
    assert len(posts(strapi)) == 1


def test_writes_without_a_key_are_not_recorded(
    client: FlaskClient, strapi: Any, editor: Any, recording: RecordingStore
) -> None:
    strapi.post(f"{STRAPI}/api/articles", json=document(), status=201)
    client.post(URL, json=BODY, headers=editor)
    client.post(URL, json=BODY, headers=editor)
    assert recording.timeouts == [] and len(posts(strapi)) == 2


def test_fingerprint_is_canonical() -> None:
    assert fingerprint("post", "/a", {"x": 1, "y": [1, 2]}) == fingerprint(
        "POST", "/a", {"y": [1, 2], "x": 1}
    )
    assert fingerprint("POST", "/a", {"x": 1}) != fingerprint("POST", "/b", {"x": 1})
    assert fingerprint("POST", "/a", None) != fingerprint("PUT", "/a", None)


@pytest.mark.parametrize(("key", "value"), [("IDEMPOTENCY_TTL", "0"), ("IDEMPOTENCY_SETTLE", "-1")])
def test_settings_are_validated(config: dict[str, Any], key: str, value: str) -> None:
    config[key] = value
    with pytest.raises(ConfigError, match=f"BFFPROXY_{key}"):
        create_app(config)


def test_store_records_survive_a_new_app(config: dict[str, Any], strapi: Any) -> None:
    """Another worker (another app on the same cache dir) sees the first worker's answer."""
    register_users(strapi)
    strapi.post(f"{STRAPI}/api/articles", json=document(), status=201)
    headers = {**bearer(EDITOR), "Idempotency-Key": "shared"}
    create_app(config).test_client().post(URL, json=BODY, headers=headers)
    replay = create_app(config).test_client().post(URL, json=BODY, headers=headers)
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert len(posts(strapi)) == 1
    assert json.loads(replay.data)["data"]["documentId"] == DOC


def test_a_derived_slug_left_by_an_expired_use_of_the_key_is_not_ours(
    client: FlaskClient, strapi: Any, editor: Any, clock: FakeClock
) -> None:
    """A key reused after its TTL derives the same slug: the old document must not pass for the new one."""
    clock.now = 1_795_000_000.0  # 2026-11-18T11:06:40Z
    slug = time_out_first_create(client, strapi, editor)
    from_yesterday = document(title="Hello", slug=slug, createdAt="2026-11-17T09:00:00.000Z")["data"]
    strapi.get(f"{STRAPI}/api/articles", json={"data": [from_yesterday], "meta": {}})
    strapi.replace(responses.POST, f"{STRAPI}/api/articles", json=document(slug=slug), status=201)
    clock.advance(11)
    assert client.post(URL, json=BODY, headers=keyed(editor)).status_code == 201
    assert len(posts(strapi)) == 2  # the old document was not this key's: create


# -- client format headers never reach bffproxy's own look-ups ------------------------------------

V4 = {"Strapi-Response-Format": "v4"}


def in_requested_format(item: dict[str, Any]) -> Callable[[Any], tuple[int, dict[str, str], str]]:
    """A Strapi list answer holding ``item``, shaped as Strapi 5 shapes it for the request's format."""

    def answer(request: Any) -> tuple[int, dict[str, str], str]:
        if request.headers.get("Strapi-Response-Format") == "v4":  # createdAt sits under attributes
            shaped = {"id": item["id"], "attributes": {k: v for k, v in item.items() if k != "id"}}
        else:
            shaped = item
        return 200, {"Content-Type": "application/json"}, json.dumps({"data": [shaped], "meta": {}})

    return answer


def test_retried_v4_create_finds_the_document_and_answers_in_v4(
    client: FlaskClient, strapi: Any, editor: Any, clock: FakeClock
) -> None:
    strapi.post(f"{STRAPI}/api/articles", body=requests.exceptions.ReadTimeout("read timed out"))
    assert client.post(URL, json=BODY, headers=keyed({**editor, **V4})).status_code == 504
    slug = sent_json(posts(strapi)[0])["data"]["slug"]
    created = document(title="Hello", slug=slug, publishedAt=None)["data"]
    strapi.add_callback(responses.GET, f"{STRAPI}/api/articles", callback=in_requested_format(created))
    v4_published = {"data": {"id": 1, "attributes": {"documentId": DOC, "title": "Hello"}}, "meta": {}}
    strapi.get(f"{STRAPI}/api/articles/{DOC}", json=v4_published)
    clock.advance(11)
    retry = client.post(URL, json=BODY, headers=keyed({**editor, **V4}))
    assert retry.status_code == 201
    assert retry.get_json() == v4_published  # the client asked for v4: the answer is v4
    assert len(posts(strapi)) == 1  # never created twice
    (look_up,) = [c for c in strapi.calls if c.request.url.startswith(f"{STRAPI}/api/articles?")]
    assert "Strapi-Response-Format" not in look_up.request.headers
    (answer,) = [c for c in strapi.calls if c.request.url == f"{STRAPI}/api/articles/{DOC}"]
    assert answer.request.headers["Strapi-Response-Format"] == "v4"


def test_retried_v4_draft_create_answers_the_found_draft_in_v4(
    client: FlaskClient, strapi: Any, editor: Any, clock: FakeClock
) -> None:
    strapi.post(f"{STRAPI}/api/articles", body=requests.exceptions.ReadTimeout("read timed out"))
    body, url = {"data": BODY}, "/api/articles?status=draft"
    assert client.post(url, json=body, headers=keyed({**editor, **V4})).status_code == 504
    slug = sent_json(posts(strapi)[0])["data"]["slug"]
    created = document(title="Hello", slug=slug, publishedAt=None)["data"]
    strapi.add_callback(responses.GET, f"{STRAPI}/api/articles", callback=in_requested_format(created))
    v4_draft = {"data": {"id": 1, "attributes": {"documentId": DOC, "publishedAt": None}}, "meta": {}}
    strapi.get(f"{STRAPI}/api/articles/{DOC}?status=draft", json=v4_draft)
    clock.advance(11)
    retry = client.post(url, json=body, headers=keyed({**editor, **V4}))
    assert retry.status_code == 201
    assert retry.get_json() == v4_draft
    assert [c.request.method for c in writes(strapi)] == ["POST"]
    (fetch,) = [c for c in strapi.calls if c.request.url.startswith(f"{STRAPI}/api/articles/{DOC}")]
    assert fetch.request.headers["Strapi-Response-Format"] == "v4"


def test_retried_v4_unpublish_probes_without_the_format_header(
    config: dict[str, Any], strapi: Any, clock: FakeClock
) -> None:
    url, headers = f"/api/articles/{DOC}/unpublish", {**bearer(EDITOR), **V4, "Idempotency-Key": "u-1"}
    client = time_out_first_unpublish(config, strapi, clock, headers)
    strapi.get(f"{STRAPI}/api/articles/{DOC}", status=404, json={"data": None})
    strapi.get(f"{STRAPI}/api/articles/{DOC}?status=draft", json={"data": {"id": 1, "attributes": {}}})
    clock.advance(11)
    assert client.post(url, headers=headers).status_code == 200
    gets = [c.request for c in strapi.calls if c.request.url.startswith(f"{STRAPI}/api/articles/{DOC}")]
    assert [(r.url.endswith("?status=draft"), r.headers.get("Strapi-Response-Format")) for r in gets] == [
        (False, None),  # the probe: is it still published?
        (True, "v4"),  # the answer, in the client's format
    ]
