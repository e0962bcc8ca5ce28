"""Liveness never touches Strapi; readiness does, with a short timeout."""

from __future__ import annotations

import threading
from typing import Any

import requests
import responses
from flask import Flask
from flask.testing import FlaskClient

from bffproxy.health import Readiness

from .conftest import STRAPI, FakeClock


def test_healthz_never_calls_strapi(client: FlaskClient, strapi: responses.RequestsMock) -> None:
    assert client.get("/healthz").get_json() == {"status": "ok"}
    assert len(strapi.calls) == 0


def test_readyz_503_when_strapi_is_down(client: FlaskClient, strapi: responses.RequestsMock) -> None:
    strapi.get(f"{STRAPI}/_health", body=requests.ConnectionError("refused"))
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.get_json()["error"]["code"] == "not_ready"
    assert response.get_json()["error"]["details"] == {
        "tenants": ["default"],
        "store": "up",
        "circuit": {"default": "closed"},
    }


def test_readyz_reports_strapi_and_the_store(client: FlaskClient, strapi: responses.RequestsMock) -> None:
    strapi.get(f"{STRAPI}/_health", status=204)
    response = client.get("/readyz")
    assert response.get_json() == {
        "status": "ready",
        "strapi": "up",
        "store": "up",
        "circuit": {"default": "closed"},
        "reconciled": {"default": None},  # no reconcile pass yet (reconciler.py)
    }
    assert response.headers["Cache-Control"] == "no-store"


class UnreachableStore:
    """A cache backend whose every call fails, as Redis does when it is down."""

    def __getattr__(self, name: str) -> Any:
        def fail(*args: Any) -> Any:
            raise ConnectionError("redis is down")

        return fail


def test_readyz_stays_ready_with_the_store_down_but_says_so(
    app: Flask, client: FlaskClient, strapi: responses.RequestsMock
) -> None:
    """Reads bypass a store that is down (BYPASS), so the instance still serves: ready, store down."""
    strapi.get(f"{STRAPI}/_health", status=204)
    app.extensions["bffproxy.cache"].store = UnreachableStore()
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.get_json() == {
        "status": "ready",
        "strapi": "up",
        "store": "down",
        "circuit": {"default": "closed"},
        "reconciled": {"default": None},
    }


class BlockingPing:
    """Strapi's health endpoint, hung until released; counts the looks."""

    def __init__(self) -> None:
        self.looks = 0
        self.inside, self.release = threading.Event(), threading.Event()

    def __call__(self, timeout: float) -> bool:
        self.looks += 1
        self.inside.set()
        self.release.wait(5)
        return True


def test_one_thread_looks_at_a_hung_strapi_the_others_answer_at_once() -> None:
    # Found by the hostile tester: a /readyz flood during a hang held a thread each for READY_TIMEOUT.
    ping = BlockingPing()
    readiness = Readiness(ping)
    looking = threading.Thread(target=readiness.up, args=(1.0,))
    looking.start()
    assert ping.inside.wait(5)
    assert [readiness.up(1.0) for _ in range(20)] == [False] * 20  # not known yet: not ready, at once
    assert ping.looks == 1
    ping.release.set()
    looking.join(5)
    assert readiness.up(1.0) is True and ping.looks == 1  # its result, reused


def test_a_look_is_reused_for_a_second_then_taken_again() -> None:
    clock = FakeClock(0.0)
    answers = iter([True, False])
    looks: list[float] = []

    def ping(timeout: float) -> bool:
        looks.append(timeout)
        return next(answers)

    readiness = Readiness(ping, monotonic=clock)
    assert readiness.up(1.0) is True
    clock.advance(0.9)
    assert readiness.up(1.0) is True and len(looks) == 1
    clock.advance(0.2)
    assert readiness.up(1.0) is False and len(looks) == 2
