"""Prometheus metrics: what bffproxy counts, how every gunicorn worker's counts add up, ``GET /metrics``.

Under gunicorn each worker is its own process, so counts live in files: ``gunicorn.conf.py`` points
``PROMETHEUS_MULTIPROC_DIR`` at a directory it creates and empties when the arbiter starts
(:func:`prepare_multiproc_dir`), every worker writes its values there (prometheus-client's
multiprocess mode, chosen when prometheus-client is imported), ``child_exit`` drops a dead worker's
live gauges (:func:`worker_exited`), and a scrape of any worker adds up every file
(``MultiProcessCollector``). Without the variable (tests, ``flask run``) the counts are this
process's own. A second gunicorn (the events app) gives its workers a directory of their own.

Every label has a bounded set of values, whatever clients send: tenants are the configured ones
(``-`` for none), routes are Flask's URL rule templates (``/api/<collection>``, ``unmatched`` for a
path no rule matches), methods an allow-list (``other``), statuses a class (``2xx``).

The request counter is kept by :class:`Observed`, the outermost WSGI layer, at ``start_response``:
so fresh hits answered before Flask (hits.py), CORS preflights and tenant-routing 404s are counted
like the rest, at the cost of a dict look-up and two increments. What the app knows of a request
(its route template, the cache's answer, time spent on Strapi) it leaves in the WSGI environ under
the ``bffproxy.*`` keys below; the access log (logs.py) reads the same keys.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import glob
import ipaddress
import logging
import os
import threading
import time
import weakref
from collections import Counter as CountOf
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime
from typing import Any

from flask import Blueprint, Flask, Response, current_app, has_request_context, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

from .errors import NotFound
from .settings import ConfigError, as_bool, as_str, env_name
from .tenant_routing import ENVIRON_KEY

log = logging.getLogger(__name__)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# What the app leaves in the WSGI environ for this layer and the access log.
ROUTE = "bffproxy.route"  # the URL rule's template
CACHE = "bffproxy.cache"  # hit | miss | stale | bypass | coalesced
UPSTREAM = "bffproxy.upstream_seconds"  # time spent waiting for Strapi
UNMATCHED = "unmatched"
NO_TENANT = "-"
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"})
CACHE_RESULTS = frozenset({"hit", "miss", "stale", "bypass", "coalesced"})

# prometheus-client chose its mode (files or memory) when imported, just now: the scrape follows it.
MULTIPROCESS_DIR = os.environ.get(MULTIPROC_ENV) or None
REGISTRY = CollectorRegistry()  # in-process exposition; under gunicorn each scrape reads the files

REQUESTS = Counter(
    "bffproxy_requests",
    "HTTP requests answered, by tenant, route template, method and status class.",
    ("tenant", "route", "method", "status"),
    registry=REGISTRY,
)
CACHE_ANSWERS = Counter(
    "bffproxy_cache_requests",
    "Cached reads by result: hit, miss, stale, bypass (no cache), coalesced (took another's fetch).",
    ("tenant", "result"),
    registry=REGISTRY,
)
STRAPI_SECONDS = Histogram(
    "bffproxy_strapi_request_duration_seconds",
    "Time of each call to Strapi (retries included, up to its response headers), by tenant and outcome.",
    ("tenant", "outcome"),
    registry=REGISTRY,
)
UPSTREAM_ERRORS = Counter(
    "bffproxy_upstream_errors",
    "Failed calls to Strapi by kind: connect, timeout, 5xx.",
    ("tenant", "kind"),
    registry=REGISTRY,
)
WEBHOOKS_RECEIVED = Counter(
    "bffproxy_webhooks_received",
    "Strapi webhooks received (accepted or not).",
    ("tenant",),
    registry=REGISTRY,
)
WEBHOOKS_REJECTED = Counter(
    "bffproxy_webhooks_rejected",
    "Strapi webhooks refused, by the error code answered.",
    ("tenant", "code"),
    registry=REGISTRY,
)
INVALIDATIONS = Counter(
    "bffproxy_cache_invalidations",
    "Collections invalidated, by what asked: webhook, admin, write.",
    ("tenant", "source"),
    registry=REGISTRY,
)
WEBHOOK_LAG = Histogram(
    "bffproxy_webhook_lag_seconds",
    "From Strapi's event time (the webhook body's createdAt) to its receipt by bffproxy.",
    ("tenant",),
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
    registry=REGISTRY,
)
EVENTS_PUBLISHED = Counter(
    "bffproxy_events_published", "Content events written to the event log.", ("tenant",), registry=REGISTRY
)
# Not per tenant: a worker's stream slots (BFFPROXY_EVENTS_MAX_SUBSCRIBERS) are shared by all of them.
# Made on first use (subscriber_joined): a metric without labels writes its file when it is created,
# and nothing may be written before gunicorn's arbiter has made the directory (prepare_multiproc_dir).
SUBSCRIBERS = "bffproxy_event_subscribers"
_subscribers: list[Gauge] = []
_subscribers_lock = threading.Lock()
IDEMPOTENCY_REPLAYS = Counter(
    "bffproxy_idempotency_replays",
    "Writes answered from an Idempotency-Key's stored answer.",
    ("tenant",),
    registry=REGISTRY,
)
IDEMPOTENCY_CONFLICTS = Counter(
    "bffproxy_idempotency_conflicts",
    "Idempotency-Key refusals: in_flight (409), key_reused (422, another body or query).",
    ("tenant", "kind"),
    registry=REGISTRY,
)
RATE_LIMITED = Counter(
    "bffproxy_rate_limit_rejections",
    "Requests refused with 429 by a rate limit, by the limit's bucket (api/auth/local...).",
    ("tenant", "limit"),
    registry=REGISTRY,
)
RECONCILE_RUNS = Counter(
    "bffproxy_reconcile_runs",
    "Reconcile passes, by outcome (ok, failed).",
    ("tenant", "outcome"),
    registry=REGISTRY,
)
RECONCILE_FINDINGS = Counter(
    "bffproxy_reconcile_findings",
    "Changes a reconcile pass found that no webhook had reported, by event type (updated, deleted...).",
    ("tenant", "kind"),
    registry=REGISTRY,
)

WsgiApp = Any


Answer = tuple[str, str, str, str, str | None]  # tenant, route, method, status class, cache result
FLUSH_EVERY = 1.0  # seconds between two writes of the counted answers to the metric files
PENDING_LIMIT = 200_000  # answers a worker keeps unwritten at most (its flusher is a second behind)


class Observed:
    """WSGI layer: count every answer by tenant, route, method and status class, and its cache result.

    Counted when the answer starts (``start_response``), so a streamed body costs nothing more.
    In multiprocess mode one increment writes to a memory-mapped file under a process-wide lock
    (1.5-5 µs here, twice per hit), so an answer is only appended to a queue (~0.1 µs) and a
    thread of the worker writes the counts once a second (:func:`flush`), one increment per label
    tuple; a scrape writes the scraping worker's first. A worker killed outright loses at most its
    last second of counts.
    """

    def __init__(self, wsgi_app: WsgiApp) -> None:
        self.wsgi_app = wsgi_app
        self.counters: dict[Answer, tuple[Any, ...]] = {}
        self.answers: deque[Answer] = deque(maxlen=PENDING_LIMIT)
        _observers.add(self)

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        def counted(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            self.count(environ, status)
            return start_response(status, headers, exc_info)

        return self.wsgi_app(environ, counted)

    def count(self, environ: dict[str, Any], status: str) -> None:
        """Queue one answer's labels (every one bounded); a fault here is logged, never the client's."""
        try:
            tenant = environ.get(ENVIRON_KEY)
            method = environ.get("REQUEST_METHOD")
            self.answers.append(
                (
                    tenant.name if tenant is not None else NO_TENANT,
                    environ.get(ROUTE, UNMATCHED),
                    method if method in METHODS else "other",
                    status[:1],
                    environ.get(CACHE),
                )
            )
            if _flusher_pid[0] != os.getpid():
                _start_flusher()
        except Exception:
            _failed("counting a request")

    def write(self) -> None:
        """Add the queued answers to the counters, one increment per label tuple."""
        drained: CountOf[Answer] = CountOf()
        with contextlib.suppress(IndexError):  # the queue is empty
            while True:
                drained[self.answers.popleft()] += 1
        for answer, times in drained.items():
            counters = self.counters.get(answer)
            if counters is None:
                counters = self.counters[answer] = _counters_of(*answer)
            for counter in counters:
                counter.inc(times)


_observers: weakref.WeakSet[Observed] = weakref.WeakSet()
_flusher_pid = [0]  # the process whose flusher thread runs (a forked worker starts its own)
_flusher_lock = threading.Lock()


def flush() -> None:
    """Write every answer this process has queued to the metric files (or this process's registry)."""
    for observer in list(_observers):
        with _written():
            observer.write()


def _start_flusher() -> None:
    """Start this process's flusher thread, once (workers are forked: the arbiter's is not theirs)."""
    with _flusher_lock:
        if _flusher_pid[0] == os.getpid():
            return
        _flusher_pid[0] = os.getpid()
        threading.Thread(target=_flush_forever, name="bffproxy-metrics", daemon=True).start()
        atexit.register(flush)  # a worker that exits gracefully writes its last counts


def _flush_forever() -> None:
    """The flusher thread: write the queued answers every FLUSH_EVERY seconds."""
    while True:
        time.sleep(FLUSH_EVERY)
        flush()


def _counters_of(tenant: str, route: str, method: str, status: str, cache: str | None) -> tuple[Any, ...]:
    """The counters one answer with these labels increments."""
    answered = REQUESTS.labels(tenant, route, method, status + "xx")
    return (answered,) if cache is None else (answered, CACHE_ANSWERS.labels(tenant, cache))


def count(counter: Counter, *labels: str, by: float = 1.0) -> None:
    """Add ``by`` to ``counter`` for ``labels``; a metric that cannot be written never fails a request."""
    with _written():
        counter.labels(*labels).inc(by)


@contextlib.contextmanager
def _written() -> Iterator[None]:
    """Log a failed write to the metric files (once a minute at most) and never pass it on.

    The directory removed under a running server, a full disk: a lost count is better than a lost
    webhook.
    """
    try:
        yield
    except Exception:
        _failed("writing a metric")


def _failed(what: str) -> None:
    """Log the exception being handled, once a minute at most (it may repeat on every request)."""
    now = time.monotonic()
    if now - _last_failure[0] >= 60:
        _last_failure[0] = now
        log.exception("%s failed (%s %s)", what, MULTIPROC_ENV, MULTIPROCESS_DIR)


_last_failure = [-60.0]


def reconciled(tenant: str, missed: Mapping[str, Iterable[Any]] | None) -> None:
    """One reconcile pass: failed (None), or ok with the changes no webhook reported, per collection."""
    count(RECONCILE_RUNS, tenant, "failed" if missed is None else "ok")
    for changes in (missed or {}).values():
        for change in changes:
            count(RECONCILE_FINDINGS, tenant, change.type)


def subscriber_joined() -> None:
    """An event stream took one of this worker's slots (event_feed.Streams.admit)."""
    with _written():
        _subscribers_gauge().inc()


def subscriber_left() -> None:
    """An event stream gave its slot back (event_feed.Streams.release)."""
    with _written():
        _subscribers_gauge().dec()


def _subscribers_gauge() -> Gauge:
    """The subscribers gauge, made on first use."""
    with _subscribers_lock:
        if not _subscribers:
            _subscribers.append(
                Gauge(
                    SUBSCRIBERS,
                    "Event-stream subscribers connected now, all tenants (live workers only).",
                    multiprocess_mode="livesum",
                    registry=REGISTRY,
                )
            )
        return _subscribers[0]


def note(key: str, value: Any) -> None:
    """Leave ``value`` for the metrics layer and the access log in the current request's environ."""
    if has_request_context():
        request.environ[key] = value


def note_cache(x_cache: str | None) -> None:
    """Note the cache's answer (``X-Cache``) unless a coalesced wait was noted already."""
    if x_cache and has_request_context() and CACHE not in request.environ:
        result = x_cache.lower()
        if result in CACHE_RESULTS:
            request.environ[CACHE] = result


def strapi_call(tenant: str, outcome: str, seconds: float) -> None:
    """Record one call to Strapi: latency by outcome, errors by kind, and the request's upstream time."""
    with _written():
        STRAPI_SECONDS.labels(tenant, outcome).observe(seconds)
    kind = ERROR_KINDS.get(outcome)
    if kind is not None:
        count(UPSTREAM_ERRORS, tenant, kind)
    if has_request_context():
        request.environ[UPSTREAM] = request.environ.get(UPSTREAM, 0.0) + seconds


ERROR_KINDS = {"connect_error": "connect", "timeout": "timeout", "server_error": "5xx"}


def outcome_of(status: int) -> str:
    """The outcome label of a Strapi answer with ``status``."""
    if status >= 500:
        return "server_error"
    return "client_error" if status >= 400 else "ok"


def webhook_lag(tenant: str, body: Any, now: float | None = None) -> None:
    """Observe the time from the webhook's ``createdAt`` (Strapi's event time) to now, when it has one."""
    created = body.get("createdAt") if isinstance(body, dict) else None
    if not isinstance(created, str) or len(created) > 40:
        return
    try:
        at = datetime.fromisoformat(created.replace("Z", "+00:00"))
    except ValueError:
        return
    if at.tzinfo is None:
        return  # Strapi always sends UTC with Z; a time without a zone says nothing
    received = time.time() if now is None else now
    with _written():
        WEBHOOK_LAG.labels(tenant).observe(max(0.0, received - at.timestamp()))  # clocks may disagree


# -- gunicorn's side -----------------------------------------------------------------------------


def prepare_multiproc_dir(path: str) -> None:
    """Take ``path`` for this gunicorn: create it (0700), lock it, remove a previous run's files.

    Called by the arbiter before any worker starts. A directory workers cannot write would fail
    every request that counts something, and one shared by two running gunicorns (the API and the
    events app given the same one) would have each wipe the other's counts: either stops the boot
    with one line (ConfigError). The lock is held as long as this process (or a worker) lives.
    """
    if not path:
        raise ConfigError(f"{MULTIPROC_ENV} is empty: set it to a directory, or leave it unset")
    if os.path.realpath(path) not in _held_locks:  # this process (an arbiter built twice: tests) has it
        _lock(path)
    for stale in glob.glob(os.path.join(path, "*.db")):
        os.unlink(stale)


def _lock(path: str) -> None:
    """Create ``path`` and hold an exclusive lock on it for this process's life; ConfigError if not."""
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
        lock = os.open(os.path.join(path, LOCK_FILE), os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise ConfigError(f"{MULTIPROC_ENV} {path!r} is not a writable directory: {exc.strerror}") from None
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(lock)
        raise ConfigError(
            f"{MULTIPROC_ENV} {path!r} is in use by another running gunicorn: give each its own"
        ) from None
    _held_locks[os.path.realpath(path)] = lock


LOCK_FILE = ".bffproxy.lock"
_held_locks: dict[str, int] = {}  # the arbiter's locks on its metrics directories, held until it exits


def worker_exited(pid: int) -> None:
    """gunicorn's ``child_exit``: drop the dead worker's live gauges (its counters still count)."""
    if MULTIPROCESS_DIR:
        multiprocess.mark_process_dead(pid, MULTIPROCESS_DIR)  # type: ignore[no-untyped-call]


def exposition() -> bytes:
    """Every metric in Prometheus' text format: all workers' files under gunicorn, else this process's.

    This process's queued answers are written first; other workers' are at most FLUSH_EVERY behind.
    """
    flush()
    if not MULTIPROCESS_DIR:
        return bytes(generate_latest(REGISTRY))
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=MULTIPROCESS_DIR)  # type: ignore[no-untyped-call]
    return bytes(generate_latest(registry))


def exported_names() -> set[str]:
    """The sample names the app can export (``_total``, ``_bucket``… included), for the dashboard test."""
    names: set[str] = {SUBSCRIBERS}
    for metric in REGISTRY.collect():
        names.add(metric.name)
        suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
        names.update(metric.name + suffix for suffix in suffixes.get(metric.type, ("",)))
    return names


# -- GET /metrics ----------------------------------------------------------------------------------

bp = Blueprint("metrics", __name__)


class MetricsDisabled(NotFound):
    """Neither an allow-list nor an admin token is configured: nobody may scrape."""

    code = "metrics_disabled"
    message = f"Metrics are not exposed: set {env_name('METRICS_ALLOW')} or {env_name('ADMIN_TOKEN')}."


@bp.get("/metrics")
def scrape() -> Response:
    """The metrics, to an allow-listed address (the client's and the connecting peer's, so a forged
    X-Forwarded-For opens nothing) or with the admin bearer token; only at /metrics itself.

    Not under a tenant's path prefix (``/t/acme/metrics``): a proxy that hides ``/metrics`` from the
    public must not have to know every prefix.
    """
    if request.script_root:
        raise NotFound()
    allowed: tuple[Any, ...] = current_app.config["METRICS_ALLOW"]
    if not (allowed_address(request.remote_addr, allowed) and allowed_address(peer_address(), allowed)):
        if not current_app.config["ADMIN_TOKEN"]:
            raise MetricsDisabled()
        from .admin import require_admin_token  # admin's blueprint module; imported late to avoid a cycle

        require_admin_token()
    response = Response(exposition(), mimetype=None, content_type=CONTENT_TYPE_LATEST)
    response.headers["Cache-Control"] = "no-store"
    return response


def peer_address() -> str | None:
    """The address that connected, before ProxyFix believed X-Forwarded-For (which anyone reaching
    gunicorn's bind directly can write)."""
    original = request.environ.get("werkzeug.proxy_fix.orig")
    return original.get("REMOTE_ADDR") if isinstance(original, dict) else request.remote_addr


def allowed_address(address: str | None, networks: Iterable[Any]) -> bool:
    """True when ``address`` is in one of ``networks``."""
    try:
        ip = ipaddress.ip_address(address or "")
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # gunicorn bound to [::] sees an IPv4 client as ::ffff:a.b.c.d
    return any(ip in network for network in networks)


def as_networks(config: Any, key: str) -> tuple[Any, ...]:
    """A comma-separated list of addresses or CIDR networks (``127.0.0.1, 10.0.0.0/8, ::1``)."""
    networks = []
    for item in filter(None, (part.strip() for part in as_str(config, key).split(","))):
        try:
            networks.append(ipaddress.ip_network(item, strict=True))
        except ValueError:
            raise ConfigError(
                f"{env_name(key)} must list IP addresses or networks (10.0.0.0/8), got {item!r}"
            ) from None
    return tuple(networks)


def init_app(app: Flask) -> None:
    """Validate the metrics settings, serve /metrics when on, and note route and cache of every answer."""
    app.config.setdefault("METRICS", True)
    app.config.setdefault("METRICS_ALLOW", "")
    app.config["METRICS"] = as_bool(app.config, "METRICS")
    app.config["METRICS_ALLOW"] = as_networks(app.config, "METRICS_ALLOW")
    # The admin token opens /metrics, also in the events app, which has no admin API to check it.
    app.config["ADMIN_TOKEN"] = as_str(app.config, "ADMIN_TOKEN")
    if app.config["METRICS"]:
        app.register_blueprint(bp)
    app.after_request(_note_answer)  # the access log reads these notes too


def observe(app: Flask) -> None:
    """Wrap the whole WSGI stack in the counting layer, when metrics are on (create_app's last step)."""
    if app.config["METRICS"]:
        app.wsgi_app = Observed(app.wsgi_app)  # type: ignore[method-assign]


def _note_answer(response: Response) -> Response:
    """Leave the route template and the cache's answer for the metrics layer and the access log."""
    rule = request.url_rule
    request.environ[ROUTE] = rule.rule if rule is not None else UNMATCHED
    note_cache(response.headers.get("X-Cache"))
    return response
