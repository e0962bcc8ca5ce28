"""The Python floor: a bare Flask app answering the same bytes as bffproxy, from memory.

Run under the same gunicorn.conf.py, workers and threads as bffproxy, so the difference between the
two is what bffproxy's cache lookup costs. ``BENCH_FLOOR_BODIES`` names a JSON file mapping a request
path with its query (``/api/articles?x=1``) to the body text to answer with.
"""

from __future__ import annotations

import json
import os

from flask import Flask, Response, request

CONTENT_TYPE = "application/json; charset=utf-8"


def create_app(bodies_file: str) -> Flask:
    """A Flask app that answers each known path with its stored bytes, anything else with 404."""
    with open(bodies_file, encoding="utf-8") as handle:
        bodies = {path: text.encode() for path, text in json.load(handle).items()}
    app = Flask(__name__)

    @app.get("/healthz")
    def healthz() -> Response:
        return Response(b'{"status":"ok"}', content_type=CONTENT_TYPE)

    @app.get("/<path:_path>")
    def answer(_path: str) -> Response:
        body = bodies.get(request.full_path.rstrip("?"))
        if body is None:
            return Response(b'{"error":"unknown path"}', status=404, content_type=CONTENT_TYPE)
        return Response(body, content_type=CONTENT_TYPE)

    return app


app = create_app(os.environ.get("BENCH_FLOOR_BODIES", "bench/results/floor-bodies.json"))
