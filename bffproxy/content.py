"""Content blueprint: Strapi's read API at Strapi's own paths, served through the shared cache.

``GET|HEAD /api/<collection>`` and ``GET|HEAD /api/<collection>/<documentId>`` forward the query
string (filters, populate, fields, sort, pagination, locale) in a canonical order, so equivalent
URLs share one cache entry and Strapi sees exactly what the key describes.

Drafts never reach an anonymous caller: Strapi 5 returns drafts to the Public role for
``status=draft`` and for any ``status`` other than ``published`` (and for ``publicationState=preview``
in its v4 compatibility format). bffproxy answers such requests with 400 ``drafts_not_allowed``
instead of forwarding them.

Signed-in callers (a ``Bearer`` token) are checked locally first: a bad token is a 401 without any
call to Strapi. Their reads are forwarded with their own token, so Strapi's permissions still
apply, and answered with ``Cache-Control: private, no-store``. They are never stored under the
anonymous key: they bypass the cache, or, for collections in ``BFFPROXY_ROLE_CACHEABLE``, they are
cached under a key that starts with the caller's role. Drafts go to the roles the ``drafts`` policy
names (403 for others), fetched with the server's API token.
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlencode

from flask import Blueprint, Flask, Response, current_app, request
from werkzeug.http import parse_etags

from .auth import Identity, authorize
from .caching import ContentCache, Entry, Freshness, Served, content_cache, freshness_for
from .errors import DraftsNotAllowed
from .request_id import HEADER as REQUEST_ID_HEADER
from .request_id import current_request_id
from .strapi import FORWARDED_REQUEST_HEADERS, StrapiClient
from .tenants import Tenant, current_tenant

bp = Blueprint("content", __name__)

# Request headers that change the answer: listed in Vary, part of the cache key.
VARY_HEADERS = (*FORWARDED_REQUEST_HEADERS, "Authorization")
VARY_VALUE = ", ".join(VARY_HEADERS)
# The one value of each publication parameter that keeps drafts out of Strapi's answer.
_NOT_DRAFTS = {"status": "published", "publicationState": "live"}


@bp.get("/api/<collection>")
def list_documents(collection: str) -> Response:
    """A page of a collection, as Strapi would answer it."""
    return serve_read(collection, f"api/{collection}")


@bp.get("/api/<collection>/<document_id>")
def get_document(collection: str, document_id: str) -> Response:
    """One document by its stable documentId."""
    return serve_read(collection, f"api/{collection}/{document_id}")


def canonical_query() -> list[tuple[str, str]]:
    """The request's query as (name, value) pairs in one stable order."""
    return sorted(request.args.items(multi=True))


