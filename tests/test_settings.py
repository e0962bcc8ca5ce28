"""Configuration: layering, typing, and one clear error naming the variable."""

from __future__ import annotations

from typing import Any

import pytest

from bffproxy import create_app
from bffproxy.settings import ConfigError


def test_defaults_apply(config: dict[str, Any]) -> None:
    app = create_app(config)
    assert app.config["CACHE_TTL"] == 300
    assert app.config["COLLECTIONS"] == ("articles", "categories")
    assert app.config["STRAPI_URL"] == "http://strapi.test"
    assert app.config["MAX_CONTENT_LENGTH"] == 1024 * 1024


def test_environment_variables_are_typed(config: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    del config["COLLECTIONS"]
    monkeypatch.setenv("BFFPROXY_COLLECTIONS", " articles , categories,articles")
    monkeypatch.setenv("BFFPROXY_CACHE_TTL", "60")
    monkeypatch.setenv("BFFPROXY_STRAPI_READ_TIMEOUT", "2.5")
    monkeypatch.setenv("BFFPROXY_CACHE_TTLS", "articles=30, categories=600")
    app = create_app(config)
    assert app.config["COLLECTIONS"] == ("articles", "categories")
    assert app.config["CACHE_TTL"] == 60
    assert app.config["STRAPI_READ_TIMEOUT"] == 2.5
    assert app.config["CACHE_TTLS"] == {"articles": 30, "categories": 600}


def test_dotenv_file_is_read_and_environment_wins(
    config: dict[str, Any], monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    env_file = tmp_path / "bff.env"
    env_file.write_text("BFFPROXY_CACHE_TTL=42\nBFFPROXY_STRAPI_RETRIES=5\n")
    monkeypatch.setenv("BFFPROXY_ENV_FILE", str(env_file))
    monkeypatch.setenv("BFFPROXY_STRAPI_RETRIES", "1")
    app = create_app({k: v for k, v in config.items() if k != "STRAPI_RETRIES"})
    assert app.config["CACHE_TTL"] == 42
    assert app.config["STRAPI_RETRIES"] == 1


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"COLLECTIONS": ""}, "BFFPROXY_COLLECTIONS is required"),
        ({"STRAPI_URL": "strapi:1337"}, "BFFPROXY_STRAPI_URL must be an http:// or https:// URL"),
        ({"CACHE_TTL": "soon"}, "BFFPROXY_CACHE_TTL must be an integer >= 0, got 'soon'"),
        ({"STRAPI_READ_TIMEOUT": "0"}, "BFFPROXY_STRAPI_READ_TIMEOUT must be a number >= 0.001"),
        ({"REDIS_URL": "http://x"}, "BFFPROXY_REDIS_URL must be a redis://"),
        (
            {"CACHE_TTLS": "pages=10"},
            "BFFPROXY_CACHE_TTLS names 'pages', which is not in BFFPROXY_COLLECTIONS",
        ),
        ({"CACHE_TTLS": "articles"}, "BFFPROXY_CACHE_TTLS must look like name=value"),
        ({"COLLECTIONS": "articles,../etc"}, "BFFPROXY_COLLECTIONS has an invalid name '../etc'"),
        ({"LOG_LEVEL": "chatty"}, "BFFPROXY_LOG_LEVEL must be a logging level name"),
        ({"DEBUG_HEADERS": "maybe"}, "BFFPROXY_DEBUG_HEADERS must be true or false"),
    ],
)
def test_bad_settings_raise_one_clear_error(
    config: dict[str, Any], override: dict[str, str], message: str
) -> None:
    config.update(override)
    with pytest.raises(ConfigError) as excinfo:
        create_app(config)
    assert message in str(excinfo.value)
    assert "\n" not in str(excinfo.value)
