"""Defaults, loading and start-up validation of bffproxy's configuration.

Layering (later wins): :data:`DEFAULTS`, a ``.env`` file, ``BFFPROXY_*`` environment variables,
then the mapping given to ``create_app``. Every value is checked once, at start-up; a bad one raises
:class:`ConfigError` whose message names the environment variable, so gunicorn refuses to boot with
one clear line instead of failing on the first request.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

from dotenv import load_dotenv
from flask import Config

ENV_PREFIX = "BFFPROXY"

DEFAULTS: dict[str, Any] = {
    "STRAPI_URL": "http://127.0.0.1:1337",
    "STRAPI_API_TOKEN": "",
    "COLLECTIONS": "",
    "STRAPI_CONNECT_TIMEOUT": 3.05,
    "STRAPI_READ_TIMEOUT": 10.0,
    "STRAPI_RETRIES": 2,
    "STRAPI_RETRY_AFTER_MAX": 2,
    "STRAPI_POOL_SIZE": 32,
    "READY_TIMEOUT": 1.0,
    "CACHE_DIR": os.path.join(tempfile.gettempdir(), "bffproxy-cache"),
    "REDIS_URL": "",
    "CACHE_TTL": 300,
    "CACHE_TTLS": "",
    "MAX_CONTENT_LENGTH": 1024 * 1024,
    "TRUSTED_PROXIES": 0,
    "DEBUG_HEADERS": False,
    "FAST_HITS": True,
}


class ConfigError(ValueError):
    """A setting is missing or malformed; the message names the environment variable."""


def env_name(key: str) -> str:
    """Name of the environment variable that sets ``key``."""
    return f"{ENV_PREFIX}_{key}"


def load_config(config: Config, overrides: Mapping[str, Any] | None = None) -> None:
    """Fill ``config`` from defaults, ``.env``, ``BFFPROXY_*`` variables and ``overrides``."""
    for key, value in DEFAULTS.items():
        if config.get(key) is None:  # Flask's own defaults (MAX_CONTENT_LENGTH) are None
            config[key] = value
    load_dotenv(os.environ.get(env_name("ENV_FILE"), ".env"), override=False)
    # Values stay strings here; the validators below give them their types and their errors.
    config.from_prefixed_env(ENV_PREFIX, loads=str)
    if overrides:
        config.update(overrides)
    validate(config)


def validate(config: Config) -> None:
    """Check and normalise the core settings in place; raise ConfigError on the first bad one."""
    config["STRAPI_URL"] = as_url(config, "STRAPI_URL")
    config["STRAPI_API_TOKEN"] = as_str(config, "STRAPI_API_TOKEN")
    config["COLLECTIONS"] = as_names(config, "COLLECTIONS", required=True)
    for key in ("STRAPI_CONNECT_TIMEOUT", "STRAPI_READ_TIMEOUT", "READY_TIMEOUT"):
        config[key] = as_number(config, key, float, minimum=0.001)
    config["STRAPI_RETRY_AFTER_MAX"] = as_number(config, "STRAPI_RETRY_AFTER_MAX", int, minimum=0)
    config["STRAPI_RETRIES"] = as_number(config, "STRAPI_RETRIES", int, minimum=0)
    config["STRAPI_POOL_SIZE"] = as_number(config, "STRAPI_POOL_SIZE", int, minimum=1)
    config["CACHE_DIR"] = as_str(config, "CACHE_DIR", required=True)
    config["REDIS_URL"] = as_str(config, "REDIS_URL")
    if config["REDIS_URL"] and urlsplit(config["REDIS_URL"]).scheme not in ("redis", "rediss", "unix"):
        raise ConfigError(f"{env_name('REDIS_URL')} must be a redis://, rediss:// or unix:// URL")
    config["CACHE_TTL"] = as_number(config, "CACHE_TTL", int, minimum=0)
    config["CACHE_TTLS"] = as_mapping(config, "CACHE_TTLS", lambda v: int(v), allowed=config["COLLECTIONS"])
    config["MAX_CONTENT_LENGTH"] = as_number(config, "MAX_CONTENT_LENGTH", int, minimum=1)
    config["TRUSTED_PROXIES"] = as_number(config, "TRUSTED_PROXIES", int, minimum=0)
    config["FAST_HITS"] = as_bool(config, "FAST_HITS")


def as_str(config: Mapping[str, Any], key: str, *, required: bool = False) -> str:
    """A string setting; ``required`` refuses an empty one."""
    value = config.get(key)
    text = "" if value is None else str(value).strip()
    if required and not text:
        raise ConfigError(f"{env_name(key)} is required")
    return text


def as_number(config: Mapping[str, Any], key: str, kind: type[int] | type[float], *, minimum: float) -> Any:
    """An int or float setting no smaller than ``minimum``."""
    raw = config.get(key)
    try:
        value = None if raw is None or isinstance(raw, bool) else kind(raw)
    except (TypeError, ValueError):
        value = None
    if value is None or value < minimum:
        noun = "an integer" if kind is int else "a number"
        raise ConfigError(f"{env_name(key)} must be {noun} >= {minimum:g}, got {raw!r}")
    return value


def as_bool(config: Mapping[str, Any], key: str) -> bool:
    """A boolean setting: true/false, yes/no, on/off, 1/0."""
    raw = config.get(key)
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise ConfigError(f"{env_name(key)} must be true or false, got {raw!r}")


def as_url(config: Mapping[str, Any], key: str) -> str:
    """An absolute http(s) URL, without its trailing slash."""
    text = as_str(config, key, required=True)
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"{env_name(key)} must be an http:// or https:// URL, got {text!r}")
    return text.rstrip("/")


def as_names(config: Mapping[str, Any], key: str, *, required: bool = False) -> tuple[str, ...]:
    """A comma-separated list of API names such as ``articles,categories``."""
    raw = config.get(key)
    items = raw if isinstance(raw, (list, tuple)) else str(raw or "").split(",")
    names = tuple(dict.fromkeys(str(item).strip() for item in items if str(item).strip()))
    for name in names:
        if not name.replace("-", "").replace("_", "").isalnum():
            raise ConfigError(f"{env_name(key)} has an invalid name {name!r}")
    if required and not names:
        raise ConfigError(f"{env_name(key)} is required (comma-separated, e.g. articles,categories)")
    return names


def as_mapping(
    config: Mapping[str, Any],
    key: str,
    parse: Callable[[str], Any],
    *,
    allowed: tuple[str, ...] | None = None,
) -> dict[str, Any]:
    """A ``name=value,name=value`` setting (or a dict) whose values ``parse`` converts."""
    raw = config.get(key)
    pairs = raw.items() if isinstance(raw, Mapping) else _split_pairs(key, str(raw or ""))
    result: dict[str, Any] = {}
    for name, value in pairs:
        if allowed is not None and name not in allowed:
            raise ConfigError(f"{env_name(key)} names {name!r}, which is not in {env_name('COLLECTIONS')}")
        try:
            result[name] = parse(str(value).strip())
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{env_name(key)} has a bad value for {name!r}: {value!r}") from exc
    return result


def _split_pairs(key: str, text: str) -> list[tuple[str, str]]:
    """Split ``a=1,b=2`` into pairs, refusing items without ``=``."""
    pairs = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise ConfigError(f"{env_name(key)} must look like name=value,name=value; got {item!r}")
        pairs.append((name.strip(), value))
    return pairs
