"""verify names the first modified, deleted, inserted or reordered event (direct DB edits)."""

from __future__ import annotations

import orjson
import pytest
from sqlalchemy import create_engine, text

from agentledger.events.payloads import ObservationRecorded
from agentledger.eventstore import EventStore
from agentledger.eventstore.engine import parse_store_url
from agentledger.eventstore.integrity import verify


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
    from agentledger.eventstore.envelope import chain_hash

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


# --- experiment seals: what completion sealed must still be there -----------------------

EXP = "e1"


@pytest.fixture
def sealed(store: EventStore) -> EventStore:
    """An experiment of two finished traces, completed (and so sealed)."""
    from agentledger.events.payloads import TraceCompleted, TraceFailed, TraceStarted
    from agentledger.experiments.outcomes import completed_event

    meta = {"correlation_id": EXP}
    for slot, final in (
        (1, TraceCompleted(duration_ms=1.0)),
        (2, TraceFailed(error_type="E", error_message="boom", duration_ms=1.0)),
    ):
        started = TraceStarted(
            trace_id=f"{EXP}-{slot}", slot=slot, input_index=0, iteration=0, input="x"
        )
        store.append(f"trace-{EXP}-{slot}", [started, obs(slot), final], metadata=meta)
    store.append(f"experiment-{EXP}", [completed_event(store, EXP, 2, 1, 1)], metadata=meta)
    return store


def seal_problems(store: EventStore) -> list[tuple[str, str, str]]:
    report = verify(store)
    return [(p.kind, p.stream_id, p.detail) for p in report.problems]


def test_a_completed_experiment_is_sealed_once_and_verifies(sealed: EventStore) -> None:
    report = verify(sealed)
    assert (report.ok, report.seals, report.streams) == (True, 1, 3)
    [completion] = sealed.read_stream(f"experiment-{EXP}")
    assert completion.data["sealed_traces"] == 2
    assert completion.data["seals"] == {}


def test_a_sealed_trace_that_lost_its_final_event_is_named(sealed: EventStore) -> None:
    position, _ = event_at(sealed, f"trace-{EXP}-1", 3)
    edit(sealed, f"DELETE FROM events WHERE position = {position}")
    [(kind, stream, detail)] = seal_problems(sealed)
    assert (kind, stream) == ("deleted", f"trace-{EXP}-1")
    assert "lost its tail after the seal of experiment-e1" in detail
    assert "ends at version 2 without a final TraceCompleted or TraceFailed" in detail


def test_a_sealed_trace_that_grew_after_completion_is_named(sealed: EventStore) -> None:
    sealed.append(f"trace-{EXP}-2", [obs(9)], metadata={"correlation_id": EXP})
    [(kind, stream, detail)] = seal_problems(sealed)
    assert (kind, stream) == ("inserted", f"trace-{EXP}-2")
    assert "grew after the seal of experiment-e1" in detail


def test_a_sealed_trace_stream_deleted_whole_is_counted(sealed: EventStore) -> None:
    edit(sealed, f"DELETE FROM events WHERE stream_id = 'trace-{EXP}-2'")
    [(kind, stream, detail)] = seal_problems(sealed)
    assert (kind, stream) == ("deleted", f"experiment-{EXP}")
    assert detail == "1 of the 2 trace streams it sealed are gone"


def test_a_sealed_trace_rewritten_with_recomputed_hashes_breaks_the_seal(
    sealed: EventStore,
) -> None:
    from agentledger.eventstore.envelope import chain_hash

    v2, v3 = sealed.read_stream(f"trace-{EXP}-1")[1:3]
    data = (
        '{"attempts":1,"conversation_state":null,"duration_ms":99.0,"output":"forged",'
        '"termination_reason":null,"turn_count":1}'
    )
    raw = next(e for e in sealed.read_raw() if e.event_id == v3.event_id)
    forged = chain_hash(
        v2.hash, v3.event_id, v3.stream_id, v3.type, 1, v3.recorded_at, data, raw.metadata_json
    )
    edit(
        sealed,
        (
            "UPDATE events SET data = :data, hash = :hash WHERE event_id = :id",
            {"data": data, "hash": forged, "id": v3.event_id},
        ),
    )
    [(kind, stream, detail)] = seal_problems(sealed)
    assert (kind, stream) == ("modified", f"experiment-{EXP}")
    assert "no longer match its seal (2 sealed)" in detail


def test_completions_sealed_per_trace_before_digests_are_still_checked(
    store: EventStore,
) -> None:
    from agentledger.events.payloads import ExperimentCompleted, TraceSeal

    store.append("trace-old-1", [obs(1), obs(2)])
    head = store.read_stream("trace-old-1")[-1]
    completion = ExperimentCompleted(
        experiment_id="old",
        total_traces=1,
        successful=1,
        failed=0,
        seals={"trace-old-1": TraceSeal(version=2, hash=head.hash)},
    )
    store.append("experiment-old", [completion])
    assert verify(store).ok
    edit(store, f"DELETE FROM events WHERE position = {head.position}")
    [(kind, stream, detail)] = seal_problems(store)
    assert (kind, stream) == ("deleted", "trace-old-1")
    assert "sealed at version 2" in detail and "now ends at version 1" in detail


@pytest.mark.parametrize(
    ("seal", "detail"),
    [
        ({"sealed_traces": "two", "seal": "x"}, "its seal is not a trace count and a digest"),
        ({"seals": {"trace-e1-1": {"version": "v"}}}, "its seals are malformed"),
    ],
)
def test_a_malformed_seal_is_reported_not_crashed_on(
    sealed: EventStore, seal: dict, detail: str
) -> None:
    [completion] = sealed.read_stream(f"experiment-{EXP}")
    data = orjson.dumps({**completion.data, **seal}, option=orjson.OPT_SORT_KEYS).decode()
    edit(
        sealed,
        (
            "UPDATE events SET data = :d WHERE event_id = :id",
            {"d": data, "id": completion.event_id},
        ),
    )
    problems = seal_problems(sealed)
    # The edit itself breaks the chain; the seal it carries is reported, not crashed on.
    assert [(kind, stream) for kind, stream, _ in problems] == [
        ("modified", f"experiment-{EXP}")
    ] * 2
    assert ("modified", f"experiment-{EXP}", detail) in problems


def test_a_trace_that_ended_twice_is_reported_as_duplicated(store: EventStore) -> None:
    from agentledger.events.payloads import TraceCompleted

    done = TraceCompleted(output="x", duration_ms=1.0, attempts=1)
    store.append("trace-e1-000001", [obs(1), done])
    store.append("trace-e1-000001", [obs(2), done])  # a second process ran the same slot
    report = verify(store)
    assert not report.ok
    [problem] = report.problems
    assert (problem.kind, problem.stream_id, problem.stream_version) == (
        "duplicated",
        "trace-e1-000001",
        4,
    )
    assert "a second final TraceCompleted: the stream already ended at v2" in problem.describe()
