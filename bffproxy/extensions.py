"""Unbound extension instances, initialised by ``create_app`` (Flask's extension pattern)."""

from __future__ import annotations

from flask_caching import Cache
from flask_jwt_extended import JWTManager

cache = Cache()
jwt = JWTManager()
