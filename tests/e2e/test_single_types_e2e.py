"""Single types end to end: the project app's ``homepage`` through bffproxy (gunicorn, 2 workers).

bffproxy here is Strapi's webhook target, so a change made in Strapi directly must reach it through
Strapi's own webhook (``"model": "homepage"``). Every test puts the seeded homepage back afterwards
(the session's Strapi is shared with other tests).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests

from bffproxy.schemas import SPECS

from .services import Gunicorn, Strapi, login, wait_until

SEEDED = {  # strapi/app/src/index.js, ensureHomepage
    "title": "Welcome to the BFF lab",
    "tagline": "Seeded single type",
    "body": "This **homepage** is a Strapi single type.",
}
SETTINGS = {
    "COLLECTIONS": "articles,categories,homepage",
    "SINGLE_TYPES": "homepage",
    "POLICIES__articles": "read=public,drafts=editor,write=editor",
    "POLICIES__homepage": "read=public,drafts=editor,write=editor",
}


def service(strapi: Strapi) -> dict[str, str]:
    return {"Authorization": f"Bearer {strapi.api_token}"}


def put_in_strapi(strapi: Strapi, data: dict[str, Any], query: str = "") -> dict[str, Any]:
    """PUT the homepage in Strapi directly (the API token), as an editor in the admin would."""
    answer = requests.put(
        f"{strapi.url}/api/homepage{query}", json={"data": data}, headers=service(strapi), timeout=10
    )
    assert answer.status_code == 200, answer.text
    return dict(answer.json()["data"])


@pytest.fixture
def bff(start_bff: Callable[..., Gunicorn], webhook_port: int, strapi_live: Strapi) -> Iterator[Gunicorn]:
    """bffproxy with the homepage exposed, on Strapi's webhook port; the seeded homepage restored after."""
    server = start_bff(port=webhook_port, **SETTINGS)
    yield server
    before = homepage_webhooks(server)
    put_in_strapi(strapi_live, SEEDED)  # creates it again if a test deleted it
    # Its two webhooks (update or create, then publish) must not land on the next test's instance.
    wait_until(lambda: homepage_webhooks(server) >= before + 2, 20, "the restore's webhooks")


def homepage_webhooks(bff: Gunicorn) -> int:
    """How many webhooks about the homepage this instance has processed (its log)."""
    return sum(
        1
        for line in bff.log().splitlines()
        if "bffproxy.webhooks " in line and ": webhook entry." in line and " homepage " in line
    )


def read(bff: Gunicorn, query: str = "", **headers: str) -> requests.Response:
    return requests.get(f"{bff.url}/api/homepage{query}", headers=headers, timeout=10)


def test_the_configuration_matches_strapis_own_schema(strapi_live: Strapi) -> None:
    """What BFFPROXY_SINGLE_TYPES and schemas.py say is what Strapi says (content-type-builder)."""
    answer = requests.get(
        f"{strapi_live.url}/api/content-type-builder/content-types", headers=service(strapi_live), timeout=10
    )
    kinds = {item["uid"]: item["schema"]["kind"] for item in answer.json()["data"]}
    for spec in SPECS.values():
        assert kinds[spec.uid] == ("singleType" if spec.single_type else "collectionType"), spec.uid
    assert kinds["api::homepage.homepage"] == "singleType"


def test_reads_are_cached_and_a_change_in_strapi_arrives_by_its_webhook(
    bff: Gunicorn, strapi_live: Strapi
) -> None:
    first = read(bff)
    assert first.status_code == 200, first.text
    assert first.json() == strapi_live.get("api/homepage").json()  # Strapi's own body
    assert first.json()["data"]["title"] == SEEDED["title"]
    assert read(bff).headers["X-Cache"] == "HIT"

    before = homepage_webhooks(bff)
    put_in_strapi(strapi_live, {"tagline": "Changed in Strapi"})  # published: its default
    wait_until(lambda: homepage_webhooks(bff) >= before + 2, 20, "entry.update + entry.publish")
    after = read(bff)
    assert (after.headers["X-Cache"], after.json()["data"]["tagline"]) == ("MISS", "Changed in Strapi")
    line = next(x for x in bff.log().splitlines() if "webhook entry.publish homepage" in x)
    assert "invalidated homepage" in line


