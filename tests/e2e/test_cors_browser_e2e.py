"""CORS in a real headless Chromium: the browser, not the test, decides what a page may read.

bffproxy serves tenant ``acme`` on 127.0.0.1:<port> with ``cors.origins`` naming one page origin. A
page from that origin reads content and its ``X-Cache`` header, signs in and writes a draft with
``Authorization`` and ``Idempotency-Key`` (both preflighted); a page from another origin
(``localhost``) is blocked by the browser itself.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests

from .browser import chromium, result_of, static_site
from .services import Gunicorn, Strapi, free_port

PAGE = """<!doctype html>
<meta charset="utf-8">
<pre id="result"></pre>
<script>
const BFF = %(bff)s, KEY = %(key)s, TITLE = %(title)s;
async function main() {
  const out = {};
  try {
    const read = await fetch(BFF + "/api/articles?pagination[pageSize]=2");
    const count = (await read.json()).data.length;
    out.read = {status: read.status, cache: read.headers.get("X-Cache"), count: count};
  } catch (error) { out.read = {error: String(error)}; }
  try {
    const login = await fetch(BFF + "/api/auth/local", {
      method: "POST", headers: {"Content-Type": "application/json"},
      body: JSON.stringify({identifier: "editor", password: "Editor-Passw0rd!"}),
    });
    const jwt = (await login.json()).jwt;
    const write = await fetch(BFF + "/api/articles?status=draft", {
      method: "POST",
      headers: {"Content-Type": "application/json", "Authorization": "Bearer " + jwt, "Idempotency-Key": KEY},
      body: JSON.stringify({data: {title: TITLE}}),
    });
    const body = await write.json();
    out.write = {status: write.status, documentId: body.data && body.data.documentId,
                 request: write.headers.get("X-Request-ID")};
  } catch (error) { out.write = {error: String(error)}; }
  const result = document.getElementById("result");
  result.textContent = JSON.stringify(out);
  result.dataset.done = "1";
}
main();
</script>
"""


def run_page(bff_url: str, site: Path, origin: tuple[str, int], profile: Path, key: str, title: str) -> Any:
    """Serve the page from ``origin`` (host, port) and let Chromium run it; what the page could read."""
    site.mkdir(exist_ok=True)
    values = {"bff": json.dumps(bff_url), "key": json.dumps(key), "title": json.dumps(title)}
    (site / "index.html").write_text(PAGE % values)
    with static_site(site, *origin) as served, chromium(profile) as browser:
        browser.get(f"{served}/index.html")
        return json.loads(result_of(browser))


def test_an_allowed_origin_reads_and_writes_a_disallowed_one_is_blocked_by_the_browser(
    start_bff: Callable[..., Gunicorn], strapi_live: Strapi, tmp_path: Path
) -> None:
    site, page_port = tmp_path / "site", free_port()  # the page's origin goes in the tenants file
    allowed = f"http://127.0.0.1:{page_port}"
    tenants = tmp_path / "tenants.toml"
    tenants.write_text(
        f"""
[tenants.acme]
hosts = ["127.0.0.1"]
collections = ["articles", "categories"]
[tenants.acme.policies]
articles = "read=public,drafts=editor,write=editor"
[tenants.acme.cors]
origins = ["{allowed}"]
allow_credentials = true
max_age = 60
"""
    )
    bff = start_bff(TENANTS_FILE=str(tenants), SINGLE_TYPES="")
    requests.get(f"{bff.url}/api/articles?pagination[pageSize]=2", timeout=10)  # warm: the page sees a HIT
    key, title = f"cors-{uuid.uuid4().hex}", f"CORS draft {uuid.uuid4().hex[:8]}"
    ok = run_page(bff.url, site, ("127.0.0.1", page_port), tmp_path / "profile-ok", key, title)
    assert ok["read"] == {"status": 200, "cache": "HIT", "count": 2}
    assert ok["write"]["status"] == 201 and ok["write"]["documentId"] and ok["write"]["request"]
    blocked = run_page(
        bff.url, site, ("localhost", 0), tmp_path / "profile-blocked", f"{key}-2", f"{title} 2"
    )
    assert blocked["read"] == {"error": "TypeError: Failed to fetch"}
    assert blocked["write"] == {"error": "TypeError: Failed to fetch"}  # the preflight was refused
    token = {"Authorization": f"Bearer {strapi_live.api_token}"}
    found = requests.get(
        f"{strapi_live.url}/api/articles?status=draft&filters[title][$startsWith]={title}",
        headers=token,
        timeout=10,
    ).json()["data"]
    assert [a["title"] for a in found] == [title]  # only the allowed page wrote, once
    for article in found:
        requests.delete(f"{strapi_live.url}/api/articles/{article['documentId']}", headers=token, timeout=10)
