"""The bulkhead and the circuit breaker in front of Strapi (fake clock, fake Strapi, no sleeping)."""

from __future__ import annotations

import threading
from typing import Any

import pytest
import requests
import responses
from cachelib import SimpleCache
from flask import Flask

from bffproxy import create_app
from bffproxy.admission import (
    Admission,
    AdmissionPolicy,
    BreakerState,
    CircuitOpen,
    UpstreamBusy,
    policy_from_config,
)
from bffproxy.errors import UpstreamError, UpstreamTimeout, UpstreamUnavailable
from bffproxy.settings import ConfigError
from bffproxy.store import SharedStore

from .conftest import STRAPI, FakeClock, strapi_list

LIST = f"{STRAPI}/api/articles"


class Lock:
    def __init__(self, held: list[str]) -> None:
        self.held = held

    def release(self) -> None:
        self.held.clear()


def admission(
    clock: FakeClock, store: Any = None, probes: list[str] | None = None, **policy: Any
) -> Admission:
    held = probes if probes is not None else []

    def probe_lock() -> Lock | None:
        if held:
            return None
        held.append("probe")
        return Lock(held)

    settings = AdmissionPolicy(**{"max_concurrent": 2, "queue_wait": 0, "failures": 2, "reset": 10, **policy})
    state = BreakerState(store if store is not None else SharedStore(SimpleCache()), "breaker:default")
    return Admission("default", settings, state, probe_lock, clock)


def fail(exc: Exception) -> Any:
    def send() -> None:
        raise exc

    return send


def test_consecutive_failures_open_the_circuit_and_then_nothing_reaches_strapi(clock: FakeClock) -> None:
    gate = admission(clock)
    for _ in range(2):
        with pytest.raises(UpstreamTimeout):
            gate.call(fail(UpstreamTimeout()))
    calls: list[int] = []
    with pytest.raises(CircuitOpen) as caught:
        gate.call(lambda: calls.append(1))
    assert calls == []
    assert (caught.value.status, caught.value.code) == (503, "upstream_unavailable")
    assert caught.value.headers == {"Retry-After": "10"}
    assert gate.describe() == "open"


def test_answers_and_client_errors_do_not_count(clock: FakeClock) -> None:
    gate = admission(clock)
    for _ in range(5):
        with pytest.raises(UpstreamError):  # Strapi's 5xx: it answered, it is not down
            gate.call(fail(UpstreamError()))
    with pytest.raises(UpstreamTimeout):
        gate.call(fail(UpstreamTimeout()))
    assert gate.call(lambda: "ok") == "ok"  # a success resets the count
    with pytest.raises(UpstreamTimeout):
        gate.call(fail(UpstreamTimeout()))
    assert gate.describe() == "closed"


def test_after_the_reset_one_probe_closes_or_reopens_it(clock: FakeClock) -> None:
    gate = admission(clock)
    for _ in range(2):
        with pytest.raises(UpstreamUnavailable):
            gate.call(fail(UpstreamUnavailable()))
    clock.advance(10)
    assert gate.describe() == "half-open"
    with pytest.raises(UpstreamUnavailable):
        gate.call(fail(UpstreamUnavailable()))  # the probe failed: open for another reset
    assert gate.describe() == "open"
    clock.advance(10)
    assert gate.call(lambda: "back") == "back"
    assert gate.describe() == "closed"


def test_only_one_probe_at_a_time(clock: FakeClock) -> None:
    probes: list[str] = []
    gate = admission(clock, probes=probes)
    for _ in range(2):
        with pytest.raises(UpstreamTimeout):
            gate.call(fail(UpstreamTimeout()))
    clock.advance(11)
    probes.append("another worker")  # its probe lock is held elsewhere
    with pytest.raises(CircuitOpen):
        gate.call(lambda: None)


def test_workers_share_the_circuit_through_the_store(clock: FakeClock) -> None:
    store = SharedStore(SimpleCache())
    first, second = admission(clock, store), admission(clock, store)
    for _ in range(2):
        with pytest.raises(UpstreamTimeout):
            first.call(fail(UpstreamTimeout()))
    with pytest.raises(CircuitOpen):
        second.call(lambda: None)


def test_a_store_fault_still_opens_this_workers_circuit(clock: FakeClock) -> None:
    class Broken(SimpleCache):
        def get(self, key: str) -> Any:
            raise OSError("disk gone")

        def set(self, key: str, value: Any, timeout: int | None = None) -> bool:
            raise OSError("disk gone")

    gate = admission(clock, SharedStore(Broken()))
    for _ in range(2):
        with pytest.raises(UpstreamTimeout):
            gate.call(fail(UpstreamTimeout()))
    with pytest.raises(CircuitOpen):
        gate.call(lambda: None)


