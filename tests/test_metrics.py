"""Metrics: what is counted, with which bounded labels, who may scrape, and gunicorn's multiprocess side."""

from __future__ import annotations

import json
import os
import random
import string
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import responses
from flask import Flask, request
from flask.testing import FlaskClient

from bffproxy import ConfigError, create_app, metrics
from bffproxy.idempotency import IdempotencyInFlight, IdempotencyKeyReused, IdempotencyStore, StoredAnswer
from bffproxy.single_flight import coalesced

from .conftest import STRAPI, FakeClock, strapi_list

ROOT = Path(__file__).resolve().parents[1]
DASHBOARD = ROOT / "deploy" / "grafana" / "bffproxy-dashboard.json"
ADMIN = {"Authorization": "Bearer metrics-admin-token"}


def sample(name: str, **labels: str) -> float:
    """A sample's value in this process's registry (0 when it has not been counted yet), queue written."""
    metrics.flush()
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0


def requests_counted(**labels: str) -> float:
    return sample("bffproxy_requests_total", **labels)


@pytest.fixture
def config(config: dict[str, Any]) -> dict[str, Any]:
    config["ADMIN_TOKEN"] = "metrics-admin-token"
    config["WEBHOOK_SECRET"] = "hook-secret"
    return config


def label_values(name: str, label: str) -> set[str]:
    """Every value ``label`` takes in the samples of ``name``."""
    metrics.flush()
    return {
        s.labels[label]
        for m in metrics.REGISTRY.collect()
        for s in m.samples
        if s.name == name and label in s.labels
    }


# -- requests ------------------------------------------------------------------------------------


def test_every_answer_is_counted_by_tenant_route_method_and_status_class(client: FlaskClient) -> None:
    labels = {"tenant": "default", "route": "/healthz", "method": "GET", "status": "2xx"}
    before = requests_counted(**labels)
    assert client.get("/healthz").status_code == 200
    assert requests_counted(**labels) == before + 1
    missing = {"tenant": "default", "route": "unmatched", "method": "GET", "status": "4xx"}
    before = requests_counted(**missing)
    assert client.get("/no/such/route").status_code == 404
    assert requests_counted(**missing) == before + 1


def test_a_fresh_hit_from_the_fast_path_is_counted_with_the_views_route_and_a_hit(
    client: FlaskClient, strapi: responses.RequestsMock
) -> None:
    strapi.get(f"{STRAPI}/api/articles", json=strapi_list("a"))
    route = {"tenant": "default", "route": "/api/<collection>", "method": "GET", "status": "2xx"}
    before, hits, misses = (
        requests_counted(**route),
        sample("bffproxy_cache_requests_total", tenant="default", result="hit"),
        sample("bffproxy_cache_requests_total", tenant="default", result="miss"),
    )
    assert client.get("/api/articles").headers["X-Cache"] == "MISS"
    assert client.get("/api/articles").headers["X-Cache"] == "HIT"  # answered by hits.py, before Flask
    assert requests_counted(**route) == before + 2
    assert sample("bffproxy_cache_requests_total", tenant="default", result="hit") == hits + 1
    assert sample("bffproxy_cache_requests_total", tenant="default", result="miss") == misses + 1


def test_a_document_hit_names_the_document_route(client: FlaskClient, strapi: responses.RequestsMock) -> None:
    strapi.get(f"{STRAPI}/api/articles/abc", json={"data": {"documentId": "abc"}, "meta": {}})
    route = {
        "tenant": "default",
        "route": "/api/<collection>/<document_id>",
        "method": "GET",
        "status": "2xx",
    }
    before = requests_counted(**route)
    client.get("/api/articles/abc")
    assert client.get("/api/articles/abc").headers["X-Cache"] == "HIT"
    assert requests_counted(**route) == before + 2


