"""``GET /events/demo``: a page a person can look at, listing articles that update live.

The page (bffproxy/events-demo/: HTML, one script, one stylesheet, no build step, nothing from a CDN)
lists the newest articles through bffproxy's cache and subscribes to ``api/events?collections=articles``
with ``EventSource``. An event carries ids, never content, so on each one the page refetches the
list (a hit in the warm cache) and highlights what changed. Every URL in it is relative, so it works
under a tenant's path prefix (``/t/beta/events/demo``) and behind the shipped nginx site, which sends
the stream to the events app and the rest to the API app.

Served by the API app only, from the package's files, with an ``ETag`` (``304`` on revalidation)
and a Content-Security-Policy that lets the page run its own script and talk to its own origin only.
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

from flask import Blueprint, Flask, Response

from .openapi import conditional

bp = Blueprint("events_demo", __name__)

PAGE_DIR = Path(__file__).with_name("events-demo")
FILES = {  # what each route serves, and as what
    "demo": ("demo.html", "text/html; charset=utf-8"),
    "demo.js": ("demo.js", "text/javascript; charset=utf-8"),
    "demo.css": ("demo.css", "text/css; charset=utf-8"),
}
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


@bp.get("/events/demo")
def page() -> Response:
    """The page."""
    return served("demo")


@bp.get("/events/demo.js")
def script() -> Response:
    """The page's script."""
    return served("demo.js")


@bp.get("/events/demo.css")
def stylesheet() -> Response:
    """The page's stylesheet."""
    return served("demo.css")


def served(name: str) -> Response:
    """One of the page's files, revalidated on every use (``no-cache``): a ``304`` when unchanged."""
    body, etag, content_type = page_file(name)
    response = conditional(body, content_type, etag, "no-cache")  # a deploy changes all three at once
    response.headers.update(
        {
            "Content-Security-Policy": CSP,
            "X-Content-Type-Options": "nosniff",
            "X-Frame-Options": "DENY",
            "Referrer-Policy": "no-referrer",
        }
    )
    return response


@functools.cache
def page_file(name: str) -> tuple[bytes, str, str]:
    """A file of the page (read once per worker), its ETag and its content type."""
    filename, content_type = FILES[name]
    body = (PAGE_DIR / filename).read_bytes()
    return body, hashlib.sha256(body).hexdigest()[:32], content_type


def init_app(app: Flask) -> None:
    """Register the page's routes."""
    app.register_blueprint(bp)
