"""Publishing blueprint: validated, idempotent, audited writes to Strapi, visible at once.

Routes (all need the collection's ``write`` permission, see policies.py; all are forwarded with the
server's API token, never the caller's):

* ``POST /api/<collection>`` and ``PUT /api/<collection>/<documentId>`` -- Strapi's own REST
  writes with Strapi's own semantics (checked on 5.54), so a client can switch its base URL from
  Strapi to bffproxy: Strapi's ``{"data": {...}}`` body; without ``status`` (or with
  ``status=published``) the create or the edit is published, with ``status=draft`` only the draft
  is written (and that also needs the ``drafts`` permission, as the answer is the draft);
  ``fields`` and ``populate`` shape the answer. The query is read by the read router's qs parser
  and rules (reads.py) against :data:`WRITE_PARAMS`: anything else is 400 ``invalid_parameter``.
  Strapi's answer (201 for a create, 200 for an edit, its body) is passed through.
* ``POST /api/<collection>/publish`` -- bffproxy's one-shot create-and-publish, flat body
  (``{"title": ..., "content": ...}``; ``content`` is an alias of ``body``).
* ``POST /api/<collection>/<documentId>/publish`` -- publish the draft (``PUT ?status=published``).
* ``POST /api/<collection>/<documentId>/unpublish`` -- Strapi 5 has no REST unpublish, so this goes
  through the admin Content-Manager API (``POST /content-manager/collection-types/<uid>/<id>/actions/
  unpublish``) with an admin session (strapi_admin.py) opened with ``BFFPROXY_STRAPI_ADMIN_EMAIL`` and
  ``BFFPROXY_STRAPI_ADMIN_PASSWORD``; without them the route answers 501 and says so.
* ``DELETE /api/<collection>/<documentId>`` -- delete the document (draft and published versions).
* ``PUT /api/<single type>`` and ``DELETE /api/<single type>`` -- Strapi's single types
  (``BFFPROXY_SINGLE_TYPES``): the PUT creates or edits its one document with the same semantics
  and query as a collection's PUT, the DELETE removes it (204 even when there was none). A single
  type has no ``POST`` (405, as in Strapi) and nothing under ``/api/<single type>/`` (404); a
  collection has no ``PUT``/``DELETE`` at ``/api/<collection>`` (405).

bffproxy's own routes and DELETE take no query parameters (400 for any): Strapi ignores them on a
delete or fails on ``status=draft`` (500), and a ``locale`` would delete one localization of content
bffproxy does not model.

Every write: body checks (415 not JSON, 400 malformed, 413 too large), schema validation (422 with a
per-field list, schemas.py), business rules (rules.py), an optional ``Idempotency-Key``
(idempotency.py; a retry after an unknown outcome first asks Strapi what it already holds,
reconciliation.py), the write itself -- never retried -- then, on success, invalidation of the
collection and its related collections before answering (read-your-writes), and one audit line
(audit.py). Strapi's 4xx answers pass through with Strapi's status and body. A write that may have
reached Strapi without an answer is a 504 (timeout) or 502 whose message says the outcome is unknown.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from flask import Blueprint, Flask, Response, request
from werkzeug.exceptions import MethodNotAllowed

from . import audit, events, idempotency, metrics, reconciliation, rules, strapi_admin
from .admission import CircuitOpen
from .auth import authorize, check_policy, current_identity
from .caching import StoreUnavailable
from .content import forwarded_headers
from .errors import ApiError, BadRequest, Forbidden, NotFound, UnsupportedMediaType, UpstreamBusy
from .idempotency import Claim, StoredAnswer, idempotency_store
from .invalidation import invalidate_collection
from .query import canonical, parse_query
from .reads import NO_QUERY, WriteQuery, is_document_id, publication_status
from .schemas import CollectionSpec, load_flat, load_wrapped, spec_for
from .settings import ConfigError, env_name
from .strapi import StrapiResponse
from .strapi_admin import AdminLoginFailed, admin_session
from .tenants import current_tenant, tenant_config

log = logging.getLogger(__name__)

bp = Blueprint("publishing", __name__)

# Strapi 5's REST writes honour these query parameters (checked on 5.54): ``status`` picks draft or
# published, ``fields`` and ``populate`` shape the answer. Strapi ignores filters, sort and
# pagination on a write, and ``locale`` writes one localization of content bffproxy does not model
# (its schemas and reconciliation know one version per document): those are refused.
WRITE_PARAMS = frozenset({"status", "fields", "populate"})
NO_PARAMS: frozenset[str] = frozenset()

ACTIONS = {
    "publishing.create_and_publish": "create_publish",
    "publishing.create_document": "create",
    "publishing.update_document": "update",
    "publishing.update_single": "update",
    "publishing.publish": "publish",
    "publishing.unpublish": "unpublish",
    "publishing.delete": "delete",
    "publishing.delete_single": "delete",
}
# The audit's name for a Strapi-path write sent with ?status=draft (it touches the draft only).
DRAFT_ACTIONS = {"create": "create_draft", "update": "update_draft"}

# Route shapes (see writable) and the methods Strapi routes at /api/<name> for each kind.
LIST_ROUTE, SINGLE_ROUTE, DOCUMENT_ROUTE = "list", "single", "document"
COLLECTION_METHODS = ["GET", "HEAD", "POST"]
SINGLE_TYPE_METHODS = ["GET", "HEAD", "PUT", "DELETE"]


class NoDraftAndPublish(BadRequest):
    code = "no_draft_and_publish"


class OutcomeUnknown(ApiError):
    """The write reached Strapi (or may have) and no answer came back (504, or 502 when cut off)."""

    status, code = 504, "outcome_unknown"


# -- the routes ----------------------------------------------------------------------------------


@bp.post("/api/<collection>/publish")
def create_and_publish(collection: str) -> Response:
    """Create a document and publish it in one call, from a flat body."""
    spec = writable(collection, route=DOCUMENT_ROUTE)
    write_query(spec, NO_PARAMS)
    body = json_body()
    data = prepared(spec, load_flat(spec, body), "create")
    return create(spec, body, data, NO_QUERY)


@bp.post("/api/<collection>")
def create_document(collection: str) -> Response:
    """Create as Strapi does: published, or only a draft with ``?status=draft``; 201 and the document."""
    spec = writable(collection, route=LIST_ROUTE)
    query = write_query(spec)
    body = json_body()
    data = prepared(spec, load_wrapped(spec, body, partial=False), "create")
    return create(spec, body, data, query)


@bp.put("/api/<collection>/<document_id>")
def update_document(collection: str, document_id: str) -> Response:
    """Edit as Strapi does: the edit is published, or changes only the draft with ``?status=draft``."""
    spec = writable(collection, document_id, route=DOCUMENT_ROUTE)
    return update(spec, document_id)


@bp.put("/api/<collection>")
def update_single(collection: str) -> Response:
    """Create or edit a single type as Strapi does: published, or only the draft with ``?status=draft``."""
    spec = writable(collection, route=SINGLE_ROUTE)
    return update(spec, None)


@bp.post("/api/<collection>/<document_id>/publish")
def publish(collection: str, document_id: str) -> Response:
    """Publish the document's draft."""
    spec = writable(collection, document_id, route=DOCUMENT_ROUTE, needs_drafts=True)
    write_query(spec, NO_PARAMS)
    path = spec.api_path(document_id)
    return perform(
        spec.name, None, NO_QUERY, lambda: service_call("PUT", path, "status=published", {"data": {}})
    )