def test_hostile_paths_methods_and_hosts_do_not_grow_the_label_sets(
    client: FlaskClient, strapi: responses.RequestsMock
) -> None:
    strapi.get(f"{STRAPI}/api/articles", json=strapi_list("a"))
    names = ("bffproxy_requests_total", "bffproxy_cache_requests_total")
    labels = ("tenant", "route", "method", "status", "result")
    before = {(n, label): label_values(n, label) for n in names for label in labels}
    rng = random.Random(13)
    for _ in range(200):
        noise = "".join(rng.choices(string.ascii_letters + "%<>{}", k=12))
        method = rng.choice(["GET", "POST", "PROPFIND", "BREW", noise.upper()])
        client.open(f"/{noise}/api/{noise}", method=method, headers={"Host": f"{noise.lower()}.example"})
        client.get(f"/api/articles?{noise}=1")
        client.get(f"/api/{noise}/{noise}")
    added = {key: label_values(*key) - seen for key, seen in before.items()}
    rules = {rule.rule for rule in client.application.url_map.iter_rules()}
    assert added[("bffproxy_requests_total", "route")] <= rules | {"unmatched"}
    assert added[("bffproxy_requests_total", "method")] <= metrics.METHODS | {"other"}
    assert added[("bffproxy_requests_total", "status")] <= {"2xx", "3xx", "4xx", "5xx"}
    assert added[("bffproxy_requests_total", "tenant")] <= {"default", "-"}
    assert label_values("bffproxy_cache_requests_total", "result") <= metrics.CACHE_RESULTS
    assert "other" in label_values("bffproxy_requests_total", "method")


def test_with_metrics_off_there_is_no_layer_and_no_endpoint(config: dict[str, Any]) -> None:
    app = create_app({**config, "METRICS": "false"})
    assert not isinstance(app.wsgi_app, metrics.Observed)
    assert app.test_client().get("/metrics", headers=ADMIN).status_code == 404
    assert isinstance(create_app(config).wsgi_app, metrics.Observed)


def test_a_fault_while_counting_never_costs_the_answer(app: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*labels: str) -> Any:
        raise OSError("metrics directory gone")

    monkeypatch.setattr(metrics.REQUESTS, "labels", broken)
    assert app.test_client().get("/healthz?fresh-labels").status_code == 200
    metrics.flush()  # logs the fault, raises nothing
    app.test_client().get("/healthz", environ_overrides={"bffproxy.tenant": object()})  # no .name
    assert app.test_client().get("/healthz").status_code == 200


def test_metric_files_that_cannot_be_written_never_fail_a_request(
    client: FlaskClient, strapi: responses.RequestsMock, monkeypatch: pytest.MonkeyPatch
) -> None:
    def gone(*labels: str) -> Any:
        raise FileNotFoundError("the metrics directory was removed")

    for metric in (metrics.WEBHOOKS_RECEIVED, metrics.INVALIDATIONS, metrics.STRAPI_SECONDS):
        monkeypatch.setattr(metric, "labels", gone)
    monkeypatch.setattr(metrics, "_last_failure", [-60.0])
    strapi.get(f"{STRAPI}/api/articles", json=strapi_list("a"))
    with pytest.MonkeyPatch.context() as quiet:
        logged: list[str] = []
        quiet.setattr(metrics.log, "exception", lambda message, *args: logged.append(message % args))
        assert webhook(client, "hook-secret", ENTRY).status_code == 200
        assert client.get("/api/articles").status_code == 200
    assert len(logged) == 1 and logged[0].startswith("writing a metric failed")  # once a minute at most


def test_answers_are_counted_once_written_and_a_scrape_writes_them_first(client: FlaskClient) -> None:
    labels = {"tenant": "default", "route": "/healthz", "method": "GET", "status": "2xx"}
    before = requests_counted(**labels)
    for _ in range(3):
        client.get("/healthz")
    assert (metrics.REGISTRY.get_sample_value("bffproxy_requests_total", labels) or 0.0) == before  # queued
    shown = client.get("/metrics", headers=ADMIN).data.decode()
    line = 'bffproxy_requests_total{method="GET",route="/healthz",status="2xx",tenant="default"}'
    assert f"{line} {before + 3}" in shown


# -- who may scrape ------------------------------------------------------------------------------


def test_metrics_need_the_admin_token(client: FlaskClient) -> None:
    refused = client.get("/metrics")
    assert refused.status_code == 401
    assert refused.get_json()["error"]["code"] == "unauthorized"
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    answer = client.get("/metrics", headers=ADMIN)
    assert answer.status_code == 200
    assert answer.content_type.startswith("text/plain; version=")
    assert answer.headers["Cache-Control"] == "no-store"
    assert b"bffproxy_requests_total{" in answer.data


def test_without_a_token_or_an_allow_list_metrics_are_disabled(config: dict[str, Any]) -> None:
    client = create_app({**config, "ADMIN_TOKEN": ""}).test_client()
    refused = client.get("/metrics")
    assert refused.status_code == 404
    assert refused.get_json()["error"]["code"] == "metrics_disabled"


