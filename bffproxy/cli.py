"""The ``bffproxy`` command: Flask's CLI (run, routes, shell) plus bffproxy's own commands."""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote_plus, urlsplit

import click
from flask import current_app
from flask.cli import FlaskGroup, with_appcontext

from . import create_app
from .errors import ApiError
from .invalidation import purge
from .settings import ConfigError
from .tenants import registry

MASK = "***"
# A name holding one of these words is a secret: STRAPI_API_TOKEN, JWT_SECRET_KEY, ADMIN_PASSWORD...
SECRET_WORDS = frozenset({"SECRET", "PASSWORD", "PASSWD", "PWD", "PASS", "PRIVATE", "CREDENTIALS"})
# ... and so is one ending in these (but not JWT_ACCESS_TOKEN_EXPIRES or CACHE_KEY_PREFIX).
SECRET_LAST_WORDS = frozenset({"TOKEN", "TOKENS", "KEY", "KEYS", "APIKEY", "AUTH", "AUTHORIZATION"})
# Query parameters that carry credentials in redis-py, Strapi and common HTTP APIs.
SECRET_QUERY_NAMES = frozenset({"sig", "signature", "access_token", "apikey", "api_key", "auth"})


def _create_app() -> object:
    """Build the app for the CLI; a configuration error is one line and exit code 2."""
    try:
        return create_app()
    except ConfigError as exc:
        click.echo(f"bffproxy: configuration error: {exc}", err=True)
        sys.exit(2)


@click.group(cls=FlaskGroup, create_app=_create_app, add_version_option=False)
def cli() -> None:
    """bffproxy: a caching, validating Backend-for-Frontend for Strapi 5."""


@cli.command("check-config")
@with_appcontext
def check_config() -> None:
    """Validate the configuration and print the effective settings (secrets masked)."""
    for key in sorted(current_app.config):
        if not key.isupper() or key.startswith(("SESSION_", "TEMPLATES_", "EXPLAIN_", "PREFERRED_")):
            continue
        click.echo(f"{key} = {masked_value(key, current_app.config[key])!r}")


def is_secret_name(name: str) -> bool:
    """True for a setting or field name that holds a secret (``*_TOKEN``, ``*SECRET*``, ...)."""
    words = re.split(r"[^A-Z0-9]+", name.upper())
    return bool(SECRET_WORDS.intersection(words)) or words[-1] in SECRET_LAST_WORDS


def masked_value(name: str, value: Any) -> Any:
    """``value`` with secrets replaced by ``***``: secret-named entries, URL passwords and tokens."""
    if is_secret_name(name):
        return MASK if value else value  # "not set" is worth seeing
    if isinstance(value, Mapping):
        return {key: masked_value(str(key), inner) for key, inner in value.items()}
    if type(value) in (list, tuple):  # exactly: a NamedTuple cannot be rebuilt from an iterable
        return type(value)(masked_value(name, inner) for inner in value)
    if isinstance(value, str):
        return masked_url(value)
    return value


def masked_url(text: str) -> str:
    """``text`` with a URL's password (or lone user part) and secret query values masked."""
    parts = urlsplit(text)
    if not parts.scheme or " " in text:
        return text
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        user, colon, _ = userinfo.partition(":")
        # A user part without a password is often the password itself (redis://secret@host).
        netloc = f"{user}:{MASK}@{host}" if colon else f"{MASK}@{host}"
    query = "&".join(_masked_pair(pair) for pair in parts.query.split("&"))
    # Replace the pieces in place: urlunsplit would rewrite unix:///path as unix:/path.
    text = text.replace(f"//{parts.netloc}", f"//{netloc}", 1) if netloc != parts.netloc else text
    return text.replace(f"?{parts.query}", f"?{query}", 1) if query != parts.query else text


def _masked_pair(pair: str) -> str:
    """One ``name=value`` of a query string, its value masked when the name is secret-like."""
    name, equals, value = pair.partition("=")
    secret = is_secret_name(unquote_plus(name)) or unquote_plus(name).lower() in SECRET_QUERY_NAMES
    return f"{name}={MASK}" if equals and value and secret else pair


@cli.command("purge")
@click.option("--collection", help="Purge this collection (and the collections related to it).")
@click.option("--document-id", help="The document that changed (needs --collection).")
@click.option("--all", "everything", is_flag=True, help="Purge every cached entry of the tenant.")
@with_appcontext
def purge_command(collection: str | None, document_id: str | None, everything: bool) -> None:
    """Drop cached entries in the shared store, for every worker and instance that uses it."""
    try:
        result = purge(
            registry().default.name, collection=collection, document_id=document_id, everything=everything
        )
    except ApiError as exc:
        if exc.status < 500:
            raise click.UsageError(exc.message) from exc
        raise click.ClickException(exc.message) from exc
    click.echo(f"purged {result['scope']}: {', '.join(result['invalidated']) or 'nothing'}")


def main() -> None:
    """Console-script entry point."""
    cli()
