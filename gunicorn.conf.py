"""gunicorn settings for bffproxy; every value can be overridden with GUNICORN_* or the command line.

gunicorn reads this file from the working directory. It validates bffproxy's configuration in the
arbiter before any worker forks, so a bad setting stops the boot with one line naming it.
"""

import contextlib
import os
import shutil
import sys
import tempfile

bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8080")
workers = int(os.environ.get("GUNICORN_WORKERS", "2"))
# gthread: a worker waiting on Strapi still serves cache hits on its other threads.
worker_class = os.environ.get("GUNICORN_WORKER_CLASS", "gthread")
threads = int(os.environ.get("GUNICORN_THREADS", "4"))
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "30"))
graceful_timeout = int(os.environ.get("GUNICORN_GRACEFUL_TIMEOUT", "20"))
keepalive = int(os.environ.get("GUNICORN_KEEPALIVE", "5"))
# gunicorn answers oversized lines and headers with an HTML page it cannot be told to change; its
# maximum limits sit above nginx's (deploy/nginx: large_client_header_buffers 4 7k), so behind
# nginx the JSON answer always comes from nginx.
limit_request_line = int(os.environ.get("GUNICORN_LIMIT_REQUEST_LINE", "8190"))
limit_request_field_size = int(os.environ.get("GUNICORN_LIMIT_REQUEST_FIELD_SIZE", "8190"))
accesslog = os.environ.get("GUNICORN_ACCESSLOG", "-")
errorlog = "-"
loglevel = os.environ.get("GUNICORN_LOGLEVEL", "info")
# Quote the request id in the access log, so nginx, gunicorn and Strapi lines can be joined.
# No line can be forged here: gunicorn answers 400 to control characters in the request line and
# C0 ones in headers, the request id is bffproxy's sanitised one, X-Cache its own. Request headers
# (%(a)s, %(f)s, %({name}i)s) would be quoted as sent, C1 controls included: keep them out
# (tests/e2e/test_logs_e2e.py). bffproxy's logger writes %(r)s without the query string (it may carry
# a ticket or token), and by default writes JSON instead (BFFPROXY_ACCESS_LOG_FORMAT, bffproxy/logs.py).
access_log_format = '%(h)s "%(r)s" %(s)s %(b)s %(M)sms rid=%({x-request-id}o)s cache=%({x-cache}o)s'
logger_class = "bffproxy.logs.AccessLogger"
forwarded_allow_ips = os.environ.get("GUNICORN_FORWARDED_ALLOW_IPS", "127.0.0.1")


# Prometheus: every worker writes its metrics to files in this directory, so /metrics on any worker
# adds up all of them (bffproxy/metrics.py). Set before bffproxy (and so prometheus-client) is
# imported; emptied when the arbiter starts. Default: systemd's RuntimeDirectory, else a directory of
# this arbiter's own (two instances must never share one: each empties it when it starts).
# gunicorn.events.conf.py runs this file with METRICS_NAME = "metrics-events": a directory of its own.
METRICS_DIR = "PROMETHEUS_MULTIPROC_DIR"
METRICS_NAME = globals().get("METRICS_NAME", "metrics")
_OWN_METRICS_DIR = os.path.join(tempfile.gettempdir(), f"bffproxy-{METRICS_NAME}-{os.getpid()}")
if os.environ.get("RUNTIME_DIRECTORY"):
    _runtime = os.environ["RUNTIME_DIRECTORY"].split(":")[0]
    os.environ.setdefault(METRICS_DIR, os.path.join(_runtime, METRICS_NAME))
    # gunicorn's control socket (gunicornc -s /run/bffproxy/gunicorn.ctl) goes there too: its
    # default, $HOME/.gunicorn, is read-only under ProtectSystem=strict (and hidden by ProtectHome).
    control_socket = os.path.join(_runtime, "gunicorn.ctl")
os.environ.setdefault(METRICS_DIR, _OWN_METRICS_DIR)

# The tenants file the operator edits; workers read the copy the arbiter last validated.
TENANTS_SOURCE = "BFFPROXY_TENANTS_SOURCE"
# The app the arbiter builds to validate the configuration (gunicorn.events.conf.py: the events app).
APP_FACTORY = "create_app"


def _validate_and_activate():
    """Build bffproxy once in the arbiter; with a tenants file, from a copy that then becomes the workers'.

    ConfigError (or any error) leaves BFFPROXY_TENANTS_FILE as the caller restores it.
    """
    import bffproxy
    from bffproxy.settings import DEFAULTS
    from bffproxy.tenants_file import promote, stage

    create_app = getattr(bffproxy, APP_FACTORY)

    source = os.environ.setdefault(TENANTS_SOURCE, os.environ.get("BFFPROXY_TENANTS_FILE", ""))
    if not source:
        create_app()
        return
    directory = os.environ.get("BFFPROXY_CACHE_DIR") or DEFAULTS["CACHE_DIR"]
    os.makedirs(directory, exist_ok=True)
    staged = stage(source, directory, os.getpid())  # the bytes validated are the bytes used
    os.environ["BFFPROXY_TENANTS_FILE"] = staged
    try:
        create_app()
    except BaseException:
        os.unlink(staged)
        raise
    os.environ["BFFPROXY_TENANTS_FILE"] = promote(staged)


def on_starting(server):
    """Refuse to boot on a configuration error, with one line and before any worker forks."""
    from bffproxy import ConfigError
    from bffproxy.metrics import prepare_multiproc_dir

    try:
        prepare_multiproc_dir(os.environ[METRICS_DIR])
        _validate_and_activate()
    except ConfigError as exc:
        print(f"bffproxy: configuration error: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(3) from None


def on_reload(server):
    """systemctl reload (HUP): new workers get the new configuration only if it is valid.

    A broken tenants file must not take a running server down: the error is logged and the new
    workers start on the last copy that passed (an exception here would stop the arbiter).
    """
    previous = os.environ.get("BFFPROXY_TENANTS_FILE", "")
    try:
        _validate_and_activate()
    except Exception as exc:  # whatever it is, the running server must stay up
        os.environ["BFFPROXY_TENANTS_FILE"] = previous
        server.log.error("bffproxy: configuration error on reload, keeping the previous one: %s", exc)
    else:
        server.log.info("bffproxy: configuration reloaded")


def child_exit(server, worker):
    """A worker is gone (exit, crash, kill): its live gauges must stop counting."""
    from bffproxy.metrics import worker_exited

    worker_exited(worker.pid)


def post_worker_init(worker):
    """Start bffproxy's reconciler thread in each worker, once its app is loaded (never in the arbiter)."""
    from bffproxy import reconciler

    reconciler.start_in_worker(worker.wsgi)


def on_exit(server):
    """Remove this instance's copy of the tenants file, and its metrics directory if it made it."""
    active = os.environ.get("BFFPROXY_TENANTS_FILE", "")
    if os.environ.get(TENANTS_SOURCE) and active.endswith(f"tenants.{os.getpid()}.active.toml"):
        with contextlib.suppress(OSError):
            os.unlink(active)
    if os.environ.get(METRICS_DIR) == _OWN_METRICS_DIR:
        shutil.rmtree(_OWN_METRICS_DIR, ignore_errors=True)
