"""The SQLite event log: order, replay, per-tenant isolation, retention by count and age, restarts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bffproxy import ConfigError, create_app
from bffproxy.event_log import SqliteEventLog

from .conftest import FakeClock


def event(n: int) -> dict[str, Any]:
    return {"type": "published", "collection": "articles", "documentId": f"doc{n}"}


@pytest.fixture
def log(tmp_path: Path, clock: FakeClock) -> SqliteEventLog:
    return SqliteEventLog(str(tmp_path / "events.sqlite3"), max_count=100, max_age=3600, clock=clock)


def docs(events: list[Any]) -> list[str]:
    return [e.fields["documentId"] for e in events]


def test_ids_increase_and_replay_starts_after_the_given_id(log: SqliteEventLog) -> None:
    ids = [log.append("default", event(n)) for n in range(5)]
    assert [int(i) for i in ids] == sorted(int(i) for i in ids) and len(set(ids)) == 5
    assert docs(log.read_after("default", "0", 10)) == [f"doc{n}" for n in range(5)]
    assert docs(log.read_after("default", ids[2], 10)) == ["doc3", "doc4"]
    assert docs(log.read_after("default", ids[0], 2)) == ["doc1", "doc2"]  # a batch, then the next
    assert log.read_after("default", ids[4], 10) == []
    assert log.head("default") == ids[4]


def test_tenants_do_not_see_each_others_events(log: SqliteEventLog) -> None:
    log.append("a", event(1))
    log.append("b", event(2))
    assert docs(log.read_after("a", "0", 10)) == ["doc1"]
    assert docs(log.read_after("b", "0", 10)) == ["doc2"]


def test_the_log_survives_a_restart_and_never_reuses_an_id(tmp_path: Path, clock: FakeClock) -> None:
    path = str(tmp_path / "events.sqlite3")
    first = SqliteEventLog(path, max_count=2, max_age=3600, clock=clock)
    ids = [first.append("default", event(n)) for n in range(3)]  # the first one is pruned
    again = SqliteEventLog(path, max_count=2, max_age=3600, clock=clock)
    assert docs(again.read_after("default", ids[0], 10)) == ["doc1", "doc2"]
    assert int(again.append("default", event(3))) > int(ids[-1])


def test_retention_by_count_tells_a_reader_that_history_is_gone(tmp_path: Path, clock: FakeClock) -> None:
    log = SqliteEventLog(str(tmp_path / "e.sqlite3"), max_count=3, max_age=3600, clock=clock)
    ids = [log.append("default", event(n)) for n in range(5)]
    assert docs(log.read_after("default", "0", 10)) == ["doc2", "doc3", "doc4"]
    assert log.is_gone("default", ids[0])  # doc1 was pruned after it
    assert not log.is_gone("default", ids[1])  # everything after doc1 is still there
    assert not log.is_gone("default", ids[4])


def test_retention_by_age(tmp_path: Path, clock: FakeClock) -> None:
    log = SqliteEventLog(str(tmp_path / "e.sqlite3"), max_count=100, max_age=60, clock=clock)
    old = log.append("default", event(1))
    clock.advance(61)
    log.append("default", event(2))
    assert docs(log.read_after("default", "0", 10)) == ["doc2"]
    assert log.is_gone("default", "0") and not log.is_gone("default", old)


def test_an_id_never_handed_out_is_gone_and_a_malformed_one_is_not_an_id(log: SqliteEventLog) -> None:
    last = log.append("default", event(1))
    assert log.is_gone("default", str(int(last) + 5))  # from another (older, recreated) log
    assert not log.is_gone("default", "0")
    assert log.parse_id("0042") == "42"
    for bad in ("", "-1", "1.5", "1-0", "abc", "1" * 19, "١٢"):
        assert log.parse_id(bad) is None


def test_settings_are_checked_at_start_up(config: dict[str, Any], tmp_path: Path) -> None:
    app = create_app(config)
    assert app.config["EVENTS_DB"] == str(tmp_path / "cache" / "events.sqlite3")
    for key, value in (("EVENTS_MAX_COUNT", "0"), ("EVENTS_MAX_AGE", "soon"), ("EVENTS_HEARTBEAT", "0")):
        with pytest.raises(ConfigError, match=f"BFFPROXY_{key}"):
            create_app({**config, key: value})
    with pytest.raises(ConfigError, match="BFFPROXY_EVENTS_DB"):
        create_app({**config, "EVENTS_DB": str(tmp_path / "missing" / "e.sqlite3")})
