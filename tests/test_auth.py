"""Local JWT validation, role resolution, and signed-in reads (fake Strapi via responses)."""

from __future__ import annotations

import time
from typing import Any

import jwt
import pytest
import requests
import responses
from flask import Flask
from flask.testing import FlaskClient

from bffproxy import create_app
from bffproxy.extensions import cache as shared_store
from bffproxy.settings import ConfigError

from .conftest import STRAPI, strapi_list
from .strapi_tokens import (
    POLICIES,
    SECRET,
    STRAPI_LIKE_SECRET,
    access_token,
    bearer,
    crafted,
    legacy_token,
    serve_users,
    strapi_paths,
    user_body,
)

LIST = f"{STRAPI}/api/articles"


@pytest.fixture
def config(config: dict[str, Any]) -> dict[str, Any]:
    config.update(STRAPI_JWT_SECRET=SECRET, POLICIES=dict(POLICIES))
    return config


def now() -> int:
    return int(time.time())


# -- every rejection is a 401 in our envelope, before Strapi is called ----------------------------

REJECTED = {
    "another secret": lambda: legacy_token(secret="someone-elses-secret"),
    "alg none": lambda: crafted({"alg": "none", "typ": "JWT"}, {"id": 1, "exp": now() + 60}, secret=None),
    "alg None": lambda: crafted({"alg": "None"}, {"id": 1, "exp": now() + 60}, secret=None),
    "HS512 with the right secret": lambda: jwt.encode(
        {"id": 1, "exp": now() + 60}, SECRET + "-padded-to-sixty-four-bytes-for-hs512-" * 2, algorithm="HS512"
    ),
    "RS256 header, HMAC body (alg confusion)": lambda: crafted(
        {"alg": "RS256"}, {"id": 1, "exp": now() + 60}
    ),
    "tampered payload": lambda: (
        legacy_token().rsplit(".", 2)[0]
        + ".eyJpZCI6MiwiZXhwIjo5OTk5OTk5OTk5fQ."
        + legacy_token().rsplit(".", 1)[1]
    ),
    "malformed": lambda: "not-a-jwt",
    "three garbage parts": lambda: "a.b.c",
    "expired beyond the leeway": lambda: legacy_token(lifetime=-60),
    "refresh token as access token": lambda: access_token(kind="refresh"),
    "no exp": lambda: jwt.encode({"id": 1, "iat": now()}, SECRET, algorithm="HS256"),
    "no user id": lambda: jwt.encode({"iat": now(), "exp": now() + 60}, SECRET, algorithm="HS256"),
    "non-numeric userId": lambda: jwt.encode(
        {"userId": "../admin", "exp": now() + 60}, SECRET, algorithm="HS256"
    ),
    "boolean id": lambda: jwt.encode({"id": True, "exp": now() + 60}, SECRET, algorithm="HS256"),
    "issued in the future": lambda: jwt.encode(
        {"id": 1, "iat": now() + 3600, "exp": now() + 7200}, SECRET, algorithm="HS256"
    ),
    # Strapi's jsonwebtoken refuses an exp or nbf that is not a JSON number; PyJWT takes "9999999999".
    "numeric-string exp": lambda: legacy_token(exp="9999999999"),
    "numeric-string nbf": lambda: legacy_token(nbf=str(now() - 60)),
    "numeric-string iat": lambda: legacy_token(iat=str(now())),
    "boolean exp": lambda: legacy_token(exp=True),
    "null exp": lambda: legacy_token(exp=None),
    # Strapi's refresh mode accepts only {userId, type: "access"} tokens (SessionManager).
    "userId without type": lambda: jwt.encode(
        {"userId": "1", "sessionId": "abc123", "iat": now(), "exp": now() + 60}, SECRET, algorithm="HS256"
    ),
    "userId of another type": lambda: access_token(kind="Access"),
    "userId with a trailing newline": lambda: access_token("1\n"),
    "legacy id in a refresh token": lambda: legacy_token(type="refresh"),
}


@pytest.mark.parametrize("case", sorted(REJECTED))
def test_bad_tokens_are_401_without_any_strapi_call(
    case: str, client: FlaskClient, strapi: responses.RequestsMock
) -> None:
    for path in ("/api/articles", "/api/me"):
        response = client.get(path, headers=bearer(REJECTED[case]()))
        assert response.status_code == 401, (case, path, response.get_json())
        error = response.get_json()["error"]
        assert error["code"] in ("invalid_token", "token_expired")
        assert error["request_id"]
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        assert response.headers["Cache-Control"] == "no-store"
    assert len(strapi.calls) == 0


