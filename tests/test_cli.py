"""The ``bffproxy`` command line: ``bffproxy purge`` against the same shared store as the app."""

from __future__ import annotations

import os
from typing import Any

import cachelib
import pytest
import responses
from flask import Flask
from flask.testing import FlaskClient

from bffproxy import create_app
from bffproxy.cli import cli, masked_value

from .test_invalidation import warm_cache, x_cache

PATHS = ("/api/articles", "/api/articles/doc1", "/api/categories")


@pytest.fixture
def warm(client: FlaskClient, strapi: responses.RequestsMock) -> None:
    warm_cache(client, strapi, "doc1")


def run(app: Flask, *args: str) -> Any:
    return app.test_cli_runner().invoke(cli, ["purge", *args])


@pytest.mark.usefixtures("warm")
@pytest.mark.parametrize(
    ("args", "output", "after"),
    [
        # categories embed articles (category.articles in the content model): they go too.
        (["--collection", "articles"], "purged collection: articles, categories\n", ["MISS", "MISS", "MISS"]),
        (
            ["--collection", "articles", "--document-id", "doc1"],
            "purged document: articles, categories\n",
            ["MISS", "MISS", "MISS"],
        ),
        (["--all"], "purged all: articles, categories\n", ["MISS", "MISS", "MISS"]),
    ],
)
def test_purge(app: Flask, client: FlaskClient, args: list[str], output: str, after: list[str]) -> None:
    result = run(app, *args)
    assert result.exit_code == 0, result.output
    assert result.output == output
    assert x_cache(client, PATHS) == after


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "Error: Name a collection (and optionally a documentId), or purge everything."),
        (["--document-id", "doc1"], "Error: Name a collection"),
        (["--collection", "users"], "Error: Unknown collection 'users'."),
        (["--all", "--collection", "articles"], "Error: Purge either everything or one collection"),
    ],
)
def test_a_bad_scope_is_a_usage_error(app: Flask, args: list[str], message: str) -> None:
    result = run(app, *args)
    assert result.exit_code == 2
    assert message in result.output  # our message, not click's "No such option"


def test_a_store_fault_exits_1(app: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
    def down(*args: Any, **kwargs: Any) -> None:
        raise ConnectionError("redis is down")

    # Fail the backend class itself, whatever wraps it, so the test cannot miss the store in use.
    for method in ("get", "get_many", "set", "set_many", "add", "inc", "delete", "delete_many", "has"):
        monkeypatch.setattr(cachelib.FileSystemCache, method, down)
    result = run(app, "--all")
    assert result.exit_code == 1
    assert "cannot be reached" in result.output


# -- check-config --------------------------------------------------------------------------------

SECRETS = {
    "STRAPI_API_TOKEN": "tok-5ecret-api",
    "STRAPI_JWT_SECRET": "jwt-5ecret-0123456789abcdef0123456789",
    "WEBHOOK_SECRET": "webhook-5ecret",
    "STRAPI_ADMIN_EMAIL": "admin@example.com",
    "STRAPI_ADMIN_PASSWORD": "admin-5ecret",
    "SECRET_KEY": "flask-5ecret",
    "ADMIN_TOKEN": "admin-token-5ecret",
}


def check_config(config: dict[str, Any]) -> Any:
    return create_app(config).test_cli_runner().invoke(cli, ["check-config"])


def test_check_config_prints_no_secret_value(config: dict[str, Any]) -> None:
    config.update(SECRETS)
    config["STRAPI_URL"] = "https://bff:strapi-5ecret@strapi.example.com"
    config["REDIS_URL"] = "redis://cache:redis-5ecret@127.0.0.1:6399/0?password=query-5ecret&db=0"
    result = check_config(config)
    assert result.exit_code == 0, result.output
    assert "5ecret" not in result.output
    settings = dict(line.split(" = ", 1) for line in result.output.splitlines())
    # Masking keeps what an operator checks: hosts, user names, and every non-secret setting.
    assert settings["REDIS_URL"] == "'redis://cache:***@127.0.0.1:6399/0?password=***&db=0'"
    assert settings["STRAPI_URL"] == "'https://bff:***@strapi.example.com'"
    assert settings["STRAPI_API_TOKEN"] == "'***'"
    assert settings["COLLECTIONS"] == "('articles', 'categories')"
    assert settings["CACHE_KEY_PREFIX"] == "'bffproxy:'"
    assert settings["JWT_ACCESS_TOKEN_EXPIRES"] != "'***'"  # a duration, not a token


def test_check_config_shows_an_empty_secret_as_empty(config: dict[str, Any]) -> None:
    config["STRAPI_API_TOKEN"] = ""
    settings = dict(line.split(" = ", 1) for line in check_config(config).output.splitlines())
    assert settings["STRAPI_API_TOKEN"] == "''"  # "not set" is worth seeing


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("redis://user:pw-5ecret@host:6379/0", "redis://user:***@host:6379/0"),
        ("rediss://:pw-5ecret@host", "rediss://:***@host"),
        ("redis://pw-5ecret@host", "redis://***@host"),  # a lone user part is often the password
        ("unix:///run/redis.sock?db=1&password=pw-5ecret", "unix:///run/redis.sock?db=1&password=***"),
        ("https://h/x?token=pw-5ecret&Api_Key=pw-5ecret#f", "https://h/x?token=***&Api_Key=***#f"),
        ("redis://localhost:6379/0", "redis://localhost:6379/0"),
        ("not a url: pw", "not a url: pw"),
    ],
)
def test_urls_lose_their_credentials(url: str, masked: str) -> None:
    assert masked_value("REDIS_URL", url) == masked


