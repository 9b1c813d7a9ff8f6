"""The tamper matrix: every edit a writer of the database can make, against each verify
mode (plain, against a checkpoint taken before, with a signing key), on both backends.

A mode must detect everything its documentation says it detects (docs/event-store.md);
the cases it cannot detect are listed as such, and the test checks those too, so the
documentation stays true."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Connection

from agentledger.events.payloads import ObservationRecorded, TraceCompleted
from agentledger.eventstore import EventStore
from agentledger.eventstore.checkpoint import KEY_VARIABLE, compare, signing_key, take_checkpoint
from agentledger.eventstore.engine import parse_store_url
from agentledger.eventstore.envelope import GENESIS_HASH, chain_hash, encode_json
from agentledger.eventstore.errors import StoreDamagedError
from agentledger.eventstore.integrity import seal_digest, verify
from agentledger.experiments.outcomes import completed_event

EXPERIMENT = "e1"
TRACES = [f"trace-{EXPERIMENT}-00000{n}" for n in range(3)]
LOOSE = "trace-loose-1"
"""A stream of no experiment, never sealed, written last."""


def obs(n: int) -> ObservationRecorded:
    return ObservationRecorded(
        observation_id=f"o{n}", kind="event", name=f"step {n}", timestamp="2026-01-01T00:00:00Z"
    )


def build(store: EventStore) -> None:
    meta = {"correlation_id": EXPERIMENT}
    for n, trace in enumerate(TRACES):
        done = TraceCompleted(output=f"out {n}", duration_ms=1.0, attempts=1)
        store.append(trace, [obs(10 * n), obs(10 * n + 1), obs(10 * n + 2), done], metadata=meta)
    completion = completed_event(store, EXPERIMENT, 3, 3, 0)
    store.append(f"experiment-{EXPERIMENT}", [completion], metadata=meta)
    store.append(LOOSE, [obs(100), obs(101), obs(102)])


def rows(conn: Connection, stream: str) -> list[Any]:
    return conn.execute(
        text(
            "SELECT position, event_id, type, schema_version, recorded_at, data, metadata "
            "FROM events WHERE stream_id = :s ORDER BY stream_version"
        ),
        {"s": stream},
    ).all()


def rechain(conn: Connection, stream: str, data: Callable[[int, str], str]) -> None:
    """Rewrite ``stream``'s data with ``data(version, old)`` and recompute its hashes, as a
    tamperer who knows the (keyless) hash scheme would."""
    prev = GENESIS_HASH
    for version, row in enumerate(rows(conn, stream), start=1):
        new = data(version, row.data)
        prev = chain_hash(
            prev, row.event_id, stream, row.type, row.schema_version, row.recorded_at, new,
            row.metadata,
        )  # fmt: skip
        conn.execute(
            text("UPDATE events SET data = :d, hash = :h WHERE position = :p"),
            {"d": new, "h": prev, "p": row.position},
        )


def reseal(conn: Connection) -> None:
    """Recompute the experiment's seal over its (rewritten) traces, and its chain."""
    heads = conn.execute(
        text(
            "SELECT stream_id, max(stream_version) FROM events WHERE stream_id LIKE :p "
            "GROUP BY stream_id ORDER BY stream_id"
        ),
        {"p": f"trace-{EXPERIMENT}-%"},
    ).all()
    triples = []
    for stream_id, version in heads:
        head = conn.execute(
            text("SELECT hash FROM events WHERE stream_id = :s AND stream_version = :v"),
            {"s": stream_id, "v": version},
        ).scalar_one()
        triples.append((stream_id, version, head))
    count, digest = seal_digest(triples)

    def sealed(version: int, old: str) -> str:
        document = orjson.loads(old)
        document.update(sealed_traces=count, seal=digest)
        return encode_json(document)

    rechain(conn, f"experiment-{EXPERIMENT}", sealed)


def position_of(conn: Connection, stream: str, version: int) -> int:
    return int(
        conn.execute(
            text("SELECT position FROM events WHERE stream_id = :s AND stream_version = :v"),
            {"s": stream, "v": version},
        ).scalar_one()
    )


def edit_data(conn: Connection) -> None:
    p = position_of(conn, TRACES[1], 2)
    conn.execute(
        text("UPDATE events SET data = replace(data, 'step 11', 'step X') WHERE position = :p"),
        {"p": p},
    )


def edit_correlation(conn: Connection) -> None:
    p = position_of(conn, TRACES[1], 2)
    conn.execute(text("UPDATE events SET correlation_id = 'other' WHERE position = :p"), {"p": p})


