"""/docs in a real headless Chromium: Swagger UI, served by bffproxy itself, renders every operation.

The page loads its scripts and styles from bffproxy under a strict Content-Security-Policy (no CDN:
this network has none), fetches ./openapi.json relative to itself, so a tenant's path prefix works.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests
from selenium.webdriver.support.ui import WebDriverWait

from .browser import chromium
from .services import Gunicorn, Strapi

TENANTS = """
[tenants.acme]
hosts = ["127.0.0.1"]
collections = ["articles", "categories"]

[tenants.beta]
path_prefix = "/t/beta"
collections = ["articles"]
"""


def rendered(browser: Any, url: str) -> dict[str, Any]:
    """Open ``url`` and wait for Swagger UI's operation blocks; what the page shows."""
    browser.get(url)
    WebDriverWait(browser, 30).until(
        lambda d: d.execute_script("return document.querySelectorAll('.opblock').length")
    )
    return browser.execute_script(  # type: ignore[no-any-return]
        """return {
          count: document.querySelectorAll('.opblock').length,
          paths: Array.from(document.querySelectorAll('.opblock-summary-path')).map(e => e.dataset.path),
          title: (document.querySelector('.info .title') || {}).textContent,
          errors: (document.querySelector('.errors-wrapper') || {}).textContent || null,
        }"""
    )


def described_operations(url: str) -> int:
    document = requests.get(url, timeout=10).json()
    return sum(len(item) for item in document["paths"].values())


def test_docs_render_every_operation_and_work_under_a_path_prefix(
    start_bff: Callable[..., Gunicorn], strapi_live: Strapi, tmp_path: Path
) -> None:
    tenants = tmp_path / "tenants.toml"
    tenants.write_text(TENANTS)
    bff = start_bff(TENANTS_FILE=str(tenants), SINGLE_TYPES="")
    with chromium(tmp_path / "profile") as browser:
        acme = rendered(browser, f"{bff.url}/docs")
        beta = rendered(browser, f"{bff.url}/t/beta/docs")
        # Swagger UI's own query config (?url=, ?configUrl=) would load anyone's document: ignored.
        hostile = rendered(
            browser, f"{bff.url}/docs?url=http://127.0.0.1:9/x.json&configUrl=http://127.0.0.1:9/c"
        )
        console = [entry["message"] for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    assert acme["count"] == described_operations(f"{bff.url}/openapi.json") > 30
    assert "/api/articles/{documentId}" in acme["paths"] and "/api/categories" in acme["paths"]
    assert acme["title"].startswith("bffproxy (acme)") and acme["errors"] is None
    assert beta["count"] == described_operations(f"{bff.url}/t/beta/openapi.json") < acme["count"]
    assert "/api/categories" not in beta["paths"] and beta["title"].startswith("bffproxy (beta)")
    assert hostile == acme
    assert not [line for line in console if "Content Security Policy" in line or "/docs/" in line], console