def test_the_bulkhead_refuses_calls_over_its_cap_at_once(clock: FakeClock) -> None:
    gate = admission(clock, max_concurrent=1)
    inside, release = threading.Event(), threading.Event()

    def slow() -> str:
        inside.set()
        release.wait(5)
        return "slow"

    results: list[str] = []
    worker = threading.Thread(target=lambda: results.append(gate.call(slow)))
    worker.start()
    assert inside.wait(5)
    with pytest.raises(UpstreamBusy) as caught:
        gate.call(lambda: "second")
    assert (caught.value.status, caught.value.headers) == (503, {"Retry-After": "1"})
    release.set()
    worker.join(5)
    assert results == ["slow"]
    assert gate.call(lambda: "third") == "third"  # the slot came back
    assert gate.describe() == "closed"  # a refusal is not a Strapi failure


@pytest.mark.parametrize(
    "bad",
    [
        {"STRAPI_MAX_CONCURRENT": "0"},
        {"STRAPI_QUEUE_WAIT": "nan"},
        {"BREAKER_RESET": "inf"},
        {"BREAKER_FAILURES": "x"},
    ],
)
def test_settings_are_checked_at_start_up(bad: dict[str, str]) -> None:
    with pytest.raises(ConfigError) as caught:
        policy_from_config(bad)
    assert f"BFFPROXY_{next(iter(bad))}" in str(caught.value)


@pytest.fixture
def breaker_app(config: dict[str, Any], clock: FakeClock) -> Flask:
    config.update(BREAKER_FAILURES=2, BREAKER_RESET=30, CACHE_TTL=10, STALE_WHILE_REVALIDATE=0)
    app = create_app(config)
    app.extensions["bffproxy.cache"].clock = clock
    app.extensions["bffproxy.tenants"].default.strapi.admission.clock = clock
    return app


def test_while_open_cached_content_is_served_stale_and_the_rest_fails_fast(
    breaker_app: Flask, clock: FakeClock, strapi: responses.RequestsMock
) -> None:
    client = breaker_app.test_client()
    strapi.get(LIST, json=strapi_list("Kept"))
    assert client.get("/api/articles").headers["X-Cache"] == "MISS"
    strapi.replace(responses.GET, LIST, body=requests.ConnectTimeout("down"))
    for query in ("a", "b"):
        assert client.get(f"/api/articles?sort={query}").status_code == 504
    calls = len(strapi.calls)
    fast = client.get("/api/articles?sort=c")
    assert (fast.status_code, fast.headers["Retry-After"]) == (503, "30")
    assert fast.get_json()["error"]["code"] == "upstream_unavailable"
    clock.advance(15)  # past the TTL, not the reset: served stale, Strapi not asked
    stale = client.get("/api/articles")
    assert (stale.status_code, stale.headers["X-Cache"]) == (200, "STALE")
    assert len(strapi.calls) == calls
    assert client.get("/readyz").get_json()["error"]["details"]["circuit"] == {"default": "open"}