def test_nothing_lives_under_it_and_it_has_no_post(bff: Gunicorn, strapi_live: Strapi, editor: Any) -> None:
    before = strapi_live.count_requests("/api/homepage/")
    for path in ("/api/homepage/x", "/api/homepage/mgkny5ckjijbo9qqzz8jh8eo", "/api/homepage/publish"):
        assert requests.get(f"{bff.url}{path}", timeout=10).status_code == 404
        assert (
            requests.put(f"{bff.url}{path}", json={"data": {}}, headers=editor, timeout=10).status_code == 404
        )
    post = requests.post(f"{bff.url}/api/homepage", json={"data": SEEDED}, headers=editor, timeout=10)
    assert (post.status_code, post.headers["Allow"]) == (405, "GET, HEAD, PUT, DELETE")  # as Strapi: 405
    assert (
        requests.post(f"{strapi_live.url}/api/homepage", json={"data": SEEDED}, timeout=10).status_code == 405
    )
    assert strapi_live.count_requests("/api/homepage/") == before


def test_an_editor_writes_it_with_strapis_semantics(bff: Gunicorn, strapi_live: Strapi, editor: Any) -> None:
    assert read(bff).headers["X-Cache"] in ("MISS", "HIT") and read(bff).headers["X-Cache"] == "HIT"
    url = f"{bff.url}/api/homepage"

    draft = requests.put(
        f"{url}?status=draft", json={"data": {"tagline": "Draft tagline"}}, headers=editor, timeout=10
    )
    assert draft.status_code == 200, draft.text
    assert draft.json()["data"]["publishedAt"] is None  # Strapi answers with the draft
    assert read(bff).json()["data"]["tagline"] == SEEDED["tagline"]  # the public one is unchanged
    assert read(bff, "?status=draft").status_code == 400
    mine = read(bff, "?status=draft", Authorization=editor["Authorization"])
    assert (mine.status_code, mine.json()["data"]["tagline"]) == (200, "Draft tagline")

    published = requests.put(url, json={"data": {"tagline": "Live tagline"}}, headers=editor, timeout=10)
    assert published.status_code == 200, published.text
    after = read(bff)  # read-your-writes: bffproxy's own invalidation, before any webhook
    assert (after.headers["X-Cache"], after.json()["data"]["tagline"]) == ("MISS", "Live tagline")

    invalid = requests.put(url, json={"data": {"title": "x" * 121}}, headers=editor, timeout=10)
    assert invalid.status_code == 422
    reader = login(strapi_live, "reader", "Reader-Passw0rd!")
    assert requests.put(url, json={"data": {"tagline": "r"}}, headers=reader, timeout=10).status_code == 403
    assert requests.put(url, json={"data": {"tagline": "a"}}, timeout=10).status_code == 401
    assert strapi_live.get("api/homepage").json()["data"]["tagline"] == "Live tagline"


def test_delete_then_put_brings_it_back(bff: Gunicorn, strapi_live: Strapi, editor: Any) -> None:
    url = f"{bff.url}/api/homepage"
    assert read(bff).status_code == 200 and read(bff).headers["X-Cache"] == "HIT"
    key = {**editor, "Idempotency-Key": "e2e-home-delete"}
    deleted = requests.delete(url, headers=key, timeout=10)
    assert (deleted.status_code, deleted.content) == (204, b"")
    assert read(bff).status_code == 404
    assert strapi_live.get("api/homepage", token=strapi_live.api_token, status="draft").status_code == 404
    again = requests.delete(url, headers=key, timeout=10)
    assert (again.status_code, again.headers["Idempotent-Replayed"]) == (204, "true")

    missing_title = requests.put(url, json={"data": {"tagline": "t"}}, headers=editor, timeout=10)
    assert missing_title.status_code == 400  # Strapi's own check: a create needs the title
    back = requests.put(url, json={"data": SEEDED}, headers=editor, timeout=10)
    assert back.status_code == 200, back.text
    assert back.json()["data"]["publishedAt"] is not None
    assert read(bff).json()["data"] == back.json()["data"]
