"""The store contract, run against SQLite and PostgreSQL on the migrated schema."""

from __future__ import annotations

import threading
import time
from itertools import pairwise

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import create_engine, text

from agentledger.events.payloads import (
    ObservationRecorded,
    Payload,
    TraceStarted,
    register,
    upcaster,
)
from agentledger.eventstore import NO_STREAM, ConcurrencyError, EventStore, SchemaTooNewError
from agentledger.eventstore.engine import parse_store_url
from agentledger.eventstore.errors import EventValidationError, StoreUnavailableError
from agentledger.eventstore.integrity import verify
from agentledger.eventstore.store import AppendRequest


def started(n: int = 0, **extra: object) -> TraceStarted:
    return TraceStarted(
        trace_id=f"t{n}", slot=n, input_index=n, iteration=0, input=f"input {n}", **extra
    )


def observation(n: int) -> ObservationRecorded:
    return ObservationRecorded(
        observation_id=f"o{n}", kind="event", name=f"step {n}", timestamp="2026-01-01T00:00:00Z"
    )


def raw_engine(store: EventStore):
    return create_engine(parse_store_url(store.location.url.render_as_string(False)).url)


def test_append_then_read_stream_returns_payloads_in_version_order(store: EventStore) -> None:
    store.append("trace-a", [started(0), observation(1), observation(2)], expected_version=0)
    events = store.read_stream("trace-a")
    assert [e.stream_version for e in events] == [1, 2, 3]
    assert [e.type for e in events] == [
        "TraceStarted",
        "ObservationRecorded",
        "ObservationRecorded",
    ]
    assert events[0].payload == started(0)


def test_positions_increase_across_streams_in_append_order(store: EventStore) -> None:
    first = store.append("trace-a", [started(0)])
    second = store.append("trace-b", [started(1), observation(1)])
    assert (first.first_position, first.last_position) == (1, 1)
    assert (second.first_position, second.last_position) == (2, 3)
    assert [e.position for e in store.read_all()] == [1, 2, 3]


def test_stale_expected_version_raises_and_writes_nothing(store: EventStore) -> None:
    store.append("trace-a", [started(0)], expected_version=NO_STREAM)
    with pytest.raises(
        ConcurrencyError, match="stream trace-a is at version 1, append expected version 0"
    ):
        store.append("trace-a", [observation(1), observation(2)], expected_version=NO_STREAM)
    assert len(store.read_stream("trace-a")) == 1
    assert store.last_position() == 1


def test_a_batch_with_one_stream_wrongly_expected_new_is_refused_whole_and_precisely(
    store: EventStore,
) -> None:
    store.append("trace-b", [started(0)], expected_version=NO_STREAM)
    batch = [
        AppendRequest(stream, [observation(n)], NO_STREAM)
        for n, stream in enumerate(["trace-a", "trace-b", "trace-c"])
    ]
    with pytest.raises(ConcurrencyError, match="stream trace-b is at version 1, append expected"):
        store.append_batch(batch)
    assert store.last_position() == 1 and store.read_stream("trace-a") == []
    store.append_batch([batch[0], batch[2]])
    assert [e.position for e in store.read_all()] == [1, 2, 3]
    assert verify(store).ok


