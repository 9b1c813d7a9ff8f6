"""Export/import: lossless between backends, validated line by line, all or nothing."""

from __future__ import annotations

import io
from pathlib import Path

import orjson
import pytest

from agentledger.events.payloads import ObservationRecorded, TraceStarted
from agentledger.eventstore import EventStore, ExportFormatError
from agentledger.eventstore.integrity import verify
from agentledger.eventstore.transfer import export_events, import_events


def fill(store: EventStore) -> None:
    for n in range(3):
        store.append(
            f"trace-{n}",
            [
                TraceStarted(trace_id=str(n), slot=n, input_index=n, iteration=0, input="hi"),
                ObservationRecorded(
                    observation_id=f"o{n}", kind="log", name="x", timestamp="2026-01-01T00:00:00Z"
                ),
            ],
            metadata={"correlation_id": "exp-1"},
        )


def export_bytes(store: EventStore) -> bytes:
    buffer = io.BytesIO()
    export_events(store, buffer)
    return buffer.getvalue()


def without_positions(dump: bytes) -> list[dict]:
    lines = [orjson.loads(line) for line in dump.splitlines()[1:]]
    return [{k: v for k, v in line.items() if k != "position"} for line in lines]


def test_log_moves_sqlite_to_postgresql_and_back_losslessly(tmp_path: Path, pg_cluster) -> None:
    source = EventStore.open(str(tmp_path / "a.db"))
    fill(source)
    first = export_bytes(source)
    (tmp_path / "a.jsonl").write_bytes(first)
    target = EventStore.open(pg_cluster.create_database())
    assert import_events(target, tmp_path / "a.jsonl") == 6
    second = export_bytes(target)
    (tmp_path / "b.jsonl").write_bytes(second)
    back = EventStore.open(str(tmp_path / "c.db"))
    import_events(back, tmp_path / "b.jsonl")
    assert export_bytes(back) == first == second
    assert verify(target).ok and verify(back).ok
    for s in (source, target, back):
        s.close()


def test_import_renumbers_positions_after_existing_events(
    store: EventStore, tmp_path: Path
) -> None:
    other = EventStore.open(str(tmp_path / "other.db"))
    fill(other)
    (tmp_path / "x.jsonl").write_bytes(export_bytes(other))
    store.append(
        "trace-local",
        [
            ObservationRecorded(
                observation_id="l", kind="log", name="x", timestamp="2026-01-01T00:00:00Z"
            )
        ],
    )
    import_events(store, tmp_path / "x.jsonl")
    assert [e.position for e in store.read_all()] == list(range(1, 8))
    assert without_positions(export_bytes(store))[1:] == without_positions(export_bytes(other))


def replace_first_event(old: bytes, new: bytes):
    """A mangler that edits the first event line (line 2, after the header)."""
    return lambda lines: [lines[0], lines[1].replace(old, new), *lines[2:]]


@pytest.mark.parametrize(
    ("mangle", "message"),
    [
        (lambda lines: [*lines[:2], b"{not json", *lines[3:]], r":3: not valid JSON"),
        (replace_first_event(b'"TraceStarted"', b'"Nope"'), r":2: unknown event type 'Nope'"),
        (replace_first_event(b'"input":"hi"', b'"input":"HI"'), r"does not match its hash chain"),
        (lambda lines: [b'{"hello":1}', *lines[1:]], r":1: not an agentledger export"),
        (replace_first_event(b'"slot":0', b'"slot":"zero"'), r":2: TraceStarted.slot"),
    ],
    ids=["bad-json", "unknown-type", "edited-payload", "no-header", "invalid-field"],
)
def test_corrupt_export_is_refused_and_nothing_is_imported(
    store: EventStore, tmp_path: Path, mangle, message: str
) -> None:
    source = EventStore.open(str(tmp_path / "src.db"))
    fill(source)
    lines = export_bytes(source).splitlines()
    path = tmp_path / "bad.jsonl"
    path.write_bytes(b"\n".join(mangle(lines)) + b"\n")
    with pytest.raises(ExportFormatError, match=message):
        import_events(store, path)
    assert store.last_position() == 0


def test_importing_the_same_export_twice_is_refused(store: EventStore, tmp_path: Path) -> None:
    fill(store)
    path = tmp_path / "x.jsonl"
    path.write_bytes(export_bytes(store))
    with pytest.raises(ExportFormatError, match="store holds that stream at version 2"):
        import_events(store, path)
    assert store.last_position() == 6


def test_export_with_an_unredacted_secret_is_refused(store: EventStore, tmp_path: Path) -> None:
    source = EventStore.open(str(tmp_path / "src.db"))
    fill(source)
    lines = export_bytes(source).splitlines()
    line = orjson.loads(lines[1])
    line["data"]["call_args"] = {"api_key": "sk-live-secret-1234"}
    lines[1] = orjson.dumps(line)
    path = tmp_path / "secret.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    with pytest.raises(ExportFormatError):
        import_events(store, path)
    assert b"sk-live-secret-1234" not in b"".join(
        orjson.dumps(e.to_dict()) for e in store.read_all()
    )
