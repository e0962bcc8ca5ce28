"""gunicorn settings for the events app: ``gunicorn -c gunicorn.events.conf.py wsgi:events_app``.

Event streams are long-lived: a gthread worker would spend a thread on each. Here one gevent
worker holds thousands as greenlets, while the API keeps its gthread workers (gunicorn.conf.py)
on its own socket; nginx sends ``/api/events`` to this one (deploy/nginx). Everything else
(configuration check before the fork, reload, tenants file copies) is gunicorn.conf.py's.

gevent patches the standard library here, in the arbiter, before bffproxy (or requests, ssl,
threading) is imported: a worker forked from it must not hold a blocking ``time.sleep`` or
``threading.Lock`` bound before the patch, or one stream would stall every other.
"""

from gevent import monkey

monkey.patch_all()

import os  # noqa: E402
import runpy  # noqa: E402

_api = runpy.run_path(
    os.path.join(os.path.dirname(os.path.abspath(__file__)), "gunicorn.conf.py"),
    init_globals={"METRICS_NAME": "metrics-events"},  # its own Prometheus multiprocess directory
)
_api["APP_FACTORY"] = "create_events_app"  # the arbiter validates the app its workers serve
globals().update({name: value for name, value in _api.items() if not name.startswith("__")})

bind = os.environ.get("GUNICORN_EVENTS_BIND", "127.0.0.1:8081")
worker_class = "gevent"
# One worker holds 10,000 streams in about 280 MiB, 22.5 MiB per 1,000 (make bench-events); more
# workers spread the fan-out's CPU.
workers = int(os.environ.get("GUNICORN_EVENTS_WORKERS", "1"))
# gevent's limit on open connections per worker; BFFPROXY_EVENTS_MAX_SUBSCRIBERS answers 503 first.
worker_connections = int(os.environ.get("GUNICORN_EVENTS_WORKER_CONNECTIONS", "12000"))
keepalive = int(os.environ.get("GUNICORN_KEEPALIVE", "5"))
# gunicorn's control socket defaults to one path per user: the API's arbiter has it.
control_socket_disable = True
# Streams never finish on their own: on stop or reload, old workers close them after this many
# seconds and clients reconnect with Last-Event-ID (gunicorn.conf.py's 20 s is for requests).
graceful_timeout = int(os.environ.get("GUNICORN_EVENTS_GRACEFUL_TIMEOUT", "5"))
