"""The API description: an OpenAPI 3.1 document made from the app's own route table, and ``/docs``.

``GET /openapi.json`` is generated, not written: every rule of ``app.url_map`` is turned into
operations by the describer of its endpoint (:data:`DESCRIBERS`), for the request's tenant (its
collections, single types, extra query parameters and policies differ), then memoised per tenant.

* Paths, methods and path parameters come from the rules; ``/api/<collection>`` becomes one path per
  collection the tenant exposes (a single type only where Strapi routes one).
* Write bodies are the marshmallow schemas that validate them (schemas.py), converted by apispec's
  MarshmallowPlugin: the schema that refuses a write is the schema the document shows.
* Read query parameters are the read router's allow-list (query.py, reads.py), described as Strapi's
  ``qs`` reads them: ``filters`` and ``pagination`` are bracketed objects (``deepObject``), arrays
  repeat their name (``fields=title&fields=slug``, as qs reads it).
* Every error code is found by walking :class:`~.errors.ApiError`'s subclasses in every bffproxy
  module, with its status, into the one error envelope.
* An endpoint without a describer still appears, marked ``x-undescribed``, and tests/test_openapi.py
  fails naming it: a route cannot be added without being described.

``GET /docs`` is Swagger UI from the swagger-ui-bundle package, served from here (no CDN) under a
strict Content-Security-Policy, with relative URLs so it works under a tenant's path prefix. That
package ships Swagger UI 4.15, which renders OpenAPI 3.0 only: ``docs.js`` shows the 3.1 document
to it as 3.0 (``"type": ["string", "null"]`` becomes ``nullable``), the document itself stays 3.1.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import json
import pkgutil
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from flask import Blueprint, Flask, Response, current_app, request
from marshmallow import fields as ma_fields
from marshmallow import validate
from swagger_ui_bundle import swagger_ui_path
from werkzeug.exceptions import MethodNotAllowed
from werkzeug.exceptions import NotFound as RouteNotFound
from werkzeug.routing import Rule

from . import errors, event_feed
from .errors import ApiError
from .idempotency import HEADER as IDEMPOTENCY_HEADER
from .idempotency import KEY_MAX, REPLAYED_HEADER
from .policies import PUBLIC
from .query import BETWEEN, PARAMETER_LIMIT, QS_DEPTH, STRAPI_READ_PARAMS
from .reads import DOCUMENT_ID, PUBLICATION_PARAMS
from .request_id import HEADER as REQUEST_ID_HEADER
from .schemas import CollectionSpec, Relation, StrapiSchema, Utf16Length, spec_for
from .tenants import TENANTLESS, Tenant, current_tenant

bp = Blueprint("openapi", __name__)

OPENAPI_VERSION = "3.1.0"
# Codes the token loaders of auth.py answer with (JWTManager callbacks, not classes).
TOKEN_CODES = {"unauthorized": 401, "invalid_token": 401, "token_expired": 401}
# What the shipped nginx site (deploy/nginx) answers in the envelope itself: an oversized request
# line or header, a body over client_max_body_size, bffproxy down or slow (test_openapi checks them).
FRONT_CODES = {
    "bad_request": (400,),
    "header_too_large": (400,),
    "payload_too_large": (413,),
    "uri_too_long": (414,),
    "bff_unavailable": (502, 503),
    "bff_timeout": (504,),
}
# Werkzeug's routing errors, answered in the envelope by errors.py.
ROUTING_ERRORS = (RouteNotFound, MethodNotAllowed)
MEMO_LIMIT = 64
SWAGGER_UI_VERSION = swagger_ui_path.name.rsplit("-", 1)[-1]
ASSETS = {
    "swagger-ui-bundle.js": "application/javascript",
    "swagger-ui.css": "text/css",
    "favicon-32x32.png": "image/png",
}
DOCS_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
# Strapi's fields on every document (besides its content type's attributes).
SYSTEM_FIELDS: dict[str, Any] = {
    "id": {"type": "integer"},
    "documentId": {"type": "string"},
    "createdAt": {"type": "string"},
    "updatedAt": {"type": "string"},
    "publishedAt": {"type": ["string", "null"]},
    "locale": {"type": ["string", "null"]},
}
STRING_OPERATORS = (
    "$eq",
    "$eqi",
    "$ne",
    "$nei",
    "$lt",
    "$lte",
    "$gt",
    "$gte",
    "$contains",
    "$notContains",
    "$containsi",
    "$notContainsi",
    "$startsWith",
    "$startsWithi",
    "$endsWith",
    "$endsWithi",
)
LIST_OPERATORS = ("$in", "$notIn")
FLAG_OPERATORS = ("$null", "$notNull")
QS_NOTE = (
    "Query parameters are read as Strapi's `qs` reads them (`qs` 6, depth "
    f"{QS_DEPTH}, at most {PARAMETER_LIMIT} pairs): `[`/`]` may be percent-encoded, `+` is a space, "
    "a key that starts with `[` names the parameter inside the brackets (`[status]=draft` is "
    "`status`), a repeated name is an array (`fields=title&fields=slug`). Only the parameters listed "
    "here are accepted: any other top-level name is `400 invalid_parameter` and Strapi is not called."
)


# -- error codes -----------------------------------------------------------------------------------


def error_codes() -> dict[str, set[int]]:
    """Every error code bffproxy answers with, and its status(es): classes, loaders, routing."""
    for module in pkgutil.iter_modules(importlib.import_module("bffproxy").__path__):
        importlib.import_module(f"bffproxy.{module.name}")  # every ApiError subclass is defined
    codes: dict[str, set[int]] = {}
    for cls in _subclasses(ApiError):
        codes.setdefault(cls.code, set()).add(cls.status)
    for code, status in TOKEN_CODES.items():
        codes.setdefault(code, set()).add(status)
    for exc in ROUTING_ERRORS:
        codes.setdefault(errors._http_code(exc()), set()).add(exc.code or 500)
    for code, statuses in FRONT_CODES.items():
        codes.setdefault(code, set()).update(statuses)
    codes["outcome_unknown"].add(502)  # publishing.outcome_unknown: 502 when cut off mid-answer
    return codes


def _subclasses(cls: type[ApiError]) -> Iterator[type[ApiError]]:
    yield cls
    for sub in cls.__subclasses__():
        yield from _subclasses(sub)


def codes_by_status(codes: Mapping[str, set[int]]) -> dict[int, list[str]]:
    """The codes each status may carry."""
    found: dict[int, list[str]] = {}
    for code, statuses in sorted(codes.items()):
        for status in statuses:
            found.setdefault(status, []).append(code)
    return found


# -- marshmallow fields apispec does not know -------------------------------------------------------


def strapi_field_properties(
    self: Any, field: ma_fields.Field[Any], ret: dict[str, Any], **_: Any
) -> dict[str, Any]:
    """JSON Schema for bffproxy's own field rules: relations, UTF-16 lengths, anchored patterns."""
    if isinstance(field, Relation):
        return relation_property(field)
    for validator in field.validators:
        if isinstance(validator, Utf16Length):
            ret.pop("x-minimum", None)
            ret.pop("x-maximum", None)
            ret["minLength"], ret["maxLength"] = validator.min, validator.max
        if isinstance(validator, validate.Regexp):  # marshmallow matches from the start; \Z is $
            pattern = str(validator.regex.pattern)
            ret["pattern"] = "^" + pattern.removeprefix("^").replace(r"\Z", "$")
    return {}


