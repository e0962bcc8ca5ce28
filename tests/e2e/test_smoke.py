"""The walking skeleton end to end: real Strapi 5, bffproxy under real gunicorn with 2 workers."""

from __future__ import annotations

import requests

from .services import Gunicorn, Strapi


def test_list_through_bff_equals_strapi(bff: Gunicorn, strapi_live: Strapi) -> None:
    direct = strapi_live.get("api/articles").json()
    first = requests.get(f"{bff.url}/api/articles", timeout=10)
    assert first.status_code == 200
    assert first.json() == direct
    assert direct["meta"]["pagination"]["total"] == 30
