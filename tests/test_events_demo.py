"""The live articles page: its files, headers, relative URLs (tenant path prefixes), and packaging."""

from __future__ import annotations

import html.parser
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import pytest
import responses
from flask.testing import FlaskClient

from bffproxy import create_app, create_events_app, events_demo

from .conftest import STRAPI, strapi_list

ROOT = Path(__file__).resolve().parents[1]
FILES = {
    "/events/demo": "text/html; charset=utf-8",
    "/events/demo.js": "text/javascript; charset=utf-8",
    "/events/demo.css": "text/css; charset=utf-8",
}
TENANTS = """
[tenants.acme]
hosts = ["acme.test"]
collections = ["articles", "categories"]

[tenants.beta]
path_prefix = "/t/beta"
collections = ["articles"]
"""


class Markup(html.parser.HTMLParser):
    """The page's tags and attributes, and whether any script or style is written inline."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.inline: list[str] = []
        self._open: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self._open = tag

    def handle_data(self, data: str) -> None:
        if self._open in ("script", "style") and data.strip():
            self.inline.append(data)

    def handle_endtag(self, tag: str) -> None:
        self._open = None


def markup(client: FlaskClient, path: str = "/events/demo") -> Markup:
    parser = Markup()
    parser.feed(client.get(path).get_data(as_text=True))
    return parser


def script_urls() -> dict[str, str]:
    """The URL constants of the page's script."""
    script = (events_demo.PAGE_DIR / "demo.js").read_text()
    return dict(re.findall(r'const (\w+_URL) =\s*"([^"]*)"', script))


@pytest.fixture
def tenants_client(tmp_path: Path, config: dict[str, Any]) -> FlaskClient:
    path = tmp_path / "tenants.toml"
    path.write_text(TENANTS)
    return create_app({**config, "TENANTS_FILE": str(path)}).test_client()


# -- the files and their headers ---------------------------------------------------------------------


@pytest.mark.parametrize("path", FILES)
def test_each_file_is_served_with_its_type_a_strict_policy_and_an_etag(
    client: FlaskClient, path: str
) -> None:
    answer = client.get(path)
    assert answer.status_code == 200 and answer.headers["Content-Type"] == FILES[path]
    assert answer.data == events_demo.page_file(path.rsplit("/", 1)[1])[0]
    assert answer.headers["X-Content-Type-Options"] == "nosniff"
    assert answer.headers["X-Frame-Options"] == "DENY" and answer.headers["Referrer-Policy"] == "no-referrer"
    assert answer.headers["Cache-Control"] == "no-cache"  # revalidated: a deploy changes all three
    etag = answer.headers["ETag"]
    again = client.get(path, headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.data == b""
    head = client.head(path)
    assert head.status_code == 200 and head.data == b"" and head.headers["ETag"] == etag


def test_the_policy_allows_the_pages_own_files_and_origin_only(client: FlaskClient) -> None:
    policy = client.get("/events/demo").headers["Content-Security-Policy"]
    directives = dict(d.strip().split(" ", 1) for d in policy.split(";"))
    assert directives["default-src"] == "'self'"
    for name in ("script-src", "style-src", "connect-src"):
        assert directives[name] == "'self'", name  # no inline code, no eval, no other origin
    assert directives["frame-ancestors"] == "'none'" and directives["base-uri"] == "'none'"
    assert directives["object-src"] == "'none'" and directives["form-action"] == "'none'"


def test_the_page_has_no_inline_code_and_loads_its_two_files(client: FlaskClient) -> None:
    page = markup(client)
    assert page.inline == []
    handlers = [(tag, name) for tag, attrs in page.tags for name in attrs if name.startswith("on")]
    assert handlers == [] and not [tag for tag, attrs in page.tags if "style" in attrs]
    scripts = [attrs.get("src") for tag, attrs in page.tags if tag == "script"]
    styles = [attrs.get("href") for tag, attrs in page.tags if tag == "link"]
    assert scripts == ["demo.js"] and styles == ["demo.css"]


def test_the_script_never_parses_data_as_html() -> None:
    script = (events_demo.PAGE_DIR / "demo.js").read_text()
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "Function("):
        assert sink not in script, sink
    assert "textContent" in script