def relation_property(field: Relation) -> dict[str, Any]:
    """A Strapi relation as a write accepts it: references, or connect/disconnect/set lists."""
    reference = {
        "anyOf": [
            {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"},
            {"type": "integer", "minimum": 1},
            {
                "type": "object",
                "properties": {"documentId": {"type": "string"}},
                "required": ["documentId"],
                "additionalProperties": False,
            },
        ]
    }
    references = {"type": "array", "items": reference}
    operations = {
        "type": "object",
        "properties": {op: references for op in ("connect", "disconnect", "set")},
        "additionalProperties": False,
        "minProperties": 1,
    }
    shapes = [references if field.many else reference, operations, {"type": "null"}]
    return {"anyOf": shapes, "description": f"A relation to `{field.target}` (documentIds)."}


# -- the document's parts ------------------------------------------------------------------------------


@dataclass
class Context:
    """What describers share while one tenant's document is made: the spec, the tenant, the codes."""

    spec: APISpec
    plugin: MarshmallowPlugin
    tenant: Tenant
    codes: dict[str, set[int]]
    made: set[str] = field(default_factory=set)

    def schema(self, name: str, make: Callable[[], dict[str, Any]]) -> dict[str, str]:
        """A $ref to component schema ``name``, made on first use."""
        if name not in self.made:
            self.made.add(name)
            self.spec.components.schema(name, make())
        return {"$ref": f"#/components/schemas/{name}"}

    def marshmallow(self, name: str, schema: StrapiSchema) -> dict[str, Any]:
        """The JSON Schema apispec's MarshmallowPlugin makes of ``schema``."""
        converted: dict[str, Any] = self.plugin.converter.schema2jsonschema(schema)  # type: ignore[union-attr]
        converted["title"] = name
        return converted

    def policy(self, collection: str, action: str) -> frozenset[str]:
        """The roles the tenant's policy lets ``action`` ``collection`` (``public``: anyone)."""
        policies: Mapping[str, Mapping[str, frozenset[str]]] = self.tenant.config.get("POLICIES", {})
        return policies.get(collection, {}).get(action, frozenset())


def new_context(tenant: Tenant) -> Context:
    """An empty spec for ``tenant`` with the security schemes and the error envelope."""
    plugin = MarshmallowPlugin()
    spec = APISpec(
        title=f"bffproxy ({tenant.name})",
        version=package_version(),
        openapi_version=OPENAPI_VERSION,
        plugins=[plugin],
        info={"description": info_description()},
    )
    plugin.converter.add_attribute_function(strapi_field_properties)  # type: ignore[union-attr]
    spec.components.security_scheme(
        "strapiJwt",
        {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "JWT",
            "description": "A users-permissions JWT from `POST /api/auth/local`, checked locally.",
        },
    )
    spec.components.security_scheme(
        "adminToken",
        {"type": "http", "scheme": "bearer", "description": "`BFFPROXY_ADMIN_TOKEN`, for the operator API."},
    )
    spec.components.security_scheme(
        "webhookSecret",
        {
            "type": "apiKey",
            "in": "header",
            "name": "X-Webhook-Secret",
            "description": "`BFFPROXY_WEBHOOK_SECRET`, which Strapi's webhook sends.",
        },
    )
    context = Context(spec, plugin, tenant, error_codes())
    add_error_envelope(context)
    return context


def package_version() -> str:
    """bffproxy's version (as installed), for ``info.version``."""
    try:
        return metadata.version("bffproxy")
    except metadata.PackageNotFoundError:
        return "0"


def info_description() -> str:
    """What the whole API shares: the envelope, request ids, tenants, caching."""
    return (
        "bffproxy, a caching, validating Backend-for-Frontend in front of Strapi 5. Reads and writes "
        "use Strapi's own REST paths and bodies. Every error has one JSON shape, "
        '`{"error": {"status", "code", "message", "request_id", "details"?}}` (`Error`; the codes and '
        "their statuses are listed there); Strapi's own 4xx answers pass through in Strapi's shape "
        "(`StrapiError`). Every answer carries `X-Request-ID`. A host or path prefix that matches no "
        "tenant is `404 unknown_tenant`; a request body over `BFFPROXY_MAX_CONTENT_LENGTH` is "
        "`413 payload_too_large`, one that arrives too slowly `408 request_timeout`. CORS preflights "
        "(`OPTIONS`) are answered per tenant and not listed. This document is generated from the "
        "route table for this tenant."
    )


def add_error_envelope(context: Context) -> None:
    """The ``Error`` envelope (every code with its statuses) and Strapi's own ``StrapiError``."""
    codes = context.codes
    table = "\n".join(
        f"| `{code}` | {', '.join(map(str, sorted(statuses)))} |" for code, statuses in sorted(codes.items())
    )
    error = {
        "type": "object",
        "required": ["status", "code", "message", "request_id"],
        "properties": {
            "status": {"type": "integer", "minimum": 400, "maximum": 599},
            "code": {"type": "string", "enum": sorted(codes)},
            "message": {"type": "string"},
            "request_id": {"type": ["string", "null"]},
            "details": {"description": "What the code needs to say more (a field list for 422...)."},
        },
    }
    context.spec.components.schema(
        "Error",
        {
            "type": "object",
            "required": ["error"],
            "properties": {"error": error},
            "description": f"bffproxy's error envelope.\n\n| code | status |\n|---|---|\n{table}",
            "x-error-codes": {code: sorted(statuses) for code, statuses in sorted(codes.items())},
            "examples": [
                {
                    "error": {
                        "status": 502,
                        "code": "upstream_unavailable",
                        "request_id": "5f0c9e2a",
                        "message": "Strapi is unavailable (connection failed).",
                    }
                }
            ],
        },
    )
    context.spec.components.schema(
        "StrapiError",
        {
            "type": "object",
            "required": ["error"],
            "properties": {
                "data": {"type": "null"},
                "error": {
                    "type": "object",
                    "properties": {
                        "status": {"type": "integer"},
                        "name": {"type": "string"},
                        "message": {"type": "string"},
                        "details": {},
                    },
                },
            },
            "description": "Strapi's own error body, passed through with Strapi's status.",
        },
    )
    context.made.update({"Error", "StrapiError"})


def error_response(context: Context, status: int, strapi: bool) -> dict[str, Any]:
    """The response of an error status: the envelope, or (``strapi``) Strapi's own body too."""
    listed = codes_by_status(context.codes).get(status, [])
    text = ", ".join(f"`{code}`" for code in listed) or "(none of bffproxy's own)"
    description = f"Error: {text}."
    schema: dict[str, Any] = {"$ref": "#/components/schemas/Error"}
    if listed:  # this status, with one of the codes that have it
        schema = context.schema(f"Error{status}", lambda: status_envelope(status, listed))
    if strapi:
        description += " Or Strapi's own answer with this status, passed through."
        schema = {"anyOf": [schema, {"$ref": "#/components/schemas/StrapiError"}]}
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def status_envelope(status: int, codes: list[str]) -> dict[str, Any]:
    """The envelope as answered with ``status``: only the codes that status carries."""
    narrowed = {"status": {"const": status}, "code": {"enum": codes}}
    return {
        "allOf": [
            {"$ref": "#/components/schemas/Error"},
            {"properties": {"error": {"properties": narrowed}}},
        ],
        "description": f"The error envelope with status {status}.",
    }


# -- operations ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Operation:
    """One method on one concrete path, as the document describes it."""

    path: str
    method: str
    body: dict[str, Any]


Describer = Callable[[Context, Rule], Iterable[Operation]]

STRAPI_FAILURES = (502, 503, 504)
AUTH_FAILURES = (401, 403, 503)  # 503: a token arrived but no JWT secret is configured
BODY_FAILURES = (400, 408, 413, 415, 422)
BODY_REFUSALS = (400, 408, 413)  # a body unreadable, too slow or too large: on every route


def responses(
    context: Context,
    ok: Mapping[int, dict[str, Any]],
    failures: Iterable[int],
    strapi: Iterable[int] = (),
    *,
    tenant: bool = True,
) -> dict[str, Any]:
    """The responses object: the successes given, then each error status (Strapi's too for ``strapi``).

    A route of a tenant may also be ``404 unknown_tenant``; health and admin answer on any host.
    """
    passed_through = set(strapi)
    answers: dict[str, Any] = {str(status): body for status, body in ok.items()}
    for status in sorted(set(failures) | passed_through | ({404} if tenant else set())):
        answers[str(status)] = error_response(context, status, status in passed_through)
    return answers


def json_answer(
    description: str, schema: dict[str, Any], headers: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """A JSON response."""
    answer: dict[str, Any] = {"description": description, "content": {"application/json": {"schema": schema}}}
    if headers:
        answer["headers"] = dict(headers)
    return answer


def header(description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    """A response header."""
    return {"description": description, "schema": schema or {"type": "string"}}


CACHE_HEADERS = {
    "X-Cache": header(
        "Where the answer came from.", {"type": "string", "enum": ["HIT", "MISS", "STALE", "BYPASS"]}
    ),
    "ETag": header("A strong validator (200s only): send it back in `If-None-Match`."),
    "Age": header("Seconds since the answer was stored (HIT, STALE)."),
    "Cache-Control": header("`public, max-age=..., s-maxage=...`, or `private, no-store` when signed in."),
}


def parameter(
    name: str, location: str, schema: dict[str, Any], description: str, **extra: Any
) -> dict[str, Any]:
    """One parameter object."""
    return {"name": name, "in": location, "schema": schema, "description": description, **extra}


def path_parameter(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    """A required path parameter."""
    return parameter(name, "path", schema, description, required=True)


DOCUMENT_ID_PARAM = path_parameter(
    "documentId", {"type": "string", "pattern": f"^{DOCUMENT_ID.pattern}$"}, "Strapi's stable documentId."
)
READ_HEADERS = [
    parameter(
        "If-None-Match",
        "header",
        {"type": "string"},
        "An ETag from an earlier answer: `304` when it still matches.",
    ),
    parameter(
        "Strapi-Response-Format",
        "header",
        {"type": "string", "enum": ["v4"]},
        "`v4`: Strapi's v4 answer shape.",
    ),
]
IDEMPOTENCY_PARAM = parameter(
    IDEMPOTENCY_HEADER,
    "header",
    {"type": "string", "minLength": 1, "maxLength": KEY_MAX, "pattern": "^[\\x21-\\x7e]+$"},
    "Makes the write safe to retry: the same key, query and body replay the first answer "
    f"(`{REPLAYED_HEADER}: true`); another body with it is `422`, a retry while the first runs `409`.",
)


def operation(context: Context, rule: Rule, method: str, suffix: str = "", **parts: Any) -> dict[str, Any]:
    """The common parts of an operation: its id, tag and the endpoint it documents."""
    blueprint = rule.endpoint.split(".", 1)[0]
    body = {
        "operationId": rule.endpoint
        + (f".{suffix}" if suffix else "")
        + ("" if method != "head" else ".head"),
        "tags": [blueprint],
        "x-endpoint": rule.endpoint,
        **parts,
    }
    if any(param.get("in") == "query" for param in parts.get("parameters", [])):
        body["responses"].setdefault("414", too_long(context))
    for status in BODY_REFUSALS:  # bodies.BodyLimit, before any view, whatever the route
        body["responses"].setdefault(str(status), error_response(context, status, False))
    if method == "head":
        body["summary"] = f"{parts.get('summary', '')} (headers only)"
        for answer in body["responses"].values():
            answer.pop("content", None)
    return body


def too_long(context: Context) -> dict[str, Any]:
    """414: a request line longer than the server in front allows (before bffproxy sees it)."""
    return {
        "description": "The request line is too long: `uri_too_long` from the shipped nginx (7 KiB), or "
        "gunicorn's own HTML page (`limit_request_line`, 8190 bytes) when it is exposed directly.",
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/Error"}},
            "text/html": {"schema": {"type": "string"}},
        },
    }


def security(context: Context, collection: str, action: str) -> list[dict[str, list[str]]]:
    """Anonymous or a Strapi JWT, as the tenant's policy for ``action`` says."""
    signed_in: list[dict[str, list[str]]] = [{"strapiJwt": []}]
    return [{}, *signed_in] if PUBLIC in context.policy(collection, action) else signed_in


def roles_text(context: Context, collection: str, action: str) -> str:
    """Who may, in words."""
    roles = context.policy(collection, action)
    if not roles:
        return f"Nobody may {action} `{collection}` (policy)."
    return f"Policy `{action}`: {', '.join(f'`{r}`' for r in sorted(roles))}."


# -- content reads ---------------------------------------------------------------------------------


def title_of(name: str) -> str:
    """``articles`` -> ``Articles`` (component names)."""
    return "".join(part.capitalize() for part in re.split(r"[^A-Za-z0-9]+", name))


def attribute_types(context: Context, collection: str) -> dict[str, Any]:
    """The content type's attributes as Strapi answers them (types only), from its write schema."""
    spec = spec_for(collection)
    if spec is None:
        return {}
    schema = context.marshmallow(title_of(collection), spec.schema())
    relations = spec.relations
    types = {}
    for name, prop in schema["properties"].items():
        types[name] = {} if name in relations else {"type": prop.get("type", "string")}
    return types


def document_schema(context: Context, collection: str) -> dict[str, str]:
    """One document as Strapi answers it: system fields and attributes, each optional (``fields``)."""

    def make() -> dict[str, Any]:
        spec = spec_for(collection)
        relations = ", ".join(f"`{r}`" for r in (spec.relations if spec else {})) or "none"
        return {
            "type": "object",
            "properties": {**SYSTEM_FIELDS, **attribute_types(context, collection)},
            "description": f"A `{collection}` document. Relations ({relations}) appear when populated.",
        }

    return context.schema(f"{title_of(collection)}Document", make)


def read_answer_schema(context: Context, collection: str, many: bool) -> dict[str, Any]:
    """Strapi's ``{"data": ..., "meta": ...}`` for a list or one document."""
    document = document_schema(context, collection)
    data = {"type": "array", "items": document} if many else {"anyOf": [document, {"type": "null"}]}
    return {
        "type": "object",
        "required": ["data"],
        "properties": {"data": data, "meta": {"type": "object"}},
    }


def filterable_fields(collection: str) -> list[str]:
    """Fields a filter or sort may name on ``collection`` (relations excluded: see reads.py)."""
    spec = spec_for(collection)
    own = [] if spec is None else [n for n in spec.schema().fields if n not in spec.relations]
    system = ["id", "documentId", "createdAt", "updatedAt", "publishedAt"]
    return [*system, *own]


def operators_schema(context: Context) -> dict[str, str]:
    """Strapi's filter operators on one field."""

    def make() -> dict[str, Any]:
        props: dict[str, Any] = {op: {"type": "string"} for op in STRING_OPERATORS}
        props.update(
            {op: {"type": "array", "items": {"type": "string"}, "maxItems": 5} for op in LIST_OPERATORS}
        )
        props[BETWEEN] = {"type": "array", "items": {"type": "string"}, "minItems": 2, "maxItems": 2}
        props.update({op: {"type": "boolean"} for op in FLAG_OPERATORS})
        return {
            "type": "object",
            "properties": props,
            "additionalProperties": False,
            "description": "Strapi's filter operators (`$eq`, `$in`...) on one field.",
        }

    return context.schema("FilterOperators", make)


def filters_schema(context: Context, name: str, fields: list[str]) -> dict[str, str]:
    """``filters[<field>][<operator>]=...``, with ``$and``/``$or``/``$not`` one level deep."""
    operators = operators_schema(context)
    title = title_of(name)
    flat = context.schema(
        f"{title}FieldFilters",
        lambda: {
            "type": "object",
            "properties": {f: operators for f in fields},
            "additionalProperties": False,
        },
    )

    def make() -> dict[str, Any]:
        props: dict[str, Any] = {f: operators for f in fields}
        props["$and"] = props["$or"] = {"type": "array", "items": flat, "maxItems": 3}
        props["$not"] = flat
        return {
            "type": "object",
            "properties": props,
            "additionalProperties": False,
            "description": "Strapi's `filters`, as qs brackets: `filters[title][$eq]=x`, "
            "`filters[$or][0][slug][$eq]=y`.",
        }

    return context.schema(f"{title}Filters", make)


def pagination_schema(context: Context) -> dict[str, str]:
    """Strapi's ``pagination[...]``: by page or by offset (mixing them is Strapi's 400)."""
    return context.schema(
        "Pagination",
        lambda: {
            "type": "object",
            "properties": {
                "page": {"type": "integer", "minimum": 1},
                "pageSize": {"type": "integer", "minimum": 1},
                "start": {"type": "integer", "minimum": 0},
                "limit": {"type": "integer", "minimum": 1},
                "withCount": {"type": "boolean"},
            },
            "additionalProperties": False,
            "description": "`pagination[page]=2&pagination[pageSize]=10`, or `start` and `limit`.",
        },
    )


def read_parameters(context: Context, collection: str, many: bool) -> list[dict[str, Any]]:
    """The read router's allow-list for ``collection``, as qs reads each parameter."""
    spec = spec_for(collection)
    fields = filterable_fields(collection)
    relations = sorted(spec.relations) if spec else []
    sort_pattern = f"^({'|'.join(map(re.escape, fields))})(:(asc|desc|ASC|DESC))?$"
    params = [
        parameter(
            "fields",
            "query",
            {"type": "array", "items": {"type": "string", "enum": fields}, "uniqueItems": True},
            "Only these fields (`fields=title&fields=slug`, or `fields[0]=title`).",
            explode=True,
        ),
        parameter(
            "populate",
            "query",
            {"type": "array", "items": {"type": "string", "enum": [*relations, "*"]}, "uniqueItems": True},
            "Relations to embed (`populate=*`, `populate=category`, `populate[category][fields][0]=name`).",
            explode=True,
        ),
        parameter("locale", "query", {"type": "string", "maxLength": 35}, "A Strapi locale code."),
        parameter(
            "status",
            "query",
            {"type": "string", "enum": ["published", "draft"]},
            "Once, plain. `draft` needs a token whose role the `drafts` policy allows "
            "(`400 drafts_not_allowed` anonymously).",
        ),
        parameter(
            "publicationState",
            "query",
            {"type": "string", "enum": ["live"]},
            "Strapi v4's parameter, accepted as `live` only (Strapi 5 ignores it).",
            deprecated=True,
        ),
    ]
    if many:
        params[:0] = [
            parameter(
                "filters",
                "query",
                filters_schema(context, collection, fields),
                "Strapi's filters. A filter through a relation into content with drafts is "
                "`400 invalid_parameter` (it would reveal unpublished text).",
                style="deepObject",
                explode=True,
            ),
            parameter(
                "sort",
                "query",
                {"type": "array", "items": {"type": "string", "pattern": sort_pattern}},
                "`sort=title:asc&sort=id:desc` (order matters).",
                explode=True,
            ),
            parameter(
                "pagination", "query", pagination_schema(context), "Paging.", style="deepObject", explode=True
            ),
        ]
    extra = sorted(context.tenant.router.allowed[collection] - base_read_params())
    params += [
        parameter(
            name,
            "query",
            {"type": "string"},
            f"Accepted by configuration (`BFFPROXY_QUERY_PARAMS__{collection}`), passed to Strapi.",
        )
        for name in extra
    ]
    return [*params, *READ_HEADERS]


def base_read_params() -> frozenset[str]:
    """The names every collection's reads accept."""
    return STRAPI_READ_PARAMS | PUBLICATION_PARAMS


def describe_read(context: Context, rule: Rule, collection: str, *, many: bool) -> Iterator[Operation]:
    """GET and HEAD of a list, a document (``/{documentId}``) or a single type."""
    by_id = not many and collection not in context.tenant.router.single_types
    path = f"/api/{collection}" + ("/{documentId}" if by_id else "")
    kind = "A page of" if many else "One document of"
    ok = json_answer(
        "Strapi's answer (from the cache when anonymous).",
        read_answer_schema(context, collection, many),
        {**CACHE_HEADERS, REQUEST_ID_HEADER: header("The request's id.")},
    )
    params = read_parameters(context, collection, many)
    if by_id:
        params = [DOCUMENT_ID_PARAM, *params]
    for method in ("get", "head"):
        body = operation(
            context,
            rule,
            method,
            collection,
            summary=f"{kind} `{collection}`",
            description=f"{roles_text(context, collection, 'read')} {QS_NOTE}",
            parameters=params,
            security=security(context, collection, "read"),
            responses=responses(
                context,
                {200: dict(ok), 304: {"description": "Not modified (`If-None-Match` matched)."}},
                (400, *AUTH_FAILURES, *STRAPI_FAILURES),
                strapi=(400, 401, 403, 404),
            ),
        )
        yield Operation(path, method, body)


def describe_list(context: Context, rule: Rule) -> Iterator[Operation]:
    """``/api/<collection>``: a collection's list, or a single type's document."""
    singles = context.tenant.router.single_types
    for collection in context.tenant.collections:
        yield from describe_read(context, rule, collection, many=collection not in singles)


def describe_document(context: Context, rule: Rule) -> Iterator[Operation]:
    """``/api/<collection>/<documentId>`` of each collection (single types have none)."""
    for collection in collections(context, single=False):
        yield from describe_read(context, rule, collection, many=False)


def collections(context: Context, *, single: bool, writable: bool = False) -> list[str]:
    """The tenant's collections (or single types), optionally only those with a write schema."""
    singles = context.tenant.router.single_types
    return [
        name
        for name in context.tenant.collections
        if (name in singles) == single and (not writable or spec_for(name) is not None)
    ]


# -- publishing ------------------------------------------------------------------------------------


def input_schema(context: Context, spec: CollectionSpec, partial: bool) -> dict[str, str]:
    """The marshmallow schema that validates the write, converted by apispec."""
    name = f"{title_of(spec.name)}{'Changes' if partial else 'Input'}"
    return context.schema(name, lambda: context.marshmallow(name, spec.schema(partial=partial)))


def wrapped_body(context: Context, spec: CollectionSpec, partial: bool) -> dict[str, Any]:
    """Strapi's ``{"data": {...}}`` body."""
    data = input_schema(context, spec, partial)
    return {
        "type": "object",
        "properties": {"data": data},
        "required": ["data"],
        "additionalProperties": False,
    }


def flat_body(context: Context, spec: CollectionSpec) -> dict[str, str]:
    """bffproxy's flat ``/publish`` body: the fields themselves, aliases allowed (not with their field)."""
    name = f"{title_of(spec.name)}Flat"

    def make() -> dict[str, Any]:
        schema = context.marshmallow(name, spec.schema())
        props = schema["properties"]
        for alias, target in spec.aliases.items():
            props[alias] = {**props[target], "description": f"Another name for `{target}`."}
            schema["not"] = {"required": [alias, target]}
        return schema

    return context.schema(name, make)


def json_request(schema: dict[str, Any]) -> dict[str, Any]:
    """A required JSON request body."""
    return {"required": True, "content": {"application/json": {"schema": schema}}}


def write_parameters(with_query: bool) -> list[dict[str, Any]]:
    """Strapi's write query (``status``, ``fields``, ``populate``) where allowed, and the key."""
    params = [IDEMPOTENCY_PARAM]
    if with_query:
        params[:0] = [
            parameter(
                "status",
                "query",
                {"type": "string", "enum": ["published", "draft"]},
                "`draft` writes the draft only (needs the `drafts` policy too); else published.",
            ),
            parameter(
                "fields",
                "query",
                {"type": "array", "items": {"type": "string"}},
                "Fields of the answer.",
                explode=True,
            ),
            parameter(
                "populate",
                "query",
                {"type": "array", "items": {"type": "string"}},
                "Relations of the answer.",
                explode=True,
            ),
        ]
    return params


def write_operation(
    context: Context,
    rule: Rule,
    spec: CollectionSpec,
    *,
    summary: str,
    ok: Mapping[int, str],
    body: dict[str, Any] | None,
    query: bool,
    drafts: bool = False,
) -> dict[str, Any]:
    """A write: the write policy, the body, the statuses every write may answer with."""
    answers = {
        status: ({"description": text} if status == 204 else json_answer(text, {"type": "object"}))
        for status, text in ok.items()
    }
    failures = [*AUTH_FAILURES, *STRAPI_FAILURES, 400, 409, 422, 408, 413]
    if body is not None:
        failures.append(415)
    if drafts:
        failures.append(501)
    needs = roles_text(context, spec.name, "write")
    parts: dict[str, Any] = {
        "summary": summary,
        "description": f"{needs} Sent to Strapi with the server's API token; never retried.",
        "parameters": write_parameters(query),
        "security": security(context, spec.name, "write"),
        "responses": responses(context, answers, failures, strapi=(400, 401, 403, 404, 405)),
    }
    if body is not None:
        parts["requestBody"] = json_request(body)
    return operation(context, rule, rule_method(rule), spec.name, **parts)


def writable_specs(context: Context, *, single: bool) -> Iterator[CollectionSpec]:
    """The write specs of the tenant's collections (or single types) that have a write schema."""
    for name in collections(context, single=single, writable=True):
        spec = spec_for(name)
        if spec is not None:
            yield spec


def rule_method(rule: Rule) -> str:
    """The one method (besides HEAD and OPTIONS) a rule routes, lower case."""
    methods = sorted((rule.methods or set()) - {"HEAD", "OPTIONS"})
    return methods[0].lower()


def describe_create(context: Context, rule: Rule) -> Iterator[Operation]:
    """``POST /api/<collection>``."""
    for spec in writable_specs(context, single=False):
        name = spec.name
        body = write_operation(
            context,
            rule,
            spec,
            summary=f"Create a `{name}` document (published, or a draft with `status=draft`)",
            ok={201: "Strapi's answer: the document."},
            body=wrapped_body(context, spec, False),
            query=True,
        )
        yield Operation(f"/api/{name}", "post", body)


def describe_update(context: Context, rule: Rule) -> Iterator[Operation]:
    """``PUT /api/<collection>/<documentId>`` and a single type's ``PUT /api/<name>``."""
    single = "<document_id>" not in rule.rule
    for spec in writable_specs(context, single=single):
        name = spec.name
        body = write_operation(
            context,
            rule,
            spec,
            summary=f"Edit `{name}` (published, or the draft with `status=draft`)",
            ok={200: "Strapi's answer: the document."},
            body=wrapped_body(context, spec, True),
            query=True,
        )
        yield on_document(name, single, "put", body)


def on_document(name: str, single: bool, method: str, body: dict[str, Any], tail: str = "") -> Operation:
    """An operation on ``/api/<name>`` (a single type) or on ``/api/<name>/{documentId}<tail>``."""
    if single:
        return Operation(f"/api/{name}", method, body)
    body["parameters"] = [DOCUMENT_ID_PARAM, *body["parameters"]]
    return Operation(f"/api/{name}/{{documentId}}{tail}", method, body)


def describe_delete(context: Context, rule: Rule) -> Iterator[Operation]:
    """``DELETE /api/<collection>/<documentId>`` and a single type's ``DELETE /api/<name>``."""
    single = "<document_id>" not in rule.rule
    for spec in writable_specs(context, single=single):
        name = spec.name
        body = write_operation(
            context,
            rule,
            spec,
            summary=f"Delete `{name}` (draft and published)",
            ok={204: "Deleted."},
            body=None,
            query=False,
        )
        yield on_document(name, single, "delete", body)


def describe_create_and_publish(context: Context, rule: Rule) -> Iterator[Operation]:
    """``POST /api/<collection>/publish``: bffproxy's flat one-shot create."""
    for spec in writable_specs(context, single=False):
        name = spec.name
        body = write_operation(
            context,
            rule,
            spec,
            summary=f"Create and publish a `{name}` document from a flat body",
            ok={201: "Strapi's answer: the document."},
            body=flat_body(context, spec),
            query=False,
        )
        yield Operation(f"/api/{name}/publish", "post", body)


def describe_publication(action: str) -> Describer:
    """``POST /api/<collection>/<documentId>/publish|unpublish`` of collections with drafts."""

    def describe(context: Context, rule: Rule) -> Iterator[Operation]:
        for spec in writable_specs(context, single=False):
            name = spec.name
            if not spec.draft_and_publish:
                continue
            body = write_operation(
                context,
                rule,
                spec,
                summary=f"{action.capitalize()} a `{name}` document",
                ok={200: "Strapi's answer: the document."},
                body=None,
                query=False,
                drafts=action == "unpublish",
            )
            yield on_document(name, False, "post", body, f"/{action}")

    return describe


# -- accounts, media, webhooks, admin, health, events, docs ------------------------------------------


def simple(
    path: str,
    method: str,
    summary: str,
    ok: Mapping[int, dict[str, Any]],
    failures: Iterable[int],
    strapi: Iterable[int] = (),
    **parts: Any,
) -> Describer:
    """A describer for a route with no collection in its path."""

    def describe(context: Context, rule: Rule) -> Iterator[Operation]:
        answers = responses(
            context, ok, failures, strapi, tenant=rule.endpoint.split(".")[0] not in TENANTLESS
        )
        yield Operation(
            path, method, operation(context, rule, method, summary=summary, responses=answers, **parts)
        )

    return describe


def auth_route(path: str, summary: str) -> Describer:
    """One of Strapi's auth routes passed through."""
    return simple(
        path,
        "post",
        summary,
        {200: json_answer("Strapi's answer (`{jwt, user}` for a login).", {"type": "object"})},
        (400, 408, 413, 429, *STRAPI_FAILURES),
        strapi=(400, 401, 403, 404, 405, 429),
        description="Passed through to Strapi, never cached, limited per client address "
        "(`BFFPROXY_LOGIN_RATE_LIMIT`: `429` with `Retry-After`).",
        requestBody={"required": False, "content": {"application/json": {"schema": {"type": "object"}}}},
    )


def file_schema() -> dict[str, Any]:
    """A file of Strapi's media library (loosely: Strapi's upload plugin shape)."""
    return {
        "type": "object",
        "properties": {
            "id": {"type": "integer"},
            "name": {"type": "string"},
            "url": {"type": "string"},
            "mime": {"type": "string"},
        },
    }


MEDIA_FIELDS = [
    "id",
    "documentId",
    "name",
    "alternativeText",
    "caption",
    "width",
    "height",
    "hash",
    "ext",
    "mime",
    "size",
    "url",
    "previewUrl",
    "provider",
    "createdAt",
    "updatedAt",
]


def media_read(path: str, summary: str, many: bool, page: bool = False) -> Describer:
    """A read of the media library (cached like content when anonymous)."""

    def describe(context: Context, rule: Rule) -> Iterator[Operation]:
        fields = {"type": "array", "items": {"type": "string", "enum": MEDIA_FIELDS}, "uniqueItems": True}
        params = [parameter("fields", "query", fields, "Only these fields.", explode=True)]
        if many:
            params += [
                parameter(
                    "filters",
                    "query",
                    filters_schema(context, "Files", MEDIA_FIELDS),
                    "Filters on the file's own fields.",
                    style="deepObject",
                    explode=True,
                ),
                parameter(
                    "sort", "query", {"type": "array", "items": {"type": "string"}}, "Sort.", explode=True
                ),
                parameter(
                    "pagination",
                    "query",
                    pagination_schema(context),
                    "Paging (only `/page` pages).",
                    style="deepObject",
                    explode=True,
                ),
            ]
        else:
            params.insert(
                0, path_parameter("id", {"type": "string", "pattern": "^[1-9][0-9]{0,17}$"}, "The file's id.")
            )
        if page:
            answer: dict[str, Any] = {
                "type": "object",
                "properties": {
                    "results": {"type": "array", "items": file_schema()},
                    "pagination": {"type": "object"},
                },
            }
        else:
            answer = {"type": "array", "items": file_schema()} if many else file_schema()
        ok = json_answer("Strapi's answer.", answer, CACHE_HEADERS)
        media_policy = context.tenant.config.get("MEDIA_POLICY", "upload")
        for method in ("get", "head"):
            body = operation(
                context,
                rule,
                method,
                summary=summary,
                description=f"{roles_text(context, media_policy, 'read')} {QS_NOTE}",
                parameters=[*params, *READ_HEADERS],
                security=security(context, media_policy, "read"),
                responses=responses(
                    context,
                    {200: dict(ok), 304: {"description": "Not modified."}},
                    (400, *AUTH_FAILURES, *STRAPI_FAILURES),
                    strapi=(400, 401, 403, 404),
                ),
            )
            yield Operation(path, method, body)

    return describe


def describe_download(context: Context, rule: Rule) -> Iterator[Operation]:
    """``GET|HEAD /uploads/<name>``: a file, streamed, with validators and one range."""
    name = path_parameter(
        "name", {"type": "string", "pattern": "^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,254}$"}, "The file's name."
    )
    params = [
        name,
        parameter("Range", "header", {"type": "string"}, "One byte range (`bytes=0-99`, `bytes=-500`)."),
        parameter("If-Range", "header", {"type": "string"}, "The ETag or date the range is for."),
        parameter("If-None-Match", "header", {"type": "string"}, "An ETag: `304` when it matches."),
        parameter(
            "If-Modified-Since", "header", {"type": "string"}, "A date: `304` when not modified since."
        ),
    ]
    binary = {"content": {"*/*": {"schema": {"type": "string", "format": "binary"}}}}
    ok: dict[int, dict[str, Any]] = {
        200: {"description": "The file.", **binary},
        206: {"description": "The range asked for.", **binary},
        304: {"description": "Not modified."},
    }
    for method in ("get", "head"):
        body = operation(
            context,
            rule,
            method,
            summary="A file of the media library",
            parameters=params,
            responses=responses(context, {s: dict(a) for s, a in ok.items()}, (416, *STRAPI_FAILURES)),
        )
        yield Operation("/uploads/{name}", method, body)


def describe_upload(context: Context, rule: Rule) -> Iterator[Operation]:
    """``POST /api/upload``: multipart, files and fileInfo only."""
    policy = context.tenant.config.get("MEDIA_POLICY", "upload")
    form = {
        "type": "object",
        "properties": {
            "files": {"type": "array", "items": {"type": "string", "format": "binary"}},
            "fileInfo": {"type": "string", "description": "A JSON object (or a list of them, one per file)."},
        },
        "additionalProperties": False,
    }
    file_id = parameter(
        "id",
        "query",
        {"type": "string", "pattern": "^[1-9][0-9]{0,17}$"},
        "Replace this file (or change its fileInfo).",
    )
    body = operation(
        context,
        rule,
        "post",
        summary="Upload files to the media library",
        description=f"{roles_text(context, policy, 'write')} Only `files` and `fileInfo` parts.",
        parameters=[file_id, IDEMPOTENCY_PARAM],
        security=security(context, policy, "write"),
        requestBody={"required": True, "content": {"multipart/form-data": {"schema": form}}},
        responses=responses(
            context,
            {200: json_answer("Strapi's answer.", {}), 201: json_answer("The stored files.", {})},
            (400, *AUTH_FAILURES, 408, 409, 413, 415, 422, *STRAPI_FAILURES),
            strapi=(400, 401, 403, 404),
        ),
    )
    yield Operation("/api/upload", "post", body)


def describe_delete_file(context: Context, rule: Rule) -> Iterator[Operation]:
    """``DELETE /api/upload/files/<id>``."""
    policy = context.tenant.config.get("MEDIA_POLICY", "upload")
    body = operation(
        context,
        rule,
        "delete",
        summary="Delete a file from the media library",
        description=roles_text(context, policy, "write"),
        parameters=[
            path_parameter("id", {"type": "string", "pattern": "^[1-9][0-9]{0,17}$"}, "The file's id."),
            IDEMPOTENCY_PARAM,
        ],
        security=security(context, policy, "write"),
        responses=responses(
            context,
            {200: json_answer("The deleted file.", file_schema()), 204: {"description": "Deleted."}},
            (400, *AUTH_FAILURES, 409, 422, *STRAPI_FAILURES),
            strapi=(400, 401, 403, 404),
        ),
    )
    yield Operation("/api/upload/files/{id}", "delete", body)


def webhook_body() -> dict[str, Any]:
    """Strapi's webhook payload."""
    entry = {"type": "object", "properties": {"documentId": {"type": "string"}}, "required": ["documentId"]}
    return json_request(
        {
            "type": "object",
            "required": ["event"],
            "properties": {
                "event": {"type": "string"},
                "model": {"type": "string"},
                "entry": entry,
                "createdAt": {"type": "string"},
            },
        }
    )


def purge_body() -> dict[str, Any]:
    """The admin purge body."""
    return json_request(
        {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "collection": {"type": "string"},
                "documentId": {"type": "string"},
                "all": {"type": "boolean", "const": True},
                "tenant": {"type": "string"},
            },
            "description": '`{"collection"}`, `{"collection", "documentId"}` or `{"all": true}`.',
        }
    )


EVENT_FILTERS: dict[str, tuple[dict[str, Any], str]] = {
    "collections": ({"type": "string"}, "Comma-separated collections (default: all readable)."),
    "documentId": ({"type": "string", "pattern": f"^{DOCUMENT_ID.pattern}$"}, "One document."),
    "drafts": ({"type": "string", "enum": ["true", "false"]}, "Draft events too (a token with `drafts`)."),
    "lastEventId": ({"type": "string"}, "Replay after this id."),
}


def describe_events(context: Context, rule: Rule) -> Iterator[Operation]:
    """``GET /api/events``: Server-Sent Events, with event_feed.py's filters."""
    filters = [
        parameter(name, "query", *EVENT_FILTERS.get(name, ({"type": "string"}, "A filter.")))
        for name in sorted(event_feed.FILTERS)
    ]
    replay = parameter(
        "Last-Event-ID", "header", {"type": "string"}, "Replay after this id (EventSource sends it)."
    )
    params = [*filters, TICKET_PARAM, replay]
    stream = {
        "description": "The stream: `retry:`, then `id:`/`event:`/`data:` messages, `: heartbeat` comments.",
        "content": {"text/event-stream": {"schema": {"type": "string"}}},
    }
    body = operation(
        context,
        rule,
        "get",
        summary="Content changes as Server-Sent Events",
        description="Events carry ids and a type, never content; anonymous ones hear public changes only.",
        parameters=params,
        security=[{}, {"strapiJwt": []}],
        responses=responses(context, {200: stream}, (400, *AUTH_FAILURES)),
    )
    yield Operation("/api/events", "get", body)


TICKET_PARAM = parameter(
    "ticket",
    "query",
    {"type": "string", "minLength": 20, "maxLength": 64},
    "A single-use ticket from `POST /api/events/ticket` (browsers cannot send headers); not with a token.",
)


def describe_websocket(context: Context, rule: Rule) -> Iterator[Operation]:
    """``GET /api/events/ws``: the same events over a WebSocket (a plain GET is 426)."""
    body = operation(
        context,
        rule,
        "get",
        summary="Content changes over a WebSocket",
        description='Connect with `Upgrade: websocket`; send `{"subscribe": {...}}`, `{"unsubscribe": {}}` '
        'or `{"ping": ...}` as JSON text frames; events arrive as their wire JSON.',
        parameters=[TICKET_PARAM],
        security=[{}, {"strapiJwt": []}],
        responses=responses(
            context,
            {101: {"description": "Switching Protocols: the WebSocket is open."}},
            (400, *AUTH_FAILURES, 426),
        ),
    )
    yield Operation("/api/events/ws", "get", body)


def describe_ticket(context: Context, rule: Rule) -> Iterator[Operation]:
    """``POST /api/events/ticket``: a single-use ticket for one event stream."""
    ticket = {
        "type": "object",
        "required": ["ticket", "expiresIn"],
        "properties": {"ticket": {"type": "string"}, "expiresIn": {"type": "integer"}},
    }
    body = operation(
        context,
        rule,
        "post",
        summary="A ticket that opens one event stream",
        description="For `EventSource` and `WebSocket`, which cannot send `Authorization`.",
        security=[{"strapiJwt": []}],
        responses=responses(
            context, {200: json_answer("The ticket.", ticket)}, (*AUTH_FAILURES, *STRAPI_FAILURES)
        ),
    )
    yield Operation("/api/events/ticket", "post", body)


def describe_undescribed(context: Context, rule: Rule) -> Iterator[Operation]:
    """A route nobody described yet: listed with its path parameters, marked ``x-undescribed``."""
    path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule)
    params = [path_parameter(name, {"type": "string"}, "") for name in rule.arguments]
    for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
        body = {
            "operationId": f"{rule.endpoint}.{method.lower()}",
            "summary": "Not described yet",
            "x-endpoint": rule.endpoint,
            "x-undescribed": True,
            "parameters": params,
            "responses": {"default": {"description": "Not described yet."}},
        }
        yield Operation(path, method.lower(), body)


def describe_docs_asset(context: Context, rule: Rule) -> Iterator[Operation]:
    """``/docs/<asset>``: Swagger UI's files, served from the installed package."""
    asset = path_parameter("asset", {"type": "string", "enum": [*ASSETS, "docs.js"]}, "A file of the page.")
    body = operation(
        context,
        rule,
        "get",
        summary="A file of the documentation page",
        parameters=[asset],
        responses=responses(
            context,
            {
                200: {"description": "The file.", "content": {t: {} for t in sorted(set(ASSETS.values()))}},
                304: {"description": "Not modified."},
            },
            (),
        ),
    )
    yield Operation("/docs/{asset}", "get", body)


def page_file(path: str, summary: str, content_type: str) -> Describer:
    """A file of a page bffproxy serves (revalidated with its ETag)."""
    ok: dict[int, dict[str, Any]] = {
        200: {"description": "The file.", "content": {content_type: {"schema": {"type": "string"}}}},
        304: {"description": "Not modified."},
    }
    return simple(path, "get", summary, ok, ())


JSON_OK = {"type": "object"}
DESCRIBERS: dict[str, Describer] = {
    "content.list_documents": describe_list,
    "content.get_document": describe_document,
    "publishing.create_document": describe_create,
    "publishing.update_document": describe_update,
    "publishing.update_single": describe_update,
    "publishing.delete": describe_delete,
    "publishing.delete_single": describe_delete,
    "publishing.create_and_publish": describe_create_and_publish,
    "publishing.publish": describe_publication("publish"),
    "publishing.unpublish": describe_publication("unpublish"),
    "accounts.login": auth_route("/api/auth/local", "Sign in (Strapi's users-permissions)"),
    "accounts.refresh": auth_route("/api/auth/refresh", "New tokens for a refresh token"),
    "accounts.logout": auth_route("/api/auth/logout", "End the session of the access token"),
    "accounts.me": simple(
        "/api/me",
        "get",
        "The signed-in caller",
        {
            200: json_answer(
                "The caller.",
                {
                    "type": "object",
                    "required": ["id", "username", "email", "role"],
                    "properties": {
                        "id": {"type": "integer"},
                        "username": {"type": "string"},
                        "email": {"type": "string"},
                        "role": {"type": "string"},
                    },
                },
            )
        },
        (*AUTH_FAILURES, *STRAPI_FAILURES),
        security=[{"strapiJwt": []}],
    ),
    "media.list_files": media_read("/api/upload/files", "Files of the media library (not paged)", True),
    "media.page_of_files": media_read("/api/upload/files/page", "A page of files", True, page=True),
    "media.get_file": media_read("/api/upload/files/{id}", "One file's description", False),
    "media.download": describe_download,
    "media.upload": describe_upload,
    "media.delete_file": describe_delete_file,
    "webhooks.strapi_webhook": simple(
        "/webhooks/strapi",
        "post",
        "Strapi's webhook: invalidate what changed",
        {
            200: json_answer("What was invalidated.", JSON_OK),
            202: json_answer("Nothing to invalidate.", JSON_OK),
        },
        (400, 401, 408, 413, 503),
        security=[{"webhookSecret": []}],
        requestBody=webhook_body(),
    ),
    "admin.purge_cache": simple(
        "/admin/cache/purge",
        "post",
        "Purge a collection, a document or everything",
        {200: json_answer("What was purged.", JSON_OK)},
        (400, 401, 404, 408, 413, 422, 503),
        security=[{"adminToken": []}],
        requestBody=purge_body(),
        description="`404 admin_disabled` while `BFFPROXY_ADMIN_TOKEN` is unset.",
    ),
    "health.healthz": simple(
        "/healthz",
        "get",
        "Liveness: the process answers (never asks Strapi)",
        {200: json_answer("Alive.", {"type": "object", "properties": {"status": {"const": "ok"}}})},
        (),
    ),
    "health.readyz": simple(
        "/readyz",
        "get",
        "Readiness: every tenant's Strapi answers",
        {
            200: json_answer(
                "Ready.",
                {
                    "type": "object",
                    "required": ["status"],
                    "properties": {
                        "status": {"const": "ready"},
                        "strapi": {"type": "string"},
                        "store": {"enum": ["up", "down"]},
                        "circuit": {"type": "object", "additionalProperties": {"type": "string"}},
                    },
                },
            )
        },
        (503,),
    ),
    "events.subscribe": describe_events,
    "events_ws.connection": describe_websocket,
    "events_ws_plain.not_upgraded": describe_websocket,
    "event_tickets.issue": describe_ticket,
    "metrics.scrape": simple(
        "/metrics",
        "get",
        "Prometheus metrics",
        {
            200: {
                "description": "Prometheus' text format.",
                "content": {"text/plain": {"schema": {"type": "string"}}},
            }
        },
        (401, 404),
        security=[{}, {"adminToken": []}],
        description="From an address in `BFFPROXY_METRICS_ALLOW`, or with the admin token; "
        "`404 metrics_disabled` when neither is configured.",
    ),
    "openapi.document": simple(
        "/openapi.json",
        "get",
        "This document (for this tenant)",
        {200: json_answer("OpenAPI 3.1.", JSON_OK), 304: {"description": "Not modified."}},
        (),
    ),
    "openapi.docs": simple(
        "/docs",
        "get",
        "This document, rendered (Swagger UI)",
        {200: {"description": "An HTML page.", "content": {"text/html": {}}}},
        (),
    ),
    "openapi.asset": describe_docs_asset,
    "events_demo.page": page_file(
        "/events/demo", "A live page of articles, refreshed by events", "text/html"
    ),
    "events_demo.script": page_file("/events/demo.js", "The live page's script", "text/javascript"),
    "events_demo.stylesheet": page_file("/events/demo.css", "The live page's stylesheet", "text/css"),
}


# -- the document ------------------------------------------------------------------------------------


def build_document(app: Flask, tenant: Tenant, script_root: str = "") -> dict[str, Any]:
    """The OpenAPI document of ``tenant``: every rule of the app, through its describer."""
    context = new_context(tenant)
    paths: dict[str, dict[str, Any]] = {}
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: (r.rule, r.endpoint)):
        describe = DESCRIBERS.get(rule.endpoint, describe_undescribed)
        for op in describe(context, rule):
            paths.setdefault(op.path, {})[op.method] = op.body
    for path, methods in sorted(paths.items()):
        context.spec.path(path=path, operations=methods)
    document = context.spec.to_dict()
    if script_root:
        document["servers"] = [{"url": script_root}]
    return document