@bp.post("/api/<collection>/<document_id>/unpublish")
def unpublish(collection: str, document_id: str) -> Response:
    """Unpublish through the admin Content-Manager API (Strapi 5 has no REST unpublish)."""
    spec = writable(collection, document_id, route=DOCUMENT_ROUTE, needs_drafts=True)
    write_query(spec, NO_PARAMS)
    session = admin_session()
    path = f"content-manager/collection-types/{spec.uid}/{document_id}/actions/unpublish"
    return perform(
        spec.name,
        None,
        NO_QUERY,
        lambda: session.call("POST", path, {}),
        lambda _: unpublish_reconciled(spec, document_id),
    )


@bp.delete("/api/<collection>/<document_id>")
def delete(collection: str, document_id: str) -> Response:
    """Delete the document, draft and published versions."""
    spec = writable(collection, document_id, route=DOCUMENT_ROUTE)
    return remove(spec, document_id)


@bp.delete("/api/<collection>")
def delete_single(collection: str) -> Response:
    """Delete a single type's document, draft and published versions (204 even when there is none)."""
    spec = writable(collection, route=SINGLE_ROUTE)
    return remove(spec, None)


def update(spec: CollectionSpec, document_id: str | None) -> Response:
    """PUT Strapi's body to a document or a single type; after an unknown outcome it is sent again."""
    query = write_query(spec)
    body = json_body()
    data = prepared(spec, load_wrapped(spec, body, partial=True), "update")
    path = spec.api_path(document_id)
    return perform(
        spec.name, body, query, lambda: service_call("PUT", path, query.query_string, {"data": data})
    )


