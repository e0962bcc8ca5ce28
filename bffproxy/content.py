"""Content blueprint: Strapi's read API at Strapi's own paths, served through the shared cache.

``GET|HEAD /api/<collection>`` and ``GET|HEAD /api/<collection>/<documentId>`` are routed by the
one read router (:mod:`bffproxy.reads`, shared with the WSGI fast path): the collection must be
exposed, the documentId of Strapi's shape, and every query parameter in the allow-list, read the
way Strapi's qs reads it. The canonical, re-encoded query is what Strapi receives and what the
cache key describes.

Drafts never reach an anonymous caller: Strapi 5 returns drafts to the Public role for any
``status`` other than ``published`` (``status=draft``, ``status=bogus``, ``[status]=draft``,
``status[]=draft``, a bare ``status``...). The router accepts ``status`` only once, plain, as
``published`` or ``draft``; ``draft`` from an anonymous caller is 400 ``drafts_not_allowed``.

Signed-in callers (a ``Bearer`` token) are checked locally first: a bad token is a 401 without any
call to Strapi. Their reads are forwarded with their own token, so Strapi's permissions still
apply, and answered with ``Cache-Control: private, no-store``. They are never stored under the
anonymous key: they bypass the cache, or, for collections in ``BFFPROXY_ROLE_CACHEABLE``, they are
cached under a key that starts with the caller's role. Drafts go to the roles the ``drafts`` policy
names (403 for others), fetched with the server's API token.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Blueprint, Flask, Response, current_app, request
from werkzeug.http import parse_etags

from .auth import Identity, authorize
from .caching import ContentCache, Entry, Freshness, Served, content_cache, freshness_for
from .errors import DraftsNotAllowed
from .reads import ReadRoute, response_format
from .request_id import HEADER as REQUEST_ID_HEADER
from .request_id import current_request_id
from .strapi import FORWARDED_REQUEST_HEADERS, StrapiClient
from .tenants import current_tenant, tenant_config

bp = Blueprint("content", __name__)

# Request headers that change the answer: listed in Vary, part of the cache key.
VARY_HEADERS = (*FORWARDED_REQUEST_HEADERS, "Authorization")
VARY_VALUE = ", ".join(VARY_HEADERS)
RESPONSE_FORMAT_HEADER = "Strapi-Response-Format"


@bp.get("/api/<collection>")
def list_documents(collection: str) -> Response:
    """A page of a collection, as Strapi would answer it."""
    return serve_read(current_route())


@bp.get("/api/<collection>/<document_id>")
def get_document(collection: str, document_id: str) -> Response:
    """One document by its stable documentId."""
    return serve_read(current_route())


def current_route() -> ReadRoute:
    """This request routed by the tenant's read router (the fast path uses the same one)."""
    environ = request.environ
    return current_tenant().router.route(environ.get("PATH_INFO", ""), environ.get("QUERY_STRING", ""))


def refuse_drafts(route: ReadRoute) -> None:
    """Raise 400 when an anonymous query would make Strapi return drafts."""
    if route.drafts:
        raise DraftsNotAllowed(
            "Draft content is not public: use status=published or omit the parameter.",
            details={"param": "status", "value": route.status},
        )


def forwarded_headers() -> dict[str, str]:
    """The client headers Strapi should see, plus our request id."""
    req = request._get_current_object()  # type: ignore[attr-defined]  # one proxy lookup, not five
    incoming = req.headers
    headers = {}
    variant = response_format(incoming.get(RESPONSE_FORMAT_HEADER))
    if variant:
        headers[RESPONSE_FORMAT_HEADER] = variant
    headers[REQUEST_ID_HEADER] = current_request_id()
    if req.remote_addr:
        headers["X-Forwarded-For"] = req.remote_addr
    return headers


def loader(
    client: StrapiClient,
    route: ReadRoute,
    headers: dict[str, str],
    cache: ContentCache | None = None,
) -> Callable[[], Entry]:
    """A call that fetches ``route`` from Strapi; it needs no request context (background refresh)."""
    clock = (cache or content_cache()).clock
    path, query = route.strapi_path, route.query_string

    def load() -> Entry:
        answer = client.request("GET", path, params=query, headers=headers)
        return Entry.build(answer.status, answer.body, answer.content_type, clock())

    return load


def serve_read(route: ReadRoute) -> Response:
    """Serve one read of an exposed collection: anonymous through the cache, signed-in privately."""
    tenant = current_tenant()
    collection = route.collection
    identity = authorize(collection, "read")  # 401 bad token, 401/403 by policy
    if identity is not None:
        return serve_signed_in_read(identity, route)
    refuse_drafts(route)
    cache = content_cache()
    headers = forwarded_headers()
    load = loader(tenant.strapi, route, headers, cache)
    signature = route.signature(headers.get(RESPONSE_FORMAT_HEADER))
    policy = freshness_for(collection)
    served = cache.serve(tenant.name, collection, signature, policy, load, tenant.strapi.waiting_place)
    return cached_response(served, collection, cache, current_app.config["ACCEL_EXPIRES"])