def test_expired_token_has_its_own_code(client: FlaskClient, strapi: responses.RequestsMock) -> None:
    response = client.get("/api/me", headers=bearer(legacy_token(lifetime=-60)))
    assert response.get_json()["error"]["code"] == "token_expired"


@pytest.mark.parametrize(
    "header",
    ["Basic cmVhZGVyOnB3", "Bearer", "Token abc", "Bearer a b", "Bearer a, Bearer b", "Bearerx abc"],
)
def test_other_authorization_headers_are_401(
    header: str, client: FlaskClient, strapi: responses.RequestsMock
) -> None:
    response = client.get("/api/articles", headers={"Authorization": header})
    assert response.status_code == 401
    assert len(strapi.calls) == 0


@pytest.mark.parametrize("scheme", ["bearer", "BEARER", "bEaReR", "Bearer "])
def test_the_bearer_scheme_is_case_insensitive_as_strapi_reads_it(
    scheme: str, client: FlaskClient, strapi: responses.RequestsMock
) -> None:
    """RFC 9110 11.1: the scheme is case-insensitive; Strapi splits on whitespace and lower-cases it."""
    serve_users(strapi)
    response = client.get("/api/me", headers={"Authorization": f"{scheme} {legacy_token(2)}"})
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["role"] == "editor"


def test_the_token_forwarded_to_strapi_is_the_bare_token(
    config: dict[str, Any], strapi: responses.RequestsMock
) -> None:
    config["STRAPI_API_TOKEN"] = ""
    token = access_token("1")
    strapi.get(f"{STRAPI}/api/users/me", json=user_body("1"))
    response = create_app(config).test_client().get("/api/me", headers={"Authorization": f"bearer   {token}"})
    assert response.status_code == 200
    assert strapi.calls[0].request.headers["Authorization"] == f"Bearer {token}"


def test_float_times_are_numbers_and_accepted(client: FlaskClient, strapi: responses.RequestsMock) -> None:
    serve_users(strapi)
    token = legacy_token(exp=now() + 60.5, iat=now() - 0.5, nbf=now() - 1.5)
    assert client.get("/api/me", headers=bearer(token)).status_code == 200


def test_expiry_within_the_leeway_is_accepted(client: FlaskClient, strapi: responses.RequestsMock) -> None:
    serve_users(strapi)
    response = client.get("/api/me", headers=bearer(legacy_token(lifetime=-3)))
    assert response.status_code == 200


def test_leeway_is_configurable(config: dict[str, Any], strapi: responses.RequestsMock) -> None:
    config["JWT_LEEWAY"] = 0
    response = create_app(config).test_client().get("/api/me", headers=bearer(legacy_token(lifetime=-3)))
    assert response.status_code == 401


# -- both token shapes, and role resolution ------------------------------------------------------


def test_legacy_token_resolves_the_role_with_the_server_token(
    client: FlaskClient, strapi: responses.RequestsMock
) -> None:
    serve_users(strapi)
    response = client.get("/api/me", headers=bearer(legacy_token(2)))
    assert response.status_code == 200
    assert response.get_json() == {
        "id": 2,
        "username": "editor",
        "email": "editor@example.com",
        "role": "editor",
    }
    assert strapi_paths(strapi) == ["/api/users/2?populate=role"]
    assert strapi.calls[0].request.headers["Authorization"] == "Bearer server-api-token"


def test_refresh_mode_access_token_is_accepted(client: FlaskClient, strapi: responses.RequestsMock) -> None:
    serve_users(strapi)
    response = client.get("/api/me", headers=bearer(access_token("1")))
    assert response.get_json()["role"] == "authenticated"
    assert strapi_paths(strapi) == ["/api/users/1?populate=role"]


def test_role_is_cached_per_tenant_and_user(
    app: Flask, client: FlaskClient, strapi: responses.RequestsMock
) -> None:
    serve_users(strapi)
    for _ in range(3):
        assert client.get("/api/me", headers=bearer(legacy_token(1))).status_code == 200
    client.get("/api/me", headers=bearer(legacy_token(2)))
    assert strapi_paths(strapi) == ["/api/users/1?populate=role", "/api/users/2?populate=role"]
    with app.app_context():
        assert shared_store.get("auth:user:default:1")["role"] == "authenticated"


