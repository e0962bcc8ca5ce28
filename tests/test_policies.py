"""Per-collection policies and the access decorators (require_auth / require_role / require_permission)."""

from __future__ import annotations

from typing import Any

import pytest
import responses
from flask import Flask, jsonify
from flask.testing import FlaskClient

from bffproxy import create_app
from bffproxy.auth import current_identity, require_auth, require_permission, require_role
from bffproxy.policies import load_policies, parse_policy
from bffproxy.settings import ConfigError

from .strapi_tokens import POLICIES, SECRET, bearer, legacy_token, serve_users, strapi_paths

READER, EDITOR = legacy_token(1), legacy_token(2)


@pytest.fixture
def config(config: dict[str, Any]) -> dict[str, Any]:
    config.update(
        STRAPI_JWT_SECRET=SECRET,
        POLICIES={**POLICIES, "categories": {"read": "*", "write": "none", "publish": ["editor", "admin"]}},
    )
    return config


@pytest.fixture
def app(config: dict[str, Any]) -> Flask:
    """An app with test routes behind each decorator."""
    application = create_app(config)

    @require_permission("write")
    def write(collection: str) -> Any:
        identity = current_identity()
        return jsonify(collection=collection, role=identity.role if identity else None)

    @require_permission("read")
    def read(collection: str) -> Any:
        identity = current_identity()
        return jsonify(role=identity.role if identity else None)

    @require_role("editor", "admin")
    def editors_only() -> Any:
        return jsonify(ok=True)

    @require_auth
    def anyone_signed_in() -> Any:
        return jsonify(ok=True)

    application.add_url_rule("/t/<collection>/write", view_func=write, methods=["POST"])
    application.add_url_rule("/t/<collection>/read", view_func=read)
    application.add_url_rule("/t/editors", view_func=editors_only)
    application.add_url_rule("/t/signed-in", view_func=anyone_signed_in)
    return application


@pytest.fixture
def users(strapi: responses.RequestsMock) -> responses.RequestsMock:
    serve_users(strapi)
    return strapi


def test_parse_policy_text_and_mapping() -> None:
    assert parse_policy("K", "read=public, drafts=editor|admin ,write=none") == {
        "read": frozenset({"public"}),
        "drafts": frozenset({"editor", "admin"}),
        "write": frozenset(),
    }
    assert parse_policy("K", {"write": ["editor"], "read": "*"}) == {
        "write": frozenset({"editor"}),
        "read": frozenset({"*"}),
    }


def test_defaults_are_safe() -> None:
    policies = load_policies({"COLLECTIONS": ("articles", "categories"), "POLICIES": {}})
    assert policies == {
        "articles": {"read": frozenset({"public"})},
        "categories": {"read": frozenset({"public"})},
    }


@pytest.mark.parametrize(
    ("policies", "message"),
    [
        ({"users": "read=public"}, "BFFPROXY_POLICIES__users names 'users'"),
        ({"articles": "read"}, "must look like read=public"),
        ({"articles": "read=pub lic!"}, "invalid role 'lic!'"),
        ({"articles": "re ad=public"}, "invalid action"),
        ("articles=read", "set per collection"),
    ],
)
def test_bad_policies_name_the_variable(config: dict[str, Any], policies: Any, message: str) -> None:
    config["POLICIES"] = policies
    with pytest.raises(ConfigError, match=message):
        create_app(config)


def test_policies_from_nested_environment_variables(
    config: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    del config["POLICIES"]
    monkeypatch.setenv("BFFPROXY_POLICIES__articles", "drafts=editor,write=editor|admin")
    policies = create_app(config).config["POLICIES"]
    assert policies["articles"] == {
        "read": frozenset({"public"}),
        "drafts": frozenset({"editor"}),
        "write": frozenset({"editor", "admin"}),
    }
    assert policies["categories"] == {"read": frozenset({"public"})}


def test_role_cacheable_must_be_exposed(config: dict[str, Any]) -> None:
    config["ROLE_CACHEABLE"] = "articles,users"
    with pytest.raises(ConfigError, match="BFFPROXY_ROLE_CACHEABLE names 'users'"):
        create_app(config)


def test_require_permission_write(client: FlaskClient, users: responses.RequestsMock) -> None:
    anonymous = client.post("/t/articles/write")
    assert anonymous.status_code == 401
    assert anonymous.headers["WWW-Authenticate"].startswith("Bearer")
    reader = client.post("/t/articles/write", headers=bearer(READER))
    assert reader.status_code == 403
    error = reader.get_json()["error"]
    assert error["message"] == "To write 'articles' you need the role 'editor'; your role is 'authenticated'."
    assert error["details"] == {
        "action": "write",
        "collection": "articles",
        "required_roles": ["editor"],
        "role": "authenticated",
    }
    editor = client.post("/t/articles/write", headers=bearer(EDITOR))
    assert editor.get_json() == {"collection": "articles", "role": "editor"}


def test_require_permission_unexposed_collection_is_404(
    client: FlaskClient, users: responses.RequestsMock
) -> None:
    assert client.post("/t/users/write", headers=bearer(EDITOR)).status_code == 404
    assert len(users.calls) == 0  # decided before the token is even looked at


def test_an_action_nobody_has_is_403_for_everyone(client: FlaskClient, users: responses.RequestsMock) -> None:
    response = client.post("/t/categories/write", headers=bearer(EDITOR))
    assert response.status_code == 403
    assert "a role that no policy grants" in response.get_json()["error"]["message"]


def test_star_means_any_signed_in_user(client: FlaskClient, users: responses.RequestsMock) -> None:
    assert client.get("/t/categories/read").status_code == 401
    assert client.get("/t/categories/read", headers=bearer(READER)).get_json() == {"role": "authenticated"}


def test_public_read_still_rejects_a_bad_token(client: FlaskClient, users: responses.RequestsMock) -> None:
    assert client.get("/t/articles/read").get_json() == {"role": None}
    assert client.get("/t/articles/read", headers=bearer(legacy_token(secret="x" * 32))).status_code == 401


def test_non_public_read_policy_applies_to_content_reads(
    config: dict[str, Any], users: responses.RequestsMock
) -> None:
    config["POLICIES"] = {"categories": "read=editor"}
    client = create_app(config).test_client()
    assert client.get("/api/categories").status_code == 401
    forbidden = client.get("/api/categories", headers=bearer(READER))
    assert forbidden.status_code == 403
    assert "'editor'" in forbidden.get_json()["error"]["message"]
    assert strapi_paths(users) == ["/api/users/1?populate=role"]


def test_require_role_names_the_missing_roles(client: FlaskClient, users: responses.RequestsMock) -> None:
    assert client.get("/t/editors").status_code == 401
    reader = client.get("/t/editors", headers=bearer(READER))
    assert reader.status_code == 403
    assert "one of the roles 'admin', 'editor'" in reader.get_json()["error"]["message"]
    assert client.get("/t/editors", headers=bearer(EDITOR)).status_code == 200


def test_require_auth(client: FlaskClient, users: responses.RequestsMock) -> None:
    assert client.get("/t/signed-in").status_code == 401
    assert client.get("/t/signed-in", headers=bearer(READER)).status_code == 200


@pytest.mark.parametrize("policy", [{"read\n": "public"}, {"drafts\n": ["editor"]}, {"write": ["*", "a\nb"]}])
def test_a_name_with_a_line_break_is_refused(policy: dict[str, Any]) -> None:
    """Names are matched whole: a regex ``$`` would let "read\\n" through."""
    with pytest.raises(ConfigError, match="invalid"):
        parse_policy("K", policy)