def delete_at(stream: str, version: int) -> Callable[[Connection], None]:
    def delete(conn: Connection) -> None:
        p = position_of(conn, stream, version)
        conn.execute(text("DELETE FROM events WHERE position = :p"), {"p": p})

    return delete


def delete_stream(conn: Connection) -> None:
    conn.execute(text("DELETE FROM events WHERE stream_id = :s"), {"s": TRACES[1]})


def insert_event(conn: Connection) -> None:
    """A forged event slipped into the middle of a sealed trace (versions shifted up)."""
    later = conn.execute(
        text("SELECT position FROM events WHERE stream_id = :s AND stream_version >= 3 "
             "ORDER BY stream_version DESC"),
        {"s": TRACES[0]},
    ).all()  # fmt: skip
    for (p,) in later:
        conn.execute(
            text("UPDATE events SET stream_version = stream_version + 1 WHERE position = :p"),
            {"p": p},
        )
    top = conn.execute(text("SELECT max(position) FROM events")).scalar_one()
    template = rows(conn, TRACES[0])[0]
    conn.execute(
        text(
            "INSERT INTO events (position, event_id, stream_id, stream_version, type, "
            "schema_version, correlation_id, data, metadata, recorded_at, hash) VALUES "
            "(:p, :e, :s, 3, :t, :v, :c, :d, :m, :r, :h)"
        ),
        {
            "p": top + 1, "e": "00000000-0000-4000-8000-000000000000", "s": TRACES[0],
            "t": template.type, "v": template.schema_version, "c": EXPERIMENT,
            "d": template.data.replace("step 0", "forged"), "m": template.metadata,
            "r": template.recorded_at, "h": "f" * 64,
        },
    )  # fmt: skip


def reorder(conn: Connection) -> None:
    a, b = position_of(conn, TRACES[2], 1), position_of(conn, TRACES[2], 2)
    conn.execute(text("UPDATE events SET stream_version = 99 WHERE position = :p"), {"p": a})
    conn.execute(text("UPDATE events SET stream_version = 1 WHERE position = :p"), {"p": b})
    conn.execute(text("UPDATE events SET stream_version = 2 WHERE position = :p"), {"p": a})


def recompute_stream(conn: Connection) -> None:
    rechain(conn, TRACES[1], lambda version, old: old.replace("out 1", "rewritten"))
    reseal(conn)


def truncate_tail(conn: Connection) -> None:
    conn.execute(text("DELETE FROM events WHERE position > (SELECT max(position) - 2 FROM events)"))


# case -> (tamper, detected by: plain verify, verify --against a checkpoint, with a key)
CASES: dict[str, tuple[Callable[[Connection], None], bool, bool, bool]] = {
    "edit a column": (edit_data, True, True, True),
    "edit correlation_id": (edit_correlation, True, True, True),
    "delete first event of a stream": (delete_at(TRACES[1], 1), True, True, True),
    "delete middle event of a stream": (delete_at(TRACES[1], 2), True, True, True),
    "delete last event of a stream": (delete_at(TRACES[1], 4), True, True, True),
    "delete a whole stream": (delete_stream, True, True, True),
    "insert an event": (insert_event, True, True, True),
    "reorder two events": (reorder, True, True, True),
    "recompute a whole stream and its seal": (recompute_stream, False, True, True),
    "truncate the log's tail": (truncate_tail, False, True, False),
}