@dataclass(frozen=True)
class Rendered:
    """One tenant's document as sent: bytes and their ETag."""

    tenant: Tenant
    body: bytes
    etag: str


def rendered(tenant: Tenant, script_root: str) -> Rendered:
    """The tenant's document, made once per tenant (and path prefix) per worker."""
    memo: dict[tuple[str, str], Rendered] = current_app.extensions.setdefault("bffproxy.openapi", {})
    found = memo.get((tenant.name, script_root))
    if found is not None and found.tenant is tenant:  # a reloaded tenant is another object
        return found
    document = build_document(current_app._get_current_object(), tenant, script_root)  # type: ignore[attr-defined]
    body = json.dumps(document, separators=(",", ":")).encode()  # 200 collections: 4.4 MB, not 6.3
    made = Rendered(tenant, body, hashlib.sha256(body).hexdigest()[:32])
    if len(memo) >= MEMO_LIMIT:
        memo.clear()
    memo[(tenant.name, script_root)] = made
    return made


# -- the routes ------------------------------------------------------------------------------------


@bp.get("/openapi.json")
def document() -> Response:
    """This tenant's OpenAPI document."""
    made = rendered(current_tenant(), request.script_root)
    # no-cache: revalidate (ETag), as a deploy or a tenants reload changes it
    response = conditional(made.body, "application/json", made.etag, "no-cache")
    if current_app.config["TENANT_HEADER"]:  # the same URL is another tenant's document
        response.vary.add(current_app.config["TENANT_HEADER"])
    return response