def test_role_cache_ttl_zero_asks_strapi_every_time(
    config: dict[str, Any], strapi: responses.RequestsMock
) -> None:
    config["ROLE_CACHE_TTL"] = 0
    serve_users(strapi)
    client = create_app(config).test_client()
    client.get("/api/me", headers=bearer(legacy_token(1)))
    client.get("/api/me", headers=bearer(legacy_token(1)))
    assert len(strapi.calls) == 2


def test_blocked_user_is_403(client: FlaskClient, strapi: responses.RequestsMock) -> None:
    serve_users(strapi, blocked=True)
    response = client.get("/api/articles", headers=bearer(legacy_token(1)))
    assert response.status_code == 403
    assert response.get_json()["error"]["code"] == "account_blocked"
    assert strapi_paths(strapi) == ["/api/users/1?populate=role"]


@pytest.mark.parametrize(
    "answer",
    [
        {"status": 204, "body": b""},  # what Strapi 5 answers for /api/users/<missing id> (see e2e)
        {"status": 200, "body": b""},
        {"status": 200, "body": b"null"},
        {"status": 404, "json": {"data": None, "error": {"status": 404}}},
    ],
)
def test_a_deleted_users_token_is_401_invalid_token(
    client: FlaskClient, strapi: responses.RequestsMock, answer: dict[str, Any]
) -> None:
    strapi.get(f"{STRAPI}/api/users/1", **answer)
    response = client.get("/api/me", headers=bearer(legacy_token(1)))
    assert response.status_code == 401
    error = response.get_json()["error"]
    assert (error["code"], error["message"]) == ("invalid_token", "The token's user no longer exists.")
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]


def test_a_deleted_user_is_remembered_like_a_role(
    app: Flask, client: FlaskClient, strapi: responses.RequestsMock, clock: Any
) -> None:
    strapi.get(f"{STRAPI}/api/users/1", status=204, body=b"")
    for _ in range(3):
        assert client.get("/api/articles", headers=bearer(legacy_token(1))).status_code == 401
    assert strapi_paths(strapi) == ["/api/users/1?populate=role"]  # asked once, not per request
    with app.app_context():
        shared_store.delete("auth:user:default:1")  # as when ROLE_CACHE_TTL has passed
    client.get("/api/me", headers=bearer(legacy_token(1)))
    assert len(strapi.calls) == 2


def test_a_users_me_refusal_is_401_invalid_token_and_not_remembered(
    config: dict[str, Any], strapi: responses.RequestsMock
) -> None:
    # Without an API token Strapi judges the caller's token itself: a 401 is about that token (a
    # session logged out), not the user, so it is not cached under the user's id.
    config["STRAPI_API_TOKEN"] = ""
    strapi.get(f"{STRAPI}/api/users/me", status=401, json={"data": None, "error": {"status": 401}})
    client = create_app(config).test_client()
    for _ in range(2):
        response = client.get("/api/me", headers=bearer(legacy_token(1)))
        assert response.status_code == 401
        assert response.get_json()["error"]["code"] == "invalid_token"
    assert len(strapi.calls) == 2


@pytest.mark.parametrize(
    ("failure", "status"),
    [(requests.ConnectionError("refused"), 502), (requests.ReadTimeout("slow"), 504)],
)
def test_strapi_unreachable_during_resolution_is_never_let_through(
    failure: Exception, status: int, client: FlaskClient, strapi: responses.RequestsMock
) -> None:
    strapi.get(f"{STRAPI}/api/users/1", body=failure)
    response = client.get("/api/articles", headers=bearer(legacy_token(1)))
    assert response.status_code == status
    assert "api/articles" not in " ".join(strapi_paths(strapi))


def test_strapi_refusing_the_server_token_is_502(client: FlaskClient, strapi: responses.RequestsMock) -> None:
    strapi.get(f"{STRAPI}/api/users/1", status=401, json={"data": None, "error": {"status": 401}})
    assert client.get("/api/me", headers=bearer(legacy_token(1))).status_code == 502


