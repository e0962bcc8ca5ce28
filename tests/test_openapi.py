"""The API description: generated from the route table and the schemas, complete, per tenant, served well."""

from __future__ import annotations

import importlib
import json
import pkgutil
import re
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest
from flask import Flask
from flask.testing import FlaskClient
from schemathesis.specs.openapi.definitions import OPENAPI_31

import bffproxy
from bffproxy import create_app, openapi
from bffproxy.errors import ApiError
from bffproxy.query import STRAPI_READ_PARAMS
from bffproxy.reads import PUBLICATION_PARAMS

from .strapi_tokens import SECRET, bearer, legacy_token, serve_users

TENANTS = """
[tenants.acme]
hosts = ["acme.test"]
strapi_url = "http://acme-strapi.test"
strapi_api_token = "acme-api-token"
strapi_jwt_secret = "acme-jwt-secret-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
collections = ["articles", "categories", "homepage"]
single_types = ["homepage"]

[tenants.acme.policies]
articles = "read=public,drafts=editor,write=editor"

[tenants.acme.cors]
origins = ["https://app.acme.test"]

[tenants.beta]
hosts = ["beta.test"]
path_prefix = "/t/beta"
strapi_url = "http://beta-strapi.test"
strapi_api_token = "beta-api-token"
strapi_jwt_secret = "beta-jwt-secret-bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
collections = ["articles"]
single_types = []
"""
ACME, BETA = {"Host": "acme.test"}, {"Host": "beta.test"}


@pytest.fixture
def config(config: dict[str, Any]) -> dict[str, Any]:
    """Every kind of route: collections, a single type, writes with policies, a JWT secret."""
    config.update(
        COLLECTIONS="articles,categories,homepage",
        SINGLE_TYPES="homepage",
        STRAPI_JWT_SECRET="s" * 32,
        POLICIES={
            "articles": "read=public,drafts=editor,write=editor",
            "categories": "read=public,write=editor",
            "homepage": "read=public,drafts=editor,write=editor",
            "upload": "read=public,write=editor",
        },
        QUERY_PARAMS={"articles": "_q"},
    )
    return config


@pytest.fixture
def document(client: FlaskClient) -> dict[str, Any]:
    answer = client.get("/openapi.json")
    assert answer.status_code == 200
    return answer.get_json()  # type: ignore[no-any-return]


@pytest.fixture
def tenants_app(tmp_path: Path, config: dict[str, Any]) -> Flask:
    path = tmp_path / "tenants.toml"
    path.write_text(TENANTS)
    shared = {
        k: v for k, v in config.items() if k not in ("POLICIES", "QUERY_PARAMS")
    }  # per tenant in the file
    return create_app({**shared, "TENANTS_FILE": str(path)})


def operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(path, method, op) for path, item in document["paths"].items() for method, op in item.items()]


# -- complete: every route, every error code ---------------------------------------------------------


def test_every_route_of_the_app_has_a_describer_that_describes_each_of_its_methods(app: Flask) -> None:
    missing = []
    with app.test_request_context("/openapi.json"):
        tenant = next(iter(app.extensions["bffproxy.tenants"]))
        context = openapi.new_context(tenant)
        for rule in app.url_map.iter_rules():
            methods = sorted((rule.methods or set()) - {"HEAD", "OPTIONS"})
            describe = openapi.DESCRIBERS.get(rule.endpoint)
            described = {op.method for op in describe(context, rule)} if describe else set()
            missing += [
                f"{method} {rule.rule} ({rule.endpoint})"
                for method in methods
                if method.lower() not in described
            ]
    assert not missing, (
        "Routes without a description in the OpenAPI document: add a describer for each endpoint to "
        f"bffproxy/openapi.py DESCRIBERS: {missing}"
    )