@bp.get("/docs")
def docs() -> Response:
    """Swagger UI, pointed at ./openapi.json (relative: works under a tenant's path prefix)."""
    response = Response(DOCS_PAGE, content_type="text/html; charset=utf-8")
    response.headers.update(page_headers())
    response.headers["Cache-Control"] = "no-cache"
    return response


@bp.get("/docs/<asset>")
def asset(asset: str) -> Response:
    """Swagger UI's files, from the installed swagger-ui-bundle package (no CDN)."""
    if asset == "docs.js":
        body, etag, content_type = DOCS_JS.encode(), DOCS_JS_ETAG, "application/javascript; charset=utf-8"
    elif asset in ASSETS:
        (body, etag), content_type = asset_file(asset), ASSETS[asset]
    else:
        raise errors.NotFound(f"The documentation page has no file {asset!r}.")
    response = conditional(body, content_type, etag, "public, max-age=3600")
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


def conditional(body: bytes, content_type: str, etag: str, cache_control: str) -> Response:
    """An answer with a strong ETag: 304 when ``If-None-Match`` matches (HEAD: headers only)."""
    response = Response(body, content_type=content_type)
    response.set_etag(etag)
    response.headers["Cache-Control"] = cache_control
    response.make_conditional(request)
    return response


@functools.cache
def asset_file(name: str) -> tuple[bytes, str]:
    """One of Swagger UI's files (read once per worker: about 1.2 MB in all) and its ETag."""
    body = (swagger_ui_path / name).read_bytes()
    return body, hashlib.sha256(body).hexdigest()[:32]


