"""Attack tests for issue 10 on real gunicorn, the real Strapi and a real headless Chromium.

Both tenants front the session's Strapi here (one Strapi is enough for routing, reloads and CORS):
``acme`` (hosts ``acme.test``, ``*.acme.test``; articles and categories; CORS for one page origin)
and ``beta`` (host ``beta.test``, prefix ``/t/beta``; articles only, its own JWT secret), so
``/api/categories`` answering 200 or 404 says which tenant a request reached, and a token signed
by the Strapi is acme's only.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import requests

from .browser import chromium, result_of, static_site
from .services import Gunicorn, Strapi, free_port, wait_until

EDITOR = {"identifier": "editor", "password": "Editor-Passw0rd!"}
BETA_JWT = "beta-has-another-jwt-secret-" + "z" * 24


def tenants_toml(strapi: Strapi, origin: str = "http://localhost:1", extra_beta_host: str = "") -> str:
    beta_hosts = ", ".join(f'"{h}"' for h in ("beta.test", extra_beta_host) if h)
    return f"""
[tenants.acme]
hosts = ["acme.test", "*.acme.test"]
strapi_url = "{strapi.url}"
strapi_api_token_env = "ATTACK_ACME_TOKEN"
strapi_jwt_secret_env = "ATTACK_ACME_JWT"
collections = ["articles", "categories"]

[tenants.acme.policies]
articles = "read=public,drafts=editor,write=editor"

[tenants.acme.cors]
origins = ["{origin}"]
allow_credentials = true
max_age = 60

[tenants.beta]
hosts = [{beta_hosts}]
path_prefix = "/t/beta"
strapi_url = "{strapi.url}"
strapi_jwt_secret = "{BETA_JWT}"
collections = ["articles"]

[tenants.beta.policies]
articles = "read=public,drafts=editor,write=editor"
"""


@pytest.fixture
def tenants_file(tmp_path: Path, strapi_live: Strapi, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("ATTACK_ACME_TOKEN", strapi_live.api_token)
    monkeypatch.setenv("ATTACK_ACME_JWT", strapi_live.jwt_secret)
    path = tmp_path / "tenants.toml"
    path.write_text(tenants_toml(strapi_live))
    return path


@pytest.fixture
def bff(start_bff: Callable[..., Gunicorn], tenants_file: Path) -> Gunicorn:
    return start_bff(TENANTS_FILE=str(tenants_file), SINGLE_TYPES="", TENANT_HEADER="X-Tenant")


def raw(bff: Gunicorn, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send bytes as they are (no client fixes the Host or the path); status, headers, body."""
    with socket.create_connection(("127.0.0.1", bff.port), timeout=10) as sock:
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
    return int(lines[0].split()[1]), headers, body


def get(path: str, host: str, **headers: str) -> bytes:
    lines = [f"GET {path} HTTP/1.1", f"Host: {host}", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join([*lines, "Connection: close", "", ""])).encode("latin-1")


def tenant_of(bff: Gunicorn, request: bytes) -> str:
    """Which tenant answered: acme exposes categories, beta does not; no tenant is unknown."""
    status, _, body = raw(bff, request)
    if status == 200:
        return "acme"
    code = json.loads(body)["error"]["code"] if body.startswith(b"{") else f"html {status}"
    return {"not_found": "beta", "unknown_tenant": "none"}.get(code, code)


TWO_HOSTS = b"GET /api/categories HTTP/1.1\r\nHost: beta.test\r\nHost: acme.test\r\nConnection: close\r\n\r\n"