def serve_signed_in_read(identity: Identity, route: ReadRoute) -> Response:
    """Forward with the caller's token (drafts: the server's, if the policy allows the role)."""
    tenant = current_tenant()
    client, collection = tenant.strapi, route.collection
    if route.drafts:
        authorize(collection, "drafts")  # 403 naming the role the caller lacks
    headers = forwarded_headers()
    credentials = client.service_authorization() if route.drafts else client.authorization(identity.token)
    load = loader(client, route, {**headers, **credentials})
    if collection in tenant_config()["ROLE_CACHEABLE"]:
        # The role leads the signature, so no anonymous request (whose signature starts with the
        # path) can ever share this entry; no stale windows: a refresh must not outlive the token.
        signature = f"role={identity.role};drafts={int(route.drafts)}|"
        signature += route.signature(headers.get(RESPONSE_FORMAT_HEADER))
        policy = Freshness(freshness_for(collection).ttl, 0, 0)
        served = content_cache().serve(tenant.name, collection, signature, policy, load, client.waiting_place)
    else:
        served = Served(load(), "BYPASS")
    response = cached_response(served, collection)
    response.headers["Cache-Control"] = "private, no-store"
    return response


def cache_control_for(collection: str) -> str:
    """The Cache-Control of a public answer: configured per collection, or derived from TTLs."""
    resolved: dict[str, str] = tenant_config()["PUBLIC_CACHE_CONTROL"]
    return resolved[collection]


def configure_tenant(config: dict[str, Any]) -> None:
    """Every exposed collection's public Cache-Control (PUBLIC_CACHE_CONTROL), computed once.

    Only bffproxy's own entries are invalidated on change; a CDN or nginx cache in front is not. So
    downstream lifetimes are short and separate from the TTL: browsers get ``max-age`` (default 0,
    they revalidate with If-None-Match), shared caches ``s-maxage=BFFPROXY_SHARED_MAX_AGE`` (default
    5 s, the longest a change can stay invisible behind one), and no stale-* directives, which would
    let them keep invalidated content for the whole window.
    """
    default = f"public, max-age={config['CLIENT_MAX_AGE']}, s-maxage={config['SHARED_MAX_AGE']}"
    config["PUBLIC_CACHE_CONTROL"] = {
        name: config["CACHE_CONTROL"].get(name) or default for name in config["COLLECTIONS"]
    }


def init_app(app: Flask) -> None:
    """Register the read routes."""
    app.register_blueprint(bp)


def entry_headers(
    served: Served, cache_control: str, now: float, nginx_seconds: int = 0
) -> list[tuple[str, str]]:
    """The headers of an answer from the cache (shared with the WSGI fast path in hits.py).

    ``nginx_seconds``: an anonymous read, which an nginx micro-cache in front may keep that long.
    """
    entry = served.entry
    headers = [("X-Cache", served.x_cache), ("Vary", VARY_VALUE)]
    if entry.status != 200:
        headers.append(("Cache-Control", "no-store"))
        return headers
    headers.append(("ETag", f'"{entry.etag}"'))
    headers.append(("Cache-Control", cache_control))
    if nginx_seconds and cache_control.startswith("public"):
        headers.append(("X-Accel-Expires", accel_expires(now, nginx_seconds)))
    if served.x_cache in ("HIT", "STALE"):
        headers.append(("Age", str(int(entry.age(now)))))
    return headers


def accel_expires(now: float, seconds: int) -> str:
    """X-Accel-Expires (read and removed by nginx): keep this answer until ``now + seconds`` at most.

    Absolute, because nginx counts whole seconds and keeps an entry through its expiry second: a
    relative ``1`` could serve it for almost 2 s. ``@T`` ends at T + 1, which is at most
    ``now + seconds``. nginx's clock must agree with this one (the same machine, or NTP).
    """
    return f"@{int(now) + seconds - 1}"


def not_modified(if_none_match: str | None, entry: Entry) -> bool:
    """True when the client's If-None-Match matches the entry (weak comparison, RFC 9110)."""
    return (
        bool(if_none_match) and entry.status == 200 and parse_etags(if_none_match).contains_weak(entry.etag)
    )


def cached_response(
    served: Served, collection: str, cache: ContentCache | None = None, nginx_seconds: int = 0
) -> Response:
    """Build the client's response: body, X-Cache, and for 200s ETag, Age and Cache-Control."""
    entry = served.entry
    now = (cache or content_cache()).clock()
    headers = entry_headers(served, cache_control_for(collection), now, nginx_seconds)
    if not_modified(request.headers.get("If-None-Match"), entry):
        return Response(status=304, headers=headers)
    return Response(entry.body, status=entry.status, headers=headers, content_type=entry.content_type)
