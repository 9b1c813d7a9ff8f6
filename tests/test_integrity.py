"""verify names the first modified, deleted, inserted or reordered event (direct DB edits)."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, text

from eventstore import EventStore
from eventstore.engine import parse_store_url
from eventstore.integrity import verify
from eventstore.payloads import ObservationRecorded


def obs(n: int) -> ObservationRecorded:
    return ObservationRecorded(
        observation_id=f"o{n}", kind="event", name=f"step {n}", timestamp="2026-01-01T00:00:00Z"
    )


@pytest.fixture
def filled(store: EventStore) -> EventStore:
    for n in range(1, 6):
        store.append("trace-a", [obs(n)])
        store.append("trace-b", [obs(10 + n)])
    return store


def edit(store: EventStore, *statements: str | tuple[str, dict]) -> None:
    """Change the database behind the store's back, as a tamperer would."""
    engine = create_engine(parse_store_url(store.location.url.render_as_string(False)).url)
    with engine.begin() as conn:
        for statement in statements:
            sql, params = statement if isinstance(statement, tuple) else (statement, {})
            conn.execute(text(sql), params)
    engine.dispose()


FORGED_DATA = (
    '{"data":{},"kind":"log","level":null,"name":"forged","observation_id":"x",'
    '"parent_id":null,"timestamp":"2026-01-01T00:00:00Z"}'
)


def event_at(store: EventStore, stream: str, version: int) -> tuple[int, str]:
    event = store.read_stream(stream)[version - 1]
    return event.position, event.event_id


def test_intact_log_verifies_clean(filled: EventStore) -> None:
    report = verify(filled)
    assert report.ok
    assert (report.streams, report.events) == (2, 10)


def test_modified_event_is_named(filled: EventStore) -> None:
    position, event_id = event_at(filled, "trace-a", 3)
    edit(
        filled,
        f"UPDATE events SET data = replace(data, 'step 3', 'step X') WHERE position = {position}",
    )
    [problem] = verify(filled).problems
    assert (problem.kind, problem.stream_id, problem.stream_version) == ("modified", "trace-a", 3)
    assert problem.event_id == event_id


def test_deleted_event_is_named_by_its_missing_version(filled: EventStore) -> None:
    position, _ = event_at(filled, "trace-a", 3)
    edit(filled, f"DELETE FROM events WHERE position = {position}")
    [problem] = verify(filled).problems
    assert (problem.kind, problem.stream_id, problem.stream_version) == ("deleted", "trace-a", 3)
    assert "version 3 is missing" in problem.describe()


def _insert_at_version_3(store: EventStore, hash_value: str) -> None:
    template = store.read_stream("trace-a")[1]
    edit(
        store,
        "UPDATE events SET stream_version = stream_version + 100 "
        "WHERE stream_id = 'trace-a' AND stream_version >= 3",
        "UPDATE events SET stream_version = stream_version - 99 "
        "WHERE stream_id = 'trace-a' AND stream_version >= 103",
        (
            "INSERT INTO events (position, event_id, stream_id, stream_version, type, "
            "schema_version, correlation_id, data, metadata, recorded_at, hash) VALUES "
            "(1000, 'forged-event', 'trace-a', 3, 'ObservationRecorded', 1, NULL, "
            ":data, '{}', :recorded_at, :hash)",
            {"data": FORGED_DATA, "recorded_at": template.recorded_at, "hash": hash_value},
        ),
    )


def test_inserted_event_with_a_bogus_hash_is_named(filled: EventStore) -> None:
    _insert_at_version_3(filled, "0" * 64)
    [problem] = verify(filled).problems
    assert (problem.kind, problem.event_id, problem.stream_version) == (
        "inserted",
        "forged-event",
        3,
    )


def test_inserted_event_with_a_recomputed_hash_is_named(filled: EventStore) -> None:
    from eventstore.envelope import chain_hash

    v2 = filled.read_stream("trace-a")[1]
    forged = chain_hash(
        v2.hash,
        "forged-event",
        "trace-a",
        "ObservationRecorded",
        1,
        v2.recorded_at,
        FORGED_DATA,
        "{}",
    )
    _insert_at_version_3(filled, forged)
    [problem] = verify(filled).problems
    assert (problem.kind, problem.event_id) == ("inserted", "forged-event")


def swap_versions_3_and_4(store: EventStore, column: str) -> str:
    """Swap ``column`` between v3 and v4 of trace-a; returns v4's event id."""
    v3, v4 = store.read_stream("trace-a")[2:4]
    a, b = getattr(v3, column), getattr(v4, column)
    edit(
        store,
        f"UPDATE events SET {column} = -1 WHERE event_id = '{v3.event_id}'",
        f"UPDATE events SET {column} = {a} WHERE event_id = '{v4.event_id}'",
        f"UPDATE events SET {column} = {b} WHERE event_id = '{v3.event_id}'",
    )
    return v4.event_id


def test_events_swapped_in_position_are_reported_reordered(filled: EventStore) -> None:
    id4 = swap_versions_3_and_4(filled, "position")
    [problem] = verify(filled).problems
    assert (problem.kind, problem.stream_id, problem.event_id) == ("reordered", "trace-a", id4)


def test_events_swapped_in_version_are_reported_reordered(filled: EventStore) -> None:
    id4 = swap_versions_3_and_4(filled, "stream_version")
    [problem] = verify(filled).problems
    assert (problem.kind, problem.event_id, problem.stream_version) == ("reordered", id4, 3)


def test_problems_are_reported_per_stream_first_position_first(filled: EventStore) -> None:
    pa, _ = event_at(filled, "trace-a", 4)
    pb, _ = event_at(filled, "trace-b", 2)
    edit(
        filled,
        f"UPDATE events SET data = replace(data, 'step', 'stop') WHERE position = {pa}",
        f"UPDATE events SET data = replace(data, 'step', 'stop') WHERE position = {pb}",
    )
    problems = verify(filled).problems
    assert [p.stream_id for p in problems] == ["trace-b", "trace-a"]
