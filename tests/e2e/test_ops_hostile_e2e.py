"""Hostile tester's findings on operations (issue 13) against real gunicorn and the real Strapi.

Each test is a finding that failed before its fix: what an operator's log or scrape showed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests

from .services import Gunicorn, Strapi, StrapiEditor, bff_env, login, wait_until
from .test_logs_e2e import send_raw

SECRET = "s3cr3t-ticket-0f-the-client"


@pytest.mark.parametrize("access_format", ["json", "text"])
def test_a_request_gunicorn_refuses_leaves_no_query_in_its_error_log(
    start_bff: Callable[..., Gunicorn], strapi_live: Strapi, access_format: str
) -> None:
    """gunicorn's own warning quotes a refused request line whole, ``?ticket=`` included."""
    bff = start_bff(workers=1, ACCESS_LOG_FORMAT=access_format)
    refused = {
        "four words": f"GET /api/events?ticket={SECRET} HTTP/1.1 x",
        "NUL in the target": f"GET /api/events?ticket={SECRET}\x00 HTTP/1.1",
        "bad version": f"GET /api/events?ticket={SECRET} HTTP/x.1",
    }
    for line in refused.values():
        answer = send_raw(bff, f"{line}\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
        assert answer.startswith(b"HTTP/1.1 400"), (line, answer[:200])
    time.sleep(0.5)
    log = bff.log()
    assert "Invalid request from ip=127.0.0.1" in log
    assert SECRET not in log, [line for line in log.splitlines() if SECRET in line]


@pytest.fixture
def reconcile(strapi_live: Strapi, tmp_path: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    """``bffproxy reconcile`` as cron runs it: one pass now, on a store of its own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BFFPROXY_")}
    env |= bff_env(strapi_live, tmp_path, RECONCILE_INTERVAL="0")

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        command = [str(Path(sys.executable).parent / "bffproxy"), "reconcile", *args]
        return subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)

    return run


def found(answer: subprocess.CompletedProcess[str]) -> str:
    assert answer.returncode == 0, answer.stderr
    return answer.stdout


def test_two_changes_between_two_passes(
    reconcile: Callable[..., subprocess.CompletedProcess[str]], strapi_editor: StrapiEditor
) -> None:
    """Changes that undo each other, or replace a document, between two passes: none is lost."""
    draft = strapi_editor.create(f"hostile {uuid.uuid4().hex[:8]}", draft=True)
    live = strapi_editor.create(f"hostile {uuid.uuid4().hex[:8]}")
    gone = strapi_editor.create(f"hostile {uuid.uuid4().hex[:8]}")
    found(reconcile())  # first sight
    strapi_editor.publish(draft)
    strapi_editor.unpublish(draft)  # live for a moment: its draft row moved
    strapi_editor.unpublish(live)
    strapi_editor.publish(live)  # published again: a new publishedAt, the same count
    strapi_editor.delete(gone)
    replacement = strapi_editor.create(f"hostile {uuid.uuid4().hex[:8]}")  # the same count again
    out = found(reconcile())
    assert f"updated {draft}" in out, out
    assert f"published {live}" in out, out
    assert f"deleted {gone}" in out and f"created {replacement}" in out, out
    again = found(reconcile())
    assert "nothing changed" in again, again  # the window read again announces nothing twice


def test_the_command_refuses_a_tenant_and_times_it_cannot_use(
    reconcile: Callable[..., subprocess.CompletedProcess[str]],
) -> None:
    for args in (["--tenant", "nope"], ["--since", "garbage"], ["--since", ""], ["--tenant", "x\x1b[2J"]):
        answer = reconcile(*args)
        assert answer.returncode == 2 or (args == ["--since", ""] and answer.returncode == 0), (args, answer)
        assert "Traceback" not in answer.stderr, answer.stderr
    for since in ("9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+14:00", "2026-W01"):
        answer = reconcile("--since", since)
        assert answer.returncode in (0, 2) and "Traceback" not in answer.stderr, (since, answer.stderr)


@pytest.mark.parametrize("access_format", ["json", "text"])
def test_no_secret_reaches_any_log_line(
    start_bff: Callable[..., Gunicorn], strapi_live: Strapi, access_format: str
) -> None:
    """Every secret a client or Strapi sends, in requests that succeed, fail and make bffproxy warn."""
    bff = start_bff(workers=1, LOG_LEVEL="DEBUG", ACCESS_LOG_FORMAT=access_format, METRICS_ALLOW="10.9.9.9")
    jwt = login(strapi_live, "editor", "Editor-Passw0rd!")["Authorization"].split()[1]
    client_secrets = {
        "ticket": "tkt-0123456789abcdef",
        "cookie": "ck-0123456789abcdef",
        "wrong webhook secret": "whk-0123456789abcdef",
        "wrong admin token": "adm-0123456789abcdef",
        "password": "pw-0123456789abcdef",
        "confirmation": "cnf-0123456789abcdef",
    }
    url, s = bff.url, client_secrets
    bearer = {"Authorization": f"Bearer {jwt}"}
    calls = [
        ("GET", f"/api/events?ticket={s['ticket']}", {}, None),
        ("GET", f"/api/events/ws?ticket={s['ticket']}", {}, None),
        (
            "GET",
            f"/api/articles?ticket={s['ticket']}&filters[x]={s['ticket']}",
            {"Cookie": f"jwt={s['cookie']}"},
            None,
        ),
        ("GET", "/api/articles?status=draft", bearer, None),
        ("GET", "/api/users/me", bearer, None),
        ("POST", "/api/articles", bearer, {"data": {"title": 5, "x": s["password"]}}),
        (
            "POST",
            "/webhooks/strapi",
            {"X-Webhook-Secret": s["wrong webhook secret"]},
            {"event": "entry.update"},
        ),
        (
            "POST",
            "/webhooks/strapi",
            {"X-Webhook-Secret": strapi_live.webhook_secret},
            {"event": "entry.nope", "model": "article", "entry": {}},
        ),
        ("POST", "/admin/purge", {"Authorization": f"Bearer {s['wrong admin token']}"}, {}),
        ("POST", "/admin/purge", {"Authorization": "Bearer e2e-admin-token"}, {"collection": "articles"}),
        ("GET", "/metrics", {"Authorization": f"Bearer {s['wrong admin token']}"}, None),
        ("GET", "/metrics", {"Authorization": "Bearer e2e-admin-token"}, None),
        ("POST", "/api/auth/local", {}, {"identifier": "editor", "password": s["password"]}),
        ("POST", "/api/auth/local", {}, {"identifier": "editor", "password": "Editor-Passw0rd!"}),
        ("GET", f"/api/auth/email-confirmation?confirmation={s['confirmation']}", {}, None),
        ("POST", "/api/events/ticket", bearer, None),
    ]
    for method, path, headers, body in calls:
        requests.request(method, url + path, headers=headers, json=body, timeout=10)
    time.sleep(1.5)
    log = bff.log()
    assert "webhook refused" in log  # it did log the requests that warn
    secrets = {**client_secrets, "Strapi JWT": jwt, "admin token": "e2e-admin-token"}
    secrets |= {"webhook secret": strapi_live.webhook_secret, "API token": strapi_live.api_token}
    secrets |= {"editor password": "Editor-Passw0rd!"}
    leaks = {name: [ln for ln in log.splitlines() if value in ln] for name, value in secrets.items()}
    assert not {name: lines for name, lines in leaks.items() if lines}


def test_counts_and_reconcile_passes_survive_a_hup_and_a_killed_worker(
    start_bff: Callable[..., Gunicorn], strapi_live: Strapi
) -> None:
    """systemctl reload (HUP) replaces every worker, and a worker killed mid-pass leaves its lease:
    the counts stay in the totals and the next intervals are still reconciled by someone."""
    from .test_metrics_e2e import HEALTHZ, healthz, scrape, value

    bff = start_bff(RECONCILE_INTERVAL="1", RECONCILE_OVERLAP="1", METRICS_ALLOW="127.0.0.1")
    wait_until(lambda: last_pass(bff) is not None, 15, "the first pass")
    before = value(scrape(bff)[1], "bffproxy_requests_total", **HEALTHZ)
    old = healthz(bff, 30)
    assert bff.process is not None
    os.kill(bff.process.pid, signal.SIGHUP)
    wait_until(lambda: not (healthz(bff, 10) & old), 30, "new workers after HUP")
    wait_until(
        lambda: value(scrape(bff)[1], "bffproxy_requests_total", **HEALTHZ) >= before + 30, 5, "counts"
    )
    passes = value(scrape(bff)[1], "bffproxy_reconcile_runs_total", tenant="default", outcome="ok")
    for worker in healthz(bff, 10):
        os.kill(int(worker), signal.SIGKILL)  # mid-pass or not: its lease of this interval is lost
    stamp = last_pass(bff)
    wait_until(lambda: last_pass(bff) != stamp, 15, "a pass after the kills")
    after = value(scrape(bff)[1], "bffproxy_reconcile_runs_total", tenant="default", outcome="ok")
    assert after > passes and value(scrape(bff)[1], "bffproxy_requests_total", **HEALTHZ) >= before + 30


def last_pass(bff: Gunicorn) -> str | None:
    try:
        answer = requests.get(f"{bff.url}/readyz", timeout=5)
    except requests.RequestException:
        return None
    return answer.json().get("reconciled", {}).get("default") if answer.status_code == 200 else None


def test_redis_gone_under_the_reconciler_fails_its_passes_not_readyz_nor_metrics(
    start_bff: Callable[..., Gunicorn], redis_server: Any
) -> None:
    """Two instances' shared store stops: passes fail (logged, backed off), probes and scrapes answer."""
    bff = start_bff(RECONCILE_INTERVAL="1", REDIS_URL=redis_server.url, METRICS_ALLOW="127.0.0.1")
    wait_until(lambda: last_pass(bff) is not None, 15, "the first pass")
    redis_server.stop()
    time.sleep(3)  # a few intervals without the store
    for path in ("/readyz", "/metrics", "/healthz", "/openapi.json", "/api/articles"):
        answer = requests.get(bff.url + path, timeout=10)
        assert answer.status_code < 500, (path, answer.status_code, answer.text[:300])
    assert requests.get(f"{bff.url}/readyz", timeout=10).json()["store"] == "down"
    assert "Traceback" not in bff.log() and "reconcile tick failed" not in bff.log()


@pytest.mark.parametrize("access_format", ["json", "text"])
def test_an_absolute_target_with_credentials_leaves_them_out_of_the_access_log(
    start_bff: Callable[..., Gunicorn], strapi_live: Strapi, access_format: str
) -> None:
    """``GET http://user:password@host/path``: the access log writes the path, never the userinfo."""
    bff = start_bff(workers=1, ACCESS_LOG_FORMAT=access_format)
    target = f"http://alice:{SECRET}@127.0.0.1:{bff.port}/healthz"
    answer = send_raw(bff, f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
    assert answer.startswith(b"HTTP/1.1 "), answer[:200]
    time.sleep(0.5)
    log = bff.log()
    assert "/healthz" in log
    assert SECRET not in log, [line for line in log.splitlines() if SECRET in line]
