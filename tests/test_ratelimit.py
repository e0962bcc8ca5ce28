"""Per-client rate limits on the auth endpoints, counted in the shared store."""

from __future__ import annotations

import multiprocessing
import os
from typing import Any

import pytest
import responses
from flask import Flask
from flask.testing import FlaskClient

from bffproxy import create_app
from bffproxy.ratelimit import FileCounter, Limit, parse_limit
from bffproxy.settings import ConfigError

from .conftest import STRAPI, FakeClock

LOGIN = f"{STRAPI}/api/auth/local"
CREDENTIALS = {"identifier": "reader", "password": "Reader-Passw0rd!"}


@pytest.fixture
def config(config: dict[str, Any]) -> dict[str, Any]:
    config["LOGIN_RATE_LIMIT"] = "3/60"
    return config


@pytest.fixture
def app(config: dict[str, Any], clock: FakeClock) -> Flask:
    application = create_app(config)
    application.extensions["bffproxy.ratelimit"].clock = clock
    return application


def login(client: FlaskClient, address: str = "203.0.113.1") -> Any:
    return client.post("/api/auth/local", json=CREDENTIALS, environ_base={"REMOTE_ADDR": address})


@pytest.fixture
def strapi_login(strapi: responses.RequestsMock) -> responses.RequestsMock:
    strapi.post(LOGIN, json={"jwt": "x", "user": {}})
    strapi.post(f"{STRAPI}/api/auth/refresh", json={"jwt": "y"})
    return strapi


@pytest.mark.parametrize(
    ("raw", "limit"),
    [
        ("10/60", Limit(10, 60)),
        ("5", Limit(5, 60)),
        (" 20/1 ", Limit(20, 1)),
        ("0", None),
        ("off", None),
        ("", None),
    ],
)
def test_parse_limit(raw: str, limit: Limit | None) -> None:
    assert parse_limit("LOGIN_RATE_LIMIT", raw) == limit


@pytest.mark.parametrize("raw", ["ten", "10/", "-1/60", "10/0", "10/sixty"])
def test_bad_limits_name_the_variable(config: dict[str, Any], raw: str) -> None:
    config["LOGIN_RATE_LIMIT"] = raw
    with pytest.raises(ConfigError, match="BFFPROXY_LOGIN_RATE_LIMIT"):
        create_app(config)


def test_over_the_limit_is_429_with_retry_after_and_strapi_is_spared(
    client: FlaskClient, clock: FakeClock, strapi_login: responses.RequestsMock
) -> None:
    assert login(client).status_code == 200  # opens the client's 60 s window
    clock.advance(15)
    assert [login(client).status_code for _ in range(2)] == [200, 200]
    refused = login(client)
    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == "45"
    assert refused.get_json()["error"]["code"] == "rate_limited"
    assert len(strapi_login.calls) == 3
    clock.advance(44)
    assert login(client).status_code == 429
    clock.advance(1)
    assert login(client).status_code == 200


def test_limits_are_per_client_address_and_per_endpoint(
    client: FlaskClient, strapi_login: responses.RequestsMock
) -> None:
    for _ in range(3):
        login(client, "203.0.113.1")
    assert login(client, "203.0.113.1").status_code == 429
    assert login(client, "203.0.113.2").status_code == 200
    refresh = client.post(
        "/api/auth/refresh", json={"refreshToken": "r"}, environ_base={"REMOTE_ADDR": "203.0.113.1"}
    )
    assert refresh.status_code == 200


def test_two_apps_on_one_cache_dir_share_the_count(
    config: dict[str, Any], clock: FakeClock, strapi_login: responses.RequestsMock
) -> None:
    workers = [create_app(config) for _ in range(2)]
    for worker in workers:
        worker.extensions["bffproxy.ratelimit"].clock = clock
    clients = [worker.test_client() for worker in workers]
    statuses = [login(clients[i % 2]).status_code for i in range(4)]
    assert statuses == [200, 200, 200, 429]


def test_zero_disables_the_limit(config: dict[str, Any], strapi_login: responses.RequestsMock) -> None:
    config["LOGIN_RATE_LIMIT"] = "0"
    client = create_app(config).test_client()
    assert {login(client).status_code for _ in range(10)} == {200}


def test_a_store_fault_lets_logins_through(app: Flask, strapi_login: responses.RequestsMock) -> None:
    class Broken:
        def hit(self, key: str, window: int, now: float) -> tuple[int, float]:
            raise OSError("disk full")

    app.extensions["bffproxy.ratelimit"].counter = Broken()
    client = app.test_client()
    assert {login(client).status_code for _ in range(5)} == {200}


def _hammer(directory: str, hits: int) -> None:
    counter = FileCounter(directory)
    for _ in range(hits):
        counter.hit("default:api/auth/local:203.0.113.1", 60, 6000.0)


def test_file_counter_is_exact_across_processes(tmp_path: Any) -> None:
    directory = str(tmp_path / "ratelimit")
    context = multiprocessing.get_context("fork")
    processes = [context.Process(target=_hammer, args=(directory, 50)) for _ in range(4)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(30)
        assert process.exitcode == 0
    assert FileCounter(directory).hit("default:api/auth/local:203.0.113.1", 60, 6000.0) == (201, 60.0)


def test_file_counter_forgets_finished_windows(tmp_path: Any) -> None:
    counter = FileCounter(str(tmp_path), stripes=1)
    for address in range(20):
        counter.hit(f"k{address}", 60, 6000.0)
    assert counter.hit("k0", 60, 6059.0) == (2, 1.0)
    assert counter.hit("k0", 60, 6060.0) == (1, 60.0)
    stripe = (tmp_path / "0.json").read_text()
    assert "k5" not in stripe and os.path.getsize(tmp_path / "0.json") < 100