def test_secret_like_names_are_masked_anywhere() -> None:
    nested = {"acme": {"api_token": "pw-5ecret", "url": "redis://:pw-5ecret@h", "ttl": 5}}
    masked = {"acme": {"api_token": "***", "url": "redis://:***@h", "ttl": 5}}
    assert masked_value("TENANTS", nested) == masked
    assert masked_value("SECRET_KEY_FALLBACKS", ["old-5ecret"]) == "***"
    assert masked_value("JWT_PRIVATE_KEY", "-----BEGIN 5ecret") == "***"
    assert masked_value("JWT_TOKEN_LOCATION", ["headers"]) == ["headers"]


# A password no URL parser reads as written: a space, ?, #, @ and % all in it.
MARKER = "pw 5ecret?x#y@z%"


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        (f"redis://:{MARKER}@127.0.0.1:6399/0", "redis://:***@127.0.0.1:6399/0"),
        (f"redis://cache:{MARKER}@127.0.0.1:6399/0", "redis://cache:***@127.0.0.1:6399/0"),
        (f"redis://{MARKER}@127.0.0.1:6399", "redis://***@127.0.0.1:6399"),
        ("redis://:pa ss@127.0.0.1:6399/0", "redis://:***@127.0.0.1:6399/0"),
        (
            f"https://bff:{MARKER}@strapi.example.com/x?token=5ecret?x y%&page=1",
            "https://bff:***@strapi.example.com/x?token=***&page=1",
        ),
        (f"unix://:{MARKER}@/run/redis.sock?db=1", "unix://:***@/run/redis.sock?db=1"),
        # Read either way (userinfo up to the last '@', or a query from the first '?'), nothing leaks.
        ("redis://h:6379/0?password=p@5ecret", "redis://h:***"),
        ("redis://:5ecret?password=x@h", "redis://:***"),
    ],
)
def test_passwords_with_odd_characters_are_masked(url: str, masked: str) -> None:
    assert masked_value("REDIS_URL", url) == masked


@pytest.mark.parametrize("setting", ["REDIS_URL", "STRAPI_URL", "SENTRY_DSN", "UPSTREAM_LINKS"])
@pytest.mark.parametrize(
    "template",
    [
        "redis://:{m}@127.0.0.1:6399/0",
        "redis://cache:{m}@127.0.0.1:6399/0",
        "rediss://{m}@127.0.0.1:6399",
        "https://bff:{m}@strapi.example.com",
        "https://strapi.example.com/?access_token={m}",
        "unix://:{m}@/run/redis.sock",
        "ftp://bff:{m}@strapi.example.com",  # refused at start-up: the message must not echo it
    ],
)
@pytest.mark.parametrize("password", [MARKER, "pa ss-5ecret", "5ecret%3F?#", "@5ecret@"])
def test_check_config_never_prints_a_url_password(
    config: dict[str, Any], setting: str, template: str, password: str
) -> None:
    # Whether the URL is accepted (masked) or refused at start-up (one line), the password never shows.
    url = template.format(m=password)
    config[setting] = [url] if setting == "UPSTREAM_LINKS" else url
    if setting == "STRAPI_URL" and not url.startswith("http"):
        config[setting] = url.replace("redis", "http", 1).replace("unix", "http", 1)
    result = check_config_or_refusal(config)
    assert "5ecret" not in result, result


def check_config_or_refusal(config: dict[str, Any]) -> str:
    """check-config's output, or the one line `bffproxy` prints when start-up refuses the settings."""
    from bffproxy import ConfigError

    try:
        return str(check_config(config).output)
    except ConfigError as exc:  # bffproxy's _create_app prints exactly this line
        return f"bffproxy: configuration error: {exc}"


def test_as_root_a_cache_dir_the_service_owns_is_refused(tmp_path: Any) -> None:
    """Root's files in the service's cache would lock the service out (a read stalled ~33 s)."""
    from bffproxy.cli import refuse_foreign_cache_dir
    from bffproxy.settings import ConfigError

    folder = tmp_path / "cache"
    folder.mkdir()
    refuse_foreign_cache_dir(str(folder), euid=0)  # root's own folder: fine
    refuse_foreign_cache_dir(str(tmp_path / "absent"), euid=0)  # created by whoever runs first
    os.chown(folder, 65534, 65534)  # the service's (nobody here)
    refuse_foreign_cache_dir(str(folder), euid=65534)  # the service user itself: fine
    with pytest.raises(ConfigError) as refused:
        refuse_foreign_cache_dir(str(folder), euid=0)
    assert "sudo -u nobody bffproxy" in str(refused.value) and str(folder) in str(refused.value)


def test_the_cli_as_root_on_the_service_cache_exits_2_before_writing_anything(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from click.testing import CliRunner

    folder = tmp_path / "service-cache"
    folder.mkdir()
    os.chown(folder, 65534, 65534)
    monkeypatch.setenv("BFFPROXY_CACHE_DIR", str(folder))
    monkeypatch.setenv("BFFPROXY_STRAPI_URL", "http://strapi.test")
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    result = CliRunner().invoke(cli, ["purge", "--all"])
    assert result.exit_code == 2 and "sudo -u nobody" in result.output
    assert list(folder.iterdir()) == []  # no event log, no store, no lock file was created
