"""/events/demo in a real headless Chromium: the live articles page a person looks at.

The deployed shape: the real Strapi 5, the API app (gthread, Strapi's webhooks) and the events app
(gevent, the streams) on one cache directory, and the shipped nginx site in front of both. The page
is loaded through nginx, goes live, and shows an edit and a publish made in Strapi itself, under a
tenant's path prefix too; a screenshot is kept. Then the page's script alone, with ``fetch`` and
``EventSource`` replaced by fakes the test drives: no articles, titles made of HTML or very long,
events arriving while a refetch is in flight, failures, ``resync`` and ``end``.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from selenium.webdriver.support.ui import WebDriverWait

from bffproxy import events_demo
from tests.test_deploy import nginx_available, nginx_command, write_nginx_conf

from .browser import chromium, static_site
from .services import Gunicorn, StrapiEditor, free_port, wait_until

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOT = ROOT / "var" / "screenshots" / "events-demo.png"
SHOWN_WITHIN = 10.0  # seconds from a change in Strapi to the page showing it
# One tenant behind a path prefix, and the default for requests without one (Strapi's webhooks).
TENANTS = """
default_tenant = "beta"
[tenants.beta]
path_prefix = "/t/beta"
collections = ["articles", "categories"]
[tenants.beta.policies]
articles = "read=public,drafts=editor,write=editor"
"""


@dataclass
class Front:
    """nginx (the shipped site) in front of the API app and the events app."""

    port: int
    api: Gunicorn
    events: Gunicorn

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@contextmanager
def nginx_in_front_of(api: Gunicorn, events: Gunicorn, prefix: Path) -> Iterator[Front]:
    """The shipped nginx site on a free port: /api/events* to ``events``, the rest to ``api``."""
    prefix.mkdir()
    port = free_port()
    conf = write_nginx_conf(prefix, upstream_port=api.port, listen_port=port, events_port=events.port)
    with open(prefix / "nginx-stderr.log", "wb") as stderr:
        process = subprocess.Popen(
            nginx_command(prefix, conf), stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True
        )
    try:
        wait_until(
            lambda: process.poll() is None and _answers(f"http://127.0.0.1:{port}/healthz"), 15, "nginx"
        )
        yield Front(port, api, events)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(10)


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=1).status_code == 200
    except requests.RequestException:
        return False


@pytest.fixture
def front(start_bff: Callable[..., Gunicorn], webhook_port: int, tmp_path: Path) -> Iterator[Front]:
    if not nginx_available():
        pytest.skip("nginx is not installed (make system-deps)")
    tenants = tmp_path / "tenants.toml"
    tenants.write_text(TENANTS)
    settings = {
        "TENANTS_FILE": str(tenants),
        "TRUSTED_PROXIES": "1",
        "SINGLE_TYPES": "",
        "EVENTS_HEARTBEAT": "1",  # a stream whose browser went away is closed (and logged) soon
    }
    shared = tmp_path / "shared-cache"
    api = start_bff(port=webhook_port, cache_dir=shared, **settings)
    events = start_bff(cache_dir=shared, app="events_app", workers=1, **settings)
    with nginx_in_front_of(api, events, tmp_path / "nginx") as running:
        yield running


def shown(browser: Any) -> dict[str, Any]:
    """What the page shows: connection state, articles (title, id, highlighted), problem, events."""
    return browser.execute_script(  # type: ignore[no-any-return]
        """return {
          state: document.getElementById('state').textContent,
          articles: Array.from(document.querySelectorAll('#articles > li'), li => ({
            id: li.dataset.documentId, title: li.querySelector('.title').textContent,
            changed: li.classList.contains('changed')})),
          markup: Array.from(document.querySelectorAll('#articles *'), e => e.tagName.toLowerCase()),
          empty: !document.getElementById('empty').hidden,
          problem: (p => p.hidden ? null : p.textContent)(document.getElementById('problem')),
          events: Array.from(document.querySelectorAll('#events > li'), li => li.textContent),
          pwned: window.pwned === undefined ? null : window.pwned,
          overflows: document.documentElement.scrollWidth > window.innerWidth,
        }"""
    )


def wait_shown(
    browser: Any, check: Callable[[dict[str, Any]], bool], within: float = SHOWN_WITHIN
) -> dict[str, Any]:
    """What the page shows once ``check`` holds (within ``within`` seconds)."""
    try:
        WebDriverWait(browser, within, poll_frequency=0.1).until(lambda b: check(shown(b)))
    except Exception:
        raise AssertionError(f"the page never showed it; it shows {shown(browser)}") from None
    return shown(browser)


def titled(title: str) -> Callable[[dict[str, Any]], bool]:
    return lambda page: any(a["title"] == title for a in page["articles"])


def console_problems(browser: Any) -> list[str]:
    """Console errors: CSP violations, JS exceptions, failed loads (not the browser's own /favicon.ico)."""
    errors = [entry["message"] for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    return [message for message in errors if not message.split(" ", 1)[0].endswith("/favicon.ico")]


def streams_served(server: Gunicorn) -> list[str]:
    """The paths of the event streams ``server`` answered, from its access log (written as each ends)."""
    lines = [line for line in server.log().splitlines() if line.startswith("{") and '"access"' in line]
    return [entry["path"] for entry in map(json.loads, lines) if entry.get("route") == "/api/events"]


def keep_screenshot(browser: Any, tmp_path: Path) -> Path:
    """A screenshot in the test's output, the last one also at var/screenshots/events-demo.png."""
    path = tmp_path / "events-demo.png"
    assert browser.save_screenshot(str(path))
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(path, SCREENSHOT)
    print(f"screenshot: {path} (also {SCREENSHOT})")
    return path


# -- the real thing ----------------------------------------------------------------------------------


def test_the_page_shows_an_edit_and_a_publish_made_in_strapi_live(
    front: Front, strapi_editor: StrapiEditor, tmp_path: Path
) -> None:
    mark = uuid.uuid4().hex[:8]
    doc = strapi_editor.create(f"Demo article {mark}")
    with chromium(tmp_path / "profile") as browser:
        browser.set_window_size(1000, 900)
        browser.get(f"{front.url}/events/demo")
        wait_shown(browser, lambda page: page["state"] == "live" and titled(f"Demo article {mark}")(page))

        edited = f"Edited <b>in Strapi</b> {mark}"
        strapi_editor.edit(doc, title=edited)
        page = wait_shown(browser, titled(edited))
        assert page["articles"][0] == {"id": doc, "title": edited, "changed": True}  # newest first

        published = f'<img src=x onerror="window.pwned=1"><script>window.pwned=2</script> New {mark} '
        published = (published + "very long " * ((200 - len(published)) // 10)).rstrip()
        new_doc = strapi_editor.create(published)
        page = wait_shown(browser, titled(published))
        assert [a["id"] for a in page["articles"][:2]] == [new_doc, doc]
        assert page["articles"][0]["changed"] and page["markup"] == ["li", "span", "time"] * len(
            page["articles"]
        )
        assert page["pwned"] is None and not page["overflows"] and page["problem"] is None
        assert f"published {new_doc}" in " ".join(page["events"])
        keep_screenshot(browser, tmp_path)

        browser.get(f"{front.url}/t/beta/events/demo")  # the same page under the tenant's path prefix
        wait_shown(browser, lambda page: page["state"] == "live" and titled(published)(page))
        again = f"Edited again {mark}"
        strapi_editor.edit(doc, title=again)
        assert wait_shown(browser, titled(again))["articles"][0]["id"] == doc
        problems = console_problems(browser)
    assert problems == []
    # nginx sent the page's streams to the events app, with and without the prefix, none to the API
    wait_until(
        lambda: sorted(streams_served(front.events)) == ["/api/events", "/t/beta/api/events"], 10, "logs"
    )
    assert streams_served(front.api) == []


# -- the script alone, with fetch and EventSource faked --------------------------------------------------

FAKES = """"use strict";
// fetch, EventSource and setTimeout as the test drives them (tests/e2e/test_events_demo_browser_e2e.py)
window.harness = { fetches: [], sources: [], timers: [] };
window.fetch = (url, options) => new Promise((resolve) => {
  const timed = options && options.signal instanceof AbortSignal;
  harness.fetches.push({ url: String(url), cache: options && options.cache, timed, resolve, done: false });
});
harness.pending = () => harness.fetches.filter((f) => !f.done).length;
harness.answer = (status, data) => {
  const call = harness.fetches.find((f) => !f.done);
  call.done = true;
  const body = status === 200 ? { data: data, meta: {} } : { error: { status: status } };
  const headers = { "Content-Type": "application/json" };
  call.resolve(new Response(JSON.stringify(body), { status: status, headers: headers }));
};
class FakeEventSource extends EventTarget {
  constructor(url) { super(); this.url = String(url); this.readyState = 0; harness.sources.push(this); }
  close() { this.readyState = 2; }
}
FakeEventSource.CONNECTING = 0; FakeEventSource.OPEN = 1; FakeEventSource.CLOSED = 2;
window.EventSource = FakeEventSource;
harness.source = () => harness.sources[harness.sources.length - 1];
harness.open = () => { harness.source().readyState = 1; harness.source().dispatchEvent(new Event("open")); };
harness.fail = (closed) => {
  harness.source().readyState = closed ? 2 : 0;
  harness.source().dispatchEvent(new Event("error"));
};
harness.emit = (type, data, id) => harness.source().dispatchEvent(
  new MessageEvent(type, { data: JSON.stringify(data), lastEventId: id || "" }));
window.setTimeout = (fn, ms) => { harness.timers.push({ fn: fn, ms: ms }); return harness.timers.length; };
harness.runTimers = () => harness.timers.splice(0).map((t) => { t.fn(); return t.ms; });
"""


def article(doc: str, title: str, minute: int = 0) -> dict[str, Any]:
    return {"id": 1, "documentId": doc, "title": title, "updatedAt": f"2026-12-06T08:{minute:02d}:00.000Z"}


@pytest.fixture(scope="module")
def harness_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The page's files with the fakes loaded first, served statically; yields the page's URL."""
    site = tmp_path_factory.mktemp("harness")
    (site / "events").mkdir()
    for name in ("demo.js", "demo.css"):
        shutil.copy(events_demo.PAGE_DIR / name, site / "events" / name)
    page = (events_demo.PAGE_DIR / "demo.html").read_text()
    assert page.count('<script src="demo.js" defer></script>') == 1
    page = page.replace('<script src="demo.js"', '<script src="fakes.js"></script>\n<script src="demo.js"')
    (site / "events" / "demo.html").write_text(page)
    (site / "events" / "fakes.js").write_text(FAKES)
    with static_site(site) as origin:
        yield f"{origin}/events/demo.html"


@pytest.fixture(scope="module")
def page_browser(harness_site: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with chromium(tmp_path_factory.mktemp("profile")) as browser:
        yield browser


class Page:
    """The page in Chromium with its fakes: drive them, read what it shows."""

    def __init__(self, browser: Any, url: str) -> None:
        self.browser = browser
        browser.get(url)
        WebDriverWait(browser, 10).until(
            lambda b: b.execute_script("return window.harness.fetches.length") == 1
        )

    def js(self, script: str, *args: Any) -> Any:
        return self.browser.execute_script(f"return {script}", *args)

    def answer(self, status: int, data: list[dict[str, Any]] | None = None) -> None:
        self.js("harness.answer(arguments[0], arguments[1])", status, data or [])

    def emit(self, kind: str, data: dict[str, Any], event_id: str = "") -> None:
        self.js("harness.emit(arguments[0], arguments[1], arguments[2])", kind, data, event_id)

    def pending(self) -> int:
        return int(self.js("harness.pending()"))

    def until(self, check: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        return wait_shown(self.browser, check, within=5)


@pytest.fixture
def page(page_browser: Any, harness_site: str) -> Page:
    return Page(page_browser, harness_site)


def test_no_articles_says_so_and_the_list_and_stream_urls_are_relative(page: Page) -> None:
    assert page.js("harness.fetches[0].url").startswith("../api/articles?")
    assert page.js("harness.fetches[0].cache") == "no-cache"  # never a stale browser copy
    assert page.js("harness.fetches[0].timed")  # a hung request cannot hold back the next ones
    assert page.js("harness.source().url") == "../api/events?collections=articles"
    assert shown(page.browser)["state"] == "connecting"
    page.answer(200, [])
    assert page.until(lambda p: p["empty"])["articles"] == []
    page.js("harness.open()")
    assert page.until(lambda p: p["state"] == "live")["empty"]
    assert page.pending() == 1  # opening refetches what changed while not listening
    page.answer(200, [article("a", "First")])
    assert page.until(lambda p: not p["empty"])["articles"] == [
        {"id": "a", "title": "First", "changed": False}
    ]


def test_titles_made_of_html_or_very_long_show_as_text(page: Page) -> None:
    hostile = '<img src=x onerror="window.pwned=1"><script>window.pwned=2</script>&amp;'
    long = "W" * 5000  # one word: it must wrap, not widen the page
    page.answer(200, [article("a", hostile), article("b", long), {"documentId": "c", "title": None}])
    shows = page.until(lambda p: len(p["articles"]) == 3)
    assert [a["title"] for a in shows["articles"]] == [hostile, long, ""]
    assert shows["markup"] == ["li", "span", "time"] * 3 and shows["pwned"] is None
    assert not shows["overflows"]


def test_events_during_a_refetch_cause_exactly_one_more_and_the_last_answer_wins(page: Page) -> None:
    page.answer(200, [article("a", "A v1", 1), article("b", "B v1", 0)])
    page.until(lambda p: len(p["articles"]) == 2)
    page.js("document.querySelector('#articles li').seen = 'before'")  # article a's element
    page.js("harness.open()")
    assert page.pending() == 1
    page.emit("published", {"type": "published", "documentId": "b"}, "7")
    page.emit("published", {"type": "published", "documentId": "a"}, "8")
    page.emit("deleted", {"type": "deleted", "documentId": "gone"}, "9")
    assert page.pending() == 1 and page.js("harness.fetches.length") == 2  # none while one is in flight
    page.answer(200, [article("a", "A v1", 1), article("b", "B v1", 0)])  # answered before the edits
    page.until(lambda p: page.js("harness.fetches.length") == 3)  # so one more, for all three events
    page.answer(200, [article("b", "B v2", 3), article("a", "A v2", 2)])
    shows = page.until(lambda p: p["articles"][0]["title"] == "B v2")
    assert shows["articles"] == [
        {"id": "b", "title": "B v2", "changed": True},
        {"id": "a", "title": "A v2", "changed": True},
    ]
    assert page.pending() == 0 and page.js("harness.fetches.length") == 3
    assert page.js("document.querySelectorAll('#articles li')[1].seen") == "before"  # moved, not remade
    logged = [" ".join(line.split()[-2:]) for line in shows["events"]]  # after the local time
    assert logged == ["deleted gone", "published a", "published b"]


def test_a_failed_refetch_is_shown_and_the_next_event_recovers_with_the_highlight(page: Page) -> None:
    page.answer(200, [article("a", "A v1")])
    page.js("harness.open()")
    page.answer(502)
    assert "HTTP 502" in page.until(lambda p: p["problem"] is not None)["problem"]
    page.emit("published", {"type": "published", "documentId": "a"}, "3")
    page.answer(502)
    page.until(lambda p: page.pending() == 0)
    page.emit("updated", {"type": "updated", "documentId": "other"}, "4")
    page.answer(200, [article("a", "A v2")])
    shows = page.until(lambda p: p["problem"] is None)
    assert shows["articles"] == [{"id": "a", "title": "A v2", "changed": True}]  # not lost with the 502


def test_resync_refetches_and_end_reconnects_after_a_pause_from_the_last_event(page: Page) -> None:
    page.answer(200, [article("a", "A v1")])
    page.js("harness.open()")
    page.answer(200, [article("a", "A v1")])
    page.emit("resync", {"collections": ["articles"], "reason": "history_gone"}, "41")
    page.answer(200, [article("a", "A v2")])
    page.until(lambda p: p["articles"][0]["title"] == "A v2")
    page.emit("end", {"reason": "too_slow"})
    shows = page.until(lambda p: p["state"] == "reconnecting")
    assert page.js("harness.source().readyState") == 2 and "too_slow" in shows["events"][0]
    assert page.js("harness.sources.length") == 1  # not at once: after a pause
    assert page.js("harness.runTimers()") == [5000]
    assert page.js("harness.source().url") == "../api/events?collections=articles&lastEventId=41"
    page.js("harness.open()")
    assert page.until(lambda p: p["state"] == "live")


def test_a_dropped_stream_shows_reconnecting_and_a_refused_one_is_retried_afresh_after_a_pause(
    page: Page,
) -> None:
    page.answer(200, [])
    page.js("harness.fail(false)")  # a network error: EventSource reconnects by itself
    assert page.until(lambda p: p["state"] == "reconnecting")
    assert page.js("harness.sources.length") == 1 and page.js("harness.timers.length") == 0
    page.js("harness.open()")
    page.until(lambda p: p["state"] == "live")
    page.emit("published", {"type": "published", "documentId": "a"}, "12")
    page.js("harness.fail(true)")  # refused (a 503 when busy, a 400 for an id the log never had)
    page.until(lambda p: p["state"] == "reconnecting")
    assert page.js("harness.runTimers()") == [5000] and page.js("harness.sources.length") == 2
    assert page.js("harness.source().url") == "../api/events?collections=articles"  # afresh, no id
