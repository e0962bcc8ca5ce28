"""Real services for end-to-end tests: Strapi 5 (the project's own scripts), gunicorn, redis-server.

Everything binds to 127.0.0.1 on a free port; every process is stopped when its fixture ends.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parents[2]
STRAPI_SCRIPTS = ROOT / "strapi"


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(predicate: Any, timeout: float, what: str) -> None:
    """Poll ``predicate`` until true, or fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")


def http_ok(url: str) -> bool:
    """True when ``url`` answers below 500."""
    try:
        return requests.get(url, timeout=1).status_code < 500
    except requests.RequestException:
        return False


@dataclass
class Strapi:
    """A real Strapi 5 started by strapi/strapi-start.sh on its own port and database."""

    port: int
    webhook_port: int
    extra_env: dict[str, str] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_token(self) -> str:
        return self.env["STRAPI_API_TOKEN"]

    @property
    def jwt_secret(self) -> str:
        return self.env["STRAPI_JWT_SECRET"]

    @property
    def webhook_secret(self) -> str:
        return self.env["STRAPI_WEBHOOK_SECRET"]

    def _script_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            STRAPI_PORT=str(self.port),
            WEBHOOK_URL=f"http://127.0.0.1:{self.webhook_port}/webhooks/strapi",
            WEBHOOK_SECRET="e2e-webhook-secret",
            UP_RATELIMIT_ENABLED="false",
        )
        env.update(self.extra_env)
        return env

    def _run(self, script: str) -> str:
        result = subprocess.run(
            ["bash", str(STRAPI_SCRIPTS / script)],
            env=self._script_env(),
            capture_output=True,
            text=True,
            timeout=900,
        )
        if result.returncode != 0:
            raise RuntimeError(f"{script} failed:\n{result.stdout}\n{result.stderr}")
        return result.stdout

    def reset(self) -> None:
        """Stop it and wipe its database, so the next start seeds from scratch."""
        self._run("strapi-reset.sh")

    def start(self) -> None:
        """Start (or reuse) it and read its env block (URL, API token, secrets)."""
        out = self._run("strapi-start.sh")
        self.env = dict(line.split("=", 1) for line in out.splitlines() if "=" in line and line[0].isupper())

    def stop(self) -> None:
        """Stop the Strapi process (its database stays)."""
        self._run("strapi-stop.sh")

    @property
    def log_path(self) -> Path:
        app_dir = os.environ.get("STRAPI_APP_DIR") or os.path.join(
            os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "bffproxy", "strapi-app"
        )
        return Path(app_dir) / "run" / str(self.port) / "strapi.log"

    def count_requests(self, marker: str) -> int:
        """How many requests whose logged URL contains ``marker`` Strapi has served so far."""
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return sum(1 for line in text.splitlines() if "http" in line and marker in line)

    def get(self, path: str, token: str | None = None, **params: Any) -> requests.Response:
        """A direct call to Strapi, bypassing bffproxy (the test's source of truth)."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return requests.get(f"{self.url}/{path.lstrip('/')}", params=params, headers=headers, timeout=10)


def bff_env(strapi: Strapi, cache_dir: Path, **extra: str) -> dict[str, str]:
    """The BFFPROXY_* environment of a bffproxy instance in front of ``strapi``.

    Shared by the end-to-end fixtures and bench/; ``extra`` adds or overrides settings by their
    name without the prefix, e.g. ``CACHE_TTL="1"``.
    """
    env = {
        "BFFPROXY_STRAPI_URL": strapi.url,
        "BFFPROXY_STRAPI_API_TOKEN": strapi.api_token,
        "BFFPROXY_STRAPI_JWT_SECRET": strapi.jwt_secret,
        "BFFPROXY_WEBHOOK_SECRET": strapi.webhook_secret,
        "BFFPROXY_ADMIN_TOKEN": "e2e-admin-token",
        "BFFPROXY_COLLECTIONS": "articles,categories",
        "BFFPROXY_CACHE_DIR": str(cache_dir),
        "BFFPROXY_DEBUG_HEADERS": "true",  # X-BFF-Worker: which worker answered
        "BFFPROXY_ENV_FILE": str(cache_dir / "absent.env"),
        # The reconciler's first pass drops every cached entry once, at an interval boundary: a test
        # that times cache states (STALE after 1.2 s) would meet it by chance. Its tests turn it on.
        "BFFPROXY_RECONCILE_INTERVAL": "0",
    }
    env.update({f"BFFPROXY_{k}": v for k, v in extra.items()})
    return env


@dataclass
class Gunicorn:
    """bffproxy under real gunicorn, with its own environment."""

    port: int
    env: dict[str, str]
    workers: int = 2
    log_path: Path | None = None
    process: subprocess.Popen[bytes] | None = None
    app: str = "app"  # "events_app": the events app under gevent (gunicorn.events.conf.py)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "gunicorn",
            "-c",
            str(ROOT / ("gunicorn.events.conf.py" if self.app == "events_app" else "gunicorn.conf.py")),
            "--bind",
            f"127.0.0.1:{self.port}",
            "--workers",
            str(self.workers),
            f"wsgi:{self.app}",
        ]

    def start(self, timeout: float = 30) -> Gunicorn:
        """Start it and wait for /healthz."""
        assert self.log_path is not None
        env = {k: v for k, v in os.environ.items() if not k.startswith("BFFPROXY_")}
        env.update(self.env)
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                self.command(),
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        wait_until(lambda: self._alive_or_raise() and http_ok(f"{self.url}/healthz"), timeout, "gunicorn")
        return self

    def _alive_or_raise(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise RuntimeError(f"gunicorn exited with {self.process.returncode}:\n{self.log()}")
        return True

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path else ""

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(5)


@dataclass
class RedisServer:
    """A real redis-server from Debian's package on a free loopback port, nothing persisted."""

    port: int
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError(
                "redis-server is not installed: run `make install` (apt-get install redis-server)"
            )
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        import redis

        client = redis.Redis(port=self.port)

        def pong() -> bool:
            try:
                return bool(client.ping())
            except redis.RedisError:
                return False

        wait_until(pong, 10, "redis-server")
        return self

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)