@pytest.fixture(params=["plain", "against", "keyed"])
def mode(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    if request.param == "keyed":
        monkeypatch.setenv(KEY_VARIABLE, "a key the tamperer does not have")
    else:
        monkeypatch.delenv(KEY_VARIABLE, raising=False)
    yield str(request.param)


@pytest.mark.parametrize("case", list(CASES))
def test_tamper_matrix(store: EventStore, store_url: str, mode: str, case: str) -> None:
    build(store)
    assert verify(store).ok
    checkpoint = take_checkpoint(store)
    tamper, plain, against, keyed = CASES[case]
    engine = create_engine(parse_store_url(store_url).url)
    with engine.begin() as conn:
        tamper(conn)
    engine.dispose()
    report = verify(store)
    detected = not report.ok
    if mode == "against":
        detected = detected or not compare(checkpoint, store.log_entries(), signing_key()).ok
    expected = {"plain": plain, "against": against, "keyed": keyed}[mode]
    assert detected == expected, (
        f"{case} in mode {mode}: {'detected' if detected else 'not detected'}; "
        f"problems {[p.describe() for p in report.problems]} damage {report.damage}"
    )


def test_a_signed_checkpoint_altered_or_checked_with_another_key_is_refused(
    store: EventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(KEY_VARIABLE, "k1")
    build(store)
    checkpoint = take_checkpoint(store)
    assert compare(checkpoint, store.log_entries(), b"k1").signature == "valid"
    other = compare(checkpoint, store.log_entries(), b"k2")
    assert (other.ok, other.signature) == (False, "invalid")
    forged = type(checkpoint)(**{**checkpoint.__dict__, "position": checkpoint.position - 1})
    assert compare(forged, store.log_entries(), b"k1").signature == "invalid"
    assert compare(checkpoint, store.log_entries(), None).signature == "unchecked"


# --- a damaged database file (SQLite): named, never read as intact ----------------------


def sqlite_store(tmp_path: Path) -> EventStore:
    store = EventStore.open(str(tmp_path / "ledger.db"))
    for n in range(3):
        store.append("trace-a", [obs(n)], metadata={"correlation_id": EXPERIMENT})
    return store


def test_text_that_is_not_utf8_is_named_by_position_in_every_read(tmp_path: Path) -> None:
    store = sqlite_store(tmp_path)
    with sqlite3.connect(store.location.path) as conn:  # type: ignore[arg-type]
        # A flipped byte in a page: the text is no longer UTF-8 (0xff never is).
        conn.execute("UPDATE events SET data = CAST(X'7B2261223A22FF227D' AS TEXT) "
                     "WHERE position = 2")  # fmt: skip
    expected = (
        "the log is damaged at position 2 (trace-a v2): its data is not valid UTF-8 text; "
        "run `agentledger verify`, and restore the store from a copy or an export"
    )
    reads: list[Callable[[], object]] = [
        lambda: list(store.read_all()),  # the driver-level path
        lambda: list(store.read_all(types=["ObservationRecorded"])),  # the Core path
        lambda: store.read_stream("trace-a"),
        lambda: list(store.read_raw()),
        lambda: list(store.read_streams_raw()),
    ]
    for read in reads:
        with pytest.raises(StoreDamagedError) as damaged:
            read()
        assert str(damaged.value) == expected
    assert [e.position for e in store.read_all(until=1)] == [1]  # what decodes still reads
    report = verify(store)
    assert report.damage == [
        "the log cannot be read to its end (the log is damaged at position 2 (trace-a v2): its "
        "data is not valid UTF-8 text), so its chains were not checked; restore the store "
        "from a copy or an export"
    ]
    store.close()


def hide_from_index(path: Path, appended: Callable[[], None]) -> None:
    """Events appended by ``appended`` while the correlation index is made (in the schema
    only) to leave them out: the index then misses their rows, as after a damaged page."""
    original = "CREATE INDEX ix_events_correlation ON events (correlation_id, position)"

    def set_index_sql(sql: str) -> None:
        with contextlib.closing(sqlite3.connect(path)) as conn:
            conn.execute("PRAGMA writable_schema = ON")
            conn.execute(
                "UPDATE sqlite_master SET sql = ? WHERE name = 'ix_events_correlation'", (sql,)
            )
            conn.commit()

    set_index_sql(original + " WHERE position > 1000")
    appended()
    set_index_sql(original)


def test_verify_prints_one_line_per_kind_of_damage_and_every_finding_with_verbose(
    tmp_path: Path,
) -> None:
    from click.testing import CliRunner

    from agentledger.cli.main import cli

    store = sqlite_store(tmp_path)
    store.close()
    path = tmp_path / "ledger.db"

    def append_more() -> None:
        with EventStore.open(str(path)) as more:
            for n in range(3, 6):
                more.append("trace-b", [obs(n)], metadata={"correlation_id": EXPERIMENT})

    hide_from_index(path, append_more)
    runner = CliRunner()
    result = runner.invoke(cli, ["--store", str(path), "verify"])
    assert result.exit_code == 1, result.output
    assert result.output == (
        "damaged: the database engine's own check fails (4 findings; first: row 4 missing "
        "from index ix_events_correlation): the file is damaged; restore the store from a "
        "copy or an export\n"
        f"{path}: 1 problem(s) in 2 streams, 6 events, 0 seals (--verbose lists every "
        "finding)\n"
    )
    verbose = runner.invoke(cli, ["--store", str(path), "verify", "--verbose"])
    assert verbose.exit_code == 1
    assert verbose.output.splitlines()[1:5] == [
        *(f"  row {n} missing from index ix_events_correlation" for n in (4, 5, 6)),
        "  wrong # of entries in index ix_events_correlation",
    ]
