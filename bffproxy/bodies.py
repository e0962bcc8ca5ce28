"""Reading request bodies that must be JSON, without ever turning odd input into a 500."""

from __future__ import annotations

from typing import Any

from flask import request


def json_or_none(*, force: bool = False) -> Any:
    """The body parsed as JSON, or None when it is empty, not JSON, or nested too deeply to parse.

    ``force`` ignores the Content-Type (Strapi's webhooks, operators' curl commands). A body over
    ``MAX_CONTENT_LENGTH`` still raises Werkzeug's 413, which the error handlers answer in JSON.
    """
    try:
        return request.get_json(force=force, silent=True)
    except RecursionError:  # "[[[[..." deeper than the parser can go
        return None