def remove(spec: CollectionSpec, document_id: str | None) -> Response:
    """DELETE a document or a single type; after an unknown outcome, one found gone is done."""
    write_query(spec, NO_PARAMS)
    path = spec.api_path(document_id)
    return perform(
        spec.name,
        None,
        NO_QUERY,
        lambda: service_call("DELETE", path, "", None),
        lambda _: delete_reconciled(spec, document_id),
    )


# -- request checks ------------------------------------------------------------------------------


def writable(
    collection: str,
    document_id: str | None = None,
    *,
    route: str,
    needs_drafts: bool = False,
) -> CollectionSpec:
    """The write's content type, checked as Strapi's router would (404/405), then by policy (401/403).

    ``route`` is the shape of the path: :data:`LIST_ROUTE` (``POST /api/<collection>``),
    :data:`SINGLE_ROUTE` (``PUT``/``DELETE /api/<single type>``) or :data:`DOCUMENT_ROUTE`
    (anything under ``/api/<collection>/``, which a single type does not have).
    """
    tenant = current_tenant()
    if not tenant.exposes(collection):
        raise NotFound(f"There is no collection '{collection}'.")
    single = collection in tenant.router.single_types
    if single and route == DOCUMENT_ROUTE:
        raise NotFound(f"'{collection}' is a single type: it is written at /api/{collection}, without an id.")
    if single and route == LIST_ROUTE:
        raise MethodNotAllowed(SINGLE_TYPE_METHODS, f"'{collection}' is a single type: PUT it, never POST.")
    if not single and route == SINGLE_ROUTE:
        raise MethodNotAllowed(
            COLLECTION_METHODS, f"'{collection}' is a collection: write /api/{collection}/<id>."
        )
    if document_id is not None and not is_document_id(document_id):
        raise NotFound(f"There is no document '{document_id}' in '{collection}'.")
    authorize(collection, "write")  # 401 anonymous, 403 naming the missing role
    spec = spec_for(collection)
    if spec is None:
        raise NotFound(f"There is no writable collection '{collection}'.")
    if needs_drafts and not spec.draft_and_publish:
        raise NoDraftAndPublish(
            f"'{collection}' has no drafts: its documents are live as soon as they are saved."
        )
    return spec


def write_query(spec: CollectionSpec, allowed: frozenset[str] = WRITE_PARAMS) -> WriteQuery:
    """The request's query, read as Strapi's qs reads it (400 for a name not ``allowed``).

    ``status=draft`` writes and answers the draft, so it also needs the ``drafts`` permission.
    """
    raw = request.environ.get("QUERY_STRING", "")
    query = current_tenant().router.write_query(spec.name, raw, allowed)
    if query.drafts:
        authorize(spec.name, "drafts")  # 403 naming the role the caller lacks
    return query


def json_body() -> Any:
    """The request's JSON: 415 when not JSON, 413 when too large, 400 when malformed."""
    if not request.is_json:
        raise UnsupportedMediaType("The body must be JSON, sent with Content-Type: application/json.")
    raw = request.get_data(cache=True)  # bodies.BodyLimit has refused one over the limit: 413
    try:
        return json.loads(raw)
    except ValueError as exc:  # also UnicodeDecodeError
        raise BadRequest(f"The body is not valid JSON: {exc}.") from exc
    except RecursionError as exc:  # "[[[[..." nested deeper than the parser can go
        raise BadRequest("The body is not valid JSON: it is nested too deeply.") from exc


