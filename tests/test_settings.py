"""Configuration: layering, typing, and one clear error naming the variable."""

from __future__ import annotations

import traceback
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
        ({"STRAPI_READ_TIMEOUT": "0"}, "BFFPROXY_STRAPI_READ_TIMEOUT must be a finite number >= 0.001"),
        ({"REDIS_URL": "http://x"}, "BFFPROXY_REDIS_URL must be a redis://"),
        (
            {"CACHE_TTLS": "pages=10"},
            "BFFPROXY_CACHE_TTLS names 'pages', which is not in BFFPROXY_COLLECTIONS",
        ),
        ({"CACHE_TTLS": "articles"}, "BFFPROXY_CACHE_TTLS must look like name=value"),
        ({"CACHE_TTLS": "articles=-5"}, "BFFPROXY_CACHE_TTLS has a bad value for 'articles': '-5'"),
        ({"CACHE_TTLS": "articles=1e400"}, "BFFPROXY_CACHE_TTLS has a bad value for 'articles'"),
        ({"CACHE_TTLS": f"articles={10**30}"}, "BFFPROXY_CACHE_TTLS has a bad value for 'articles'"),
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


# -- numbers: finite and within what the platform's timers take ------------------------------------


@pytest.mark.parametrize("key", ["STRAPI_CONNECT_TIMEOUT", "STRAPI_READ_TIMEOUT", "READY_TIMEOUT"])
@pytest.mark.parametrize("raw", ["nan", "NaN", "inf", "-inf", "Infinity", "1e400", "1e300"])
def test_timeouts_must_be_finite_numbers(
    config: dict[str, Any], monkeypatch: pytest.MonkeyPatch, key: str, raw: str
) -> None:
    # From the environment, as an operator sets them: each of these booted, then every Strapi call 500ed.
    monkeypatch.setenv(f"BFFPROXY_{key}", raw)
    with pytest.raises(ConfigError) as excinfo:
        create_app(config)
    assert str(excinfo.value).startswith(f"BFFPROXY_{key} must be a finite number")
    assert repr(raw) in str(excinfo.value)


@pytest.mark.parametrize(
    "key",
    [
        "CACHE_TTL",
        "STRAPI_RETRIES",
        "STRAPI_POOL_SIZE",
        "MAX_CONTENT_LENGTH",
        "JWT_LEEWAY",
        "ROLE_CACHE_TTL",
        "CACHE_LOCK_WAIT",
        "CACHE_COALESCE_WAIT",
        "IDEMPOTENCY_TTL",
        "SHARED_MAX_AGE",
    ],
)
@pytest.mark.parametrize("raw", ["nan", "inf", "1e400", float("inf"), float("nan"), 10**30])
def test_every_numeric_setting_refuses_non_finite_values(config: dict[str, Any], key: str, raw: Any) -> None:
    # Also given as Python floats (create_app(config), a .env read as JSON): int(inf) is an OverflowError.
    config[key] = raw
    with pytest.raises(ConfigError) as excinfo:
        create_app(config)
    assert str(excinfo.value).startswith(f"BFFPROXY_{key} must be")
    assert "\n" not in str(excinfo.value)


def test_large_finite_numbers_within_the_limit_are_kept(config: dict[str, Any]) -> None:
    config.update(STRAPI_READ_TIMEOUT="3600", CACHE_TTL=86400 * 365)
    app = create_app(config)
    assert app.config["STRAPI_READ_TIMEOUT"] == 3600.0
    assert app.config["CACHE_TTL"] == 86400 * 365


# -- the cache directory ---------------------------------------------------------------------------


def test_the_cache_directory_is_created(config: dict[str, Any], tmp_path: Any) -> None:
    config["CACHE_DIR"] = str(tmp_path / "new" / "cache")
    create_app(config)
    assert (tmp_path / "new" / "cache").is_dir()


def test_a_cache_dir_that_is_a_file_is_one_clear_error(config: dict[str, Any], tmp_path: Any) -> None:
    (tmp_path / "file").write_text("not a directory")
    config["CACHE_DIR"] = str(tmp_path / "file")
    with pytest.raises(ConfigError, match=r"^BFFPROXY_CACHE_DIR .* is not a directory$"):
        create_app(config)


