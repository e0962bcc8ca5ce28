"""Strapi's webhooks: ``POST /webhooks/strapi`` turns a content change into an invalidation.

Strapi 5 sends one POST per event with a static ``X-Webhook-Secret`` header (no signature), gives up
after 10 s and never retries. So the receiver compares the secret in constant time, never calls
Strapi, and answers as soon as the generations are replaced (a few store writes):

* 401 for a missing or wrong secret, and for every call while ``BFFPROXY_WEBHOOK_SECRET`` is unset
  (the app still boots, serving on TTLs alone; a warning at start-up says webhooks are refused);
* 400 for a body that is not a Strapi entry event (malformed JSON, missing event/model/entry/documentId);
* 202 with nothing invalidated for an event or model bffproxy does not expose;
* 200 with the invalidated collections otherwise; 503 when the shared store refuses the write.

A changed document drops its collection (its own entries and every list or query of it) and the
collections related to it: those named by the populated relations in the payload, plus the
configured ``BFFPROXY_RELATIONS__<collection>`` (``entry.delete`` carries no relations). Strapi's
``model`` is singular (``article``); ``BFFPROXY_MODELS__<model>=<collection>`` maps it to the exposed
API id, which defaults to an English plural (``article`` -> ``articles``, ``category`` ->
``categories``); a single type's model is its exposed name (``homepage``, from
``BFFPROXY_SINGLE_TYPES``). Repeated deliveries (a DELETE sends two ``entry.delete``) only replace
a generation again. Every delivery logs exactly one line.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from flask import Blueprint, Response, jsonify, request

from . import events, media, metrics
from .bodies import json_or_none
from .errors import ApiError, BadRequest, Unauthorized
from .invalidation import purge
from .reconciliation import look_up
from .settings import ConfigError, as_mapping, as_str, env_name
from .tenants import current_tenant, tenant_config

log = logging.getLogger(__name__)

bp = Blueprint("webhooks", __name__)

SECRET_HEADER = "X-Webhook-Secret"


class WebhooksDisabled(Unauthorized):
    """No secret is configured, so no caller can be trusted."""

    code = "webhooks_disabled"
    message = f"Webhooks are refused: {env_name('WEBHOOK_SECRET')} is not set on this bffproxy."


@dataclass(frozen=True)
class Delivery:
    """The parts of one Strapi entry event that decide what to invalidate."""

    event: str
    model: str
    document_id: str
    related_fields: tuple[str, ...]
    entry: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def parse(cls, body: Any) -> Delivery | str:
        """The delivery, the event name of a non-entry event (ignored), or BadRequest."""
        if not isinstance(body, Mapping):
            raise BadRequest("The webhook body must be a JSON object.")
        event = _required_str(body, "event")
        if not event.startswith("entry."):
            return event
        entry = body.get("entry")
        if event == "entry.publish" and entry in (None, "null"):  # Strapi issue 25387: no entry sent
            return cls(event, _required_str(body, "model"), "", ())
        if not isinstance(entry, Mapping):
            raise BadRequest("The webhook body has no 'entry' object.", details={"field": "entry"})
        document_id = _required_str(entry, "documentId")
        return cls(event, _required_str(body, "model"), document_id, _relations(entry), entry)


def _required_str(body: Mapping[str, Any], name: str) -> str:
    """A non-empty string field, or BadRequest naming it."""
    value = body.get(name)
    if not isinstance(value, str) or not value.strip():
        raise BadRequest(f"The webhook body has no '{name}' string.", details={"field": name})
    return value.strip()


def _relations(entry: Mapping[str, Any]) -> tuple[str, ...]:
    """Names of the entry's populated relation fields: objects (or lists of them) with a documentId."""
    fields = []
    for name, value in entry.items():
        items = value if isinstance(value, list) else [value]
        if items and all(isinstance(item, Mapping) and "documentId" in item for item in items):
            fields.append(name)
    return tuple(fields)


def pluralise(name: str) -> str:
    """The English plural Strapi suggests for an API id: article -> articles, category -> categories."""
    if name.endswith(("s", "x", "z", "ch", "sh")):
        return f"{name}es"
    if len(name) > 1 and name.endswith("y") and name[-2] not in "aeiou":
        return f"{name[:-1]}ies"
    return f"{name}s"


def collection_for(name: str) -> str | None:
    """The exposed collection (or single type) a model or relation field name stands for, or None.

    A single type's REST name is its singular name, the model itself (``homepage``).
    """
    config = tenant_config()
    exposed = config["COLLECTIONS"]
    configured = config["MODELS"].get(name)
    if configured:
        return str(configured)
    if name in config["SINGLE_TYPES"]:
        return name
    return next((c for c in (pluralise(name), name) if c in exposed), None)


def _authenticate() -> None:
    """Refuse the call unless its secret matches, compared in constant time."""
    expected = tenant_config()["WEBHOOK_SECRET"]  # each tenant's Strapi posts with its own
    if not expected:
        raise WebhooksDisabled()
    given = request.headers.get(SECRET_HEADER, "")
    if not hmac.compare_digest(given.encode(), expected.encode()):
        raise Unauthorized(f"Missing or wrong {SECRET_HEADER}.")


