"""What gunicorn loads: ``wsgi:app`` (the API, gunicorn.conf.py) or ``wsgi:events_app`` (event streams,
gunicorn.events.conf.py). Each is built on first use, so a worker builds only the app it serves."""

import sys
from typing import Any

from bffproxy import ConfigError, create_app, create_events_app

FACTORIES = {"app": create_app, "events_app": create_events_app}


def __getattr__(name: str) -> Any:
    """Build ``app`` or ``events_app`` once, on first access (PEP 562)."""
    factory = FACTORIES.get(name)
    if factory is None:
        raise AttributeError(name)
    try:
        built = factory()
    except ConfigError as exc:
        # One clear line instead of a traceback; exit code 3 makes gunicorn's arbiter stop booting.
        print(f"bffproxy: configuration error: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(3) from None
    globals()[name] = built
    return built