def prepared(spec: CollectionSpec, data: dict[str, Any], action: str) -> dict[str, Any]:
    """Check the relations it sets from their inverse side, then apply the business rules."""
    authorize_inverse_relations(spec, data)
    ctx = rules.WriteContext(
        collection=spec.name,
        action=action,
        schema=spec.schema(),
        user=current_identity(),
        idempotency_scope=idempotency_scope(),
        author_fields=tenant_config()["AUTHOR_FIELDS"],
        rich_text=tenant_config()["RICH_TEXT_HTML"],
    )
    return rules.apply_rules(ctx, data)


def authorize_inverse_relations(spec: CollectionSpec, data: dict[str, Any]) -> None:
    """A relation set from its inverse side needs ``write`` on the documents it rewrites.

    ``POST /api/categories {"articles": [...]}`` moves those articles into the category: in Strapi
    it rewrites each article's ``category``. Without this check a role allowed to write only
    categories could change published articles (found attacking issue 14).
    """
    for name, target in spec.inverse_relations.items():
        if name not in data:
            continue
        if not current_tenant().exposes(target):
            raise Forbidden(
                f"'{name}' changes '{target}', which is not exposed here.", details={"field": f"data.{name}"}
            )
        check_policy(target, "write")


def user_key() -> str:
    """Whose Idempotency-Keys these are."""
    identity = current_identity()
    return identity.user_id if identity is not None else "anonymous"


def idempotency_key() -> str | None:
    """The request's Idempotency-Key, checked, or None."""
    raw = request.headers.get(idempotency.HEADER)
    return None if raw is None else idempotency.check_key(raw.strip())


def idempotency_scope() -> str | None:
    """The key's (tenant, user, key) digest, or None without a key."""
    key = idempotency_key()
    return None if key is None else idempotency.scope_of(current_tenant().name, user_key(), key)


# -- the write pipeline --------------------------------------------------------------------------


Send = Callable[[], StrapiResponse]
Reconcile = Callable[[Claim], StrapiResponse | None]


def service_call(method: str, path: str, params: str, body: Any) -> StrapiResponse:
    """One request to Strapi with the server's API token whose answer goes to the client (its headers too)."""
    client = current_tenant().strapi
    headers = {**forwarded_headers(), **client.service_authorization()}
    return client.request(method, path, params=params, json_body=body, headers=headers)


def perform(
    collection: str, body: Any, query: WriteQuery, send: Send, reconcile: Reconcile | None = None
) -> Response:
    """Run one write: idempotency claim, the write (never retried), invalidation, the answer."""
    key = idempotency_key()
    if key is None:
        return answer_response(written(collection, None, send, None))
    store = idempotency_store()
    # The same key must ask for the same thing: ?status=draft is not the same write as without it.
    target = f"{request.path}?{query.query_string}" if query.params else request.path
    fingerprint = idempotency.fingerprint(request.method, target, body)
    claim = store.claim(current_tenant().name, user_key(), key, fingerprint)
    if claim.replay is not None:
        audit.note(outcome="replayed", document_id=document_id_in(claim.replay.body))
        return answer_response(claim.replay, replayed=True)
    with store.leased(claim):  # however long Strapi takes, a retry meanwhile is 409
        answer = written(collection, claim, send, reconcile)
    idempotency.guard_finish(store, claim, answer)
    return answer_response(answer)


def written(collection: str, claim: Claim | None, send: Send, reconcile: Reconcile | None) -> StoredAnswer:
    """The write's answer: what an earlier attempt already did, else the write sent once."""
    answer = reconciled(claim, reconcile)
    source = "reconcile" if answer is not None else "write"
    if answer is None:
        answer = sent(collection, claim, send)
    else:
        audit.note(outcome="reconciled")
    if answer.ok and read_your_writes(collection):
        announce(collection, answer, source)  # after the invalidation, never when it failed
    audit.note(document_id=document_id_in(answer.body), outcome=None if answer.ok else "rejected")
    return StoredAnswer(answer.status, answer.body, answer.content_type)