def test_without_api_token_the_callers_token_asks_users_me(
    config: dict[str, Any], strapi: responses.RequestsMock
) -> None:
    config["STRAPI_API_TOKEN"] = ""
    strapi.get(f"{STRAPI}/api/users/me", json=user_body("1"))
    token = legacy_token(1)
    response = create_app(config).test_client().get("/api/me", headers=bearer(token))
    assert response.get_json()["role"] == "authenticated"
    assert strapi_paths(strapi) == ["/api/users/me?populate=role"]
    assert strapi.calls[0].request.headers["Authorization"] == f"Bearer {token}"


def test_a_missing_role_in_strapis_answer_is_502_naming_the_setting(
    config: dict[str, Any], strapi: responses.RequestsMock
) -> None:
    config["STRAPI_API_TOKEN"] = ""
    body = user_body("1")
    del body["role"]  # what Strapi 5 answers when the role may not read roles
    strapi.get(f"{STRAPI}/api/users/me", json=body)
    response = create_app(config).test_client().get("/api/me", headers=bearer(legacy_token(1)))
    assert response.status_code == 502
    assert "BFFPROXY_STRAPI_API_TOKEN" in response.get_json()["error"]["message"]


# -- settings ------------------------------------------------------------------------------------


def test_without_a_secret_tokens_get_503_and_anonymous_reads_work(
    config: dict[str, Any], strapi: responses.RequestsMock
) -> None:
    config.update(STRAPI_JWT_SECRET="", POLICIES={})
    strapi.get(LIST, json=strapi_list("Public"))
    client = create_app(config).test_client()
    response = client.get("/api/articles", headers=bearer(legacy_token(1)))
    assert response.status_code == 503
    assert "BFFPROXY_STRAPI_JWT_SECRET" in response.get_json()["error"]["message"]
    assert client.get("/api/articles").status_code == 200
    assert strapi_paths(strapi) == ["/api/articles"]


def test_policies_for_roles_need_a_secret(config: dict[str, Any]) -> None:
    config["STRAPI_JWT_SECRET"] = ""
    with pytest.raises(ConfigError, match="BFFPROXY_STRAPI_JWT_SECRET is required"):
        create_app(config)


@pytest.mark.parametrize(("key", "value"), [("JWT_LEEWAY", "-1"), ("ROLE_CACHE_TTL", "soon")])
def test_bad_numbers_name_the_variable(config: dict[str, Any], key: str, value: str) -> None:
    config[key] = value
    with pytest.raises(ConfigError, match=f"BFFPROXY_{key}"):
        create_app(config)


def test_a_short_strapi_generated_secret_works_without_warnings(
    config: dict[str, Any], strapi: responses.RequestsMock
) -> None:
    config["STRAPI_JWT_SECRET"] = STRAPI_LIKE_SECRET  # filterwarnings=error would fail a warning
    serve_users(strapi)
    token = crafted(
        {"alg": "HS256", "typ": "JWT"}, {"id": 1, "iat": now(), "exp": now() + 60}, secret=STRAPI_LIKE_SECRET
    )
    response = create_app(config).test_client().get("/api/me", headers=bearer(token))
    assert response.status_code == 200


def test_secret_comes_from_the_environment(
    config: dict[str, Any], monkeypatch: pytest.MonkeyPatch, strapi: responses.RequestsMock
) -> None:
    del config["STRAPI_JWT_SECRET"]
    monkeypatch.setenv("BFFPROXY_STRAPI_JWT_SECRET", SECRET)
    serve_users(strapi)
    response = create_app(config).test_client().get("/api/me", headers=bearer(legacy_token(1)))
    assert response.status_code == 200


# -- signed-in reads -----------------------------------------------------------------------------


def test_signed_in_read_forwards_the_callers_token_privately(
    client: FlaskClient, strapi: responses.RequestsMock
) -> None:
    serve_users(strapi)
    strapi.get(LIST, json=strapi_list("Seen by reader"))
    token = legacy_token(1)
    response = client.get("/api/articles?sort=title", headers=bearer(token))
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "private, no-store"
    assert response.headers["X-Cache"] == "BYPASS"
    assert "Authorization" in response.headers["Vary"]
    read = strapi.calls[-1].request
    assert read.headers["Authorization"] == f"Bearer {token}"