def test_unknown_files_are_not_served(client: FlaskClient) -> None:
    for path in ("/events/demo/", "/events/demo.html", "/events/demo.txt", "/events/demo.js/x"):
        assert client.get(path).status_code == 404, path


def test_the_events_app_does_not_serve_the_page(config: dict[str, Any]) -> None:
    assert create_events_app(config).test_client().get("/events/demo").status_code == 404


# -- relative URLs: the page works under any tenant's path prefix ------------------------------------------


def test_every_url_of_the_page_is_relative_to_it(client: FlaskClient) -> None:
    linked = [v for _, attrs in markup(client).tags for k, v in attrs.items() if k in ("src", "href") and v]
    urls = [*linked, *script_urls().values()]
    assert len(urls) == 4
    for url in urls:
        parts = urlsplit(url)
        assert not parts.scheme and not parts.netloc and not url.startswith("/"), url


@pytest.mark.parametrize("prefix", ["", "/t/beta"])
def test_under_a_path_prefix_the_page_reaches_its_own_tenants_files_and_api(
    tenants_client: FlaskClient, strapi: responses.RequestsMock, prefix: str
) -> None:
    page = f"http://bff.test{prefix}/events/demo"
    headers = {} if prefix else {"Host": "acme.test"}
    assert tenants_client.get(page, headers=headers).status_code == 200
    for url in ("demo.js", "demo.css"):
        assert tenants_client.get(urljoin(page, url), headers=headers).status_code == 200
    urls = {name: urljoin(page, url) for name, url in script_urls().items()}
    assert urlsplit(urls["EVENTS_URL"]).path == f"{prefix}/api/events"
    strapi.get(f"{STRAPI}/api/articles", json=strapi_list("First"))
    articles = tenants_client.get(urls["ARTICLES_URL"], headers=headers)
    assert articles.status_code == 200 and articles.get_json()["data"][0]["title"] == "First"
    sent = strapi.calls[-1].request.url or ""
    for part in (
        "fields[0]=title",
        "fields[1]=updatedAt",
        "sort[0]=updatedAt%3Adesc",
        "pagination[pageSize]=10",
    ):
        assert part in sent, sent


def test_the_shipped_nginx_site_sends_the_pages_stream_to_the_events_app_under_a_prefix() -> None:
    site = (ROOT / "deploy" / "nginx" / "bffproxy.conf").read_text()
    (events_location,) = re.findall(r"location ~ (\S+) \{\n\s*proxy_pass http://bffproxy_events;", site)
    for prefix in ("", "/t/beta"):
        page = f"http://bff.test{prefix}/events/demo"
        stream = urlsplit(urljoin(page, script_urls()["EVENTS_URL"])).path
        assert re.search(events_location, stream), stream
        assert not re.search(events_location, urlsplit(page).path)  # the page itself: the API app


# -- packaging ---------------------------------------------------------------------------------------


def test_an_installed_package_ships_the_pages_files(tmp_path: Path) -> None:
    source = tmp_path / "source"
    shutil.copytree(ROOT / "bffproxy", source / "bffproxy", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("setup.cfg", "setup.py", "README.md"):
        shutil.copy(ROOT / name, source / name)
    built = tmp_path / "built"
    subprocess.run(
        [sys.executable, "setup.py", "-q", "build_py", "--build-lib", str(built)],
        cwd=source,
        check=True,
        capture_output=True,
    )
    shipped = sorted(p.name for p in (built / "bffproxy" / "events-demo").iterdir())
    assert (
        shipped
        == sorted(p.name for p in events_demo.PAGE_DIR.iterdir())
        == sorted(name for name, _ in events_demo.FILES.values())
    )