def test_concurrent_appends_expecting_same_version_let_exactly_one_win(store: EventStore) -> None:
    store.append("trace-a", [started(0)])
    outcomes: list[str] = []
    barrier = threading.Barrier(4)

    def attempt(n: int) -> None:
        barrier.wait()
        try:
            store.append("trace-a", [observation(n)], expected_version=1)
            outcomes.append("won")
        except ConcurrencyError:
            outcomes.append("lost")

    threads = [threading.Thread(target=attempt, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["lost", "lost", "lost", "won"]
    assert [e.stream_version for e in store.read_stream("trace-a")] == [1, 2]


def test_appends_from_two_stores_to_one_stream_keep_one_chain(
    store_url: str, store: EventStore
) -> None:
    # Each store remembers the heads it wrote last; another writer makes them stale, and
    # every such append must still land on the real head, or fail on a real conflict.
    other = EventStore.open(store_url)
    try:
        store.append("trace-a", [started(0)])
        other.append("trace-a", [observation(1)])  # assumed a new stream: wrong
        store.append("trace-a", [observation(2)])  # remembers version 1: stale
        store.append("trace-a", [observation(3)], expected_version=3)
        other.append("trace-a", [observation(4)], expected_version=4)  # remembers 2
        with pytest.raises(ConcurrencyError, match="at version 5, append expected version 4"):
            store.append("trace-a", [observation(5)], expected_version=4)
        store.append("trace-a", [observation(5)])
        other.append_batch(  # remembers 5, the stream is at 6
            [
                AppendRequest("trace-a", [observation(6)]),
                AppendRequest("trace-a", [observation(7)], expected_version=7),
            ]
        )
        with pytest.raises(ConcurrencyError, match="at version 8, append expected version 0"):
            other.append("trace-a", [observation(8)], expected_version=NO_STREAM)
    finally:
        other.close()
    events = store.read_stream("trace-a")
    assert [e.stream_version for e in events] == list(range(1, 9))
    assert [e.position for e in events] == list(range(1, 9))
    assert [e.data.get("observation_id") for e in events[1:]] == [f"o{n}" for n in range(1, 8)]
    assert verify(store).ok


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(value=st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00")))
@example(value='q"uo\\te {a,b} NULL \u00e9\U0001f600 \x1f')
def test_any_text_is_stored_exactly(store: EventStore, value: str) -> None:
    # Quotes, backslashes, braces, commas, "NULL", control characters and non-ASCII must
    # come back byte for byte, and hash the same as when they were written.
    stream = f"misc-{value[:20]}".replace("\x00", "0")
    correlation = value[:200].replace("\x00", "0") or "c"
    written = store.append(stream, [_Renamed(text=value)], metadata={"correlation_id": correlation})
    [event] = store.read_stream(stream)[-1:]
    assert event.data == {"text": value}
    assert event.metadata["correlation_id"] == correlation
    assert event.stream_id == stream
    assert event.hash == written.hash
    assert verify(store).ok


def test_stream_heads_are_read_in_pages_in_stream_order(store: EventStore) -> None:
    for n in (3, 1, 5, 2, 4):
        store.append(f"trace-x-{n}", [observation(m) for m in range(n)])
    store.append("trace-y-1", [observation(0)])
    store.append("trace-x-9", [observation(0)], metadata={"correlation_id": "other"})
    heads = list(store.iter_stream_heads("trace-x-", page_size=2))
    assert [(s, v) for s, v, _ in heads] == [(f"trace-x-{n}", n) for n in (1, 2, 3, 4, 5)] + [
        ("trace-x-9", 1)
    ]
    assert all(h == store.stream_head(s)[1] for s, _, h in heads)
    assert list(store.stream_heads("trace-x-", "other")) == ["trace-x-9"]


def test_fold_reads_match_full_reads_page_by_page(store: EventStore) -> None:
    for n in (2, 1, 3):
        store.append(f"trace-x-{n}", [observation(m) for m in range(n + 2)])
    store.append("trace-y-1", [observation(0)])
    until = store.last_position() - 3
    for kwargs in ({"page_size": 2}, {"page_size": 3, "until": until}):
        full = [
            (
                e.position,
                e.stream_id,
                e.stream_version,
                e.type,
                e.schema_version,
                e.data,
                e.recorded_at,
            )
            for e in store.read_prefix("trace-x-", **kwargs)
        ]
        assert [tuple(e) for e in store.read_prefix_folds("trace-x-", **kwargs)] == full
        assert len(full) == (12 if "until" not in kwargs else 10)


def test_split_prefix_cuts_between_streams_into_runs_of_about_as_many_events(
    store: EventStore,
) -> None:
    for n in range(10):
        store.append(f"trace-x-{n}", [observation(i) for i in range(3)])
    store.append("trace-y-0", [observation(0)])  # outside the prefix
    assert store.split_prefix("trace-x-", 3) == ["trace-x-3", "trace-x-6"]
    assert store.split_prefix("trace-x-", 3, min_events=15) == ["trace-x-5"]
    assert store.split_prefix("trace-x-", 1) == []
    assert store.split_prefix("trace-z-", 4) == []
    # More parts than streams: one stream per run, none empty.
    many = store.split_prefix("trace-x-", 100)
    assert many == [f"trace-x-{n}" for n in range(1, 10)]
    bounds = [None, *many, None]
    runs = [list(store.read_prefix_folds("trace-x-", streams=pair)) for pair in pairwise(bounds)]
    assert all(runs)
    assert [e for run in runs for e in run] == list(store.read_prefix_folds("trace-x-"))


def test_a_forked_child_has_its_own_append_lock_and_connection(pg_cluster) -> None:
    # PostgreSQL only: appends there go through one kept connection and a cache of stream
    # heads under a lock (SQLite reads heads inside its write transaction).
    import os

    store = EventStore.open(pg_cluster.create_database())
    store.append("trace-a", [started(0)])  # opens the parent's append connection
    store._appends.lock.acquire()  # as if another thread were appending at the fork
    try:
        pid = os.fork()
        if pid == 0:  # the child appends and leaves without running any test machinery
            code = 1
            try:
                store.append("trace-a", [observation(1)])
                code = 0
            finally:
                os._exit(code)
        deadline = time.monotonic() + 30
        while (waited := os.waitpid(pid, os.WNOHANG))[0] == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        if waited[0] == 0:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            pytest.fail("the forked child hung on the append lock")
    finally:
        store._appends.lock.release()
    assert os.waitstatus_to_exitcode(waited[1]) == 0
    # The child neither used nor closed the parent's connection: it still appends.
    store.append("trace-a", [observation(2)])
    assert [e.stream_version for e in store.read_stream("trace-a")] == [1, 2, 3]
    store.close()


def test_text_array_literals_quote_every_value_and_keep_nulls() -> None:
    from agentledger.eventstore.postgres import text_array as _text_array

    assert _text_array([]) == "{}"
    assert _text_array(["a", 'b"c', "d\\e", ""]) == '{"a","b\\"c","d\\\\e",""}'
    assert _text_array(["a", None]) == '{"a",NULL}'
    # A value holding the joining character takes the value-by-value path, same quoting.
    assert _text_array(["x\x00y", "z"]) == '{"x\x00y","z"}'


def _drop_other_connections(url: str) -> None:
    """End every session of the database but this one, as a server restart would."""
    import psycopg

    others = (
        "SELECT pid FROM pg_stat_activity "
        "WHERE datname = current_database() AND pid <> pg_backend_pid()"
    )
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(f"SELECT pg_terminate_backend(pid) FROM ({others}) AS o")
        deadline = time.monotonic() + 30
        while admin.execute(others).fetchall() and time.monotonic() < deadline:
            time.sleep(0.05)


def test_an_append_on_a_dropped_connection_fails_in_one_line_and_the_next_reconnects(
    pg_cluster,
) -> None:
    url = pg_cluster.create_database()
    store = EventStore.open(url)
    store.append("trace-a", [started(0)])  # opens the append connection
    _drop_other_connections(url)
    with pytest.raises(StoreUnavailableError) as caught:
        store.append("trace-a", [observation(1)])
    assert "\n" not in str(caught.value)
    store.append("trace-a", [observation(2)])
    assert [e.stream_version for e in store.read_stream("trace-a")] == [1, 2]
    store.close()


def test_an_idle_append_connection_that_was_dropped_is_replaced_before_use(
    pg_cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    import agentledger.eventstore.postgres as postgres

    url = pg_cluster.create_database()
    store = EventStore.open(url)
    store.append("trace-a", [started(0)])
    _drop_other_connections(url)
    monkeypatch.setattr(postgres, "IDLE_CHECK_S", 0.0)  # as if idle for long
    store.append("trace-a", [observation(1)])  # checked, found dropped, reopened
    assert [e.stream_version for e in store.read_stream("trace-a")] == [1, 2]
    store.close()


def test_append_of_nothing_is_refused(store: EventStore) -> None:
    with pytest.raises(EventValidationError, match="no events"):
        store.append("trace-a", [])


def test_read_all_pages_through_every_event_after_a_position(store: EventStore) -> None:
    for n in range(25):
        store.append(f"trace-{n % 3}", [observation(n)])
    assert [e.position for e in store.read_all(after=7, page_size=4)] == list(range(8, 26))
    assert [e.position for e in store.read_all(after=7, until=12, page_size=4)] == list(
        range(8, 13)
    )


def test_read_all_filters_by_stream_type_and_correlation(store: EventStore) -> None:
    store.append("trace-a", [started(0), observation(1)], metadata={"correlation_id": "exp-1"})
    store.append("trace-b", [started(1)], metadata={"correlation_id": "exp-2"})
    assert [e.stream_id for e in store.read_all(stream_id="trace-b")] == ["trace-b"]
    assert [e.type for e in store.read_all(types=["ObservationRecorded"])] == [
        "ObservationRecorded"
    ]
    assert [e.position for e in store.read_all(correlation_id="exp-1")] == [1, 2]
    assert store.read_stream("trace-a")[0].correlation_id == "exp-1"


def test_subscribe_catches_up_then_follows_new_commits(store: EventStore) -> None:
    store.append("trace-a", [observation(1), observation(2)])
    seen: list[int] = []

    def writer() -> None:
        for n in range(3, 6):
            time.sleep(0.05)
            store.append("trace-a", [observation(n)])

    thread = threading.Thread(target=writer)
    thread.start()
    for event in store.subscribe(0, poll_interval=0.02, idle_timeout=5):
        seen.append(event.position)
        if len(seen) == 5:
            break
    thread.join()
    assert seen == [1, 2, 3, 4, 5]


def test_checkpoint_starts_at_zero_and_never_moves_backwards(store: EventStore) -> None:
    assert store.load_checkpoint("summary") == 0
    assert store.save_checkpoint("summary", 10) == 10
    assert store.save_checkpoint("summary", 4) == 10
    assert store.save_checkpoint("summary", 12) == 12
    assert store.load_checkpoint("other") == 0


def test_secrets_are_masked_before_they_are_stored(store: EventStore) -> None:
    secret = "sk-test-0123456789abcdef"
    store.redactor.add_secret("my-registered-secret-value")
    store.append(
        "trace-a",
        [
            started(
                0, call_args={"api_key": secret, "query": "q", "note": "my-registered-secret-value"}
            )
        ],
        metadata={
            "headers": {"Authorization": f"Bearer {secret}"},
            "url": f"https://x/?key={secret}",
        },
    )
    engine = raw_engine(store)
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT data, metadata FROM events")).all()
    engine.dispose()
    dump = repr(rows)
    assert secret not in dump
    assert "my-registered-secret-value" not in dump
    assert store.read_stream("trace-a")[0].data["call_args"] == {
        "api_key": "***",
        "query": "q",
        "note": "***",
    }


def test_metadata_shared_within_a_batch_is_stored_as_each_request_gave_it(
    store: EventStore,
) -> None:
    """A batch encodes each distinct metadata once: equal values of other types (1, 1.0,
    True), unhashable values and secrets are each still stored as given (masked)."""
    secret = "sk-test-0123456789abcdef"
    given = [
        {"correlation_id": "c1", "n": 1},
        {"correlation_id": "c1", "n": True},
        {"correlation_id": "c1", "n": 1.0},
        {"correlation_id": "c1", "n": [1]},
        {"correlation_id": "c1", "n": 1},
        {"correlation_id": "c2", "token": secret},
        {"correlation_id": "c2", "token": secret},
        None,
    ]
    store.append_batch(
        [AppendRequest(f"trace-{i}", [observation(i)], NO_STREAM, m) for i, m in enumerate(given)]
    )
    stored = [store.read_stream(f"trace-{i}")[0] for i in range(len(given))]
    shown = [
        {k: v for k, v in e.metadata.items() if k in ("correlation_id", "n", "token")}
        for e in stored
    ]
    assert shown[:5] == given[:5]
    assert [type(m["n"]) for m in shown[:5]] == [int, bool, float, list, int]
    assert shown[5] == shown[6] == {"correlation_id": "c2", "token": "***"}
    assert shown[7] == {} and [e.correlation_id for e in stored] == ["c1"] * 5 + ["c2"] * 2 + [None]
    with pytest.raises(EventValidationError, match="correlation_id"):
        store.append_batch(
            [
                AppendRequest("trace-x", [observation(9)], NO_STREAM, {"correlation_id": "ok"}),
                AppendRequest("trace-y", [observation(9)], NO_STREAM, {"correlation_id": "a\x00"}),
            ]
        )


def test_store_migrates_itself_to_head_on_first_use(store: EventStore) -> None:
    from agentledger import migrations

    assert store.schema_revision() == migrations.head_revision()


def test_store_at_an_older_revision_upgrades_and_keeps_appending(
    store_url: str, store: EventStore
) -> None:
    from alembic import command

    from agentledger import migrations

    store.append("trace-a", [started(0)])
    engine = raw_engine(store)
    with engine.begin() as conn:
        command.downgrade(migrations._config(conn), "0002")
    engine.dispose()
    store.close()
    with pytest.raises(Exception, match="run `agentledger db upgrade`"):
        EventStore.open(store_url, schema="require")
    reopened = EventStore.open(store_url)
    try:
        assert reopened.schema_revision() == migrations.head_revision()
        reopened.append("trace-a", [observation(1)], expected_version=1)
        assert [e.stream_version for e in reopened.read_stream("trace-a")] == [1, 2]
        assert verify(reopened).ok
    finally:
        reopened.close()


def test_store_with_newer_schema_is_refused(store_url: str, store: EventStore) -> None:
    engine = raw_engine(store)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    engine.dispose()
    with pytest.raises(SchemaTooNewError, match=r"newer agentledger .* upgrade agentledger"):
        EventStore.open(store_url)


def _database_contents(engine) -> list:
    from sqlalchemy import inspect

    with engine.connect() as conn:
        names = sorted(inspect(conn).get_table_names())
        return [(name, conn.execute(text(f"SELECT * FROM {name}")).all()) for name in names]


@pytest.mark.parametrize("stamp", ["ae1027a6acf", "0001"])
@pytest.mark.parametrize(
    "how",
    [
        pytest.param({}, id="open"),
        pytest.param({"create": False, "schema": "require", "readonly": True}, id="read"),
        pytest.param({"create": False, "schema": "skip"}, id="db-current"),
    ],
)
def test_another_programs_alembic_database_is_refused_as_foreign_and_left_untouched(
    store_url: str, stamp: str, how: dict
) -> None:
    # Another alembic-managed application's database: a stamp (of its own revision, or
    # one that happens to look like ours) and its tables, but no event log.
    engine = create_engine(parse_store_url(store_url).url)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL)"))
        conn.execute(text("INSERT INTO alembic_version VALUES (:v)"), {"v": stamp})
        conn.execute(text("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)"))
        conn.execute(text("INSERT INTO customers (id, name) VALUES (1, 'ada')"))
    before = _database_contents(engine)
    location = parse_store_url(store_url)
    file_before = location.path.read_bytes() if location.path is not None else None
    with pytest.raises(StoreUnavailableError) as refused:
        # `db current` opens without a schema check, then asks for the revision.
        EventStore.open(store_url, **how).schema_revision()
    message = str(refused.value)
    assert "is not an agentledger store: it holds another program's tables" in message
    assert "(alembic_version, customers)" in message and "newer" not in message
    assert _database_contents(engine) == before
    engine.dispose()
    if location.path is not None:
        assert location.path.read_bytes() == file_before
        assert [p.name for p in location.path.parent.iterdir()] == [location.path.name]


@register
class _Renamed(Payload):
    """Test-only payload at schema version 2 (field ``text`` was ``message`` in v1)."""

    text: str


@upcaster("_Renamed", 1)
def _renamed_v1_to_v2(data: dict) -> dict:
    return {"text": data["message"]}


def test_old_schema_versions_are_upcast_on_read(store: EventStore, monkeypatch) -> None:
    store.append("misc-1", [_Renamed(text="new")])
    engine = raw_engine(store)
    with engine.begin() as conn:
        conn.execute(text("""UPDATE events SET data = '{"message":"old"}', schema_version = 1"""))
    engine.dispose()
    monkeypatch.setattr(_Renamed, "schema_version", 2)
    assert store.read_stream("misc-1")[0].payload == _Renamed(text="old")


def test_event_from_newer_schema_version_is_refused_on_decode(store: EventStore) -> None:
    store.append("misc-1", [_Renamed(text="x")])
    engine = raw_engine(store)
    with engine.begin() as conn:
        conn.execute(text("UPDATE events SET schema_version = 7"))
    engine.dispose()
    with pytest.raises(EventValidationError, match="schema version 7, newer"):
        _ = store.read_stream("misc-1")[0].payload


def test_a_new_sqlite_store_gets_the_schema_alembic_would_build(tmp_path) -> None:
    import sqlite3

    from agentledger import migrations

    EventStore.open(str(tmp_path / "direct.db")).close()  # created at HEAD in one go
    engine = create_engine(f"sqlite:///{tmp_path / 'migrated.db'}")
    with engine.begin() as conn:
        migrations.upgrade(conn)  # every revision replayed by alembic
    engine.dispose()

    def schema(name: str) -> list[tuple]:
        with sqlite3.connect(tmp_path / name) as conn:
            master = conn.execute("SELECT type, name, tbl_name, sql FROM sqlite_master").fetchall()
            stamp = conn.execute("SELECT version_num FROM alembic_version").fetchall()
        return sorted(master) + stamp

    assert schema("direct.db") == schema("migrated.db")


def test_migrations_head_constant_matches_alembic() -> None:
    from agentledger import migrations

    head, revisions = migrations.alembic_revisions()
    assert (head, revisions) == (migrations.HEAD, set(migrations.REVISIONS))


@pytest.mark.parametrize(
    ("stream_id", "correlation_id"),
    [
        ("trace-" + "x" * 200, None),
        ("trace-a\x00b", None),
        ("", None),
        ("trace-ok", "c" * 201),
        ("trace-ok", "nul\x00"),
        ("trace-ok", "bad \ud800"),
    ],
)
def test_ids_either_backend_cannot_store_are_refused_in_one_line(
    store: EventStore, stream_id: str, correlation_id: str | None
) -> None:
    metadata = {"correlation_id": correlation_id} if correlation_id is not None else None
    with pytest.raises(EventValidationError, match="is not storable: use 1-200 characters"):
        store.append(stream_id, [observation(1)], metadata=metadata)
    assert store.last_position() == 0


def test_lone_surrogates_in_event_data_are_stored_as_their_escape_text(store: EventStore) -> None:
    written = store.append("trace-s", [_Renamed(text="bad \ud800 here \udcff")])
    [event] = store.read_stream("trace-s")
    assert event.data == {"text": "bad \\ud800 here \\udcff"}
    assert event.hash == written.hash
    assert verify(store).ok


def test_a_malformed_fault_hold_is_refused_in_one_line(
    tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from agentledger.eventstore.errors import StoreError
    from agentledger.eventstore.faults import HOLD_VARIABLE

    monkeypatch.setenv(HOLD_VARIABLE, "TraceCompleted:second:/tmp/x")
    with pytest.raises(StoreError, match="expected TYPE:N:PATH"):
        EventStore.open(str(tmp_path / "ledger.db"))


def test_a_fault_hold_stops_the_nth_append_of_its_type_until_released(
    tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from agentledger.eventstore.faults import HOLD_VARIABLE

    hold = tmp_path / "hold"
    hold.touch()
    monkeypatch.setenv(HOLD_VARIABLE, f"ObservationRecorded:2:{hold}")
    with EventStore.open(str(tmp_path / "ledger.db")) as store:
        store.append("trace-a", [started(0), observation(1)])  # the first: not held
        second = threading.Thread(target=store.append, args=("trace-a", [observation(2)]))
        second.start()
        for _ in range(3000):  # a bound on a hang, not a timing assertion
            if (tmp_path / "hold.held").exists():
                break
            time.sleep(0.01)
        assert store.last_position() == 2  # held before its append
        hold.unlink()
        second.join(timeout=30)
        assert store.last_position() == 3
        store.append("trace-a", [observation(3)])  # held once only
        assert store.last_position() == 4
