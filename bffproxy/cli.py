"""The ``bffproxy`` command: Flask's CLI (run, routes, shell) plus bffproxy's own commands."""

from __future__ import annotations

import os
import pwd
import re
import sys
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote_plus

import click
from flask import Config, current_app
from flask.cli import FlaskGroup, with_appcontext

from . import create_app, reconciler
from .errors import ApiError
from .invalidation import purge
from .settings import ConfigError, load_config
from .store import StoreUnavailable
from .tenants import registry
from .tenants_file import SETTINGS as TENANT_SETTINGS

MASK = "***"
# A name holding one of these words is a secret: STRAPI_API_TOKEN, JWT_SECRET_KEY, ADMIN_PASSWORD...
SECRET_WORDS = frozenset({"SECRET", "PASSWORD", "PASSWD", "PWD", "PASS", "PRIVATE", "CREDENTIALS"})
# ... and so is one ending in these (but not JWT_ACCESS_TOKEN_EXPIRES or CACHE_KEY_PREFIX).
SECRET_LAST_WORDS = frozenset({"TOKEN", "TOKENS", "KEY", "KEYS", "APIKEY", "AUTH", "AUTHORIZATION"})
# Query parameters that carry credentials in redis-py, Strapi and common HTTP APIs.
SECRET_QUERY_NAMES = frozenset({"sig", "signature", "access_token", "apikey", "api_key", "auth"})
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")
_PLAIN_USER = re.compile(r"[A-Za-z0-9._~!$&'()*+,;=%-]*")  # RFC 3986 userinfo characters, no ':'


def _create_app() -> object:
    """Build the app for the CLI; a configuration error is one line and exit code 2."""
    try:
        config = Config(".")
        load_config(config)
        refuse_foreign_cache_dir(str(config["CACHE_DIR"]), os.geteuid())
        return create_app()
    except ConfigError as exc:
        click.echo(f"bffproxy: configuration error: {exc}", err=True)
        sys.exit(2)


def refuse_foreign_cache_dir(folder: str, euid: int) -> None:
    """As root, refuse a cache directory another user owns (the service's): ConfigError naming that user.

    Building the app opens the event log and the stores, and a purge writes generation and lock
    files: as root they would be root's, and the service, locked out of them, stalls on its next read.
    """
    if euid != 0:
        return
    try:
        owner = os.stat(folder).st_uid
    except FileNotFoundError:
        return
    if owner == 0:
        return
    try:
        name = pwd.getpwuid(owner).pw_name
    except KeyError:
        name = str(owner)
    raise ConfigError(
        f"{folder} belongs to user {name}: run bffproxy commands as that user "
        f"(sudo -u {name} bffproxy ...), not as root, or files written now would lock the service out"
    )


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
    if current_app.config["TENANTS_FILE"]:
        for tenant in registry():
            click.echo(
                f"[tenant {tenant.name}] hosts={list(tenant.hosts)!r} path_prefix={tenant.path_prefix!r}"
            )
            for key in sorted(set(TENANT_SETTINGS.values())):
                click.echo(f"  {key} = {masked_value(key, tenant.config.get(key))!r}")


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
    """``text`` with a URL's password (or lone user part) and secret query values masked.

    A password may hold a raw space, ``?``, ``#``, ``/`` or ``@`` (redis-py refuses most of these at
    start-up, but check-config must still show them safely), so no URL parser is trusted to find
    where it ends: everything up to the last ``@`` is userinfo, a query starts at the first ``?`` or
    at the first after that ``@``, and the secrets of every reading are masked. Showing too little
    beats showing a password.
    """
    scheme = _SCHEME.match(text)
    if not scheme:
        return text
    at = text.rfind("@", scheme.end())
    spans = _userinfo_spans(text, scheme.end(), at)
    # The query starts at the first '?' (a parser's reading) or at the first after the last '@'.
    for question in {text.find("?"), text.find("?", at + 1)} - {-1}:
        spans.extend(_secret_query_spans(text, question))
    for start, end in reversed(_merged(spans)):
        text = f"{text[:start]}{MASK}{text[end:]}"
    return text


def _userinfo_spans(text: str, start: int, at: int) -> list[tuple[int, int]]:
    """Where the password (or a lone user part, often the password itself) sits: up to the last @."""
    if at < 0:
        return []
    user, colon, _ = text[start:at].partition(":")
    # Keep a plain user name in sight (an operator checks it); anything odd in it is masked too.
    if colon and _PLAIN_USER.fullmatch(user):
        start += len(user) + 1
    return [(start, at)] if at > start else []


def _secret_query_spans(text: str, question: int) -> list[tuple[int, int]]:
    """Where the values of secret-named parameters (``password=``, ``token=``) after ``question`` sit."""
    hash_ = text.find("#", question)
    end = len(text) if hash_ < 0 else hash_
    spans, offset = [], question + 1
    for pair in text[offset:end].split("&"):
        name, equals, value = pair.partition("=")
        plain = unquote_plus(name)
        if equals and value and (is_secret_name(plain) or plain.lower() in SECRET_QUERY_NAMES):
            spans.append((offset + len(name) + 1, offset + len(pair)))
        offset += len(pair) + 1
    return spans


def _merged(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Overlapping or touching spans joined, in order."""
    merged: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged


@cli.command("purge")
@click.option("--collection", help="Purge this collection (and the collections related to it).")
@click.option("--document-id", help="The document that changed (needs --collection).")
@click.option("--all", "everything", is_flag=True, help="Purge every cached entry of the tenant.")
@click.option("--tenant", help="The tenant (required with a tenants file that has no default_tenant).")
@with_appcontext
def purge_command(
    collection: str | None, document_id: str | None, everything: bool, tenant: str | None
) -> None:
    """Drop cached entries in the shared store, for every worker and instance that uses it."""
    try:
        result = purge(
            registry().named(tenant).name,
            collection=collection,
            document_id=document_id,
            everything=everything,
        )
    except ApiError as exc:
        if exc.status < 500:
            raise click.UsageError(exc.message) from exc
        raise click.ClickException(exc.message) from exc
    click.echo(f"purged {result['scope']}: {', '.join(result['invalidated']) or 'nothing'}")


@cli.command("reconcile")
@click.option("--tenant", help="Only this tenant (default: every tenant).")
@click.option("--since", help="Also announce changes after this ISO 8601 time that no one reported.")
@with_appcontext
def reconcile_command(tenant: str | None, since: str | None) -> None:
    """Find the changes Strapi made that no webhook reported: invalidate them and announce them."""
    try:
        after = reconciler.parse_time(since) if since else None
    except ValueError as exc:
        raise click.BadParameter(f"not an ISO 8601 time: {since!r}", param_hint="--since") from exc
    try:
        tenants = [registry().named(tenant)] if tenant else list(registry())
    except ApiError as exc:
        raise click.UsageError(exc.message) from exc
    failed = []
    for each in tenants:
        try:
            report = reconciler.reconcile_tenant(each, since=after)
        except (ApiError, StoreUnavailable) as exc:
            failed.append(each.name)
            click.echo(f"[{each.name}] failed: {getattr(exc, 'message', exc)}", err=True)
            continue
        click.echo(f"[{each.name}] {report.summary()}")
    if failed:
        raise click.ClickException(f"reconcile failed for tenant(s): {', '.join(failed)}")


def main() -> None:
    """Console-script entry point."""
    cli()
