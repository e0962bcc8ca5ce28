"""Event subscribers for the e2e tests: an EventSource-like SSE reader and a WebSocket one, each
putting what arrives into a queue the test takes from with a deadline."""

from __future__ import annotations

import json
import queue
import threading
import uuid
from typing import Any

import pytest
import requests
import websocket

DEADLINE = 2.0  # seconds from a change in Strapi to its event on the client (the bound)
QUIET = 1.0  # seconds a stream is watched for an event that must not come


class SseClient:
    """An EventSource-like reader of GET /api/events: events (heartbeats dropped) into a queue."""

    def __init__(self, url: str, headers: dict[str, str] | None = None) -> None:
        self.response = requests.get(url, headers=headers or {}, stream=True, timeout=(5, 30))
        assert self.response.status_code == 200, self.response.text
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        buffer = ""
        try:
            for chunk in self.response.iter_content(chunk_size=None, decode_unicode=True):
                buffer += chunk
                while "\n\n" in buffer:
                    message, buffer = buffer.split("\n\n", 1)
                    fields = dict(line.split(": ", 1) for line in message.split("\n") if ": " in line)
                    if "event" in fields:
                        self.events.put({**fields, "data": json.loads(fields["data"])})
        except (requests.RequestException, AttributeError, ValueError):
            pass  # closed by the test

    def take(self, count: int, within: float = DEADLINE) -> list[dict[str, Any]]:
        """Exactly ``count`` events, each within ``within`` seconds of the previous one."""
        return [self.events.get(timeout=within) for _ in range(count)]

    def nothing_more(self) -> None:
        """No further event arrives while the stream is watched for QUIET seconds."""
        with pytest.raises(queue.Empty):
            extra = self.events.get(timeout=QUIET)
            raise AssertionError(f"unexpected event {extra}")

    def close(self) -> None:
        self.response.close()


def kinds(events: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(e["event"], e["data"]["documentId"]) for e in events]


class WsClient:
    """A WebSocket subscriber: frames (events and control answers) into a queue."""

    def __init__(self, url: str, subscribe: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        header = [f"{k}: {v}" for k, v in (headers or {}).items()]
        self.ws = websocket.create_connection(url, header=header, timeout=30)
        self.ws.send(json.dumps({"subscribe": subscribe}))
        ack = json.loads(self.ws.recv())
        assert ack["type"] == "subscribed", ack
        self.frames: queue.Queue[dict[str, Any]] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        try:
            while True:
                self.frames.put(json.loads(self.ws.recv()))
        except (websocket.WebSocketException, OSError, ValueError):
            pass  # closed by the test

    def take(self, count: int) -> list[tuple[str, str]]:
        frames = [self.frames.get(timeout=DEADLINE) for _ in range(count)]
        return [(f["type"], f["documentId"]) for f in frames]

    def nothing_more(self) -> None:
        with pytest.raises(queue.Empty):
            extra = self.frames.get(timeout=1.0)
            raise AssertionError(f"unexpected frame {extra}")

    def close(self) -> None:
        self.ws.close()


def title() -> str:
    return f"E2E events {uuid.uuid4().hex[:12]}"
