"""Invalidation end to end: Strapi's real webhooks, the purge API and CLI, gunicorn with 2 workers.

Articles are created for each test through Strapi's REST API and deleted afterwards, so the seeded
content other tests rely on is never changed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from .services import Gunicorn, Strapi, wait_until

ADMIN_TOKEN = "e2e-admin-token"  # set by bff_env in conftest.py


def received_webhooks(bff: Gunicorn, document_id: str) -> int:
    """How many of Strapi's webhooks about ``document_id`` this instance has processed (its log)."""
    return sum(
        1
        for line in bff.log().splitlines()
        if "bffproxy.webhooks " in line and ": webhook " in line and document_id in line
    )


def wait_for_webhooks(bff: Gunicorn, document_id: str, count: int) -> None:
    """Wait until ``count`` webhooks about ``document_id`` were processed (Strapi sends them async)."""
    wait_until(
        lambda: received_webhooks(bff, document_id) >= count, 20, f"{count} webhooks for {document_id}"
    )


def fetch(url: str) -> requests.Response:
    """One GET on a new connection, so the kernel may hand it to any gunicorn worker."""
    return requests.get(url, headers={"Connection": "close"}, timeout=20)


def by_worker(
    url: str, *, until: Callable[[dict[str, list[requests.Response]]], bool]
) -> list[requests.Response]:
    """GET ``url`` in rounds of 8 concurrent requests until ``until(responses by worker pid)``."""
    seen: list[requests.Response] = []
    with ThreadPoolExecutor(8) as pool:
        for _ in range(60):
            seen += pool.map(fetch, [url] * 8)
            workers: dict[str, list[requests.Response]] = {}
            for response in seen:
                workers.setdefault(response.headers["X-BFF-Worker"], []).append(response)
            if until(workers):
                return seen
    raise AssertionError(f"never reached the expected spread over workers for {url}: {workers.keys()}")


def hit_on_two_workers(workers: dict[str, list[requests.Response]]) -> bool:
    return sum(any(r.headers["X-Cache"] == "HIT" for r in rs) for rs in workers.values()) >= 2


def two_workers(workers: dict[str, list[requests.Response]]) -> bool:
    return len(workers) >= 2


class Articles:
    """Creates articles directly in Strapi (with the API token) and deletes them at the end.

    ``receiver`` is the bffproxy on Strapi's webhook port: the clean-up waits until it processed the
    two ``entry.delete`` webhooks, so none of them lands on the next test's instance on that port.
    """

    def __init__(self, strapi: Strapi) -> None:
        self.strapi = strapi
        self.created: list[str] = []
        self.receiver: Gunicorn | None = None

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.strapi.api_token}"}

    def create(self, **fields: str) -> str:
        data = {"title": f"e2e invalidation {uuid.uuid4().hex[:12]}", "excerpt": "original", **fields}
        response = requests.post(
            f"{self.strapi.url}/api/articles", json={"data": data}, headers=self.headers, timeout=10
        )
        assert response.status_code in (200, 201), response.text
        document_id: str = response.json()["data"]["documentId"]
        self.created.append(document_id)
        return document_id

    def update(self, document_id: str, **fields: str) -> None:
        url = f"{self.strapi.url}/api/articles/{document_id}"
        response = requests.put(url, json={"data": fields}, headers=self.headers, timeout=10)
        assert response.status_code == 200, response.text

    def delete_all(self) -> None:
        for document_id in self.created:
            before = received_webhooks(self.receiver, document_id) if self.receiver else 0
            requests.delete(f"{self.strapi.url}/api/articles/{document_id}", headers=self.headers, timeout=10)
            if self.receiver:
                wait_for_webhooks(self.receiver, document_id, before + 2)


@pytest.fixture
def articles(strapi_live: Strapi) -> Iterator[Articles]:
    made = Articles(strapi_live)
    yield made
    made.delete_all()


