"""Fresh cache hits served at the WSGI layer, before Flask dispatches the request.

A hit is the hot path of a cache, and most of its cost under Flask is the framework itself:
context push, hooks, routing and the Response object. This middleware answers exactly one kind of
request on its own: an anonymous ``GET``/``HEAD`` of a publicly readable collection whose entry is
fresh in the cache. It routes the request with the same router as the Flask view (``reads.py``),
computes the same key from the same signature as ``content.py`` and sends
the same headers (``content.entry_headers``). Everything else — a token, draft parameters, a miss,
a stale entry, a store fault, a path it does not recognise — goes to the Flask app unchanged, so
the fast path can only ever skip work, never change an answer. ``BFFPROXY_FAST_HITS=false`` turns
it off.

Flask's ``after_request`` hooks do not run for a fast hit: a header that every response must carry
(CORS, security headers) belongs in ``content.entry_headers`` or a WSGI middleware outside this one,
and ``tests/test_hits.py`` compares the two paths header by header to catch the difference.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from typing import Any

from flask import Flask

from . import metrics, policies
from .caching import ContentCache, Served
from .content import entry_headers, not_modified
from .errors import ApiError
from .reads import response_format, split_read_path
from .request_id import HEADER as REQUEST_ID_HEADER
from .request_id import request_id_for
from .tenant_routing import ENVIRON_KEY
from .tenants import Tenant

log = logging.getLogger(__name__)

WsgiApp = Any
Hit = tuple[str, list[tuple[str, str]], bytes]
COLLECTION_ROUTE, DOCUMENT_ROUTE = "/api/<collection>", "/api/<collection>/<document_id>"  # content.py's


class FreshHits:
    """WSGI middleware: answer fresh anonymous hits directly, pass everything else to ``wsgi_app``."""

    def __init__(self, wsgi_app: WsgiApp, app: Flask) -> None:
        self.wsgi_app = wsgi_app
        self.cache: ContentCache = app.extensions["bffproxy.cache"]
        self.debug_headers = bool(app.config["DEBUG_HEADERS"])
        self.accel_expires = int(app.config["ACCEL_EXPIRES"])
        # Per tenant, the collections anyone may read: the only ones a fast hit can answer.
        self.public: dict[str, frozenset[str]] = {
            tenant.name: policies.public_collections(tenant.config, tenant.collections)
            for tenant in app.extensions["bffproxy.tenants"]
        }

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        try:
            hit = self.hit_for(environ)
        except Exception:  # a fast-path bug must never cost an answer: the app still serves it
            log.exception("fast hit path failed; serving through the app")
            hit = None
        if hit is None:
            return self.wsgi_app(environ, start_response)  # type: ignore[no-any-return]
        status, headers, body = hit
        start_response(status, headers)
        return [body]

    def hit_for(self, environ: dict[str, Any]) -> Hit | None:
        """The complete answer when this request is a fresh anonymous hit, else None."""
        method = environ.get("REQUEST_METHOD")
        if method not in ("GET", "HEAD") or "HTTP_AUTHORIZATION" in environ:
            return None
        tenant: Tenant | None = environ.get(ENVIRON_KEY)  # routed by tenant_routing.py
        if tenant is None:
            return None
        path_info = environ.get("PATH_INFO", "")
        split = split_read_path(path_info)
        if split is None or split[0] not in self.public[tenant.name]:
            return None
        try:  # the same router as the Flask view: a refused route is refused there, in our envelope
            route = tenant.router.route(path_info, environ.get("QUERY_STRING", ""))
        except ApiError:
            return None
        if route.drafts:
            return None
        collection = route.collection
        signature = route.signature(response_format(environ.get("HTTP_STRAPI_RESPONSE_FORMAT")))
        freshness = tenant.config["FRESHNESS"][collection]
        entry = self.cache.fresh_entry(tenant.name, collection, signature, freshness)
        if entry is None:
            return None
        # For the metrics layer and the access log: the Flask rule this request would have matched.
        environ[metrics.ROUTE] = COLLECTION_ROUTE if split[1] is None else DOCUMENT_ROUTE
        environ[metrics.CACHE] = "hit"
        cache_control = tenant.config["PUBLIC_CACHE_CONTROL"][collection]
        answer = entry_headers(Served(entry, "HIT"), cache_control, self.cache.clock(), self.accel_expires)
        answer.append((REQUEST_ID_HEADER, request_id_for(environ.get("HTTP_X_REQUEST_ID"))))
        if self.debug_headers:
            answer.append(("X-BFF-Worker", str(os.getpid())))
        if not_modified(environ.get("HTTP_IF_NONE_MATCH"), entry):
            return "304 NOT MODIFIED", answer, b""
        answer += [("Content-Type", entry.content_type), ("Content-Length", str(len(entry.body)))]
        return "200 OK", answer, b"" if method == "HEAD" else entry.body
