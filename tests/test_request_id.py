"""Request ids: a sane client id is kept and echoed, anything else is replaced by a new one."""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient

from bffproxy.request_id import request_id_for


@pytest.mark.parametrize("offered", ["abc-123", "nginx.5f2:a_b", "x" * 128])
def test_a_sane_id_is_kept(offered: str) -> None:
    assert request_id_for(offered) == offered


@pytest.mark.parametrize(
    "offered", ["valid\n", "valid\r\n", "\nvalid", "va lid", "x" * 129, "valid\x00", "vålid", ""]
)
def test_anything_else_gets_a_new_id(offered: str) -> None:
    new = request_id_for(offered)
    assert new != offered
    assert len(new) == 32 and new.isalnum()


def test_a_line_break_never_reaches_the_response_header(client: FlaskClient) -> None:
    response = client.get("/healthz", environ_overrides={"HTTP_X_REQUEST_ID": "valid\n"})
    assert response.headers["X-Request-ID"] not in ("valid\n", "valid")
    assert client.get("/healthz", headers={"X-Request-ID": "valid"}).headers["X-Request-ID"] == "valid"