class RecordingSlots:
    """Stands in for the bulkhead's semaphore: always full, remembers how long callers waited."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    def acquire(self, blocking: bool = True, timeout: float | None = None) -> bool:
        self.waits.append(timeout if blocking else 0.0)
        return False


def test_callers_queue_briefly_while_strapi_is_healthy_and_not_at_all_while_it_fails(
    clock: FakeClock,
) -> None:
    gate = admission(clock, queue_wait=0.25, failures=5)
    slots = RecordingSlots()
    gate._slots = slots  # type: ignore[assignment]
    with pytest.raises(UpstreamBusy):
        gate.call(lambda: None)
    gate.state.count_failure()  # one timeout seen, circuit still closed
    with pytest.raises(UpstreamBusy):
        gate.call(lambda: None)
    assert slots.waits == [0.0, 0.25, 0.0]  # try, wait briefly; then only try


def test_only_max_waiting_callers_queue_the_rest_answer_at_once(clock: FakeClock) -> None:
    gate = admission(clock, queue_wait=0.25, max_waiting=1)
    slots = RecordingSlots()
    gate._slots = slots  # type: ignore[assignment]
    assert gate._waiting.acquire(blocking=False)  # another caller is already waiting
    with pytest.raises(UpstreamBusy):
        gate.call(lambda: None)
    assert slots.waits == [0.0]


def test_a_single_flight_waiter_takes_the_same_waiting_place_as_a_queued_call(clock: FakeClock) -> None:
    gate = admission(clock, queue_wait=0.25, max_waiting=1)
    slots = RecordingSlots()
    gate._slots = slots  # type: ignore[assignment]
    place = gate.waiting_place()
    assert place is not None
    assert gate.waiting_place() is None  # one place per worker and tenant
    with pytest.raises(UpstreamBusy):
        gate.call(lambda: None)
    assert slots.waits == [0.0]  # the place is taken: the call over the cap does not queue
    place.release()
    with pytest.raises(UpstreamBusy):
        gate.call(lambda: None)
    assert slots.waits == [0.0, 0.0, 0.25]  # given back: the next call may queue again
    assert gate.waiting_place() is not None


def test_no_waiting_places_when_max_waiting_is_zero(clock: FakeClock) -> None:
    assert admission(clock, max_waiting=0).waiting_place() is None


def test_failures_seen_at_once_by_many_workers_are_all_counted(tmp_path: Any) -> None:
    # With the read-modify-write this replaced, the same run counted fewer (lost updates).
    from bffproxy.disk_store import DiskStore

    def worker(results: list[int]) -> None:
        store = SharedStore(DiskStore(str(tmp_path), size_limit=2**24))  # one per worker process
        state = BreakerState(store, "breaker:default")
        for _ in range(25):
            state.count_failure()
        results.append(1)

    results: list[int] = []
    threads = [threading.Thread(target=worker, args=(results,)) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(results) == 8
    shared = SharedStore(DiskStore(str(tmp_path), size_limit=2**24))
    assert BreakerState(shared, "breaker:default").read()[0] == 200


class CountingState(BreakerState):
    """The shared breaker record, counting every look at it."""

    def __init__(self, store: Any) -> None:
        super().__init__(store, "breaker:default")
        self.looks = 0

    def read(self) -> tuple[int, float | None]:
        self.looks += 1
        return super().read()


@pytest.mark.parametrize("fast_hits", [True, False])
def test_a_fresh_hit_never_looks_at_the_breaker_or_the_bulkhead(
    config: dict[str, Any], strapi: responses.RequestsMock, fast_hits: bool
) -> None:
    # The "breaker cost on the hit path <= 3%": zero, because hits never reach admission.
    config["FAST_HITS"] = fast_hits  # the WSGI fast path, or Flask's view
    app = create_app(config)
    gate = app.extensions["bffproxy.tenants"].default.strapi.admission
    gate.state = state = CountingState(gate.state.store)
    client = app.test_client()
    strapi.get(LIST, json=strapi_list("Kept"))
    assert client.get("/api/articles").headers["X-Cache"] == "MISS"
    looks = state.looks
    assert looks > 0  # the miss went through admission
    gate._slots = gate._waiting = None  # type: ignore[assignment]  # any use of the bulkhead fails
    for _ in range(5):
        assert client.get("/api/articles").headers["X-Cache"] == "HIT"
    assert state.looks == looks


def test_an_open_circuit_never_promises_more_than_breaker_reset_after_the_clock_steps_back() -> None:
    """Found by the hostile tester: after an NTP step back (or a Redis peer whose clock runs ahead),
    an opened_at in the future said Retry-After: 3610 and let no probe through for an hour."""
    clock = FakeClock()
    gate = admission(clock)
    for _ in range(2):
        with pytest.raises(UpstreamTimeout):
            gate.call(fail(UpstreamTimeout()))
    clock.advance(-3600)
    with pytest.raises(CircuitOpen) as refused:
        gate.call(lambda: "sent")
    assert int(refused.value.headers["Retry-After"]) <= 10
    clock.advance(11)
    assert gate.call(lambda: "sent") == "sent"  # the probe goes through 11 s later


def test_the_probe_lock_never_shares_a_file_with_a_cache_key(config: dict[str, Any]) -> None:
    # Found by the hostile tester: a cache key whose flock stripe was the probe's waited behind a
    # probe hanging on Strapi. With the probe held, every cache key's lock must be free.
    app = create_app(config)
    gate = app.extensions["bffproxy.tenants"].default.strapi.admission
    cache_locks = app.extensions["bffproxy.cache"].locks
    probe = gate.probe_lock()
    assert probe is not None
    try:
        for n in range(4096):  # 4 keys per stripe on average: every stripe is tried
            lock = cache_locks.try_acquire(f"v1:default:articles:g.g:{n}", 5)
            assert lock is not None, n
            lock.release()
    finally:
        probe.release()