def test_a_route_nobody_described_still_appears_marked_undescribed(config: dict[str, Any]) -> None:
    app = create_app(config)
    app.add_url_rule("/api/widgets/<int:widget_id>", "widgets.spin", lambda widget_id: "", methods=["PATCH"])
    document = app.test_client().get("/openapi.json").get_json()
    op = document["paths"]["/api/widgets/{widget_id}"]["patch"]
    assert op["x-undescribed"] is True and op["x-endpoint"] == "widgets.spin"
    assert [p["name"] for p in op["parameters"]] == ["widget_id"]


def all_error_classes() -> list[type[ApiError]]:
    for module in pkgutil.iter_modules(bffproxy.__path__):
        importlib.import_module(f"bffproxy.{module.name}")
    found, todo = [], [ApiError]
    while todo:
        cls = todo.pop()
        found.append(cls)
        todo.extend(cls.__subclasses__())
    return found


def test_every_error_code_is_listed_in_the_envelope_with_its_status(document: dict[str, Any]) -> None:
    error = document["components"]["schemas"]["Error"]
    listed = error["x-error-codes"]
    assert set(error["properties"]["error"]["properties"]["code"]["enum"]) == set(listed)
    missing = [
        f"{cls.__module__}.{cls.__name__} ({cls.code}, {cls.status})"
        for cls in all_error_classes()
        if cls.status not in listed.get(cls.code, [])
    ]
    assert not missing, f"error codes missing from the document's Error envelope: {missing}"
    assert {"upstream_unavailable", "drafts_not_allowed", "validation_failed", "method_not_allowed"} <= set(
        listed
    )


def test_the_token_loaders_codes_are_listed_too(document: dict[str, Any]) -> None:
    source = Path(bffproxy.__file__).with_name("auth.py").read_text()
    loader_codes = set(re.findall(r'_unauthorized\("([a-z_]+)"', source))
    assert loader_codes and loader_codes <= set(document["components"]["schemas"]["Error"]["x-error-codes"])


def test_each_error_status_names_its_codes(document: dict[str, Any]) -> None:
    answer = document["paths"]["/api/articles"]["get"]["responses"]["400"]
    assert "`drafts_not_allowed`" in answer["description"] and "`invalid_parameter`" in answer["description"]
    assert {"$ref": "#/components/schemas/StrapiError"} in answer["content"]["application/json"]["schema"][
        "anyOf"
    ]
    assert "500" not in answer and all("500" not in op["responses"] for _, _, op in operations(document))


# -- valid, and made from the code ------------------------------------------------------------------


def test_the_document_is_valid_openapi_3_1(document: dict[str, Any]) -> None:
    assert document["openapi"] == "3.1.0"
    errors = [str(e) for e in jsonschema_rs.Draft202012Validator(OPENAPI_31).iter_errors(document)]
    assert not errors, errors[:3]
    ids = [op["operationId"] for _, _, op in operations(document)]
    assert len(ids) == len(set(ids))


