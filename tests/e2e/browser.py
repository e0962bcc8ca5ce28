"""A real headless Chromium (Debian's chromium + chromium-driver) driven by selenium, and static pages.

The browser enforces CORS itself, so a page on one loopback origin fetching bffproxy on another
proves what a real front end sees: no fake DOM, no hand-made Origin headers.
"""

from __future__ import annotations

import functools
import http.server
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.support.ui import WebDriverWait

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
# Without the background-networking flags Chromium keeps dialling Google, which this network refuses.
FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
)


@contextmanager
def chromium(profile: Path) -> Iterator[webdriver.Chrome]:
    """A headless Chromium with a fresh profile; quit afterwards."""
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_script_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """No access log on the test's output."""


@contextmanager
def static_site(directory: Path, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Serve ``directory`` on loopback (a free port unless given); yields the origin as ``host`` names it."""
    handler = functools.partial(_Quiet, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def result_of(driver: webdriver.Chrome, element_id: str = "result", timeout: float = 20) -> str:
    """The text a page writes into ``#result`` when its script is done."""
    WebDriverWait(driver, timeout).until(
        lambda d: d.execute_script(f"return document.getElementById('{element_id}').dataset.done === '1'")
    )
    return str(driver.execute_script(f"return document.getElementById('{element_id}').textContent"))
