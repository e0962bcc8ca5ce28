"""What gunicorn loads: ``gunicorn -c gunicorn.conf.py wsgi:app``."""

import sys

from bffproxy import ConfigError, create_app

try:
    app = create_app()
except ConfigError as exc:
    # One clear line instead of a traceback; exit code 3 makes gunicorn's arbiter stop booting.
    print(f"bffproxy: configuration error: {exc}", file=sys.stderr, flush=True)
    raise SystemExit(3) from None
