"""Event-stream tickets: how a browser's ``EventSource`` (which cannot send headers) signs in.

``POST /api/events/ticket`` with ``Authorization: Bearer <Strapi JWT>`` answers
``{"ticket": "...", "expiresIn": 30}``. The ticket opens one stream (``GET /api/events?ticket=``
or the WebSocket's ``?ticket=``) within :data:`TICKET_TTL` seconds, once: the stream runs as the
token's user, with the token's role, and ends when the token would have expired. A long-lived
token never travels in a URL (URLs end up in access logs, proxies and browser history).

The shared store keeps the ticket's SHA-256, never the ticket, under the tenant's name: a ticket
minted on one worker or instance opens a stream on any other of the same tenant, and only there.
Single use is the store's atomic ``add`` on a "used" key: of two streams racing with one ticket,
one wins.
"""

from __future__ import annotations

import hashlib
import secrets
from typing import Any

from flask import Blueprint, Response, g, jsonify

from .auth import Identity, signed_in
from .errors import ServiceUnavailable, Unauthorized
from .store import StoreUnavailable, shared_store
from .tenants import current_tenant

bp = Blueprint("event_tickets", __name__)

TICKET_TTL = 30  # seconds a ticket may wait before it opens its stream
_TICKET_BYTES = 32


class TicketRefused(Unauthorized):
    code = "invalid_ticket"
    message = "The ticket is unknown, expired or already used: ask POST /api/events/ticket for another."


class TicketsUnavailable(ServiceUnavailable):
    code, message = "tickets_unavailable", "Tickets cannot be issued or checked right now."


def _key(ticket: str) -> str:
    digest = hashlib.sha256(ticket.encode()).hexdigest()
    return f"events:ticket:{current_tenant().name}:{digest}"


@bp.post("/api/events/ticket")
def issue() -> Response:
    """A single-use ticket for the caller's next event stream (the bearer token is required)."""
    identity = signed_in()
    ticket = secrets.token_urlsafe(_TICKET_BYTES)
    record = {
        "user_id": identity.user_id,
        "username": identity.username,
        "email": identity.email,
        "role": identity.role,
        "expires_at": identity.expires_at,
    }
    try:
        stored = shared_store().set(_key(ticket), record, TICKET_TTL, must_land=True)
    except StoreUnavailable:
        raise TicketsUnavailable() from None
    if stored is False:
        raise TicketsUnavailable()
    response = jsonify(ticket=ticket, expiresIn=TICKET_TTL)
    response.headers["Cache-Control"] = "no-store"
    return response


def redeem(ticket: str) -> Identity:
    """The identity a ticket stands for, made the request's caller; 401 for a bad or used ticket."""
    if not 20 <= len(ticket) <= 64 or not ticket.replace("-", "").replace("_", "").isalnum():
        raise TicketRefused()
    key = _key(ticket)
    try:
        record: Any = shared_store().get(key)
        first = record is not None and shared_store().call(
            "add", f"{key}:used", 1, TICKET_TTL, must_land=True
        )
    except StoreUnavailable:
        raise TicketsUnavailable() from None
    if not first or not isinstance(record, dict):
        raise TicketRefused()
    identity = Identity(
        record["user_id"],
        record["username"],
        record["email"],
        record["role"],
        token="",  # never forwarded: a stream makes no call to Strapi as its user
        expires_at=float(record["expires_at"]),
    )
    g.bffproxy_identity = identity  # policies are checked for the ticket's user
    return identity