def reconciled(claim: Claim | None, reconcile: Reconcile | None) -> StrapiResponse | None:
    """For a retry after an unknown outcome: what Strapi already holds, if anything."""
    if claim is None or not claim.reconciling or reconcile is None:
        return None
    try:
        return reconcile(claim)
    except ApiError:
        settle(idempotency_store().release, claim)  # still unknown: the next retry looks again
        raise


def sent(collection: str, claim: Claim | None, send: Send) -> StrapiResponse:
    """Send the write once; on failure, record whether it may have happened."""
    try:
        return send()
    except ApiError as exc:
        if never_sent(exc):
            if claim is not None:
                settle(idempotency_store().release, claim)
            audit.note(outcome="failed")
            raise
        if claim is not None:
            settle(idempotency_store().mark_unknown, claim)
        read_your_writes(collection)  # it may have changed
        audit.note(outcome="unknown")
        raise outcome_unknown(exc, keyed=claim is not None) from exc


def never_sent(exc: ApiError) -> bool:
    """True when the request never left: refused by admission, connection refused, connect timeout."""
    if isinstance(exc, (AdminLoginFailed, CircuitOpen, UpstreamBusy)):
        return True
    return exc.__cause__ is not None and not exc.outcome_unknown


def outcome_unknown(exc: ApiError, *, keyed: bool) -> OutcomeUnknown:
    """The 504/502 that tells the client the write may or may not have happened."""
    what = "did not answer in time" if exc.status == 504 else "failed after the request was sent"
    retry = (
        "Retrying with the same Idempotency-Key is safe: bffproxy reconciles with Strapi "
        "instead of writing twice."
        if keyed
        else "Check before retrying; send an Idempotency-Key header with writes so that a retry "
        "is always safe."
    )
    error = OutcomeUnknown(
        f"Strapi {what}: the outcome of this write is unknown (it may or may not have been applied). {retry}",
        details={"outcome": "unknown", "safe_to_retry_with_same_key": keyed},
    )
    error.status = exc.status
    error.outcome_unknown = True
    return error


def settle(step: Callable[[Claim], None], claim: Claim) -> None:
    """Record a claim's fate; a store fault is logged, never allowed to hide the original error."""
    try:
        step(claim)
    except Exception as exc:
        log.error("idempotency record %s not updated: %r", claim.key, exc)


def read_your_writes(collection: str) -> bool:
    """Drop the collection's cached answers (and its related collections') before answering; done?"""
    tenant = current_tenant().name
    try:
        dropped = invalidate_collection(tenant, collection)
    except StoreUnavailable as exc:  # reads bypass a store that is down, so nothing stale is served
        log.error("invalidation of %s after a write failed: %s", collection, exc)
        return False
    metrics.count(metrics.INVALIDATIONS, tenant, "write", by=len(dropped))
    return True


def announce(collection: str, answer: StrapiResponse, source: str) -> None:
    """Log the content events of a successful write (events.py collapses Strapi's webhook about it)."""
    action = ACTIONS.get(request.endpoint or "")
    if action in DRAFT_ACTIONS and asks_for_draft():
        action = DRAFT_ACTIONS[action]
    document = events.document_of(answer.body)
    document_id = document.get("documentId") or (request.view_args or {}).get("document_id")
    spec = spec_for(collection)
    if action is None or not isinstance(document_id, str) or spec is None:
        return  # a single type's delete names no document
    changes = events.from_write(
        action, collection, {**document, "documentId": document_id}, drafts=spec.draft_and_publish
    )
    events.record(current_tenant().name, [events.with_source(c, source) for c in changes])


def document_id_in(body: bytes) -> str | None:
    """The documentId in a Strapi answer's ``data``, if any."""
    try:
        data = json.loads(body).get("data") if body else None
    except (ValueError, AttributeError):
        return None
    value = data.get("documentId") if isinstance(data, dict) else None
    return value if isinstance(value, str) else None