def test_signed_in_answers_never_poison_the_anonymous_cache(
    client: FlaskClient, strapi: responses.RequestsMock
) -> None:
    serve_users(strapi)
    token = legacy_token(1)  # minted once: a second mint may fall in the next second
    strapi.get(LIST, json=strapi_list("Private"), match=[responses.matchers.header_matcher(bearer(token))])
    strapi.get(LIST, json=strapi_list("Public"))
    assert client.get("/api/articles", headers=bearer(token)).get_json() == strapi_list("Private")
    anonymous = client.get("/api/articles")
    assert anonymous.get_json() == strapi_list("Public")
    assert anonymous.headers["X-Cache"] == "MISS"
    assert "Authorization" not in strapi.calls[-1].request.headers


@pytest.fixture
def role_cached(config: dict[str, Any], clock: Any) -> FlaskClient:
    config["ROLE_CACHEABLE"] = "articles"
    application = create_app(config)
    application.extensions["bffproxy.cache"].clock = clock
    return application.test_client()


def _answers_by_caller(strapi: responses.RequestsMock) -> dict[int, str]:
    """Strapi answers each caller differently, so a shared entry would show.

    Returns the tokens the answers are matched on: minting "the same" token again later could
    cross a second boundary and give a different iat/exp, which no answer would match.
    """
    serve_users(strapi)
    header = responses.matchers.header_matcher
    strapi.get(LIST, json=strapi_list("As service"), match=[header(bearer("server-api-token"))])
    tokens = {}
    for user_id, role in ((1, "reader"), (2, "editor"), (3, "reader2")):
        tokens[user_id] = legacy_token(user_id)
        strapi.get(LIST, json=strapi_list(f"As {role}"), match=[header(bearer(tokens[user_id]))])
    strapi.get(LIST, json=strapi_list("Public"))
    return tokens


def test_role_cacheable_reads_are_cached_per_role_never_under_the_anonymous_key(
    role_cached: FlaskClient, strapi: responses.RequestsMock
) -> None:
    tokens = _answers_by_caller(strapi)
    strapi.get(f"{STRAPI}/api/users/3", json=user_body("3", role="authenticated"))
    reader = role_cached.get("/api/articles", headers=bearer(tokens[1]))
    assert (reader.headers["X-Cache"], reader.get_json()) == ("MISS", strapi_list("As reader"))
    assert reader.headers["Cache-Control"] == "private, no-store"
    anonymous = role_cached.get("/api/articles")
    assert (anonymous.headers["X-Cache"], anonymous.get_json()) == ("MISS", strapi_list("Public"))
    editor = role_cached.get("/api/articles", headers=bearer(tokens[2]))
    assert (editor.headers["X-Cache"], editor.get_json()) == ("MISS", strapi_list("As editor"))
    # Another user with the reader's role shares the reader's entry; the public keeps its own.
    same_role = role_cached.get("/api/articles", headers=bearer(tokens[3]))
    assert (same_role.headers["X-Cache"], same_role.get_json()) == ("HIT", strapi_list("As reader"))
    again = role_cached.get("/api/articles")
    assert (again.headers["X-Cache"], again.get_json()) == ("HIT", strapi_list("Public"))


def test_signed_in_answers_never_tell_an_nginx_cache_to_keep_them(
    role_cached: FlaskClient, strapi: responses.RequestsMock
) -> None:
    tokens = _answers_by_caller(strapi)
    assert "X-Accel-Expires" in role_cached.get("/api/articles").headers  # anonymous: it may
    for _ in range(2):  # a miss, then a hit of the role's own entry
        reader = role_cached.get("/api/articles", headers=bearer(tokens[1]))
        assert reader.headers["Cache-Control"] == "private, no-store"
        assert "X-Accel-Expires" not in reader.headers, reader.headers["X-Cache"]


def test_anonymous_entry_is_not_served_to_signed_in_callers(
    role_cached: FlaskClient, strapi: responses.RequestsMock
) -> None:
    tokens = _answers_by_caller(strapi)
    assert role_cached.get("/api/articles").headers["X-Cache"] == "MISS"
    reader = role_cached.get("/api/articles", headers=bearer(tokens[1]))
    assert (reader.headers["X-Cache"], reader.get_json()) == ("MISS", strapi_list("As reader"))