def test_an_allow_listed_address_scrapes_without_the_token(config: dict[str, Any]) -> None:
    client = create_app({**config, "METRICS_ALLOW": "10.0.0.0/8, ::1"}).test_client()
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "10.1.2.3"}).status_code == 200
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "::1"}).status_code == 200
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "11.0.0.1"}).status_code == 401
    # gunicorn bound to [::] (dual stack) sees an IPv4 scraper as an IPv4-mapped address
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "::ffff:10.1.2.3"}).status_code == 200
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "::ffff:11.0.0.1"}).status_code == 401


def test_a_forged_forwarded_address_is_not_believed_without_trusted_proxies(config: dict[str, Any]) -> None:
    client = create_app({**config, "METRICS_ALLOW": "10.0.0.1"}).test_client()
    forged = client.get(
        "/metrics", headers={"X-Forwarded-For": "10.0.0.1"}, environ_base={"REMOTE_ADDR": "203.0.113.5"}
    )
    assert forged.status_code == 401


def test_a_forwarded_address_opens_metrics_only_when_it_came_through_an_allowed_peer(
    config: dict[str, Any],
) -> None:
    """With TRUSTED_PROXIES set, a host reaching gunicorn's bind directly (the README's remote
    scrape) wrote X-Forwarded-For: 127.0.0.1 and read the metrics without the token."""
    client = create_app({**config, "METRICS_ALLOW": "127.0.0.1", "TRUSTED_PROXIES": 1}).test_client()
    spoofed = {"X-Forwarded-For": "127.0.0.1"}
    assert (
        client.get("/metrics", headers=spoofed, environ_base={"REMOTE_ADDR": "10.1.2.3"}).status_code == 401
    )
    through_nginx = {"X-Forwarded-For": "203.0.113.5"}
    assert (
        client.get("/metrics", headers=through_nginx, environ_base={"REMOTE_ADDR": "127.0.0.1"}).status_code
        == 401
    )
    assert (
        client.get("/metrics", headers=spoofed, environ_base={"REMOTE_ADDR": "127.0.0.1"}).status_code == 200
    )
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "127.0.0.1"}).status_code == 200


def test_metrics_answer_on_any_host_like_health(tmp_path: Path, config: dict[str, Any]) -> None:
    tenants = tmp_path / "tenants.toml"
    tenants.write_text(
        f'[tenants.acme]\nhosts = ["acme.test"]\nstrapi_url = "{STRAPI}"\ncollections = ["articles"]\n'
    )
    client = create_app({**config, "TENANTS_FILE": str(tenants)}).test_client()
    assert client.get("/api/articles", headers={"Host": "unknown.test"}).status_code == 404
    assert client.get("/metrics", headers={**ADMIN, "Host": "unknown.test"}).status_code == 200
    labels = {"tenant": "-", "route": "/metrics", "method": "GET", "status": "2xx"}
    assert requests_counted(**labels) >= 1