def test_host_prefix_and_header_tricks_on_real_gunicorn(bff: Gunicorn) -> None:
    cases = {
        get("/api/categories", "ACME.Test.:8080"): "acme",
        get("/api/categories", "shop.acme.test"): "acme",
        get("/api/categories", "beta.test"): "beta",
        get("/t/beta/api/categories", "acme.test"): "beta",
        get("/t/beta%2Fapi/categories", "acme.test"): "beta",  # gunicorn decodes %2F before routing
        get("/t/beta/api/%63ategories", "nobody.test"): "beta",
        get("/T/beta/api/categories", "nobody.test"): "none",
        get("/api/categories", "nobody.test"): "none",
        get("/api/categories", "[::1]:8080"): "none",
        get("/api/categories", "acme.test", **{"X-Forwarded-Host": "beta.test"}): "acme",  # not trusted
        get("/api/categories", "beta.test", **{"X-Tenant": "acme"}): "acme",  # enabled: decides alone
        get("/api/categories", "acme.test", **{"X-Tenant": "gamma"}): "none",
        get("/api/categories", "beta.test", **{"X_Tenant": "acme"}): "beta",  # gunicorn drops '_' names
        b"GET /api/categories HTTP/1.0\r\n\r\n": "none",  # no Host: gunicorn's bind address, no tenant
        TWO_HOSTS: "html 400",  # gunicorn refuses a duplicated Host before any routing
    }
    assert {request: tenant_of(bff, request) for request in cases} == cases


def login(bff: Gunicorn, host: str) -> dict[str, str]:
    answer = requests.post(f"{bff.url}/api/auth/local", json=EDITOR, headers={"Host": host}, timeout=10)
    assert answer.status_code == 200, answer.text
    return {"Authorization": f"Bearer {answer.json()['jwt']}"}


def test_a_real_strapi_token_of_acme_is_refused_on_beta_for_every_kind_of_request(bff: Gunicorn) -> None:
    token = login(bff, "acme.test")
    assert requests.get(f"{bff.url}/api/me", headers={"Host": "acme.test", **token}, timeout=10).ok
    attempts = [
        ("GET", "/api/articles", "beta.test"),
        ("GET", "/api/articles?status=draft", "beta.test"),
        ("GET", "/t/beta/api/me", "acme.test"),
        ("POST", "/t/beta/api/articles?status=draft", "acme.test"),
        ("PUT", "/api/articles/aaaaaaaaaaaaaaaaaaaaaaaa", "beta.test"),
    ]
    for method, path, host in attempts:
        answer = requests.request(
            method,
            f"{bff.url}{path}",
            json={"data": {"title": "x"}},
            headers={"Host": host, **token},
            timeout=10,
        )
        assert (answer.status_code, answer.json()["error"]["code"]) == (401, "invalid_token"), path


def worker_pids(bff: Gunicorn, host: str = "acme.test") -> set[str]:
    return {
        requests.get(f"{bff.url}/healthz", headers={"Host": host}, timeout=10).headers["X-BFF-Worker"]
        for _ in range(20)
    }


def replace_workers(bff: Gunicorn) -> None:
    """Kill every worker and wait until only new ones answer (each builds the app again)."""
    old = worker_pids(bff)
    for pid in old:
        os.kill(int(pid), signal.SIGKILL)

    def only_new() -> bool:
        try:
            return not worker_pids(bff) & old
        except requests.RequestException:
            return False

    wait_until(only_new, 20, "new workers")


def test_a_broken_file_never_reaches_a_worker_restarted_with_or_without_a_reload(
    bff: Gunicorn, tenants_file: Path
) -> None:
    tenants_file.write_text(
        tenants_file.read_text().replace('hosts = ["beta.test"]', 'hosts = ["acme.test"]')
    )
    replace_workers(bff)  # a crash or max_requests: workers restart without any HUP
    assert bff.process is not None and bff.process.poll() is None
    for _ in range(10):
        assert tenant_of(bff, get("/api/categories", "beta.test")) == "beta"
    os.environ.pop("ATTACK_UNSET_SECRET", None)
    tenants_file.write_text(
        tenants_file.read_text()
        .replace('hosts = ["acme.test"]', 'hosts = ["beta.test"]')
        .replace(f'strapi_jwt_secret = "{BETA_JWT}"', 'strapi_jwt_secret_env = "ATTACK_UNSET_SECRET"')
    )
    os.kill(bff.process.pid, signal.SIGHUP)
    wait_until(lambda: "ATTACK_UNSET_SECRET is not set" in bff.log(), 20, "the reload error logged")
    replace_workers(bff)
    assert bff.process.poll() is None
    for _ in range(10):
        assert tenant_of(bff, get("/api/categories", "acme.test")) == "acme"
        assert tenant_of(bff, get("/api/categories", "beta.test")) == "beta"