def login(strapi: Strapi, username: str, password: str) -> dict[str, str]:
    """The Authorization header of a Strapi user (POST /api/auth/local)."""
    answer = requests.post(
        f"{strapi.url}/api/auth/local", json={"identifier": username, "password": password}, timeout=10
    )
    assert answer.status_code == 200, answer.text
    return {"Authorization": f"Bearer {answer.json()['jwt']}"}


# The seeded Strapi's admin (strapi/ scripts): its content-manager API unpublishes.
STRAPI_ADMIN = ("admin@example.com", "Admin-Passw0rd!")


_ADMIN_TOKENS: dict[str, str] = {}


def admin_token(strapi: Strapi) -> str:
    """One admin sign-in per Strapi and session: Strapi rate-limits /admin/login (429 past 5)."""
    if strapi.url not in _ADMIN_TOKENS:
        answer = requests.post(
            f"{strapi.url}/admin/login",
            json={"email": STRAPI_ADMIN[0], "password": STRAPI_ADMIN[1]},
            timeout=10,
        )
        assert answer.status_code == 200, answer.text
        _ADMIN_TOKENS[strapi.url] = answer.json()["data"]["token"]
    return _ADMIN_TOKENS[strapi.url]


class StrapiEditor:
    """Changes made in Strapi itself: REST with the API token, unpublish through the admin API."""

    def __init__(self, strapi: Strapi) -> None:
        self.strapi = strapi
        self.rest = {"Authorization": f"Bearer {strapi.api_token}"}
        self.admin = {"Authorization": f"Bearer {admin_token(strapi)}"}
        self.created: list[str] = []

    def create(self, title: str, *, draft: bool = False) -> str:
        query = "?status=draft" if draft else ""
        answer = requests.post(
            f"{self.strapi.url}/api/articles{query}",
            json={"data": {"title": title}},
            headers=self.rest,
            timeout=10,
        )
        assert answer.status_code == 201, answer.text
        doc = str(answer.json()["data"]["documentId"])
        self.created.append(doc)
        return doc

    def edit(self, doc: str, *, draft: bool = False, **data: Any) -> None:
        query = "?status=draft" if draft else ""
        answer = requests.put(
            f"{self.strapi.url}/api/articles/{doc}{query}", json={"data": data}, headers=self.rest, timeout=10
        )
        assert answer.status_code == 200, answer.text

    def publish(self, doc: str) -> None:
        self._action(doc, "publish")

    def unpublish(self, doc: str) -> None:
        self._action(doc, "unpublish")

    def _action(self, doc: str, action: str) -> None:
        path = f"content-manager/collection-types/api::article.article/{doc}/actions/{action}"
        answer = requests.post(f"{self.strapi.url}/{path}", json={}, headers=self.admin, timeout=10)
        assert answer.status_code == 200, answer.text

    def delete(self, doc: str) -> None:
        answer = requests.delete(f"{self.strapi.url}/api/articles/{doc}", headers=self.rest, timeout=10)
        assert answer.status_code == 204, answer.text

    def cleanup(self) -> None:
        for doc in self.created:
            requests.delete(f"{self.strapi.url}/api/articles/{doc}", headers=self.rest, timeout=10)