def test_webhook_invalidates_every_worker(bff: Gunicorn, articles: Articles) -> None:
    articles.receiver = bff
    document_id = articles.create()
    wait_for_webhooks(bff, document_id, 2)  # entry.create + entry.publish
    urls = [
        f"{bff.url}/api/articles/{document_id}",
        f"{bff.url}/api/articles?filters[documentId][$eq]={document_id}",
    ]
    for url in urls:
        by_worker(url, until=hit_on_two_workers)

    articles.update(document_id, excerpt="changed by the webhook test")
    wait_for_webhooks(bff, document_id, 4)  # + entry.update + entry.publish

    for url in urls:
        after = by_worker(url, until=two_workers)
        assert all("changed by the webhook test" in r.text for r in after), [r.text for r in after]
        assert sorted(r.headers["X-Cache"] for r in after).count("MISS") == 1


@pytest.mark.parametrize(
    ("headers", "data", "status", "code"),
    [
        ({}, b'{"event": "entry.update"}', 401, "unauthorized"),
        ({"X-Webhook-Secret": "wrong"}, b'{"event": "entry.update"}', 401, "unauthorized"),
        ({"X-Webhook-Secret": "e2e-webhook-secret"}, b"{not json", 400, "bad_request"),
        (
            {"X-Webhook-Secret": "e2e-webhook-secret"},
            b'{"event": "entry.update", "model": "article"}',
            400,
            "bad_request",
        ),
    ],
)
def test_bad_webhook_secrets_and_bodies(
    bff: Gunicorn, headers: dict[str, str], data: bytes, status: int, code: str
) -> None:
    response = requests.post(
        f"{bff.url}/webhooks/strapi",
        data=data,
        headers={"Content-Type": "application/json", **headers},
        timeout=10,
    )
    assert response.status_code == status
    assert response.json()["error"]["code"] == code


def test_unknown_model_is_accepted_and_changes_nothing(bff: Gunicorn) -> None:
    url = f"{bff.url}/api/articles?pagination[pageSize]=3"
    wait_until(lambda: fetch(url).headers["X-Cache"] == "HIT", 10, "a cached list")
    body = {"event": "entry.update", "model": "user", "entry": {"id": 1, "documentId": "u1"}}
    response = requests.post(
        f"{bff.url}/webhooks/strapi",
        json=body,
        headers={"X-Webhook-Secret": "e2e-webhook-secret"},
        timeout=10,
    )
    assert response.status_code == 202
    assert response.json()["invalidated"] == []
    assert fetch(url).headers["X-Cache"] == "HIT"


def purge(bff: Gunicorn, body: object, token: str | None = ADMIN_TOKEN) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return requests.post(f"{bff.url}/admin/cache/purge", json=body, headers=headers, timeout=10)


def test_purge_api_needs_the_admin_token_and_purges(bff: Gunicorn) -> None:
    url = f"{bff.url}/api/articles?pagination[pageSize]=4"
    wait_until(lambda: fetch(url).headers["X-Cache"] == "HIT", 10, "a cached list")
    assert purge(bff, {"all": True}, token=None).status_code == 401
    assert purge(bff, {"all": True}, token="wrong-token").status_code == 401
    assert fetch(url).headers["X-Cache"] == "HIT"

    for body in ({"collection": "articles"}, {"collection": "articles", "documentId": "abc"}, {"all": True}):
        response = purge(bff, body)
        assert response.status_code == 200, response.text
        assert fetch(url).headers["X-Cache"] == "MISS"
        assert fetch(url).headers["X-Cache"] == "HIT"
    assert purge(bff, {"collection": "users"}).status_code == 422


def test_purge_from_the_command_line(bff: Gunicorn) -> None:
    url = f"{bff.url}/api/articles?pagination[pageSize]=5"
    wait_until(lambda: fetch(url).headers["X-Cache"] == "HIT", 10, "a cached list")
    env = {k: v for k, v in os.environ.items() if not k.startswith("BFFPROXY_")} | bff.env
    command = [str(Path(sys.executable).parent / "bffproxy"), "purge", "--collection", "articles"]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "purged collection: articles, categories"  # categories embed articles
    assert fetch(url).headers["X-Cache"] == "MISS"