def reloads(bff: Gunicorn) -> int:
    """How many reloads the arbiter has logged, good or refused."""
    log = bff.log()
    return log.count("configuration reloaded") + log.count("configuration error on reload")


def test_no_request_fails_while_the_tenants_file_is_reloaded_under_load(
    bff: Gunicorn, tenants_file: Path
) -> None:
    good = tenants_file.read_text()
    failures: list[str] = []
    served = [0]
    stop = threading.Event()

    def hammer(host: str, path: str, expected: int) -> None:
        session = requests.Session()  # keep-alive, as a browser or an app server would
        while not stop.is_set():
            try:
                status = session.get(f"{bff.url}{path}", headers={"Host": host}, timeout=10).status_code
            except requests.RequestException as exc:
                failures.append(f"{host}{path}: {exc!r}")
                continue
            served[0] += 1
            if status != expected:
                failures.append(f"{host}{path}: {status}")

    threads = [
        threading.Thread(target=hammer, args=args)
        for args in (
            ("acme.test", "/api/categories?pagination[pageSize]=1", 200),
            ("beta.test", "/api/categories", 404),
            ("x.test", "/t/beta/api/articles?pagination[pageSize]=1", 200),
        )
    ]
    for thread in threads:
        thread.start()
    try:
        assert bff.process is not None
        for text in (good.replace('"beta.test"]', '"beta.test", "beta2.test"]'), "[tenants.acme\n", good):
            tenants_file.write_text(text)
            before = reloads(bff)
            os.kill(bff.process.pid, signal.SIGHUP)
            wait_until(lambda before=before: reloads(bff) > before, 20, "the reload")
            time.sleep(1.5)  # the old workers finish and are replaced under load
    finally:
        stop.set()
        for thread in threads:
            thread.join(15)
    assert failures == [] and served[0] > 30
    assert bff.process.poll() is None


PAGE = """<!doctype html>
<meta charset="utf-8">
<pre id="result"></pre>
<script>
const BFF = %(bff)s, OTHER = %(other)s;
async function attempt(name, url, init) {
  try {
    const answer = await fetch(url, init);
    let code = null;
    try { code = (await answer.clone().json()).error.code; } catch (e) {}
    return [name, {status: answer.status, code: code, cache: answer.headers.get("X-Cache"),
                   etag: answer.headers.get("ETag")}];
  } catch (error) { return [name, {error: String(error)}]; }
}
async function main() {
  const out = {};
  const steps = [
    ["read", BFF + "/api/articles?pagination[pageSize]=1"],
    ["revalidated", BFF + "/api/articles?pagination[pageSize]=1", {cache: "no-cache"}],
    ["not_found", BFF + "/api/nothing"],
    ["bad_token", BFF + "/api/me", {headers: {"Authorization": "Bearer junk"}}],
    ["too_large", BFF + "/api/articles", {method: "POST", headers: {"Content-Type": "application/json"},
                                          body: "[".repeat(4096)}],
    ["custom_header", BFF + "/api/articles", {headers: {"X-Evil": "1"}}],
    ["patch", BFF + "/api/articles", {method: "PATCH"}],
    ["other_tenant", OTHER + "/api/articles"],
    ["unknown_tenant", BFF.replace("127.0.0.1", "localhost") + "/api/articles"],
  ];
  for (const [name, url, init] of steps) {
    const [key, value] = await attempt(name, url, init);
    out[key] = value;
  }
  const result = document.getElementById("result");
  result.textContent = JSON.stringify(out);
  result.dataset.done = "1";
}
main();
</script>
"""


