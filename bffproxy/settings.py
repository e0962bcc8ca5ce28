"""Defaults, loading and start-up validation of bffproxy's configuration.

Layering (later wins): :data:`DEFAULTS`, a ``.env`` file, ``BFFPROXY_*`` environment variables,
then the mapping given to ``create_app``. Every value is checked once, at start-up; a bad one raises
:class:`ConfigError` whose message names the environment variable, so gunicorn refuses to boot with
one clear line instead of failing on the first request.
"""

from __future__ import annotations

import math
import os
import re
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
    "SINGLE_TYPES": "",
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
    "TENANTS_FILE": "",
    "TENANT_HEADER": "",
}


# Past about 1e9 seconds the platform's timers overflow (a socket timeout of 1e10 s is an
# OverflowError on every call), so no number bffproxy reads may be larger.
NUMBER_LIMIT = 1_000_000_000
REDIS_SCHEMES = ("redis", "rediss", "unix")
PERCENT_ENCODE = "the password must be percent-encoded (? as %3F, # as %23, / as %2F)"
_REDIS_DB_PATH = re.compile(r"(/[0-9]*)?")
_HEADER_NAME = re.compile(r"[A-Za-z0-9-]{1,64}")


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
    """Check and normalise the process-wide core settings in place; ConfigError on the first bad one.

    The settings a tenant may set for itself (:func:`validate_tenant` and each module's
    ``configure_tenant``) are checked by tenants.py instead: once on ``config`` itself without a
    tenants file, once per tenant (its values over these) with one.
    """
    config["TENANTS_FILE"] = as_str(config, "TENANTS_FILE")
    config["TENANT_HEADER"] = as_header_name(config, "TENANT_HEADER")
    for key in ("STRAPI_CONNECT_TIMEOUT", "STRAPI_READ_TIMEOUT", "READY_TIMEOUT"):
        config[key] = as_number(config, key, float, minimum=0.001)
    config["STRAPI_RETRY_AFTER_MAX"] = as_number(config, "STRAPI_RETRY_AFTER_MAX", int, minimum=0)
    config["STRAPI_RETRIES"] = as_number(config, "STRAPI_RETRIES", int, minimum=0)
    config["STRAPI_POOL_SIZE"] = as_number(config, "STRAPI_POOL_SIZE", int, minimum=1)
    config["CACHE_DIR"] = as_directory(config, "CACHE_DIR")
    config["REDIS_URL"] = as_redis_url(config, "REDIS_URL")
    config["MAX_CONTENT_LENGTH"] = as_number(config, "MAX_CONTENT_LENGTH", int, minimum=1)
    config["TRUSTED_PROXIES"] = as_number(config, "TRUSTED_PROXIES", int, minimum=0)
    config["FAST_HITS"] = as_bool(config, "FAST_HITS")


def validate_tenant(config: dict[str, Any]) -> None:
    """Check and normalise one tenant's Strapi, exposed names and TTLs in place."""
    config["STRAPI_URL"] = as_url(config, "STRAPI_URL")
    config["STRAPI_API_TOKEN"] = as_str(config, "STRAPI_API_TOKEN")
    config["COLLECTIONS"] = as_names(config, "COLLECTIONS", required=True)
    config["SINGLE_TYPES"] = as_single_types(config)
    config["CACHE_TTL"] = as_number(config, "CACHE_TTL", int, minimum=0)
    config["CACHE_TTLS"] = as_mapping(config, "CACHE_TTLS", _ttl, allowed=config["COLLECTIONS"])


def as_header_name(config: Mapping[str, Any], key: str) -> str:
    """An HTTP header name (a token), or '' when unset."""
    name = as_str(config, key)
    if name and not _HEADER_NAME.fullmatch(name):
        raise ConfigError(f"{env_name(key)} must be a header name such as X-Tenant, got {name!r}")
    return name


def _ttl(text: str) -> int:
    """One ``CACHE_TTLS`` value: seconds, like ``CACHE_TTL``."""
    return int(as_number({"CACHE_TTLS": text}, "CACHE_TTLS", int, minimum=0))


def as_str(config: Mapping[str, Any], key: str, *, required: bool = False) -> str:
    """A string setting; ``required`` refuses an empty one."""
    value = config.get(key)
    text = "" if value is None else str(value).strip()
    if required and not text:
        raise ConfigError(f"{env_name(key)} is required")
    return text


