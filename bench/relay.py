"""A loopback relay between Strapi's webhook and bffproxy, timestamping each acknowledgement.

Strapi's webhook points here; every delivery is forwarded unchanged to bffproxy's
``/webhooks/strapi`` and bffproxy's answer goes back to Strapi. The relay notes the moment bffproxy
acknowledged it, which is where "stale reads after acknowledgement" starts counting.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

import requests

FORWARDED = ("Content-Type", "X-Webhook-Secret", "X-Strapi-Event", "User-Agent")


@dataclass(frozen=True)
class Delivery:
    """One webhook as bffproxy answered it; ``acked_at`` is ``time.monotonic()`` after the answer."""

    event: str
    document_id: str
    status: int
    acked_at: float


class WebhookRelay:
    """A threaded HTTP server on 127.0.0.1 that forwards webhooks to ``target`` and records them."""

    def __init__(self, port: int, target: str) -> None:
        self.target = target
        self.deliveries: list[Delivery] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", port), self._handler_class())
        self._thread = threading.Thread(target=self._server.serve_forever, name="webhook-relay", daemon=True)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        relay = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status, answer = relay.forward(dict(self.headers.items()), body)
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                pass

        return Handler

    def forward(self, headers: dict[str, str], body: bytes) -> tuple[int, bytes]:
        """Send one delivery to bffproxy and record when it was acknowledged."""
        lowered = {name.lower(): value for name, value in headers.items()}
        wanted = {name: lowered[name.lower()] for name in FORWARDED if name.lower() in lowered}
        try:
            response = requests.post(self.target, data=body, headers=wanted, timeout=10)
            status, answer = response.status_code, response.content
        except requests.RequestException as exc:
            status, answer = 599, json.dumps({"relay_error": str(exc)}).encode()
        acked_at = time.monotonic()
        try:
            document_id = str(json.loads(body).get("entry", {}).get("documentId", ""))
        except (ValueError, AttributeError):
            document_id = ""
        with self._lock:
            self.deliveries.append(Delivery(lowered.get("x-strapi-event", ""), document_id, status, acked_at))
        return (status if status < 599 else 502), answer

    def find(self, event: str, document_id: str, after: float) -> Delivery | None:
        """The first delivery of ``event`` for ``document_id`` acknowledged after ``after``."""
        with self._lock:
            for delivery in self.deliveries:
                same = (delivery.event, delivery.document_id) == (event, document_id)
                if same and delivery.acked_at > after:
                    return delivery
        return None

    def __enter__(self) -> WebhookRelay:
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