@pytest.mark.parametrize("path", ["/proc/nope", "/proc/nope/cache", "{file}/below"])
def test_a_cache_dir_that_cannot_be_created_is_one_clear_error(
    config: dict[str, Any], tmp_path: Any, path: str
) -> None:
    (tmp_path / "file").write_text("")
    config["CACHE_DIR"] = path.format(file=tmp_path / "file")
    with pytest.raises(ConfigError) as excinfo:
        create_app(config)
    message = str(excinfo.value)
    assert message.startswith("BFFPROXY_CACHE_DIR ") and "cannot be created" in message
    assert "\n" not in message


def test_a_cache_dir_that_is_not_writable_is_one_clear_error(config: dict[str, Any]) -> None:
    # /proc exists and is a directory nobody, root included, may create files in.
    config["CACHE_DIR"] = "/proc"
    with pytest.raises(ConfigError, match=r"^BFFPROXY_CACHE_DIR '/proc' is not writable"):
        create_app(config)


# -- the Redis URL, read the way redis-py reads it -------------------------------------------------


def refusal(config: dict[str, Any], **override: Any) -> ConfigError:
    """The ConfigError that create_app raises for ``config`` with ``override``."""
    with pytest.raises(ConfigError) as excinfo:
        create_app({**config, **override})
    return excinfo.value


PASSWORD = "Qz5ecret"  # redis-py's own error shows the part before the first ?, # or /


@pytest.mark.parametrize(
    "url",
    [
        f"redis://:{PASSWORD[:2]}?{PASSWORD[2:]}@h:6399",  # redis-py: port 'Qz'
        f"redis://:{PASSWORD[:2]}#{PASSWORD[2:]}@h:6399",
        f"redis://:{PASSWORD[:2]}/{PASSWORD[2:]}@h:6399",
        f"redis://u:{PASSWORD[:2]}/{PASSWORD[2:]}@h:6399/0",
        "redis://:1234#5ecret@h:6399",  # redis-py: localhost:1234, silently
        "redis://:1234?5ecret@h:6399",
        "redis://:1234/5ecret@h:6399",
        "unix://:12?5ecret@/run/redis.sock",
    ],
)
def test_a_redis_password_that_is_not_percent_encoded_is_refused_without_showing_it(
    config: dict[str, Any], url: str
) -> None:
    error = refusal(config, REDIS_URL=url)
    message = str(error)
    assert message.startswith("BFFPROXY_REDIS_URL ")
    assert "the password must be percent-encoded" in message
    assert "5ecret" not in message and "Qz" not in message and "1234" not in message
    # Nor does the traceback, should one ever be printed: redis-py's own error is not chained.
    assert "Qz" not in "".join(traceback.format_exception(error))


@pytest.mark.parametrize("url", ["REDIS://127.0.0.1:6399", "Redis://h", "REDISS://h", "UNIX:///run/r.sock"])
def test_an_upper_case_redis_scheme_is_refused_as_redis_py_refuses_it(
    config: dict[str, Any], url: str
) -> None:
    assert str(refusal(config, REDIS_URL=url)) == (
        "BFFPROXY_REDIS_URL must start with redis://, rediss:// or unix:// in lower case "
        f"(redis-py reads no other spelling), got {url.split('://')[0] + '://'!r}"
    )


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("redis://h:99999", "cannot be read by redis-py"),
        ("redis://h:1?db=x", "cannot be read by redis-py"),
        ("redis://h:1?no_such_option=1", "cannot be read by redis-py"),
        ("redis://h:1/zero", "path must be a database number"),
    ],
)
def test_other_redis_urls_redis_py_cannot_use_are_refused(
    config: dict[str, Any], url: str, message: str
) -> None:
    config["REDIS_URL"] = url
    with pytest.raises(ConfigError, match=message):
        create_app(config)


@pytest.mark.parametrize(
    "url",
    [
        "redis://127.0.0.1:6399/0",
        "redis://:pa%3Fss%23w%2Fd%40x@127.0.0.1:6399/1",  # encoded as the message says
        "redis://user:pa@ss@127.0.0.1:6399",  # a raw @ is read as redis-py reads it: the last one
        "redis://:pa ss@127.0.0.1:6399",
        "rediss://127.0.0.1?ssl_cert_reqs=none",
        "unix:///run/redis.sock?db=1&password=p@ss",
        "redis://",
    ],
)
def test_redis_urls_redis_py_reads_are_accepted(config: dict[str, Any], url: str) -> None:
    config["REDIS_URL"] = url
    assert create_app(config).config["REDIS_URL"] == url