def as_number(
    config: Mapping[str, Any],
    key: str,
    kind: type[int] | type[float],
    *,
    minimum: float,
    maximum: float = NUMBER_LIMIT,
) -> Any:
    """A finite int or float setting from ``minimum`` to ``maximum`` (nan, inf and 1e400 refused)."""
    raw = config.get(key)
    try:
        value = None if raw is None or isinstance(raw, bool) else kind(raw)
    except (TypeError, ValueError, OverflowError):  # int(float("inf")) is an OverflowError
        value = None
    noun = "an integer" if kind is int else "a finite number"
    if value is None or not math.isfinite(value) or value < minimum:  # nan < minimum is False
        raise ConfigError(f"{env_name(key)} must be {noun} >= {minimum:g}, got {raw!r}")
    if value > maximum:
        raise ConfigError(f"{env_name(key)} must be {noun} <= {maximum:g}, got {raw!r}")
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
        # Echo it only when it cannot hold a password or a token.
        shown = f"{parts.scheme}://..." if "@" in text or "?" in text else text
        raise ConfigError(f"{env_name(key)} must be an http:// or https:// URL, got {shown!r}")
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


def as_single_types(config: Mapping[str, Any]) -> tuple[str, ...]:
    """The exposed names that are Strapi single types (``/api/homepage``, no documentIds)."""
    names = as_names(config, "SINGLE_TYPES")
    for name in names:
        if name not in config["COLLECTIONS"]:
            raise ConfigError(
                f"{env_name('SINGLE_TYPES')} names {name!r}, which is not in {env_name('COLLECTIONS')} "
                "(list every exposed API name there, single types included)"
            )
    return names


def as_directory(config: Mapping[str, Any], key: str) -> str:
    """A directory bffproxy writes to: created when missing, and proven writable with a probe file."""
    path = as_str(config, key, required=True)
    name = env_name(key)
    try:
        os.makedirs(path, exist_ok=True)
    except FileExistsError:  # a file (or a dangling link) has the name
        raise ConfigError(f"{name} {path!r} is not a directory") from None
    except OSError as exc:
        raise ConfigError(f"{name} {path!r} cannot be created: {exc.strerror or exc}") from None
    if not os.path.isdir(path):
        raise ConfigError(f"{name} {path!r} is not a directory")
    try:  # os.access() says yes to root and to read-only mounts' owners alike: try for real
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as exc:
        raise ConfigError(f"{name} {path!r} is not writable: {exc.strerror or exc}") from None
    return path


def as_redis_url(config: Mapping[str, Any], key: str) -> str:
    """A Redis URL that redis-py reads as written; no message ever shows any part of it."""
    text = as_str(config, key)
    if not text:
        return ""
    name = env_name(key)
    scheme, separator, _ = text.partition("://")
    if not separator or scheme.lower() not in REDIS_SCHEMES:
        raise ConfigError(f"{name} must be a redis://, rediss:// or unix:// URL")
    if scheme not in REDIS_SCHEMES:
        raise ConfigError(
            f"{name} must start with redis://, rediss:// or unix:// in lower case "
            f"(redis-py reads no other spelling), got {scheme + '://'!r}"
        )
    _check_redis_url_shape(name, text)
    import redis  # only for a configured Redis, like the store

    try:
        pool = redis.ConnectionPool.from_url(text)
        pool.connection_class(**pool.connection_kwargs)  # builds, never connects: bad ?options fail here
    except Exception:  # redis-py's message may quote part of the password: never show or chain it
        hint = f"check its host, port, /db and ?options; {PERCENT_ENCODE}"
        raise ConfigError(f"{name} cannot be read by redis-py: {hint}") from None
    return text


def _check_redis_url_shape(name: str, text: str) -> None:
    """Refuse what redis-py reads silently otherwise: an unencoded ?, # or / cuts the password short.

    ``redis://:1234#x@h`` is localhost:1234 to redis-py, no password; ``redis://:12?x@h`` too, the
    query item without ``=`` dropped. So a ``#``, an ``@`` in the path or in a query name, a query
    item without ``=`` and a redis:// path that is not a database number are all refused.
    """
    parts = urlsplit(text)
    items = [item for item in parts.query.split("&") if item]
    if (
        "#" in text
        or "@" in parts.path
        or any("=" not in item or "@" in item.partition("=")[0] for item in items)
    ):
        misread = "would be read with a different host or password by redis-py"
        raise ConfigError(f"{name} {misread}: {PERCENT_ENCODE}")
    if parts.scheme != "unix" and not _REDIS_DB_PATH.fullmatch(parts.path):
        raise ConfigError(f"{name}: the path must be a database number such as /0 ({PERCENT_ENCODE})")


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