def test_metrics_answer_only_at_their_own_path_not_under_a_tenant_prefix(
    tmp_path: Path, config: dict[str, Any]
) -> None:
    tenants = tmp_path / "tenants.toml"
    tenants.write_text(
        f'[tenants.beta]\npath_prefix = "/t/beta"\nstrapi_url = "{STRAPI}"\ncollections = ["articles"]\n'
    )
    client = create_app({**config, "TENANTS_FILE": str(tenants)}).test_client()
    assert client.get("/metrics", headers=ADMIN).status_code == 200
    hidden = client.get("/t/beta/metrics", headers=ADMIN)
    assert hidden.status_code == 404 and hidden.get_json()["error"]["code"] == "not_found"


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("METRICS", "maybe", "BFFPROXY_METRICS"),
        ("METRICS_ALLOW", "10.0.0.0/33", "BFFPROXY_METRICS_ALLOW"),
        ("METRICS_ALLOW", "10.0.0.1/8", "BFFPROXY_METRICS_ALLOW"),  # host bits set: a typo, not a network
        ("METRICS_ALLOW", "localhost", "BFFPROXY_METRICS_ALLOW"),
        ("ACCESS_LOG_FORMAT", "xml", "BFFPROXY_ACCESS_LOG_FORMAT"),
    ],
)
def test_bad_settings_stop_the_start(config: dict[str, Any], key: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        create_app({**config, key: value})


# -- Strapi calls --------------------------------------------------------------------------------


def strapi_calls(outcome: str) -> float:
    return sample("bffproxy_strapi_request_duration_seconds_count", tenant="default", outcome=outcome)


def upstream_errors(kind: str) -> float:
    return sample("bffproxy_upstream_errors_total", tenant="default", kind=kind)


@pytest.mark.parametrize(
    ("answer", "outcome", "kind", "status"),
    [
        ({"json": strapi_list("a")}, "ok", None, 200),
        ({"json": {"error": {}}, "status": 400}, "client_error", None, 400),
        ({"json": {}, "status": 500}, "server_error", "5xx", 502),
        ({"body": requests.ConnectionError("refused")}, "connect_error", "connect", 502),
        ({"body": requests.ReadTimeout("slow")}, "timeout", "timeout", 504),
    ],
)
def test_each_strapi_call_is_timed_by_outcome_and_failures_counted_by_kind(
    client: FlaskClient,
    strapi: responses.RequestsMock,
    answer: dict[str, Any],
    outcome: str,
    kind: str | None,
    status: int,
) -> None:
    strapi.get(f"{STRAPI}/api/articles", **answer)
    calls, errors = strapi_calls(outcome), {k: upstream_errors(k) for k in ("connect", "timeout", "5xx")}
    assert client.get("/api/articles").status_code == status
    assert strapi_calls(outcome) == calls + 1
    for name, count in errors.items():
        assert upstream_errors(name) == count + (1 if name == kind else 0)


def test_the_time_spent_on_strapi_is_left_for_the_access_log(app: Flask) -> None:
    with app.test_request_context("/api/articles"):
        metrics.strapi_call("default", "ok", 0.25)
        metrics.strapi_call("default", "ok", 0.5)
        assert request.environ[metrics.UPSTREAM] == 0.75


# -- cache results -------------------------------------------------------------------------------


def test_a_coalesced_waiter_is_counted_as_coalesced_not_as_its_x_cache(app: Flask) -> None:
    with app.test_request_context("/api/articles"):
        assert coalesced(None) is None
        assert metrics.CACHE not in request.environ
        coalesced(object())  # type: ignore[type-var]
        metrics.note_cache("HIT")
        assert request.environ[metrics.CACHE] == "coalesced"
    with app.test_request_context("/api/articles"):
        metrics.note_cache("BOGUS")
        assert metrics.CACHE not in request.environ
        metrics.note_cache("STALE")
        assert request.environ[metrics.CACHE] == "stale"


# -- webhooks, idempotency, rate limits ----------------------------------------------------------


def webhook(client: FlaskClient, secret: str, body: dict[str, Any]) -> Any:
    return client.post("/webhooks/strapi", json=body, headers={"X-Webhook-Secret": secret})


ENTRY = {"event": "entry.update", "model": "article", "entry": {"documentId": "abc"}}


def test_webhooks_received_rejected_and_invalidations_are_counted(client: FlaskClient) -> None:
    received = sample("bffproxy_webhooks_received_total", tenant="default")
    rejected = sample("bffproxy_webhooks_rejected_total", tenant="default", code="unauthorized")
    bad = sample("bffproxy_webhooks_rejected_total", tenant="default", code="bad_request")
    invalidated = sample("bffproxy_cache_invalidations_total", tenant="default", source="webhook")
    assert webhook(client, "wrong", ENTRY).status_code == 401
    assert webhook(client, "hook-secret", {"event": "entry.update"}).status_code == 400
    assert webhook(client, "hook-secret", ENTRY).status_code == 200
    assert sample("bffproxy_webhooks_received_total", tenant="default") == received + 3
    assert sample("bffproxy_webhooks_rejected_total", tenant="default", code="unauthorized") == rejected + 1
    assert sample("bffproxy_webhooks_rejected_total", tenant="default", code="bad_request") == bad + 1
    after = sample("bffproxy_cache_invalidations_total", tenant="default", source="webhook")
    assert after == invalidated + 2  # articles and its related categories


def test_admin_purges_count_as_admin_invalidations(client: FlaskClient) -> None:
    before = sample("bffproxy_cache_invalidations_total", tenant="default", source="admin")
    assert client.post("/admin/cache/purge", json={"all": True}, headers=ADMIN).status_code == 200
    after = sample("bffproxy_cache_invalidations_total", tenant="default", source="admin")
    assert after == before + 2  # articles and categories


def test_webhook_lag_is_from_strapis_event_time_to_receipt() -> None:
    count = sample("bffproxy_webhook_lag_seconds_count", tenant="lag")
    total = sample("bffproxy_webhook_lag_seconds_sum", tenant="lag")
    created = {"createdAt": "2026-11-23T20:49:47.374Z"}
    metrics.webhook_lag("lag", created, now=1_795_466_989.874)  # 2.5 s later
    assert sample("bffproxy_webhook_lag_seconds_count", tenant="lag") == count + 1
    assert sample("bffproxy_webhook_lag_seconds_sum", tenant="lag") == pytest.approx(total + 2.5)
    metrics.webhook_lag("lag", created, now=1_795_466_980.0)  # bffproxy's clock behind Strapi's
    assert sample("bffproxy_webhook_lag_seconds_sum", tenant="lag") == pytest.approx(total + 2.5)
    for junk in (
        {"createdAt": "yesterday"},
        {"createdAt": 5},
        {"createdAt": "2026-11-23T20:49:47"},
        [],
        None,
    ):
        metrics.webhook_lag("lag", junk, now=1_795_466_989.874)
    assert sample("bffproxy_webhook_lag_seconds_count", tenant="lag") == count + 2


def test_idempotency_replays_and_conflicts_are_counted(app: Flask, clock: FakeClock) -> None:
    store: IdempotencyStore = app.extensions["bffproxy.idempotency"]
    store.clock = clock
    replays = sample("bffproxy_idempotency_replays_total", tenant="idem")
    in_flight = sample("bffproxy_idempotency_conflicts_total", tenant="idem", kind="in_flight")
    reused = sample("bffproxy_idempotency_conflicts_total", tenant="idem", kind="key_reused")
    with app.app_context():
        claim = store.claim("idem", "user-1", "key-1", "fingerprint-1")
        with pytest.raises(IdempotencyInFlight):
            store.claim("idem", "user-1", "key-1", "fingerprint-1")
        with pytest.raises(IdempotencyKeyReused):
            store.claim("idem", "user-1", "key-1", "fingerprint-2")
        store.finish(claim, StoredAnswer(201, b"{}", "application/json"))
        assert store.claim("idem", "user-1", "key-1", "fingerprint-1").replay is not None
    assert sample("bffproxy_idempotency_replays_total", tenant="idem") == replays + 1
    assert sample("bffproxy_idempotency_conflicts_total", tenant="idem", kind="in_flight") == in_flight + 1
    assert sample("bffproxy_idempotency_conflicts_total", tenant="idem", kind="key_reused") == reused + 1


def test_rate_limit_rejections_are_counted(config: dict[str, Any], strapi: responses.RequestsMock) -> None:
    strapi.post(f"{STRAPI}/api/auth/local", json={"jwt": "x", "user": {}})
    client = create_app({**config, "LOGIN_RATE_LIMIT": "1/60"}).test_client()
    before = sample("bffproxy_rate_limit_rejections_total", tenant="default", limit="api/auth/local")
    body = {"identifier": "reader", "password": "Reader-Passw0rd!"}
    statuses = [client.post("/api/auth/local", json=body).status_code for _ in range(3)]
    assert statuses == [200, 429, 429]
    after = sample("bffproxy_rate_limit_rejections_total", tenant="default", limit="api/auth/local")
    assert after == before + 2


def test_reconcile_passes_and_what_they_found_are_counted() -> None:
    from bffproxy.events import Change

    def runs(outcome: str) -> float:
        return sample("bffproxy_reconcile_runs_total", tenant="rec", outcome=outcome)

    def found(kind: str) -> float:
        return sample("bffproxy_reconcile_findings_total", tenant="rec", kind=kind)

    ok, failed, updated, deleted = runs("ok"), runs("failed"), found("updated"), found("deleted")
    change = {"collection": "articles", "document_id": "abc", "source": "reconcile", "audience": "everyone"}
    missed = {"articles": [Change("updated", **change), Change("deleted", **change)], "categories": []}
    metrics.reconciled("rec", missed)
    metrics.reconciled("rec", None)
    assert (runs("ok"), runs("failed")) == (ok + 1, failed + 1)
    assert (found("updated"), found("deleted")) == (updated + 1, deleted + 1)


# -- gunicorn's side: the multiprocess directory -------------------------------------------------


@pytest.fixture
def held_locks() -> Iterator[None]:
    """Release the locks prepare_multiproc_dir takes (in gunicorn, the arbiter holds them until it exits)."""
    yield
    while metrics._held_locks:
        os.close(metrics._held_locks.popitem()[1])


def test_the_multiprocess_directory_is_made_and_emptied(tmp_path: Path, held_locks: None) -> None:
    directory = tmp_path / "run" / "metrics"
    metrics.prepare_multiproc_dir(str(directory))
    assert directory.is_dir() and (directory.stat().st_mode & 0o777) == 0o700
    (directory / "counter_123.db").write_bytes(b"old")
    (directory / "notes.txt").write_text("the operator's")
    os.close(metrics._held_locks.popitem()[1])  # that arbiter has exited
    metrics.prepare_multiproc_dir(str(directory))
    assert sorted(p.name for p in directory.iterdir()) == [".bffproxy.lock", "notes.txt"]


def test_a_directory_that_cannot_be_written_stops_the_start(tmp_path: Path, held_locks: None) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(ConfigError, match=r"PROMETHEUS_MULTIPROC_DIR .*a-file/metrics.* is not a writable"):
        metrics.prepare_multiproc_dir(str(blocker / "metrics"))
    with pytest.raises(ConfigError, match="PROMETHEUS_MULTIPROC_DIR is empty"):
        metrics.prepare_multiproc_dir("")


def test_a_directory_another_running_gunicorn_holds_stops_the_start(tmp_path: Path, held_locks: None) -> None:
    other = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(tmp_path)],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert other.stdout is not None and other.stdout.readline() == "holding\n"
        with pytest.raises(ConfigError, match="in use by another running gunicorn"):
            metrics.prepare_multiproc_dir(str(tmp_path))
        assert (tmp_path / "counter_1.db").exists()  # nothing of the other's was wiped
    finally:
        other.kill()
        other.communicate()
    metrics.prepare_multiproc_dir(str(tmp_path))  # the other one is gone: its lock with it
    assert not (tmp_path / "counter_1.db").exists()


