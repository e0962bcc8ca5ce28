"""Unbound extension instances, initialised by ``create_app`` (Flask's extension pattern)."""

from __future__ import annotations

from flask_caching import Cache

cache = Cache()