def answer_response(answer: StoredAnswer, *, replayed: bool = False) -> Response:
    """Strapi's answer as ours: status, body and type as they were; never cached."""
    response = Response(answer.body, status=answer.status, content_type=answer.content_type)
    response.headers["Cache-Control"] = "no-store"
    if replayed:
        response.headers[idempotency.REPLAYED_HEADER] = "true"
    return response


# -- creates and their reconciliation ------------------------------------------------------------


def create(spec: CollectionSpec, body: Any, data: dict[str, Any], query: WriteQuery) -> Response:
    """Create one document as ``query`` asks; a retry after an unknown outcome finds it first."""
    path = spec.api_path()

    def reconcile(claim: Claim) -> StrapiResponse | None:
        found = reconciliation.find_created(spec, data, body, claim)
        return None if found is None else created_answer(spec, found["documentId"], query)

    return perform(
        spec.name,
        body,
        query,
        lambda: service_call("POST", path, query.query_string, {"data": data}),
        reconcile,
    )


def created_answer(spec: CollectionSpec, document_id: str, query: WriteQuery) -> StrapiResponse:
    """The create's answer (201, the client's format and ``query``) for a document already created.

    A published create is answered with the published version as it stands, never published again
    (that would publish edits made to its draft since); only if it has none -- the first attempt
    stopped before publishing -- is it published now, as the create would have.
    """
    path = spec.api_path(document_id)
    answer = service_call("GET", path, query.query_string, None)
    if answer.status == 404 and spec.draft_and_publish and not query.drafts:
        answer = service_call("PUT", path, query.query_string, {"data": {}})
    return StrapiResponse(201 if answer.ok else answer.status, answer.body, answer.content_type)


def unpublish_reconciled(spec: CollectionSpec, document_id: str) -> StrapiResponse | None:
    """The draft of a document an earlier unpublish already took offline, or None to unpublish."""
    if not reconciliation.is_unpublished(spec, document_id):
        return None  # still published: unpublish it
    draft = service_call("GET", spec.api_path(document_id), "status=draft", None)
    return StrapiResponse(200, draft.body, draft.content_type) if draft.ok else None


def delete_reconciled(spec: CollectionSpec, document_id: str | None) -> StrapiResponse | None:
    """Strapi's answer to a delete that worked when an earlier attempt deleted it, or None to delete.

    Sent again, the delete may be answered 404 (and that stored and replayed): a delete that worked
    would be reported as failed. A document (or single type) absent afterwards is taken as deleted.
    """
    return StrapiResponse(204, b"") if reconciliation.is_deleted(spec, document_id) else None


# -- audit and set-up ----------------------------------------------------------------------------


@bp.before_request
def _begin_audit() -> None:
    """Open the audit entry before authentication, so refused writes are audited too."""
    action = ACTIONS.get(request.endpoint or "")
    if action in DRAFT_ACTIONS and asks_for_draft():
        action = DRAFT_ACTIONS[action]
    if action is not None and request.view_args is not None:
        audit.begin(action, str(request.view_args.get("collection")), request.view_args.get("document_id"))


def asks_for_draft() -> bool:
    """True when the query asks for ``status=draft`` (a bad query is refused later, in the view)."""
    try:
        params = canonical(parse_query(request.environ.get("QUERY_STRING", "")))
        return publication_status(params) == "draft"
    except ApiError:
        return False


bp.after_request(audit.emit)


def check_single_types(config: dict[str, Any]) -> None:
    """Start-up: a content type bffproxy has a schema for is a single type exactly when configured so."""
    singles = config["SINGLE_TYPES"]
    for name in config["COLLECTIONS"]:
        spec = spec_for(name)
        if spec is not None and spec.single_type != (name in singles):
            kind, fix = (
                ("a single type", "add it") if spec.single_type else ("a collection type", "remove it")
            )
            raise ConfigError(f"{env_name('SINGLE_TYPES')}: {name!r} is {kind} in Strapi ({spec.uid}): {fix}")


def init_app(app: Flask) -> None:
    """Set up the admin sessions, idempotency and the audit log (settings: each module's configure_tenant)."""
    strapi_admin.init_app(app)
    idempotency.init_app(app)
    audit.init_app(app)
