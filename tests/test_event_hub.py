"""The event hub: one log reader per process and tenant, bounded mailboxes, the seam's cursor."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from bffproxy.event_hub import BATCH, MAILBOX_BATCHES, OVERFLOW, POLL_INTERVAL, Hub, Rewind
from bffproxy.event_log import SqliteEventLog


def event(n: int) -> dict[str, Any]:
    return {"type": "published", "collection": "articles", "documentId": f"doc{n}", "audience": "everyone"}


@pytest.fixture
def log(tmp_path: Path) -> SqliteEventLog:
    return SqliteEventLog(str(tmp_path / "events.sqlite3"), max_count=10_000, max_age=86_400)


def test_join_hands_out_the_cursor_the_mailbox_receives_after(log: SqliteEventLog) -> None:
    hub = Hub(log, threaded=False)
    before = log.append("t", event(0))
    mailbox, cursor = hub.join("t")
    assert cursor == before
    first = log.append("t", event(1))
    assert hub.poll("t") == 1
    batch = mailbox.take()
    assert isinstance(batch, list) and [e.id for e in batch] == [first]
    assert mailbox.take() is None and hub.poll("t") == 0


def test_one_read_reaches_every_mailbox_of_the_tenant_and_no_other(log: SqliteEventLog) -> None:
    hub = Hub(log, threaded=False)
    boxes = [hub.join("t")[0] for _ in range(3)]
    other, _ = hub.join("u")
    log.append("t", event(1))
    hub.poll("t")
    assert all(isinstance(box.take(), list) for box in boxes)
    assert other.take() is None
    assert hub.subscribers("t") == 3 and hub.subscribers() == 4
    hub.leave(boxes[0])
    assert hub.subscribers("t") == 2


def test_a_mailbox_that_is_never_read_gets_overflow_once_and_then_nothing(log: SqliteEventLog) -> None:
    hub = Hub(log, threaded=False)
    slow, _ = hub.join("t")
    for n in range(MAILBOX_BATCHES + 5):
        log.append("t", event(n))
        hub.poll("t")
    items = []
    while (item := slow.take()) is not None:
        items.append(item)
    assert len(items) == MAILBOX_BATCHES + 1
    assert items[-1] == OVERFLOW and all(isinstance(i, list) for i in items[:-1])


def test_a_backlog_is_read_a_batch_at_a_time(log: SqliteEventLog) -> None:
    hub = Hub(log, threaded=False)
    hub.join("t")
    for n in range(BATCH + 7):
        log.append("t", event(n))
    assert hub.poll("t") == BATCH
    assert hub.poll("t") == 7


def test_a_log_pruned_past_the_cursor_rewinds_every_mailbox(tmp_path: Path) -> None:
    small = SqliteEventLog(str(tmp_path / "small.sqlite3"), max_count=2, max_age=86_400)
    small.append("t", event(0))
    hub = Hub(small, threaded=False)
    mailbox, _ = hub.join("t")
    for n in range(5):  # the poller stalled: three of these are pruned before it reads them
        small.append("t", event(n))
    hub.poll("t")
    rewind = mailbox.take()
    assert isinstance(rewind, Rewind) and rewind.head == small.head("t")
    assert mailbox.take() is None
    hub._tenants["t"].cursor = "999"  # a cursor the log never handed out (a recreated log)
    hub.poll("t")
    assert isinstance(mailbox.take(), Rewind)


def test_the_poller_thread_survives_a_failing_log_and_delivers_once_it_recovers(
    log: SqliteEventLog, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    failures = {"left": 3}
    real = log.read_after

    def flaky(*args: Any) -> Any:
        if failures["left"]:
            failures["left"] -= 1
            raise OSError("disk gone")
        return real(*args)

    monkeypatch.setattr(log, "read_after", flaky)
    hub = Hub(log, poll_interval=0.001)
    mailbox, _ = hub.join("t")
    appended = log.append("t", event(1))
    batch = mailbox.wait(10)
    assert isinstance(batch, list) and batch[0].id == appended
    errors = [r for r in caplog.records if "cannot be read" in r.getMessage()]
    assert len(errors) == 1  # logged once, not once per retry
    assert sum(t.name == "events-hub-t" for t in threading.enumerate()) == 1
    hub.join("t")  # a second subscriber starts no second poller
    assert sum(t.name == "events-hub-t" for t in threading.enumerate()) == 1


def test_a_quiet_poller_reads_the_log_again_after_a_tenth_of_a_second(log: SqliteEventLog) -> None:
    """The interval is what a quiet log adds to an event's latency at most (make bench-events)."""

    class Stop(Exception):
        pass

    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        raise Stop

    hub = Hub(log, threaded=False, sleep=sleep)
    hub.join("t")
    with pytest.raises(Stop):
        hub._run("t")
    assert slept == [POLL_INTERVAL] and POLL_INTERVAL <= 0.1
