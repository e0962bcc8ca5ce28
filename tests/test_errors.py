"""Every error leaves in one JSON envelope with the right status, never a trace."""

from __future__ import annotations

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
