"""The ``bffproxy`` command: Flask's CLI (run, routes, shell) plus bffproxy's own commands."""

from __future__ import annotations

import sys

import click
from flask import current_app
from flask.cli import FlaskGroup, with_appcontext

from . import create_app
from .errors import ApiError
from .invalidation import purge
from .settings import ConfigError
from .tenants import registry


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
    secret_words = ("TOKEN", "SECRET", "PASSWORD", "KEY")
    for key in sorted(current_app.config):
        if not key.isupper() or key.startswith(("SESSION_", "TEMPLATES_", "EXPLAIN_", "PREFERRED_")):
            continue
        value = current_app.config[key]
        if any(word in key for word in secret_words) and value and key != "CACHE_KEY_PREFIX":
            value = "***"
        click.echo(f"{key} = {value!r}")


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