def test_what_a_page_on_the_allowed_origin_can_read_in_a_real_browser(
    start_bff: Callable[..., Gunicorn], strapi_live: Strapi, tenants_file: Path, tmp_path: Path
) -> None:
    page_port = free_port()
    origin = f"http://127.0.0.1:{page_port}"
    text = tenants_toml(strapi_live, origin).replace('"acme.test", "*.acme.test"', '"127.0.0.1"')
    tenants_file.write_text(text)
    bff = start_bff(TENANTS_FILE=str(tenants_file), SINGLE_TYPES="", MAX_CONTENT_LENGTH="1024")
    site = tmp_path / "site"
    site.mkdir()
    values = {"bff": json.dumps(bff.url), "other": json.dumps(f"{bff.url}/t/beta")}
    (site / "index.html").write_text(PAGE % values)
    with static_site(site, "127.0.0.1", page_port) as served, chromium(tmp_path / "profile") as browser:
        browser.get(f"{served}/index.html")
        seen = json.loads(result_of(browser, timeout=30))
    assert seen["read"]["status"] == 200 and seen["read"]["cache"] in ("MISS", "HIT")
    # The browser revalidates with If-None-Match; the 304 carries CORS, so the page reads a 200.
    assert seen["revalidated"]["status"] == 200 and seen["revalidated"]["etag"] == seen["read"]["etag"]
    assert seen["not_found"] == {"status": 404, "code": "not_found", "cache": None, "etag": None}
    assert (seen["bad_token"]["status"], seen["bad_token"]["code"]) == (401, "invalid_token")
    assert (seen["too_large"]["status"], seen["too_large"]["code"]) == (413, "payload_too_large")
    blocked = {"error": "TypeError: Failed to fetch"}
    assert seen["custom_header"] == blocked  # the preflight does not allow X-Evil
    assert seen["patch"] == blocked  # nor PATCH
    assert seen["other_tenant"] == blocked  # beta (the prefix) has no CORS for this origin
    assert seen["unknown_tenant"] == blocked  # no tenant, no CORS: the page cannot read the 404


# -- findings of the attack on issue 10, fixed: each failed on 7700ae4 ---------------------------


def test_ef1_an_absolute_form_request_target_names_the_tenant_not_the_host_header(
    bff: Gunicorn,
) -> None:
    # RFC 9112 3.2.2: a server receiving the absolute form MUST ignore Host and use the target's
    # authority (or refuse the request when they disagree). On 7700ae4 the Host header decided.
    request = b"GET http://beta.test/api/categories HTTP/1.1\r\nHost: acme.test\r\nConnection: close\r\n\r\n"
    assert tenant_of(bff, request) in ("beta", "html 400")


def test_ef2_two_instances_sharing_a_cache_dir_keep_their_own_tenants_after_a_worker_restart(
    start_bff: Callable[..., Gunicorn],
    strapi_live: Strapi,
    tenants_file: Path,
    tmp_path: Path,
) -> None:
    shared = tmp_path / "shared-cache"  # e.g. blue and green both on /var/cache/bffproxy
    shared.mkdir()
    blue = start_bff(cache_dir=shared, TENANTS_FILE=str(tenants_file), SINGLE_TYPES="")
    green_file = tmp_path / "green.toml"
    green_file.write_text(
        tenants_toml(strapi_live).replace('hosts = ["acme.test", "*.acme.test"]', 'hosts = ["green.test"]')
    )
    start_bff(cache_dir=shared, TENANTS_FILE=str(green_file), SINGLE_TYPES="")
    assert tenant_of(blue, get("/api/categories", "acme.test")) == "acme"
    replace_workers(blue)  # a crash, max_requests or a timeout kill: no HUP, no edit of blue's file
    # On 7700ae4 blue's new workers read <CACHE_DIR>/tenants.active.toml, which green overwrote.
    assert tenant_of(blue, get("/api/categories", "acme.test")) == "acme"