def test_write_bodies_are_the_marshmallow_schemas(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    create = document["paths"]["/api/articles"]["post"]["requestBody"]["content"]["application/json"][
        "schema"
    ]
    assert create == {
        "type": "object",
        "properties": {"data": {"$ref": "#/components/schemas/ArticlesInput"}},
        "required": ["data"],
        "additionalProperties": False,
    }
    article = schemas["ArticlesInput"]
    assert article["required"] == ["title"] and article["additionalProperties"] is False
    assert article["properties"]["title"] == {"type": "string", "minLength": 1, "maxLength": 200}
    assert article["properties"]["section"]["enum"] == ["news", "opinion", "guide", None]
    assert article["properties"]["slug"]["pattern"] == "^[A-Za-z0-9\\-_.~]*$"  # anchored, no Python \Z
    assert "required" not in schemas["ArticlesChanges"]  # a PUT is partial
    assert (
        schemas["CategoriesInput"]["properties"]["articles"]["description"]
        == "A relation to `articles` (documentIds)."
    )
    flat = schemas["ArticlesFlat"]
    assert flat["properties"]["content"]["type"] == ["string", "null"] and flat["not"] == {
        "required": ["content", "body"]
    }


def test_the_slug_pattern_accepts_and_refuses_what_the_schema_does(document: dict[str, Any]) -> None:
    slug = document["components"]["schemas"]["ArticlesInput"]["properties"]["slug"]
    validator = jsonschema_rs.Draft202012Validator(slug)  # ECMA-262 regexes, as JSON Schema reads them
    assert validator.is_valid("a-b_c.d~e") and validator.is_valid(None)
    assert not validator.is_valid("a b") and not validator.is_valid("ok\n")


def test_read_parameters_are_the_read_routers_allow_list(app: Flask, document: dict[str, Any]) -> None:
    router = next(iter(app.extensions["bffproxy.tenants"])).router
    for path, collection in (("/api/articles", "articles"), ("/api/categories", "categories")):
        query = {p["name"] for p in document["paths"][path]["get"]["parameters"] if p["in"] == "query"}
        assert query == router.allowed[collection], path
    assert STRAPI_READ_PARAMS | PUBLICATION_PARAMS | {"_q"} == router.allowed["articles"]


def test_open_ended_parameters_are_bracketed_objects_a_fuzzer_can_fill(document: dict[str, Any]) -> None:
    params = {p["name"]: p for p in document["paths"]["/api/articles"]["get"]["parameters"]}
    assert params["filters"]["style"] == "deepObject" and params["filters"]["schema"] == {
        "$ref": "#/components/schemas/ArticlesFilters"
    }
    filters = document["components"]["schemas"]["ArticlesFilters"]
    assert "category" not in filters["properties"]  # relations are not filterable here
    assert filters["properties"]["title"] == {"$ref": "#/components/schemas/FilterOperators"}
    assert filters["properties"]["$or"]["items"] == {"$ref": "#/components/schemas/ArticlesFieldFilters"}
    assert params["fields"]["explode"] is True and "title" in params["fields"]["schema"]["items"]["enum"]
    assert params["status"]["schema"]["enum"] == ["published", "draft"]
    one = {p["name"] for p in document["paths"]["/api/articles/{documentId}"]["get"]["parameters"]}
    assert "filters" not in one and "documentId" in one


def test_each_collection_and_single_type_gets_the_routes_strapi_gives_it(document: dict[str, Any]) -> None:
    paths = document["paths"]
    assert set(paths["/api/homepage"]) == {"get", "head", "put", "delete"}
    assert set(paths["/api/articles"]) == {"get", "head", "post"}
    assert "/api/homepage/{documentId}" not in paths
    assert "post" in paths["/api/articles/{documentId}/unpublish"]
    assert "/api/categories/{documentId}/publish" not in paths  # categories have no drafts
    assert paths["/api/articles"]["post"]["security"] == [{"strapiJwt": []}]
    assert paths["/api/articles"]["get"]["security"] == [{}, {"strapiJwt": []}]
    assert paths["/admin/cache/purge"]["post"]["security"] == [{"adminToken": []}]
    assert paths["/webhooks/strapi"]["post"]["security"] == [{"webhookSecret": []}]
    assert list(paths["/api/events"]["get"]["responses"]["200"]["content"]) == ["text/event-stream"]
    assert set(document["components"]["securitySchemes"]) == {"strapiJwt", "adminToken", "webhookSecret"}


def test_no_static_files_route(app: Flask) -> None:
    assert "static" not in {rule.endpoint for rule in app.url_map.iter_rules()}


# -- served: per tenant, memoised, conditional, prefixed ------------------------------------------------


def test_each_tenant_gets_its_own_document(tenants_app: Flask) -> None:
    client = tenants_app.test_client()
    acme = client.get("/openapi.json", headers=ACME).get_json()
    beta = client.get("/openapi.json", headers=BETA).get_json()
    assert "/api/categories" in acme["paths"] and "/api/categories" not in beta["paths"]
    assert acme["info"]["title"] == "bffproxy (acme)" and beta["info"]["title"] == "bffproxy (beta)"


def test_the_document_is_made_once_per_tenant(tenants_app: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
    made = []
    build = openapi.build_document
    monkeypatch.setattr(openapi, "build_document", lambda *a: made.append(a[1].name) or build(*a))
    client = tenants_app.test_client()
    for _ in range(3):
        client.get("/openapi.json", headers=ACME)
        client.get("/openapi.json", headers=BETA)
    assert made == ["acme", "beta"]


def test_an_unknown_tenant_gets_the_envelope(tenants_app: Flask) -> None:
    client = tenants_app.test_client()
    for path in ("/openapi.json", "/docs", "/docs/swagger-ui.css"):
        answer = client.get(path, headers={"Host": "nobody.test"})
        assert answer.status_code == 404 and answer.get_json()["error"]["code"] == "unknown_tenant", path


def test_under_a_path_prefix_the_document_names_its_server_and_the_page_works(tenants_app: Flask) -> None:
    client = tenants_app.test_client()
    document = client.get("/t/beta/openapi.json").get_json()
    assert document["servers"] == [{"url": "/t/beta"}] and document["info"]["title"] == "bffproxy (beta)"
    assert "servers" not in client.get("/openapi.json", headers=BETA).get_json()  # by host: no prefix
    page = client.get("/t/beta/docs").get_data(as_text=True)
    assert 'data-spec="openapi.json"' in page and 'src="docs/swagger-ui-bundle.js"' in page
    assert client.get("/t/beta/docs/swagger-ui.css").status_code == 200


def test_etag_head_and_revalidation(client: FlaskClient) -> None:
    first = client.get("/openapi.json")
    assert (
        first.headers["Cache-Control"] == "no-cache" and first.headers["Content-Type"] == "application/json"
    )
    etag = first.headers["ETag"]
    head = client.head("/openapi.json")
    assert head.status_code == 200 and head.data == b"" and head.headers["ETag"] == etag
    assert int(head.headers["Content-Length"]) == len(first.data)
    again = client.get("/openapi.json", headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.data == b""
    assert client.get("/openapi.json", headers={"If-None-Match": '"other"'}).status_code == 200


def test_cors_applies_to_the_document_as_to_any_answer(tenants_app: Flask) -> None:
    client = tenants_app.test_client()
    allowed = client.get("/openapi.json", headers={**ACME, "Origin": "https://app.acme.test"})
    assert allowed.headers["Access-Control-Allow-Origin"] == "https://app.acme.test"
    other = client.get("/openapi.json", headers={**ACME, "Origin": "https://evil.test"})
    assert "Access-Control-Allow-Origin" not in other.headers and "Origin" in other.headers["Vary"]


# -- /docs ----------------------------------------------------------------------------------------------


def test_the_page_runs_only_its_own_scripts_and_is_never_framed(client: FlaskClient) -> None:
    page = client.get("/docs")
    assert page.status_code == 200 and page.mimetype == "text/html"
    csp = page.headers["Content-Security-Policy"]
    assert "script-src 'self';" in csp and "frame-ancestors 'none'" in csp and "default-src 'none'" in csp
    assert page.headers["X-Frame-Options"] == "DENY"
    assert "<script>" not in page.get_data(as_text=True)  # no inline script: the CSP would block it
    assert "//" not in re.sub(r"<!doctype html>", "", page.get_data(as_text=True))  # nothing absolute, no CDN


@pytest.mark.parametrize(
    ("asset", "mimetype"),
    [
        ("swagger-ui-bundle.js", "application/javascript"),
        ("swagger-ui.css", "text/css"),
        ("favicon-32x32.png", "image/png"),
        ("docs.js", "application/javascript"),
    ],
)
def test_the_page_files_come_from_the_package(client: FlaskClient, asset: str, mimetype: str) -> None:
    answer = client.get(f"/docs/{asset}")
    assert answer.status_code == 200 and answer.mimetype == mimetype
    assert answer.headers["X-Content-Type-Options"] == "nosniff" and answer.headers.get("ETag")
    assert client.get(f"/docs/{asset}", headers={"If-None-Match": answer.headers["ETag"]}).status_code == 304


@pytest.mark.parametrize(
    "asset",
    ["index.html", "swagger-ui-bundle.js.map", "..", "%2e%2e", "..%2f__init__.py", "oauth2-redirect.html"],
)
def test_only_the_pages_files_are_served(client: FlaskClient, asset: str) -> None:
    answer = client.get(f"/docs/{asset}")
    assert answer.status_code == 404 and answer.get_json()["error"]["code"] == "not_found"


def test_the_page_shows_swagger_ui_4_the_document_as_openapi_3_0(client: FlaskClient) -> None:
    script = client.get("/docs/docs.js").get_data(as_text=True)
    assert openapi.SWAGGER_UI_VERSION.startswith("4.") and 'spec.openapi = "3.0.3"' in script
    assert "root.dataset.spec" in script and "nullable" in script


def test_the_document_is_byte_for_byte_the_same_in_every_worker(config: dict[str, Any]) -> None:
    first = create_app(config).test_client().get("/openapi.json")
    second = create_app(config).test_client().get("/openapi.json")
    assert first.data == second.data and first.headers["ETag"] == second.headers["ETag"]
    json.loads(first.data)


# -- fuzzing the app against its own document, Strapi faked ------------------------------------------


def fake_strapi(request: Any) -> tuple[int, dict[str, str], str]:
    """Strapi answering every call the way it answers a good one: lists, documents, writes, files."""
    path, headers = request.path_url.split("?", 1)[0], {"Content-Type": "application/json; charset=utf-8"}
    if request.method == "DELETE":
        return 204, {}, ""
    if path == "/admin/login":  # the admin session that unpublishes (no exp: renewed after 25 min)
        return 200, headers, json.dumps({"data": {"token": "admin-session-token"}})
    if request.method in ("POST", "PUT"):
        created = request.method == "POST" and path.count("/") == 2 and not path.startswith("/api/auth")
        status = 201 if created else 200
        return status, headers, json.dumps({"data": {"documentId": "d" * 24}})
    if path.startswith("/uploads/"):
        return 404, headers, json.dumps({"data": None, "error": {"status": 404, "name": "NotFoundError"}})
    if path.startswith("/api/upload/files"):
        return 200, headers, json.dumps([] if path.endswith("files") else {"id": 1, "name": "a.png"})
    one = path.count("/") == 3 or path.endswith("homepage")
    data: Any = {"id": 1, "documentId": "d" * 24, "title": "t"} if one else []
    return 200, headers, json.dumps({"data": data, "meta": {}})


@pytest.fixture
def wsgi_schema(config: dict[str, Any], strapi: Any) -> Any:
    """The app's own document, loaded by schemathesis from the app (Strapi faked for every call)."""
    import schemathesis

    serve_users(strapi)
    for method in ("GET", "HEAD", "POST", "PUT", "DELETE"):
        strapi.add_callback(method, re.compile(r"http://strapi\.test/.*"), callback=fake_strapi)
    config.update(WEBHOOK_SECRET="hook-secret", ADMIN_TOKEN="admin-token", STRAPI_JWT_SECRET=SECRET)
    config.update(STRAPI_ADMIN_EMAIL="admin@example.com", STRAPI_ADMIN_PASSWORD="Admin-Passw0rd!")
    app = create_app(config)
    # The event stream never ends: it is described, but not called here.
    return schemathesis.openapi.from_wsgi("/openapi.json", app).exclude(path_regex="^/api/events")


def no_server_error(ctx: Any, response: Any, case: Any) -> None:
    """No 5xx but a 502/503/504 (Strapi failing), which the document lists where it can happen."""
    assert response.status_code < 500 or response.status_code in (502, 503, 504), response.text[:300]


def fuzz_checks() -> list[Any]:
    """Conformance to the document: statuses, content types, bodies; and no 500."""
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

    return [no_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


def credentials(
    operation: Any, secrets: dict[str, dict[str, str]], signed_in: bool = False
) -> dict[str, str]:
    """The headers of the operation's first security alternative we hold (anonymous where allowed,
    unless ``signed_in`` asks for a credential wherever one is accepted)."""
    for requirement in operation.definition.raw.get("security", [{}]):
        if signed_in and not requirement and len(operation.definition.raw.get("security", [])) > 1:
            continue
        if all(scheme in secrets for scheme in requirement):
            return {k: v for scheme in requirement for k, v in secrets[scheme].items()}
    return {}


def fuzz(
    schema: Any,
    max_examples: int,
    secrets: dict[str, dict[str, str]],
    signed_in: bool = False,
    extra_checks: tuple[Any, ...] = (),
    **call: Any,
) -> dict[str, str]:
    """Run each operation of ``schema`` on ``max_examples`` generated cases; the first failure of each.

    Hypothesis drives schemathesis' strategies directly (its pytest plugin does not run on pytest 9).
    """
    failures: dict[str, str] = {}
    for result in schema.get_all_operations():
        operation = result.ok()
        try:
            headers = credentials(operation, secrets, signed_in)
            fuzz_operation(operation, max_examples, headers, [*fuzz_checks(), *extra_checks], call)
        except (Exception, BaseExceptionGroup) as exc:  # the report names the case and how to reproduce it
            failures[operation.label] = str(exc)[:3000]
    return failures


def fuzz_operation(
    operation: Any, max_examples: int, headers: dict[str, str], checks: list[Any], call: dict[str, Any]
) -> None:
    """Valid input (what the document allows) and invalid input (what it refuses), half and half."""
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import strategies as st
    from schemathesis import GenerationMode

    cases = st.one_of(
        operation.as_strategy(mode) for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    )

    @settings(
        max_examples=max_examples,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=cases)
    def run(case: Any) -> None:
        case.call_and_validate(checks=checks, headers=headers, **call)

    run()


def test_the_app_answers_as_its_document_says(wsgi_schema: Any) -> None:
    secrets = {
        "strapiJwt": bearer(legacy_token(2)),  # the editor: writes reach the fake Strapi
        "adminToken": bearer("admin-token"),
        "webhookSecret": {"X-Webhook-Secret": "hook-secret"},
    }
    failures = fuzz(wsgi_schema, 15, secrets)
    assert not failures, "\n\n".join(f"{label}:\n{text}" for label, text in failures.items())


def test_the_envelope_codes_of_the_shipped_nginx_are_listed(document: dict[str, Any]) -> None:
    site = Path(bffproxy.__file__).parent.parent / "deploy" / "nginx"
    found = {
        (code, int(status))
        for conf in site.glob("*.conf")
        for status, code in re.findall(r'"status": (\d+), "code": "([a-z_]+)"', conf.read_text())
    }
    listed = document["components"]["schemas"]["Error"]["x-error-codes"]
    assert found and [pair for pair in found if pair[1] not in listed.get(pair[0], [])] == []


def test_a_long_query_may_be_refused_before_bffproxy_and_that_is_documented(document: dict[str, Any]) -> None:
    too_long = document["paths"]["/api/articles"]["get"]["responses"]["414"]
    assert set(too_long["content"]) == {"application/json", "text/html"}  # nginx's envelope, gunicorn's page
    assert "414" not in document["paths"]["/healthz"]["get"]["responses"]  # no query, nothing to grow


def test_with_a_tenant_header_the_document_varies_on_it(tmp_path: Path, config: dict[str, Any]) -> None:
    path = tmp_path / "tenants.toml"
    path.write_text(TENANTS)
    shared = {k: v for k, v in config.items() if k not in ("POLICIES", "QUERY_PARAMS")}
    client = create_app({**shared, "TENANTS_FILE": str(path), "TENANT_HEADER": "X-Tenant"}).test_client()
    acme = client.get("/openapi.json", headers={"X-Tenant": "acme"})
    beta = client.get("/openapi.json", headers={"X-Tenant": "beta"})
    assert acme.headers["ETag"] != beta.headers["ETag"]  # one URL, two documents: caches must key on it
    assert "X-Tenant" in acme.headers["Vary"] and "X-Tenant" in beta.headers["Vary"]
    assert client.get("/openapi.json", headers={"X-Tenant": "nobody"}).status_code == 404


def test_a_tenant_with_hundreds_of_collections_is_described_once(config: dict[str, Any]) -> None:
    config["COLLECTIONS"] = ",".join(["articles", "categories", "homepage", *(f"c{i}" for i in range(200))])
    app = create_app(config)
    client = app.test_client()
    document = client.get("/openapi.json").get_json()
    assert "/api/c199/{documentId}" in document["paths"] and "post" not in document["paths"]["/api/c199"]
    assert client.get("/openapi.json").status_code == 200 and len(app.extensions["bffproxy.openapi"]) == 1


def test_an_error_status_admits_only_its_own_codes(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    narrowed = schemas["Error400"]["allOf"][1]["properties"]["error"]["properties"]
    assert narrowed["status"] == {"const": 400} and "invalid_parameter" in narrowed["code"]["enum"]
    assert "not_found" not in narrowed["code"]["enum"]
    registry = {"$defs": schemas}
    envelope = json.loads(json.dumps(schemas["Error400"]).replace("#/components/schemas/", "#/$defs/"))
    validator = jsonschema_rs.Draft202012Validator({**envelope, **registry})
    error = {"status": 400, "code": "invalid_parameter", "message": "m", "request_id": "r"}
    assert validator.is_valid({"error": error})
    assert not validator.is_valid({"error": {**error, "code": "not_found"}})
    assert not validator.is_valid({"error": {**error, "status": 404}})


def test_the_event_streams_parameters_are_its_allow_list(document: dict[str, Any]) -> None:
    from bffproxy.event_feed import FILTERS

    params = document["paths"]["/api/events"]["get"]["parameters"]
    assert {p["name"] for p in params if p["in"] == "query"} == FILTERS | {"ticket"}
    assert all(p["description"] != "A filter." for p in params), "describe the new filter in EVENT_FILTERS"


@pytest.mark.parametrize("path", ["/openapi.json", "/docs/swagger-ui.css"])
def test_a_range_is_not_served_a_whole_answer_is(client: FlaskClient, path: str) -> None:
    whole = client.get(path)
    ranged = client.get(path, headers={"Range": "bytes=0-9", "If-Range": whole.headers["ETag"]})
    assert ranged.status_code == 200 and ranged.data == whole.data and "Content-Range" not in ranged.headers
    assert client.get(path, headers={"If-None-Match": "*"}).status_code == 304


def test_only_routes_of_a_tenant_may_be_an_unknown_tenant(document: dict[str, Any]) -> None:
    assert "404" not in document["paths"]["/healthz"]["get"]["responses"]  # health answers on any host
    assert "404" in document["paths"]["/admin/cache/purge"]["post"]["responses"]  # admin_disabled
    assert "404" in document["paths"]["/api/me"]["get"]["responses"]


def test_a_body_refused_before_any_view_is_documented_on_every_route(
    client: FlaskClient, document: dict[str, Any]
) -> None:
    """bodies.BodyLimit refuses a body too large (413), too slow (408) or unreadable (400) before
    any view, on every route: POST /api/events/ticket with 2 MiB was an undocumented 413."""
    answer = client.post("/api/events/ticket", data=b"x" * (2 * 1024 * 1024), content_type="application/json")
    assert answer.status_code == 413
    undocumented = [
        f"{method.upper()} {path}"
        for path, item in document["paths"].items()
        for method, op in item.items()
        if isinstance(op, dict) and "responses" in op and not {"400", "408", "413"} <= set(op["responses"])
    ]
    assert undocumented == []
