"""The audit trail: exactly one JSON line per write request, whatever its outcome."""

from __future__ import annotations

import json
import logging
import re
from typing import Any

import pytest
import requests
from flask.testing import FlaskClient

from bffproxy import audit

from .conftest import STRAPI, strapi_list
from .test_publishing import DOC, EDITOR, READER, bearer, document, register_users
from .test_publishing import config as config  # the auth-enabled config fixture
from .test_strapi import connection_refused

FIELDS = {
    "time",
    "log",
    "tenant",
    "user_id",
    "role",
    "collection",
    "documentId",
    "action",
    "outcome",
    "status",
    "request_id",
}


@pytest.fixture
def lines(caplog: pytest.LogCaptureFixture) -> Any:
    """A function returning the audit lines logged so far, decoded."""
    caplog.set_level(logging.INFO, logger="bffproxy.audit")

    def read() -> list[dict[str, Any]]:
        return [json.loads(r.getMessage()) for r in caplog.records if r.name == "bffproxy.audit"]

    return read


@pytest.fixture
def editor(strapi: Any) -> dict[str, str]:
    register_users(strapi)
    return {**bearer(EDITOR), "Content-Type": "application/json"}


def test_a_successful_create_is_audited(client: FlaskClient, strapi: Any, editor: Any, lines: Any) -> None:
    strapi.post(f"{STRAPI}/api/articles", json=document(), status=201)
    client.post("/api/articles/publish", json={"title": "t"}, headers={**editor, "X-Request-ID": "req-42"})
    (line,) = lines()
    assert set(line) == FIELDS
    assert line["tenant"] == "default"
    assert line["user_id"] == str(EDITOR) and line["role"] == "editor"
    assert line["collection"] == "articles" and line["documentId"] == DOC
    assert line["action"] == "create_publish" and line["outcome"] == "success" and line["status"] == 201
    assert line["request_id"] == "req-42"
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$", line["time"])


@pytest.mark.parametrize(
    ("method", "url", "action"),
    [
        ("POST", "/api/articles", "create"),
        ("POST", "/api/articles?status=draft", "create_draft"),
        ("PUT", f"/api/articles/{DOC}", "update"),
        ("PUT", f"/api/articles/{DOC}?status=draft", "update_draft"),
        ("POST", f"/api/articles/{DOC}/publish", "publish"),
        ("DELETE", f"/api/articles/{DOC}", "delete"),
    ],
)
def test_every_write_route_is_audited(
    client: FlaskClient, strapi: Any, editor: Any, lines: Any, method: str, url: str, action: str
) -> None:
    strapi.post(f"{STRAPI}/api/articles", json=document(), status=201)
    strapi.put(f"{STRAPI}/api/articles/{DOC}", json=document(), status=200)
    strapi.delete(f"{STRAPI}/api/articles/{DOC}", status=204)
    client.open(url, method=method, json={"data": {"title": "t"}}, headers=editor)
    (line,) = lines()
    assert (line["action"], line["documentId"], line["outcome"]) == (action, DOC, "success")


def test_refused_writes_are_audited_with_who_tried(client: FlaskClient, strapi: Any, lines: Any) -> None:
    register_users(strapi)
    client.delete(f"/api/articles/{DOC}")
    client.delete(f"/api/articles/{DOC}", headers=bearer(READER))
    anonymous, reader = lines()
    assert (anonymous["outcome"], anonymous["status"], anonymous["user_id"]) == ("unauthenticated", 401, None)
    assert (reader["outcome"], reader["status"], reader["user_id"], reader["role"]) == (
        "forbidden",
        403,
        str(READER),
        "authenticated",
    )
    assert reader["documentId"] == DOC and reader["action"] == "delete"


def test_invalid_and_rejected_writes_are_audited(
    client: FlaskClient, strapi: Any, editor: Any, lines: Any
) -> None:
    client.post("/api/articles", json={"data": {}}, headers=editor)
    strapi.post(f"{STRAPI}/api/articles", json={"error": {"status": 400}}, status=400)
    client.post("/api/articles", json={"data": {"title": "t"}}, headers=editor)
    invalid, rejected = lines()
    assert (invalid["outcome"], invalid["status"]) == ("invalid", 422)
    assert (rejected["outcome"], rejected["status"]) == ("rejected", 400)


def test_idempotent_outcomes_are_audited(client: FlaskClient, strapi: Any, editor: Any, lines: Any) -> None:
    strapi.post(f"{STRAPI}/api/articles", json=document(), status=201)
    headers = {**editor, "Idempotency-Key": "k"}
    client.post("/api/articles/publish", json={"title": "t"}, headers=headers)
    client.post("/api/articles/publish", json={"title": "t"}, headers=headers)
    assert [line["outcome"] for line in lines()] == ["success", "replayed"]
    assert lines()[1]["documentId"] == DOC


def test_unknown_and_failed_outcomes_are_audited(
    client: FlaskClient, strapi: Any, editor: Any, lines: Any
) -> None:
    strapi.post(f"{STRAPI}/api/articles", body=requests.exceptions.ReadTimeout("read timed out"))
    client.post("/api/articles/publish", json={"title": "t"}, headers=editor)
    strapi.delete(f"{STRAPI}/api/articles/{DOC}", body=connection_refused())
    client.delete(f"/api/articles/{DOC}", headers=editor)
    unknown, failed = lines()
    assert (unknown["outcome"], unknown["status"]) == ("unknown", 504)
    assert (failed["outcome"], failed["status"]) == ("failed", 502)


def test_reads_are_not_audited(client: FlaskClient, strapi: Any, lines: Any) -> None:
    strapi.get(f"{STRAPI}/api/articles", json=strapi_list("a"))
    client.get("/api/articles")
    assert lines() == []


def test_outcome_for_status() -> None:
    assert audit.outcome_for(204) == "success"
    assert audit.outcome_for(413) == "invalid"
    assert audit.outcome_for(405) == "rejected"
    assert audit.outcome_for(503) == "failed"


def test_the_line_is_bare_json_when_nothing_else_configured_logging(monkeypatch: pytest.MonkeyPatch) -> None:
    logger = logging.getLogger("bffproxy.audit")
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", [])
    monkeypatch.setattr(logger, "handlers", [])
    monkeypatch.setattr(logger, "propagate", True)
    audit.init_app(None)  # type: ignore[arg-type]
    (handler,) = logger.handlers
    record = logging.LogRecord("bffproxy.audit", logging.INFO, __file__, 1, '{"a":1}', None, None)
    assert handler.format(record) == '{"a":1}'
    assert logger.propagate is False


def test_auditing_a_failed_role_look_up_does_not_ask_strapi_again(
    client: FlaskClient, strapi: Any, lines: Any
) -> None:
    strapi.get(f"{STRAPI}/api/users/{EDITOR}", body=requests.exceptions.ReadTimeout("read timed out"))
    answer = client.delete(f"/api/articles/{DOC}", headers=bearer(EDITOR))
    assert answer.status_code == 504
    assert len([c for c in strapi.calls if "/api/users/" in c.request.url]) == 1
    (line,) = lines()
    assert (line["outcome"], line["status"]) == ("failed", 504)
