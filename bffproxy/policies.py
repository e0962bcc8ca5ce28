"""Per-collection access policies: which Strapi roles may do what on each exposed collection.

Configured per collection, one environment variable each (Flask turns ``__`` into nesting)::

    BFFPROXY_POLICIES__articles="read=public,drafts=editor,write=editor|admin"

Role words are Strapi role ``type`` values (``authenticated``, ``editor`` ...), plus three specials:
``public`` (anyone, signed in or not), ``*`` (any signed-in user, whatever the role) and ``none``.
Several roles for one action are separated by ``|``. Defaults are safe: every collection listed in
``BFFPROXY_COLLECTIONS`` is readable by the public; ``drafts``, ``write`` and any other action are
denied until configured; a collection that is not listed has no policy and is a 404.

The media library (media.py) has one policy too, under the name ``BFFPROXY_MEDIA_POLICY``
(``upload``: ``BFFPROXY_POLICIES__upload="read=public,write=editor"``), with the same defaults.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from flask import g

from .settings import ConfigError, as_names, as_str, env_name

PUBLIC = "public"
ANY_USER = "*"
NOBODY = "none"
DEFAULT_POLICY: dict[str, frozenset[str]] = {"read": frozenset({PUBLIC})}
_NAME = re.compile(r"[A-Za-z0-9_-]+")  # fullmatch: `$` would let "editor\n" through

Policy = dict[str, frozenset[str]]


def parse_roles(key: str, action: str, text: Any) -> frozenset[str]:
    """``editor|admin`` (or a list) as a set of role words; ``none`` is the empty set."""
    items = text if isinstance(text, (list, tuple, set, frozenset)) else re.split(r"[|\s]+", str(text))
    roles = frozenset(str(item).strip() for item in items if str(item).strip())
    for role in roles:
        if role != ANY_USER and not _NAME.fullmatch(role):
            raise ConfigError(f"{key} has an invalid role {role!r} for {action!r}")
    return frozenset() if roles <= {NOBODY} else roles - {NOBODY}


def parse_policy(key: str, raw: Any) -> Policy:
    """One collection's ``action=roles,action=roles`` text (or mapping) as {action: roles}."""
    if isinstance(raw, Mapping):
        pairs = [(str(action), roles) for action, roles in raw.items()]
    else:
        pairs = []
        for item in filter(None, (part.strip() for part in str(raw or "").split(","))):
            action, sep, roles = item.partition("=")
            if not sep:
                raise ConfigError(f"{key} must look like read=public,drafts=editor; got {item!r}")
            pairs.append((action.strip(), roles))
    policy: Policy = {}
    for action, roles in pairs:
        if not _NAME.fullmatch(action):
            raise ConfigError(f"{key} has an invalid action {action!r}")
        policy[action] = parse_roles(key, action, roles)
    return policy


def load_policies(config: Mapping[str, Any]) -> dict[str, Policy]:
    """Every exposed collection's policy: the defaults, overridden action by action."""
    raw = config.get("POLICIES") or {}
    if not isinstance(raw, Mapping):
        raise ConfigError(
            f"{env_name('POLICIES')} is set per collection: "
            f'{env_name("POLICIES")}__articles="read=public,drafts=editor,write=editor"'
        )
    collections = config["COLLECTIONS"]
    names = (*collections, *filter(None, [config.get("MEDIA_POLICY")]))
    policies = {name: dict(DEFAULT_POLICY) for name in names}
    for collection, text in raw.items():
        key = f"{env_name('POLICIES')}__{collection}"
        if collection not in names:
            raise ConfigError(f"{key} names {collection!r}, which is not in {env_name('COLLECTIONS')}")
        policies[collection].update(parse_policy(key, text))
    return policies


def allowed_roles(collection: str, action: str) -> frozenset[str]:
    """The role words that may do ``action`` on ``collection`` (empty: nobody)."""
    policies: dict[str, Policy] = g.tenant.config["POLICIES"]
    return policies.get(collection, {}).get(action, frozenset())


def is_public(collection: str, action: str) -> bool:
    """True when anyone, even anonymous, may do ``action`` on ``collection``."""
    return PUBLIC in allowed_roles(collection, action)


def public_collections(config: Mapping[str, Any], collections: tuple[str, ...]) -> frozenset[str]:
    """The collections of a tenant (its checked settings) that anyone may read."""
    policies: Mapping[str, Policy] = config["POLICIES"]
    return frozenset(c for c in collections if PUBLIC in policies.get(c, {}).get("read", frozenset()))


def role_may(role: str, collection: str, action: str) -> bool:
    """True when a signed-in user with ``role`` may do ``action`` on ``collection``."""
    roles = allowed_roles(collection, action)
    return bool(roles & {PUBLIC, ANY_USER, role})


def needs_signed_in_users(policies: Mapping[str, Policy]) -> bool:
    """True when some policy grants an action to signed-in roles (so tokens must be checked)."""
    return any(roles - {PUBLIC} for policy in policies.values() for roles in policy.values())


def configure_tenant(config: dict[str, Any]) -> None:
    """Validate one tenant's policies and role-cacheable collections."""
    config.setdefault("MEDIA_POLICY", "upload")
    config["MEDIA_POLICY"] = as_str(config, "MEDIA_POLICY", required=True)
    if not _NAME.fullmatch(config["MEDIA_POLICY"]) or config["MEDIA_POLICY"] in config["COLLECTIONS"]:
        raise ConfigError(
            f"{env_name('MEDIA_POLICY')} must be a policy name (letters, digits, '_', '-') that is not "
            f"also in {env_name('COLLECTIONS')}, got {config['MEDIA_POLICY']!r}"
        )
    config["POLICIES"] = load_policies(config)
    config.setdefault("ROLE_CACHEABLE", "")
    config["ROLE_CACHEABLE"] = as_names(config, "ROLE_CACHEABLE")
    for name in config["ROLE_CACHEABLE"]:
        if name not in config["COLLECTIONS"]:
            raise ConfigError(
                f"{env_name('ROLE_CACHEABLE')} names {name!r}, which is not in {env_name('COLLECTIONS')}"
            )
