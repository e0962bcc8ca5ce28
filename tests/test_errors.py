"""Every error leaves in one JSON envelope with the right status, never a trace."""

from __future__ import annotations

import pytest
from flask import Flask
from flask.testing import FlaskClient

from bffproxy.errors import Unprocessable


def test_unknown_route_is_json_404(client: FlaskClient) -> None:
    response = client.get("/nowhere")
    assert response.status_code == 404
    error = response.get_json()["error"]
    assert error["status"] == 404
    assert error["code"] == "not_found"
    assert error["request_id"] == response.headers["X-Request-ID"]


def test_wrong_method_is_json_405_with_allow(client: FlaskClient) -> None:
    response = client.delete("/healthz")
    assert response.status_code == 405
    assert response.get_json()["error"]["code"] == "method_not_allowed"
    assert "GET" in response.headers["Allow"]


def test_unexpected_exception_is_logged_500_without_trace(app: Flask, caplog) -> None:  # type: ignore[no-untyped-def]
    @app.get("/boom")
    def boom() -> str:
        raise RuntimeError("secret internals")

    app.config["PROPAGATE_EXCEPTIONS"] = False
    response = app.test_client().get("/boom")
    assert response.status_code == 500
    body = response.get_data(as_text=True)
    assert "secret internals" not in body and "Traceback" not in body
    assert response.get_json()["error"]["code"] == "internal_error"
    assert "secret internals" in caplog.text


def test_api_error_carries_details(app: Flask) -> None:
    @app.get("/invalid")
    def invalid() -> str:
        raise Unprocessable(details=[{"field": "title", "message": "required"}])

    response = app.test_client().get("/invalid")
    assert response.status_code == 422
    assert response.get_json()["error"]["details"] == [{"field": "title", "message": "required"}]
    assert response.headers["Cache-Control"] == "no-store"


def test_client_request_id_is_echoed_and_insane_ones_replaced(client: FlaskClient) -> None:
    assert client.get("/healthz", headers={"X-Request-ID": "abc-123"}).headers["X-Request-ID"] == "abc-123"
    replaced = client.get("/healthz", headers={"X-Request-ID": "bad id\twith spaces"}).headers["X-Request-ID"]
    assert replaced != "bad id\twith spaces" and len(replaced) == 32


@pytest.mark.parametrize(
    "path", ["/api//articles", "/api/articles//doc1", "/api/articles/doc1//publish", "/healthz//"]
)
def test_doubled_slashes_are_a_json_404_not_a_redirect(client: FlaskClient, path: str) -> None:
    # Werkzeug's merge_slashes answered an HTML 308 to http://<the client's Host>/api/articles.
    response = client.get(path, headers={"Host": "attacker.example"})
    assert response.status_code == 404
    assert response.mimetype == "application/json"
    assert response.get_json()["error"]["code"] == "not_found"
    assert "Location" not in response.headers


def test_no_routing_redirect_ever_answers_html(app: Flask) -> None:
    # A rule ending in '/' (strict_slashes) and a rule with defaults (redirect_defaults) made
    # Werkzeug raise RequestRedirect, which Flask never passes to error handlers: an HTML 308.
    @app.get("/things/")
    def things() -> str:
        return "things"

    @app.get("/pages/", defaults={"page": 1})
    @app.get("/pages/<int:page>")
    def pages(page: int) -> str:
        return str(page)

    client = app.test_client()
    response = client.get("/things", headers={"X-Request-ID": "rid-1"})
    assert response.status_code == 404
    assert response.mimetype == "application/json"
    error = response.get_json()["error"]
    assert (error["code"], error["request_id"]) == ("not_found", "rid-1")
    assert "/things/" in error["message"] and "Location" not in response.headers
    assert client.get("/things/").status_code == 200
    # Both spellings of a rule with defaults answer, neither redirects.
    assert [client.get(p).get_data(as_text=True) for p in ("/pages/", "/pages/1")] == ["1", "1"]