def _apply(delivery: Delivery | str) -> tuple[dict[str, Any], int]:
    """Invalidate what the delivery changed; say what, with 200, or why nothing, with 202."""
    if isinstance(delivery, str) and delivery in media.EVENTS:  # media.create|update|delete
        return media.changed_by_webhook(delivery)
    if isinstance(delivery, str):
        return {"event": delivery, "invalidated": [], "ignored": "not an entry event"}, 202
    collection = collection_for(delivery.model)
    if collection is None:
        ignored = {"event": delivery.event, "model": delivery.model, "documentId": delivery.document_id}
        return {**ignored, "invalidated": [], "ignored": f"model {delivery.model!r} is not exposed"}, 202
    if not delivery.document_id:
        return _apply_unnamed_publish(delivery, collection)
    related = [c for c in map(collection_for, delivery.related_fields) if c]
    tenant = current_tenant().name
    result = purge(tenant, collection=collection, document_id=delivery.document_id, also=related)
    # Only now, with the invalidation committed (purge raised otherwise), is the change announced.
    change = events.from_webhook(delivery.event, collection, delivery.entry)
    events.record(tenant, [change] if change else [])
    return {"event": delivery.event, "model": delivery.model, **result}, 200


def _apply_unnamed_publish(delivery: Delivery, collection: str) -> tuple[dict[str, Any], int]:
    """An ``entry.publish`` whose entry Strapi left out (its issue 25387): the whole collection goes.

    Which document it was is one look-up: the collection's most recently published one, with the
    server's API token. If Strapi cannot say, the cache is still right and no event is guessed (the
    reconciler reports the publish when it next runs).
    """
    tenant = current_tenant().name
    result = purge(tenant, collection=collection)  # its documents and lists, its related collections
    entry = newest_published(collection)
    change = events.from_webhook(delivery.event, collection, entry) if entry else None
    events.record(tenant, [change] if change else [])
    resolved = entry.get("documentId") if entry else None
    return {"event": delivery.event, "model": delivery.model, "documentId": resolved, **result}, 200


def newest_published(collection: str) -> dict[str, Any] | None:
    """The collection's most recently published document (its ``documentId`` and ``publishedAt``).

    Only ``publishedAt`` is asked for: Strapi answers 400 to ``fields`` naming ``locale`` on a
    collection without i18n (checked on the real Strapi).
    """
    fields = [("fields[0]", "publishedAt")]
    params = [("sort[0]", "publishedAt:desc"), ("pagination[pageSize]", "1"), *fields]
    single = collection in tenant_config()["SINGLE_TYPES"]
    try:
        answer = look_up(f"/api/{collection}", fields if single else params)
        data = (answer.json() or {}).get("data") if answer.ok else None
    except (ApiError, ValueError, AttributeError) as exc:
        log.warning("entry.publish without its entry: Strapi cannot name the document (%r)", exc)
        return None
    found = data if single else (data[0] if isinstance(data, list) and data else None)
    return found if isinstance(found, dict) and isinstance(found.get("documentId"), str) else None


@bp.post("/webhooks/strapi")
def strapi_webhook() -> Response:
    """Receive one Strapi webhook and invalidate what it changed."""
    tenant = current_tenant().name
    metrics.count(metrics.WEBHOOKS_RECEIVED, tenant)
    try:
        _authenticate()
        sent = json_or_none(force=True)
        metrics.webhook_lag(tenant, sent)
        body, status = _apply(Delivery.parse(sent))
    except ApiError as exc:
        log.warning("webhook refused with %s (%s): %s", exc.status, exc.code, exc.message)
        metrics.count(metrics.WEBHOOKS_REJECTED, tenant, exc.code)
        raise
    metrics.count(metrics.INVALIDATIONS, tenant, "webhook", by=len(body["invalidated"]))
    log.info(
        "webhook %s %s %s -> invalidated %s",
        body["event"],
        body.get("model", "-"),
        body.get("documentId", "-"),
        ",".join(body["invalidated"]) or "nothing",
    )
    response = jsonify(body)
    response.status_code = status
    response.headers["Cache-Control"] = "no-store"
    return response


def configure_tenant(config: dict[str, Any]) -> None:
    """Validate one tenant's webhook secret and model names; warn once when webhooks are refused."""
    config["WEBHOOK_SECRET"] = as_str(config, "WEBHOOK_SECRET")
    exposed = config["COLLECTIONS"]
    models = as_mapping(config, "MODELS", str)
    for model, collection in models.items():
        if collection not in exposed:
            name = f"{env_name('MODELS')}__{model}"
            raise ConfigError(f"{name} names {collection!r}, which is not in {env_name('COLLECTIONS')}")
    config["MODELS"] = models
    if not config["WEBHOOK_SECRET"]:
        log.warning("%s is not set: Strapi's webhooks will be refused (401)", env_name("WEBHOOK_SECRET"))
