"""Per-client rate limits counted in the shared store, so they hold across workers and instances.

``10/60``: at most 10 requests per client address and bucket in a window of 60 s that opens with
the client's first request (as Strapi's own limiter does, so a burst cannot straddle two windows).
Counted in Redis (``SET NX EX`` + ``INCR`` in one transaction, any Redis since 2.6.12) when
``BFFPROXY_REDIS_URL`` is set, else in ``flock``-ed stripe files under ``BFFPROXY_CACHE_DIR`` (every
worker of one machine).
flask-limiter was not used: its storage (the ``limits`` package) has no file backend, so the
embedded, Redis-less mode would count per worker.

A store fault lets the request through (logged): Strapi keeps its own per-address login limit
behind bffproxy, and refusing every login while Redis restarts would be worse.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from flask import Flask, current_app, request

from . import metrics
from .caching import redis_client
from .errors import TooManyRequests
from .settings import ConfigError, env_name
from .tenants import current_tenant

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Limit:
    """At most ``count`` requests per ``window`` seconds."""

    count: int
    window: int


def parse_limit(key: str, raw: Any) -> Limit | None:
    """``10/60`` as a Limit; ``0``, ``off`` or empty disable the limit."""
    text = str(raw if raw is not None else "").strip().lower()
    if text in ("", "0", "off", "none"):
        return None
    count, sep, window = text.partition("/")
    try:
        limit = Limit(int(count), int(window or "60"))
    except ValueError:
        limit = Limit(0, 0)
    if limit.count < 1 or limit.window < 1 or (sep and not window):
        raise ConfigError(
            f"{env_name(key)} must look like 10/60 (requests/seconds) or 0 to disable, got {raw!r}"
        )
    return limit


class Counter(Protocol):
    """Counts hits of a key in a window that opens with the key's first hit."""

    def hit(self, key: str, window: int, now: float) -> tuple[int, float]:
        """Count one hit; return the window's count so far and the seconds until it closes."""


class RedisCounter:
    """Windows counted in Redis: shared by every instance."""

    def __init__(self, client: Any, prefix: str) -> None:
        self.client = client
        self.prefix = prefix

    def hit(self, key: str, window: int, now: float) -> tuple[int, float]:
        """INCR the key; the first hit creates it with its expiry, which closes the window."""
        name = f"{self.prefix}rate:{key}:{window}"
        pipe = self.client.pipeline()
        pipe.set(name, 0, ex=window, nx=True)  # not EXPIRE NX: that needs Redis 7
        pipe.incr(name)
        pipe.pttl(name)
        _, count, pttl = pipe.execute()
        return int(count), max(0, int(pttl)) / 1000


class FileCounter:
    """Windows counted in ``flock``-ed JSON stripe files: shared by the workers of one machine."""

    def __init__(self, directory: str, stripes: int = 256) -> None:
        self.directory = directory
        self.stripes = stripes
        os.makedirs(directory, exist_ok=True)

    def hit(self, key: str, window: int, now: float) -> tuple[int, float]:
        """Read, bump and rewrite the key's count under the stripe's exclusive lock."""
        stripe = int(hashlib.sha1(key.encode()).hexdigest()[:8], 16) % self.stripes
        fd = os.open(os.path.join(self.directory, f"{stripe}.json"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            counts = self._read(fd)
            # Drop closed windows, so a stripe only ever holds the clients active right now.
            counts = {k: v for k, v in counts.items() if _open_window(v, now)}
            entry = f"{window}|{key}"
            closes, count = counts.get(entry, (now + window, 0))
            counts[entry] = [closes, count + 1]
            os.lseek(fd, 0, os.SEEK_SET)
            os.ftruncate(fd, 0)
            os.write(fd, json.dumps(counts).encode())
            return int(count) + 1, closes - now
        finally:
            os.close(fd)  # also releases the lock

    @staticmethod
    def _read(fd: int) -> dict[str, list[float]]:
        """The stripe's counts; an unreadable stripe starts over."""
        raw = b""
        while chunk := os.read(fd, 65536):
            raw += chunk
        try:
            data = json.loads(raw) if raw else {}
        except ValueError:
            return {}
        return data if isinstance(data, dict) else {}


def _open_window(value: Any, now: float) -> bool:
    """True for a well-formed ``[closes_at, count]`` whose window is still open."""
    return (
        isinstance(value, list)
        and len(value) == 2
        and all(isinstance(v, (int, float)) for v in value)
        and now < value[0]
    )


class RateLimiter:
    """Applies limits to the calling client, counted in one shared Counter."""

    def __init__(self, counter: Counter, clock: Callable[[], float] = time.time) -> None:
        self.counter = counter
        self.clock = clock

    def check(self, bucket: str, limit: Limit | None) -> None:
        """Count this request of the client; 429 with Retry-After once it is over the limit."""
        if limit is None:
            return
        now = self.clock()
        key = f"{current_tenant().name}:{bucket}:{request.remote_addr or 'unknown'}"
        try:
            count, closes_in = self.counter.hit(key, limit.window, now)
        except Exception as exc:
            log.warning("rate-limit store failed (%s); letting %s through", exc, key)
            return
        if count > limit.count:
            metrics.count(metrics.RATE_LIMITED, current_tenant().name, bucket)
            retry_after = max(1, math.ceil(closes_in))
            raise TooManyRequests(
                f"Too many requests: at most {limit.count} per {limit.window} s; retry in {retry_after} s.",
                headers={"Retry-After": str(retry_after)},
            )


def limiter() -> RateLimiter:
    """The rate limiter of the current app."""
    result: RateLimiter = current_app.extensions["bffproxy.ratelimit"]
    return result


def configure_tenant(config: dict[str, Any]) -> None:
    """Validate one tenant's login limit (its buckets are its own: keys start with its name)."""
    config.setdefault("LOGIN_RATE_LIMIT", "10/60")
    config["LOGIN_RATE_LIMIT"] = parse_limit("LOGIN_RATE_LIMIT", config["LOGIN_RATE_LIMIT"])


def init_app(app: Flask) -> None:
    """Build the limiter over Redis or the cache directory."""
    counter: Counter
    if app.config["REDIS_URL"]:
        counter = RedisCounter(redis_client(app), app.config["CACHE_KEY_PREFIX"])
    else:
        counter = FileCounter(os.path.join(app.config["CACHE_DIR"], "ratelimit"))
    app.extensions["bffproxy.ratelimit"] = RateLimiter(counter)
