"""End-to-end fixtures: one real Strapi per test session, gunicorn and redis-server per test."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from .services import Gunicorn, RedisServer, Strapi, StrapiEditor, bff_env, free_port, login

pytestmark = pytest.mark.e2e


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "/e2e/" in str(item.fspath):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def webhook_port() -> int:
    """The port of the bffproxy instance Strapi's webhook points at (see ``bff``)."""
    return free_port()


@pytest.fixture(scope="session")
def strapi_server(webhook_port: int) -> Iterator[Strapi]:
    """A freshly seeded real Strapi 5 for the whole session."""
    server = Strapi(port=free_port(), webhook_port=webhook_port)
    server.reset()
    server.start()
    yield server
    server.reset()  # stop it and delete its database: nothing piles up in the shared app dir


@pytest.fixture
def strapi_live(strapi_server: Strapi) -> Strapi:
    """The session's Strapi, restarted first if an earlier test stopped it."""
    from .services import http_ok

    if not http_ok(f"{strapi_server.url}/_health"):
        strapi_server.start()
    return strapi_server


@pytest.fixture
def start_bff(tmp_path: Path, strapi_live: Strapi) -> Iterator[Callable[..., Gunicorn]]:
    """Start bffproxy under gunicorn: start_bff(port, cache_dir, workers=2, app="app", **BFFPROXY_*).

    ``app="events_app"`` starts the events app (gevent, gunicorn.events.conf.py) instead.
    """
    started: list[Gunicorn] = []

    def start(
        port: int | None = None,
        cache_dir: Path | None = None,
        workers: int = 2,
        app: str = "app",
        **extra: Any,
    ) -> Gunicorn:
        cache = cache_dir or tmp_path / f"cache{len(started)}"
        cache.mkdir(exist_ok=True)
        env = bff_env(strapi_live, cache, **{k: str(v) for k, v in extra.items()})
        server = Gunicorn(
            port or free_port(), env, workers, log_path=tmp_path / f"gunicorn{len(started)}.log", app=app
        )
        started.append(server)
        return server.start()

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def bff(start_bff: Callable[..., Gunicorn], webhook_port: int) -> Gunicorn:
    """bffproxy (gunicorn, 2 workers) on the port Strapi's webhook targets."""
    return start_bff(port=webhook_port)


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A real redis-server on a free loopback port."""
    server = RedisServer(free_port()).start()
    yield server
    server.stop()


@pytest.fixture
def editor(strapi_live: Strapi) -> dict[str, str]:
    """The Authorization header of the seeded editor (Strapi role ``editor``)."""
    return login(strapi_live, "editor", "Editor-Passw0rd!")


@pytest.fixture
def reader(strapi_live: Strapi) -> dict[str, str]:
    """The Authorization header of the seeded reader (Strapi role ``authenticated``)."""
    return login(strapi_live, "reader", "Reader-Passw0rd!")


@pytest.fixture
def strapi_editor(strapi_live: Strapi) -> Iterator[StrapiEditor]:
    """Changes made in the real Strapi itself (REST, admin API); what it created is deleted after."""
    editor = StrapiEditor(strapi_live)
    yield editor
    editor.cleanup()


@pytest.fixture
def subscribers() -> Iterator[list[Any]]:
    """Event subscribers (subscribers.py) the test opens; each is closed after it."""
    opened: list[Any] = []
    yield opened
    for subscriber in opened:
        subscriber.close()
