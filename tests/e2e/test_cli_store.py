"""CLI over the store: events list, verify, export/import, db; bad store input exits 2."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner
from sqlalchemy import create_engine, text

from agentledger.cli.main import cli
from agentledger.events.payloads import ObservationRecorded
from agentledger.eventstore import EventStore


def obs(n: int) -> ObservationRecorded:
    return ObservationRecorded(
        observation_id=f"o{n}", kind="event", name=f"step {n}", timestamp="2026-01-01T00:00:00Z"
    )


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    path = tmp_path / "ledger.db"
    with EventStore.open(str(path)) as store:
        store.append("trace-a", [obs(1), obs(2)], metadata={"correlation_id": "exp-1"})
        store.append("trace-b", [obs(3)])
    return path


def run(runner: CliRunner, *args: str, store: Path | str | None = None):
    prefix = ["--store", str(store)] if store is not None else []
    return runner.invoke(cli, [*prefix, *args], catch_exceptions=False)


def test_events_list_prints_one_line_per_event(runner: CliRunner, db_path: Path) -> None:
    result = run(runner, "events", "list", store=db_path)
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert len(lines) == 3
    assert lines[0].split()[0] == "1" and lines[0].endswith("trace-a v1  ObservationRecorded")


def test_events_list_json_filters_by_stream_and_after(runner: CliRunner, db_path: Path) -> None:
    result = run(
        runner, "events", "list", "--json", "--after", "1", "--stream", "trace-a", store=db_path
    )
    [line] = result.output.splitlines()
    event = orjson.loads(line)
    assert (event["position"], event["stream_id"], event["data"]["name"]) == (
        2,
        "trace-a",
        "step 2",
    )
    assert event["metadata"]["correlation_id"] == "exp-1"


def test_events_list_rejects_an_unknown_type_listing_known_ones(
    runner: CliRunner, db_path: Path
) -> None:
    result = runner.invoke(cli, ["--store", str(db_path), "events", "list", "--type", "TraceStart"])
    assert result.exit_code == 2
    assert "Error: --type 'TraceStart' is not an event type; known: ArgsRecorded," in result.output


def test_events_list_on_a_missing_store_says_so(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(cli, ["--store", str(tmp_path / "none.db"), "events", "list"])
    assert result.exit_code == 2
    assert result.output == (
        f"Error: no store at {tmp_path / 'none.db'}; run an experiment first or pass --store\n"
    )
    assert not (tmp_path / "none.db").exists()


def test_store_comes_from_the_environment(runner: CliRunner, db_path: Path) -> None:
    result = runner.invoke(cli, ["events", "list"], env={"AGENTLEDGER_STORE": str(db_path)})
    assert result.exit_code == 0 and len(result.output.splitlines()) == 3


def test_verify_reports_intact_log_with_exit_0(runner: CliRunner, db_path: Path) -> None:
    result = run(runner, "verify", store=db_path)
    assert result.exit_code == 0
    assert result.output == f"{db_path}: intact (2 streams, 3 events, 0 seals)\n"


def test_verify_names_a_modified_event_and_exits_1(runner: CliRunner, db_path: Path) -> None:
    engine = create_engine(f"sqlite:///{db_path}")
    with engine.begin() as conn:
        conn.execute(text("UPDATE events SET data = replace(data, 'step 2', 'step 9')"))
    engine.dispose()
    result = run(runner, "verify", store=db_path)
    assert result.exit_code == 1
    first = result.output.splitlines()[0]
    assert first.startswith("modified: trace-a v2 (position 2, event ")
    assert first.endswith("content no longer matches its hash") or "does not chain" in first


def test_export_and_import_through_the_cli(runner: CliRunner, db_path: Path, tmp_path: Path):
    out = tmp_path / "log.jsonl"
    result = run(runner, "export", "-o", str(out), store=db_path)
    assert result.exit_code == 0
    assert len(out.read_bytes().splitlines()) == 4
    target = tmp_path / "copy.db"
    result = run(runner, "import", str(out), store=target)
    assert result.exit_code == 0
    assert result.output == f"imported 3 events into {target}\n"
    again = runner.invoke(cli, ["--store", str(target), "import", str(out)])
    assert again.exit_code == 2
    assert "nothing was imported" in again.output


def test_import_of_a_corrupt_line_names_file_and_line(
    runner: CliRunner, db_path: Path, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"format":"agentledger-export","version":1}\n{"position": 1}\n')
    result = runner.invoke(cli, ["--store", str(db_path), "import", str(bad)])
    assert result.exit_code == 2
    assert result.output.startswith(f"Error: {bad}:2: event_id: Field required")
    with EventStore.open(str(db_path)) as store:
        assert store.last_position() == 3


def test_db_upgrade_then_current_reports_head(runner: CliRunner, tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    assert run(runner, "db", "upgrade", store=path).output == (
        f"{path}: upgraded empty -> 0003 (head)\n"
    )
    assert run(runner, "db", "current", store=path).output == "0003 (head)\n"
    assert run(runner, "db", "upgrade", store=path).output == (
        f"{path}: already at revision 0003 (head)\n"
    )


def test_newer_schema_is_refused_with_upgrade_advice(runner: CliRunner, db_path: Path) -> None:
    engine = create_engine(f"sqlite:///{db_path}")
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = 'ffff'"))
    engine.dispose()
    result = runner.invoke(cli, ["--store", str(db_path), "events", "list"])
    assert result.exit_code == 2
    assert "written by a newer agentledger" in result.output
    assert result.output.rstrip().endswith("upgrade agentledger")
    assert run(runner, "db", "current", store=db_path).output == (
        "ffff (newer than this agentledger; upgrade agentledger)\n"
    )


@pytest.mark.parametrize(
    ("store", "message"),
    [
        ("foo://bar", "Error: unsupported store backend 'foo' in 'foo://bar'"),
        ("postgresql://", "Error: store URL 'postgresql://' names no database"),
        ("sqlite://", "names an in-memory SQLite database"),
        (
            "postgresql://nobody@127.0.0.1:1/db",
            "Error: cannot connect to store postgresql://nobody@127.0.0.1:1/db: ",
        ),
        ("/proc/agentledger/ledger.db", "Error: cannot create store /proc/agentledger/ledger.db"),
    ],
)
def test_bad_store_urls_get_one_line_errors_with_exit_2(
    runner: CliRunner, store: str, message: str
) -> None:
    result = runner.invoke(cli, ["--store", store, "db", "upgrade"])
    assert result.exit_code == 2
    assert message in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert "Traceback" not in result.output


def test_a_file_that_is_not_a_database_is_refused_and_left_alone(
    runner: CliRunner, tmp_path: Path
) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("hello, not a database\n" * 100)
    result = runner.invoke(cli, ["--store", str(path), "events", "list"])
    assert result.exit_code == 2
    assert result.output == (
        f"Error: {path} is not an agentledger store (not a valid SQLite database); "
        "pass another --store or move the file away\n"
    )
    assert path.read_text() == "hello, not a database\n" * 100


def test_a_password_in_the_store_url_is_never_echoed(runner: CliRunner) -> None:
    result = runner.invoke(
        cli, ["--store", "postgresql://u:hunter2secret@127.0.0.1:1/db", "db", "upgrade"]
    )
    assert result.exit_code == 2
    assert "hunter2secret" not in result.output


def test_a_postgresql_store_without_the_driver_names_the_extra(
    runner: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "psycopg" else find_spec(name)
    )
    result = run(runner, "verify", store="postgresql://ci:s3cret@127.0.0.1:1/ledger")
    assert result.exit_code == 2
    assert result.output == (
        "Error: store postgresql://ci:***@127.0.0.1:1/ledger is PostgreSQL, and its driver "
        "(psycopg) is not installed; pip install 'agentledger[postgres]'\n"
    )


def test_verify_of_an_emptied_store_file_says_so_and_creates_nothing(
    runner: CliRunner, db_path: Path
) -> None:
    db_path.write_bytes(b"")  # truncate -s0
    for wal in db_path.parent.glob("ledger.db-*"):
        wal.unlink()
    result = runner.invoke(cli, ["--store", str(db_path), "verify"])
    assert result.exit_code == 2
    assert result.output == (
        f"Error: {db_path} holds no agentledger store (an empty database); check --store, or "
        "run an experiment to create one\n"
    )
    assert db_path.stat().st_size == 0


@pytest.mark.parametrize(
    "args",
    [["verify"], ["experiments", "list"], ["export"], ["db", "upgrade"]],
    ids=lambda a: a[0],
)
def test_another_programs_sqlite_file_is_never_used_as_a_store(
    runner: CliRunner, tmp_path: Path, args: list[str]
) -> None:
    import sqlite3

    foreign = tmp_path / "app.db"
    with sqlite3.connect(foreign) as conn:
        conn.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)")
        conn.execute("INSERT INTO customers (name) VALUES ('ada')")
    before = foreign.read_bytes()
    result = runner.invoke(cli, ["--store", str(foreign), *args])
    assert result.exit_code == 2
    assert result.output == (
        f"Error: {foreign} is not an agentledger store: it holds another program's tables "
        "(customers); point --store at an agentledger store or a new file\n"
    )
    assert foreign.read_bytes() == before


def test_flipped_bytes_are_never_verified_as_intact(runner: CliRunner, tmp_path: Path) -> None:
    import random

    path = tmp_path / "ledger.db"
    with EventStore.open(str(path)) as store:
        for n in range(60):
            store.append(f"trace-{n % 7}", [obs(n)], metadata={"correlation_id": "exp-1"})
    original = path.read_bytes()
    exported = run(runner, "export", store=path).output
    assert exported.count("\n") == 61  # the header and 60 events: a real comparison below
    for seed in range(8):
        rng = random.Random(seed)
        damaged = bytearray(original)
        for _ in range(20):
            damaged[rng.randrange(4096, len(damaged))] = rng.randrange(256)
        copy = tmp_path / f"damaged-{seed}.db"
        copy.write_bytes(bytes(damaged))
        verified = runner.invoke(cli, ["--store", str(copy), "verify"])
        assert "Traceback" not in verified.output
        if verified.exit_code == 0:  # only when the flips hit no live data
            again = runner.invoke(cli, ["--store", str(copy), "export"])
            assert again.output == exported, f"seed {seed}: verify called a damaged log intact"


def test_events_deleted_anywhere_show_as_missing_positions(
    runner: CliRunner, db_path: Path
) -> None:
    engine = create_engine(f"sqlite:///{db_path}")
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM events WHERE stream_id = 'trace-a'"))  # a whole stream
    engine.dispose()
    result = run(runner, "verify", store=db_path)
    assert result.exit_code == 1
    assert "damaged: 2 position(s) missing from the log (first: 1): events were deleted" in (
        result.output
    )


def test_a_store_that_cannot_be_written_is_opened_read_only(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    from agentledger.eventstore.integrity import verify

    monkeypatch.setattr(os, "access", lambda path, mode: False)  # as on a read-only mount
    with EventStore.open(str(db_path), create=False, schema="require", readonly=True) as store:
        assert "mode=ro" in str(store._engine.url) and "immutable=1" in str(store._engine.url)
        assert verify(store).ok
        assert [e.stream_id for e in store.read_all()] == ["trace-a", "trace-a", "trace-b"]


def test_checkpoint_then_verify_against_it_catches_a_cut_tail(
    runner: CliRunner, db_path: Path, tmp_path: Path
) -> None:
    head = tmp_path / "head.json"
    taken = run(runner, "checkpoint", "-o", str(head), store=db_path)
    assert taken.exit_code == 0
    assert orjson.loads(head.read_bytes())["position"] == 3
    again = runner.invoke(cli, ["--store", str(db_path), "checkpoint", "-o", str(head)])
    assert again.exit_code == 2 and "exists; choose a new file" in again.output
    clean = run(runner, "verify", "--against", str(head), store=db_path)
    assert clean.exit_code == 0
    assert "checkpoint at position 3 (unsigned): the log holds it unchanged" in clean.output
    engine = create_engine(f"sqlite:///{db_path}")
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM events WHERE position = 3"))
    engine.dispose()
    assert run(runner, "verify", store=db_path).exit_code == 0  # plain verify cannot see it
    cut = run(runner, "verify", "--against", str(head), store=db_path)
    assert cut.exit_code == 1
    assert "damaged: checkpoint: the log ends at position 2, before the checkpoint's 3" in (
        cut.output
    )


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"not json", "is not a checkpoint (not JSON)"),
        (b'{"format": "other"}', "is not an agentledger checkpoint"),
        (b'{"format": "agentledger-checkpoint", "version": 9}', "is checkpoint version 9"),
        (b'{"format": "agentledger-checkpoint", "version": 1}', "field is missing"),
    ],
)
def test_a_bad_checkpoint_file_is_a_one_line_error(
    runner: CliRunner, db_path: Path, tmp_path: Path, content: bytes, message: str
) -> None:
    bad = tmp_path / "bad.json"
    bad.write_bytes(content)
    result = runner.invoke(cli, ["--store", str(db_path), "verify", "--against", str(bad)])
    assert result.exit_code == 2
    assert message in result.output and len(result.output.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ("not json", "holds data that is not valid JSON; the log is damaged"),
        ('{"unexpected": 1}', "the log is damaged: run `agentledger verify`"),
    ],
    ids=["not-json", "wrong-shape"],
)
def test_every_command_refuses_an_event_that_does_not_decode_in_one_line(
    tmp_path: Path, data: str, message: str
) -> None:
    from tests.support.projects import agentledger, experiment_id, make_project

    project = make_project(tmp_path / "proj", iterations=1)
    recorded = agentledger("run", "experiment", "--yes", cwd=project)
    assert recorded.returncode == 0, recorded.stderr
    experiment = experiment_id(recorded)
    engine = create_engine(f"sqlite:///{project / '.agentledger' / 'ledger.db'}")
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE events SET data = :d WHERE stream_id = :s AND stream_version = 1"),
            {"d": data, "s": f"trace-{experiment}-000001"},
        )
    engine.dispose()
    # events list and export copy envelopes as stored (their JSON must parse; what it
    # holds is verify's to judge); every command that reads what an event says refuses it.
    raw = [["events", "list"], ["export", "-o", str(tmp_path / "x.jsonl")]]
    for args in (
        *(raw if data == "not json" else []),
        ["experiments", "show", experiment],
        ["traces", "show", f"{experiment}-000001"],
        ["report", "show", experiment],
        ["report", "rebuild", experiment, "--output-dir", str(tmp_path / "out")],
        ["transcript", f"{experiment}-000001"],
    ):
        result = agentledger(*args, cwd=project)
        assert "Traceback" not in result.stderr, (args, result.stderr)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        assert result.stderr.startswith("Error: ") and len(result.stderr.splitlines()) == 1
        # The hash no longer matches either: reports refuse it before reading what it says.
        assert (
            message in result.stderr
            or "damaged" in result.stderr
            or ("log fails verify" in result.stderr)
        ), (args, result.stderr)
    verified = agentledger("verify", cwd=project)
    assert verified.returncode == 1


def test_reports_refuse_a_tampered_log_unless_told_and_then_say_so(tmp_path: Path) -> None:
    from tests.support.projects import agentledger, experiment_id, make_project

    project = make_project(tmp_path / "proj", iterations=1)
    recorded = agentledger("run", "experiment", "--yes", cwd=project)
    assert recorded.returncode == 0, recorded.stderr
    experiment = experiment_id(recorded)
    engine = create_engine(f"sqlite:///{project / '.agentledger' / 'ledger.db'}")
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE events SET data = replace(data, 'echo:', 'forged:') WHERE type = :t"),
            {"t": "TraceCompleted"},
        )
    engine.dispose()
    for args in (["report", "show", experiment], ["report", "rebuild", experiment]):
        refused = agentledger(*args, cwd=project)
        assert refused.returncode == 2, refused.stdout
        assert f"experiment {experiment}'s log fails verify (3 problem(s); first: modified" in (
            refused.stderr
        )
        assert "pass --ignore-integrity to build the report anyway" in refused.stderr
    out = tmp_path / "out"
    built = agentledger(
        "report", "rebuild", experiment, "--ignore-integrity", "--output-dir", str(out),
        cwd=project,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr
    assert "Warning: built over a log that fails verify: 3 problem(s)" in built.stderr
    summary = orjson.loads((out / "summary.json").read_bytes())
    assert summary["integrity_warning"].startswith("built over a log that fails verify")


def test_a_sqlite_file_holding_only_a_view_is_another_programs_database(
    runner: CliRunner, tmp_path: Path
) -> None:
    import sqlite3

    foreign = tmp_path / "views.db"
    with sqlite3.connect(foreign) as conn:
        conn.execute("PRAGMA user_version = 7")
        conn.execute("CREATE VIEW answers AS SELECT 42 AS answer")
    before = foreign.read_bytes()
    result = runner.invoke(cli, ["--store", str(foreign), "db", "upgrade"])
    assert result.exit_code == 2
    assert "is not an agentledger store: it holds another program's tables (answers)" in (
        result.output
    )
    assert foreign.read_bytes() == before