HOLDER = """
import sys, pathlib
from bffproxy import metrics
metrics.prepare_multiproc_dir(sys.argv[1])
(pathlib.Path(sys.argv[1]) / "counter_1.db").write_bytes(b"the other gunicorn's counts")
print("holding", flush=True)
sys.stdin.read()
"""


MULTIPROCESS = textwrap.dedent(
    """
    import os, sys
    from bffproxy import metrics

    def worker(subscribers):
        pid = os.fork()
        if pid == 0:
            metrics.REQUESTS.labels("default", "/healthz", "GET", "2xx").inc()
            for _ in range(subscribers):
                metrics.subscriber_joined()
            metrics.subscriber_left()
            os._exit(0)
        os.waitpid(pid, 0)
        return pid

    first, second = worker(2), worker(4)  # 1 and 3 subscribers now
    metrics.worker_exited(first)  # gunicorn's child_exit for the first one only
    sys.stdout.write(metrics.exposition().decode())
    """
)


def test_workers_counts_add_up_and_a_dead_workers_gauges_do_not(tmp_path: Path) -> None:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    shown = subprocess.run(
        [sys.executable, "-c", MULTIPROCESS], env=env, cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    assert 'bffproxy_requests_total{method="GET",route="/healthz",status="2xx",tenant="default"} 2.0' in shown
    assert "bffproxy_event_subscribers 3.0" in shown


def test_importing_bffproxy_writes_nothing_before_the_arbiter_made_the_directory(tmp_path: Path) -> None:
    # gunicorn imports bffproxy (its logger_class) before on_starting creates the directory: a
    # metric written at import would crash the start with a FileNotFoundError instead of one line.
    later = tmp_path / "made-by-on-starting"
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(later)}
    subprocess.run([sys.executable, "-c", "import bffproxy.logs"], env=env, cwd=ROOT, check=True)
    assert not later.exists()


# -- the dashboard -------------------------------------------------------------------------------


def dashboard_exprs(node: Any) -> Iterator[str]:
    """Every ``expr`` in the dashboard, however deeply its panels nest."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "expr" and isinstance(value, str):
                yield value
            else:
                yield from dashboard_exprs(value)
    elif isinstance(node, list):
        for item in node:
            yield from dashboard_exprs(item)


def test_the_dashboard_loads_and_references_only_exported_metrics() -> None:
    import re

    text = DASHBOARD.read_text()
    board = json.loads(text)
    exprs = list(dashboard_exprs(board))
    assert len(exprs) >= 4
    assert all("bffproxy_" in expr for expr in exprs)
    used = set(re.findall(r"\b(bffproxy_[a-z_]+)", text))  # the panels' and the variables' queries
    assert used, "the dashboard queries no bffproxy metric"
    assert used <= metrics.exported_names(), used - metrics.exported_names()
    titles = " ".join(str(p.get("title", "")) for p in board["panels"]).lower()
    for shown in ("hit ratio", "request rate", "strapi latency", "upstream errors"):
        assert shown in titles