def page_headers() -> dict[str, str]:
    """The documentation page may run its own scripts only, and is never framed."""
    return {
        "Content-Security-Policy": DOCS_CSP,
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "DENY",
        "Referrer-Policy": "no-referrer",
    }


DOCS_PAGE = f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>bffproxy API</title>
<link rel="stylesheet" href="docs/swagger-ui.css">
<link rel="icon" type="image/png" href="docs/favicon-32x32.png">
</head>
<body>
<div id="swagger-ui" data-spec="openapi.json" data-ui-version="{SWAGGER_UI_VERSION}"></div>
<script src="docs/swagger-ui-bundle.js"></script>
<script src="docs/docs.js"></script>
</body>
</html>
"""

# Swagger UI 4 renders OpenAPI 3.0 only: show it the 3.1 document as 3.0 (nullable for "null" types,
# enum for const); the document served at ./openapi.json is unchanged.
DOCS_JS = """"use strict";
(function () {
  function as30(node) {
    if (Array.isArray(node)) return node.map(as30);
    if (node === null || typeof node !== "object") return node;
    var out = {};
    Object.keys(node).forEach(function (key) { out[key] = as30(node[key]); });
    if (Array.isArray(out.type)) {
      var types = out.type.filter(function (t) { return t !== "null"; });
      if (types.length < out.type.length) out.nullable = true;
      if (types.length === 1) out.type = types[0]; else delete out.type;
    }
    if ("const" in out) { out.enum = [out["const"]]; delete out["const"]; }
    return out;
  }
  var root = document.getElementById("swagger-ui");
  fetch(root.dataset.spec, {headers: {"Accept": "application/json"}})
    .then(function (answer) { return answer.json(); })
    .then(function (spec) {
      spec = as30(spec);
      spec.openapi = "3.0.3";
      window.ui = SwaggerUIBundle({spec: spec, domNode: root, deepLinking: true});
    });
})();
"""


DOCS_JS_ETAG = hashlib.sha256(DOCS_JS.encode()).hexdigest()[:32]


def init_app(app: Flask) -> None:
    """Register /openapi.json and /docs."""
    app.register_blueprint(bp)
