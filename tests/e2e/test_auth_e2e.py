"""Strapi users through bffproxy against real Strapi 5: legacy and refresh-mode tokens, roles,
drafts, writes, forged tokens, and logins from many clients under Strapi's per-address limit."""

from __future__ import annotations

import base64
import itertools
import json
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import jwt
import pytest
import requests

from .services import Gunicorn, RedisServer, Strapi, free_port, wait_until

READER = {"identifier": "reader", "password": "Reader-Passw0rd!"}
EDITOR = {"identifier": "editor", "password": "Editor-Passw0rd!"}
POLICY = {"POLICIES__articles": "read=public,drafts=editor,write=editor"}
_addresses = (f"198.51.100.{i}" for i in itertools.count(1))


def login(bff: Gunicorn, credentials: dict[str, str], address: str | None = None) -> dict[str, Any]:
    """Sign in through bffproxy (from ``address`` when bffproxy trusts X-Forwarded-For)."""
    headers = {"X-Forwarded-For": address or next(_addresses)}
    response = requests.post(f"{bff.url}/api/auth/local", json=credentials, headers=headers, timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["Cache-Control"] == "no-store"
    body: dict[str, Any] = response.json()
    return body


def get(bff: Gunicorn, path: str, token: str | None = None, **params: Any) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return requests.get(f"{bff.url}{path}", params=params, headers=headers, timeout=10)


def claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    decoded: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return decoded


def total(response: requests.Response) -> int:
    assert response.status_code == 200, response.text
    return int(response.json()["meta"]["pagination"]["total"])


@pytest.fixture(scope="module")
def strapi_refresh_mode() -> Iterator[Strapi]:
    """A second real Strapi: refresh-mode tokens, its login limit ON, trusting X-Forwarded-For."""
    server = Strapi(
        port=free_port(),
        webhook_port=free_port(),
        extra_env={
            "UP_JWT_MANAGEMENT": "refresh",
            "UP_RATELIMIT_ENABLED": "true",
            "STRAPI_TRUST_PROXY": "true",
            "WEBHOOK_URL": "none",
        },
    )
    server.reset()
    server.start()
    yield server
    server.reset()  # stop it and delete its database: nothing piles up in the shared app dir


@pytest.fixture
def bff_legacy(start_bff: Callable[..., Gunicorn]) -> Gunicorn:
    """bffproxy in front of the session's Strapi (legacy tokens), trusting one proxy hop."""
    return start_bff(TRUSTED_PROXIES=1, **POLICY)


@pytest.fixture
def bff_refresh(start_bff: Callable[..., Gunicorn], strapi_refresh_mode: Strapi) -> Gunicorn:
    """bffproxy in front of the refresh-mode Strapi, trusting one proxy hop (the test)."""
    return start_bff(
        STRAPI_URL=strapi_refresh_mode.url,
        STRAPI_API_TOKEN=strapi_refresh_mode.api_token,
        STRAPI_JWT_SECRET=strapi_refresh_mode.jwt_secret,
        TRUSTED_PROXIES=1,
        **POLICY,
    )


# -- legacy tokens (the session's Strapi) --------------------------------------------------------


def test_legacy_reader_reads_but_sees_no_drafts_and_cannot_write(
    bff_legacy: Gunicorn, strapi_live: Strapi
) -> None:
    session = login(bff_legacy, READER)
    token = session["jwt"]
    assert set(claims(token)) == {"id", "iat", "exp"}
    me = get(bff_legacy, "/api/me", token)
    assert me.json() == {
        "id": session["user"]["id"],
        "username": "reader",
        "email": "reader@example.com",
        "role": "authenticated",
    }
    articles = get(bff_legacy, "/api/articles", token)
    assert total(articles) == 30
    assert articles.headers["Cache-Control"] == "private, no-store"
    drafts = get(bff_legacy, "/api/articles", token, status="draft")
    assert drafts.status_code == 403
    assert "'editor'" in drafts.json()["error"]["message"]
    before = total(strapi_live.get("api/articles", status="draft"))
    write = requests.post(
        f"{bff_legacy.url}/api/articles",
        json={"data": {"title": "Reader was here"}},
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert write.status_code == 403
    assert "'editor'" in write.json()["error"]["message"]
    assert total(strapi_live.get("api/articles", status="draft")) == before


def test_legacy_editor_sees_drafts(bff_legacy: Gunicorn) -> None:
    token = login(bff_legacy, EDITOR)["jwt"]
    assert get(bff_legacy, "/api/me", token).json()["role"] == "editor"
    drafts = get(bff_legacy, "/api/articles", token, status="draft")
    assert total(drafts) == 36  # 30 published (their drafts) + 6 draft-only
    assert drafts.headers["Cache-Control"] == "private, no-store"


def test_anonymous_gets_public_content_only(bff_legacy: Gunicorn) -> None:
    assert total(get(bff_legacy, "/api/articles")) == 30
    assert get(bff_legacy, "/api/articles", status="draft").status_code == 400
    assert get(bff_legacy, "/api/me").status_code == 401


def test_role_cacheable_reads_never_reach_anonymous_callers(
    start_bff: Callable[..., Gunicorn],
) -> None:
    bff = start_bff(TRUSTED_PROXIES=1, ROLE_CACHEABLE="articles", **POLICY)
    editor = login(bff, EDITOR)["jwt"]
    reader = login(bff, READER)["jwt"]
    assert total(get(bff, "/api/articles", editor, status="draft")) == 36
    assert get(bff, "/api/articles", status="draft").status_code == 400
    first, second = get(bff, "/api/articles", reader), get(bff, "/api/articles", reader)
    assert (first.headers["X-Cache"], second.headers["X-Cache"]) == ("MISS", "HIT")
    anonymous = get(bff, "/api/articles")
    assert anonymous.headers["X-Cache"] == "MISS"
    assert anonymous.headers["Cache-Control"].startswith("public")


def test_a_token_signed_with_another_secret_never_reaches_strapi(
    bff_legacy: Gunicorn, strapi_live: Strapi
) -> None:
    marker = uuid.uuid4().hex
    real = claims(login(bff_legacy, READER)["jwt"])
    forged = jwt.encode(real, "not-strapis-secret-but-32-bytes-long!", algorithm="HS256")
    for path in ("/api/articles", "/api/me"):
        response = get(bff_legacy, path, forged, **{"filters[title][$eq]": marker})
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "invalid_token"
    # The control: the same request with the real token shows up in Strapi's log, the forged ones never.
    token = login(bff_legacy, READER)["jwt"]
    assert get(bff_legacy, "/api/articles", token, **{"filters[title][$eq]": marker}).status_code == 200
    wait_until(lambda: strapi_live.count_requests(marker) >= 1, 10, "Strapi to log the control request")
    assert strapi_live.count_requests(marker) == 1


def test_a_deleted_users_token_is_401_invalid_token(bff_legacy: Gunicorn, strapi_live: Strapi) -> None:
    service = {"Authorization": f"Bearer {strapi_live.api_token}"}
    name, password = f"gone-{uuid.uuid4().hex[:12]}", "Gone-Passw0rd!"
    roles = requests.get(f"{strapi_live.url}/api/users-permissions/roles", headers=service, timeout=10)
    role = next(r["id"] for r in roles.json()["roles"] if r["type"] == "authenticated")
    user = {"username": name, "email": f"{name}@example.com", "password": password, "role": role}
    created = requests.post(f"{strapi_live.url}/api/users", json=user, headers=service, timeout=10)
    assert created.status_code == 201, created.text
    user_id = created.json()["id"]
    # Signing in passes through to Strapi; bffproxy has not looked the user up (nor cached them) yet.
    token = login(bff_legacy, {"identifier": name, "password": password})["jwt"]
    assert strapi_live.get("api/users/me", token).status_code == 200  # the control: a working token
    deleted = requests.delete(f"{strapi_live.url}/api/users/{user_id}", headers=service, timeout=10)
    assert deleted.status_code == 200, deleted.text
    # What bffproxy must read as "no such user": Strapi 5 answers 204 with no body, not 404.
    direct = strapi_live.get(f"api/users/{user_id}", strapi_live.api_token, populate="role")
    assert (direct.status_code, direct.content) == (204, b"")
    # The token is still validly signed and unexpired; the first read asks Strapi, the next ones are
    # answered from the remembered "gone" (unit tests count the calls).
    for path in ("/api/me", "/api/articles", "/api/me"):
        response = get(bff_legacy, path, token)
        assert response.status_code == 401, response.text
        error = response.json()["error"]
        assert (error["code"], error["message"]) == ("invalid_token", "The token's user no longer exists.")


def test_a_forged_token_is_401_even_with_strapi_unreachable(start_bff: Callable[..., Gunicorn]) -> None:
    bff = start_bff(STRAPI_URL=f"http://127.0.0.1:{free_port()}", **POLICY)
    forged = jwt.encode({"id": 1, "exp": 2**31}, "not-strapis-secret-but-32-bytes-long!", algorithm="HS256")
    assert get(bff, "/api/articles", forged).status_code == 401
    assert get(bff, "/api/articles", "a.b.c").status_code == 401


# -- refresh-mode tokens and Strapi's per-address login limit ------------------------------------


def test_refresh_mode_tokens(bff_refresh: Gunicorn) -> None:
    session = login(bff_refresh, READER)
    access, refresh = session["jwt"], session["refreshToken"]
    assert claims(access)["type"] == "access" and isinstance(claims(access)["userId"], str)
    assert get(bff_refresh, "/api/me", access).json()["role"] == "authenticated"
    assert total(get(bff_refresh, "/api/articles", access)) == 30
    assert get(bff_refresh, "/api/articles", access, status="draft").status_code == 403
    used_as_access = get(bff_refresh, "/api/articles", refresh)
    assert used_as_access.status_code == 401
    renewed = requests.post(f"{bff_refresh.url}/api/auth/refresh", json={"refreshToken": refresh}, timeout=10)
    assert renewed.status_code == 200
    assert get(bff_refresh, "/api/me", renewed.json()["jwt"]).status_code == 200
    logout = requests.post(
        f"{bff_refresh.url}/api/auth/logout",
        headers={"Authorization": f"Bearer {renewed.json()['jwt']}"},
        json={},
        timeout=10,
    )
    assert logout.status_code == 200
    gone = requests.post(
        f"{bff_refresh.url}/api/auth/refresh",
        json={"refreshToken": renewed.json()["refreshToken"]},
        timeout=10,
    )
    assert gone.status_code == 401


def test_refresh_mode_editor_sees_drafts(bff_refresh: Gunicorn) -> None:
    token = login(bff_refresh, EDITOR)["jwt"]
    assert total(get(bff_refresh, "/api/articles", token, status="draft")) == 36


def test_eleven_logins_from_different_clients_all_succeed(
    bff_refresh: Gunicorn, strapi_refresh_mode: Strapi
) -> None:
    for i in range(11):
        login(bff_refresh, READER, address=f"203.0.113.{i + 1}")
    # The control: Strapi's own limit is live, and 11 logins of ONE address straight to it fail.
    direct = [
        requests.post(
            f"{strapi_refresh_mode.url}/api/auth/local",
            json=READER,
            headers={"X-Forwarded-For": "192.0.2.250"},
            timeout=10,
        ).status_code
        for _ in range(11)
    ]
    assert direct == [200] * 10 + [429]


def test_bffproxy_limits_one_client_across_workers(bff_refresh: Gunicorn) -> None:
    address = next(_addresses)
    statuses = [
        requests.post(
            f"{bff_refresh.url}/api/auth/local", json=READER, headers={"X-Forwarded-For": address}, timeout=10
        )
        for _ in range(11)
    ]
    assert [r.status_code for r in statuses[:10]] == [200] * 10
    refused = statuses[10]
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "rate_limited"  # bffproxy's envelope, not Strapi's
    assert 1 <= int(refused.headers["Retry-After"]) <= 60


def test_the_limit_holds_across_instances_sharing_redis(
    start_bff: Callable[..., Gunicorn], strapi_refresh_mode: Strapi, redis_server: RedisServer
) -> None:
    common = {
        "STRAPI_URL": strapi_refresh_mode.url,
        "STRAPI_API_TOKEN": strapi_refresh_mode.api_token,
        "STRAPI_JWT_SECRET": strapi_refresh_mode.jwt_secret,
        "TRUSTED_PROXIES": 1,
        "REDIS_URL": redis_server.url,
        "LOGIN_RATE_LIMIT": "3/60",
    }
    instances = [start_bff(**common), start_bff(**common)]
    address = next(_addresses)
    statuses = [
        requests.post(
            f"{instances[i % 2].url}/api/auth/local",
            json=READER,
            headers={"X-Forwarded-For": address},
            timeout=10,
        ).status_code
        for i in range(4)
    ]
    assert statuses == [200, 200, 200, 429]


def test_status_as_an_array_gets_no_drafts(bff_legacy: Gunicorn, strapi_live: Strapi) -> None:
    # Real Strapi reads status=published twice, or status[0]=published, as "not published": drafts.
    leaky = ("status=published&status=published", "status[0]=published")
    for query in leaky:
        assert total(strapi_live.get(f"api/articles?{query}")) == 36, query
    reader = login(bff_legacy, READER)["jwt"]
    for query in leaky:
        url = f"{bff_legacy.url}/api/articles?{query}"
        assert requests.get(url, timeout=10).status_code == 400, query
        signed_in = requests.get(url, headers={"Authorization": f"Bearer {reader}"}, timeout=10)
        assert signed_in.status_code == 400, query  # refused by the router before any role check
        assert signed_in.json()["error"]["code"] == "invalid_parameter", query