def test_bad_token_on_a_public_read_is_401_even_with_a_cached_entry(
    client: FlaskClient, strapi: responses.RequestsMock
) -> None:
    strapi.get(LIST, json=strapi_list("Public"))
    client.get("/api/articles")
    response = client.get("/api/articles", headers=bearer(legacy_token(secret="other")))
    assert response.status_code == 401
    assert len(strapi.calls) == 1


# -- drafts --------------------------------------------------------------------------------------


def test_anonymous_drafts_stay_400(client: FlaskClient, strapi: responses.RequestsMock) -> None:
    response = client.get("/api/articles?status=draft")
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "drafts_not_allowed"


@pytest.mark.parametrize("query", ["status=draft"])
def test_reader_gets_403_naming_the_drafts_role(
    query: str, client: FlaskClient, strapi: responses.RequestsMock
) -> None:
    serve_users(strapi)
    response = client.get(f"/api/articles?{query}", headers=bearer(legacy_token(1)))
    assert response.status_code == 403
    error = response.get_json()["error"]
    assert "'editor'" in error["message"] and "'authenticated'" in error["message"]
    assert error["details"]["required_roles"] == ["editor"]
    assert strapi_paths(strapi) == ["/api/users/1?populate=role"]  # no content call


def test_editor_drafts_are_fetched_with_the_server_token_and_kept_private(
    role_cached: FlaskClient, strapi: responses.RequestsMock
) -> None:
    tokens = _answers_by_caller(strapi)
    response = role_cached.get("/api/articles?status=draft", headers=bearer(tokens[2]))
    assert response.status_code == 200
    assert response.get_json() == strapi_list("As service")
    assert response.headers["Cache-Control"] == "private, no-store"
    assert "status=draft" in strapi_paths(strapi)[-1]
    # Nobody else reaches that entry: the anonymous caller is refused, the reader gets 403,
    # and the editor's own non-draft read is a different entry.
    assert role_cached.get("/api/articles?status=draft").status_code == 400
    assert role_cached.get("/api/articles?status=draft", headers=bearer(tokens[1])).status_code == 403
    plain = role_cached.get("/api/articles", headers=bearer(tokens[2]))
    assert plain.get_json() == strapi_list("As editor")


def test_drafts_without_role_cacheable_bypass_the_cache(
    client: FlaskClient, strapi: responses.RequestsMock
) -> None:
    serve_users(strapi)
    strapi.get(LIST, json=strapi_list("Draft"))
    for _ in range(2):
        response = client.get("/api/articles?status=draft", headers=bearer(legacy_token(2)))
        assert response.headers["X-Cache"] == "BYPASS"
    assert strapi_paths(strapi).count("/api/articles?status=draft") == 2


def test_signed_in_strapi_errors_pass_through_uncached(
    client: FlaskClient, strapi: responses.RequestsMock
) -> None:
    serve_users(strapi)
    strapi.get(LIST, status=403, json={"data": None, "error": {"status": 403, "name": "ForbiddenError"}})
    response = client.get("/api/articles", headers=bearer(legacy_token(1)))
    assert response.status_code == 403
    assert response.get_json()["error"]["name"] == "ForbiddenError"
    assert response.headers["Cache-Control"] == "private, no-store"


@pytest.mark.parametrize(
    "query",
    [
        "status=published&status=published",
        "status[0]=published",
        "status=bogus",
        "[status]=draft",
        "publicationState=preview",
    ],
)
def test_reader_cannot_get_drafts_with_a_status_strapi_reads_otherwise(
    query: str, client: FlaskClient, strapi: responses.RequestsMock
) -> None:
    serve_users(strapi)
    strapi.get(LIST, json=strapi_list("Draft"))
    response = client.get(f"/api/articles?{query}", headers=bearer(legacy_token(1)))
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "invalid_parameter"
    assert strapi_paths(strapi) == []  # refused by the router, before the token's user is looked up


@pytest.mark.parametrize("body", [b"<html>not Strapi</html>", b"\xff\xfe{"])
def test_a_user_answer_that_is_not_json_is_502_not_500(
    body: bytes, client: FlaskClient, strapi: responses.RequestsMock
) -> None:
    strapi.get(f"{STRAPI}/api/users/1", body=body, content_type="text/html")
    response = client.get("/api/me", headers=bearer(legacy_token(1)))
    assert response.status_code == 502
    assert response.get_json()["error"]["code"] == "upstream_error"