def draft_params(params: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The query parameters that would make Strapi return drafts.

    Strapi (qs) reads a repeated ``status`` or a bracketed one (``status[0]``) as an array or an
    object, which is not ``published`` either: those count too.
    """
    found: list[tuple[str, str]] = []
    seen: set[str] = set()
    for name, value in params:
        base = name.split("[", 1)[0]
        if base in _NOT_DRAFTS:
            if name != base or value != _NOT_DRAFTS[base] or base in seen:
                found.append((name, value))
            seen.add(base)
    return found


def refuse_drafts(params: list[tuple[str, str]]) -> None:
    """Raise 400 when an anonymous query would make Strapi return drafts."""
    found = draft_params(params)
    if found:
        name, value = found[0]
        raise DraftsNotAllowed(
            "Draft content is not public: use status=published or omit the parameter.",
            details={"param": name, "value": value},
        )


def forwarded_headers() -> dict[str, str]:
    """The client headers Strapi should see, plus our request id."""
    req = request._get_current_object()  # type: ignore[attr-defined]  # one proxy lookup, not five
    incoming = req.headers
    headers = {name: incoming[name] for name in FORWARDED_REQUEST_HEADERS if name in incoming}
    headers[REQUEST_ID_HEADER] = current_request_id()
    if req.remote_addr:
        headers["X-Forwarded-For"] = req.remote_addr
    return headers


def loader(
    client: StrapiClient,
    path: str,
    params: list[tuple[str, str]],
    headers: dict[str, str],
    cache: ContentCache | None = None,
) -> Callable[[], Entry]:
    """A call that fetches ``path`` from Strapi; it needs no request context (background refresh)."""
    clock = (cache or content_cache()).clock

    def load() -> Entry:
        answer = client.request("GET", path, params=params, headers=headers)
        return Entry.build(answer.status, answer.body, answer.content_type, clock())

    return load


def request_signature(path: str, params: list[tuple[str, str]], headers: dict[str, str]) -> str:
    """Everything that makes one answer differ from another, in canonical form."""
    varying = "&".join(f"{name}={headers.get(name, '')}" for name in FORWARDED_REQUEST_HEADERS)
    return f"{path}?{urlencode(params)}#{varying}"


def serve_read(collection: str, path: str) -> Response:
    """Serve one read of an exposed collection: anonymous through the cache, signed-in privately."""
    tenant: Tenant = current_tenant()
    identity = authorize(collection, "read")  # 404 unexposed, 401 bad token, 401/403 by policy
    params = canonical_query()
    if identity is not None:
        return serve_signed_in_read(identity, collection, path, params)
    refuse_drafts(params)
    cache = content_cache()
    headers = forwarded_headers()
    load = loader(tenant.strapi, path, params, headers, cache)
    signature = request_signature(path, params, headers)
    served = cache.serve(tenant.name, collection, signature, freshness_for(collection), load)
    return cached_response(served, collection, cache)


def serve_signed_in_read(
    identity: Identity, collection: str, path: str, params: list[tuple[str, str]]
) -> Response:
    """Forward with the caller's token (drafts: the server's, if the policy allows the role)."""
    client = current_tenant().strapi
    drafts = bool(draft_params(params))
    if drafts:
        authorize(collection, "drafts")  # 403 naming the role the caller lacks
    headers = forwarded_headers()
    credentials = client.service_authorization() if drafts else client.authorization(identity.token)
    load = loader(client, path, params, {**headers, **credentials})
    if collection in current_app.config["ROLE_CACHEABLE"]:
        # The role leads the signature, so no anonymous request (whose signature starts with the
        # path) can ever share this entry; no stale windows: a refresh must not outlive the token.
        signature = f"role={identity.role};drafts={int(drafts)}|{request_signature(path, params, headers)}"
        policy = Freshness(freshness_for(collection).ttl, 0, 0)
        served = content_cache().serve(current_tenant().name, collection, signature, policy, load)
    else:
        served = Served(load(), "BYPASS")
    response = cached_response(served, collection)
    response.headers["Cache-Control"] = "private, no-store"
    return response


def cache_control_for(collection: str) -> str:
    """The Cache-Control of a public answer: configured per collection, or derived from TTLs."""
    resolved: dict[str, str] = current_app.extensions["bffproxy.cache_control"]
    return resolved[collection]


def _resolve_cache_control(app: Flask) -> dict[str, str]:
    """Every exposed collection's public Cache-Control, computed once at start-up."""
    config = app.config
    resolved = {}
    with app.app_context():
        for collection in config["COLLECTIONS"]:
            policy = freshness_for(collection)
            resolved[collection] = config["CACHE_CONTROL"].get(collection) or (
                f"public, max-age={config['CLIENT_MAX_AGE']}, s-maxage={policy.ttl}, "
                f"stale-while-revalidate={policy.stale_while_revalidate}, "
                f"stale-if-error={policy.stale_if_error}"
            )
    return resolved


def init_app(app: Flask) -> None:
    """Register the read routes and precompute what every hit needs."""
    app.extensions["bffproxy.cache_control"] = _resolve_cache_control(app)
    app.register_blueprint(bp)


def entry_headers(served: Served, cache_control: str, now: float) -> list[tuple[str, str]]:
    """The headers of an answer from the cache (shared with the WSGI fast path in hits.py)."""
    entry = served.entry
    headers = [("X-Cache", served.x_cache), ("Vary", VARY_VALUE)]
    if entry.status != 200:
        headers.append(("Cache-Control", "no-store"))
        return headers
    headers.append(("ETag", f'"{entry.etag}"'))
    headers.append(("Cache-Control", cache_control))
    if served.x_cache in ("HIT", "STALE"):
        headers.append(("Age", str(int(entry.age(now)))))
    return headers


def not_modified(if_none_match: str | None, entry: Entry) -> bool:
    """True when the client's If-None-Match matches the entry (weak comparison, RFC 9110)."""
    return (
        bool(if_none_match) and entry.status == 200 and parse_etags(if_none_match).contains_weak(entry.etag)
    )


def cached_response(served: Served, collection: str, cache: ContentCache | None = None) -> Response:
    """Build the client's response: body, X-Cache, and for 200s ETag, Age and Cache-Control."""
    entry = served.entry
    now = (cache or content_cache()).clock()
    headers = entry_headers(served, cache_control_for(collection), now)
    if not_modified(request.headers.get("If-None-Match"), entry):
        return Response(status=304, headers=headers)
    return Response(entry.body, status=entry.status, headers=headers, content_type=entry.content_type)
