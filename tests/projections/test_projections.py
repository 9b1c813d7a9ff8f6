"""Projections: golden files, any stream interleaving gives the same bytes, as-of rebuilds."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agentledger.eventstore import EventStore
from agentledger.eventstore.envelope import StoredEvent
from agentledger.eventstore.errors import StoreUnavailableError
from agentledger.experiments.config import Overrides, resolve_settings
from agentledger.experiments.prepare import prepare
from agentledger.experiments.runner import ExperimentRunner
from agentledger.projections.errors import AsOfError, ProjectionError
from agentledger.projections.report import (
    ReportState,
    TraceSource,
    load_report,
    resolve_as_of,
    stream_report,
)
from agentledger.projections.writers import write_report
from tests.support.projects import folder_bytes, make_project

GOLDEN = Path(__file__).parent.parent / "support" / "golden"
EXP = "e1"
CONFIG = {"output_format": "jsonl", "save_traces": True, "target": "agent:run"}


def _events() -> list[StoredEvent]:
    """A hand-written experiment: a success with a model and a tool call, a failure, and a
    two-turn conversation; fixed timestamps so the output is golden."""
    streams: dict[str, list[tuple[str, dict[str, Any]]]] = {
        f"experiment-{EXP}": [
            (
                "ExperimentStarted",
                {
                    "experiment_id": EXP,
                    "name": "golden",
                    "config": CONFIG,
                    "plan": {"inputs": [], "iterations": 1, "personas": ["p"], "total_runs": 3},
                    "seed": 1,
                    "replay_of": None,
                    "record_mode": "live",
                    "output_dir": None,
                },
            ),
        ],
        f"trace-{EXP}-000000": [
            ("TraceStarted", _started(0, "hello", "p")),
            ("ObservationRecorded", _obs("o1", None, "span_start", "plan")),
            ("ObservationRecorded", _obs("o2", "o1", "event", "thought", {"k": 1})),
            (
                "ModelCallStarted",
                {
                    "call_id": "c1",
                    "call_index": 0,
                    "provider": "mock",
                    "model": "echo",
                    "request": {"messages": [{"role": "user", "content": "hello"}]},
                    "fingerprint": "f1",
                },
            ),
            (
                "ModelCallCompleted",
                {
                    "call_id": "c1",
                    "call_index": 0,
                    "response": {"choices": []},
                    "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
                    "latency_ms": 1.5,
                },
            ),
            ("ToolCallRequested", {"call_id": "t1", "tool_name": "search", "arguments": {"q": 1}}),
            ("ToolCallApproved", {"call_id": "t1"}),
            ("ToolCallCompleted", {"call_id": "t1", "result": [1], "duration_ms": 0.5}),
            ("ObservationRecorded", _obs("o1:end", None, "span_end", "plan")),
            ("TraceCompleted", {"output": "hi there", "duration_ms": 10.0}),
        ],
        f"trace-{EXP}-000001": [
            ("TraceStarted", _started(1, "break", None)),
            (
                "TraceFailed",
                {
                    "error_type": "ValueError",
                    "error_message": "bad",
                    "traceback": "Traceback ...\nValueError: bad",
                    "duration_ms": 2.25,
                },
            ),
        ],
        f"trace-{EXP}-000002": [
            ("TraceStarted", _started(2, "talk", "p")),
            ("TurnStarted", {"turn_index": 0, "user_message": "talk"}),
            ("TurnCompleted", {"turn_index": 0, "agent_output": "sure", "duration_ms": 1.0}),
            (
                "SupervisorDecided",
                {"turn_index": 0, "decision": "continue", "next_message": "more?"},
            ),
            ("TurnStarted", {"turn_index": 1, "user_message": "more?", "source": "supervisor"}),
            ("TurnCompleted", {"turn_index": 1, "agent_output": {"a": 1}, "duration_ms": 2.0}),
            (
                "TraceCompleted",
                {
                    "output": {"a": 1},
                    "duration_ms": 4.0,
                    "turn_count": 2,
                    "conversation_state": "completed",
                    "termination_reason": "supervisor_stop",
                },
            ),
        ],
    }
    streams[f"experiment-{EXP}"].append(
        (
            "ExperimentCompleted",
            {"experiment_id": EXP, "total_traces": 3, "successful": 2, "failed": 1},
        )
    )
    events = []
    position = 0
    for stream_id, items in streams.items():
        for version, (kind, data) in enumerate(items, start=1):
            position += 1
            events.append(
                StoredEvent(
                    position,
                    f"id-{position}",
                    stream_id,
                    version,
                    kind,
                    1,
                    data,
                    {"correlation_id": EXP},
                    f"2026-01-01T00:00:{position:02d}.000000Z",
                    "",
                )
            )
    return events


def _started(slot: int, text: str, persona: str | None) -> dict[str, Any]:
    return {
        "experiment_id": EXP,
        "trace_id": f"{EXP}-{slot:06d}",
        "slot": slot,
        "input_index": slot,
        "iteration": 0,
        "persona": persona,
        "input": text,
        "seed": slot,
    }


def _obs(
    oid: str, parent: str | None, kind: str, name: str, data: dict[str, Any] | None = None
) -> dict[str, Any]:
    return {
        "observation_id": oid,
        "parent_id": parent,
        "kind": kind,
        "name": name,
        "timestamp": "2026-01-01T00:00:00.000000Z",
        "data": data or {},
        "level": None,
    }


def _by_stream(events: list[StoredEvent]) -> tuple[list[StoredEvent], list[StoredEvent]]:
    experiment = [e for e in events if e.stream_id.startswith("experiment-")]
    traces = sorted(
        (e for e in events if e.stream_id.startswith("trace-")),
        key=lambda e: (e.stream_id, e.stream_version),
    )
    return experiment, traces


def test_report_files_match_the_golden_files(tmp_path: Path) -> None:
    write_report(stream_report(*_by_stream(_events())), tmp_path)
    produced = folder_bytes(tmp_path)
    if os.environ.get("UPDATE_GOLDEN"):
        for name, data in produced.items():
            (GOLDEN / name).parent.mkdir(parents=True, exist_ok=True)
            (GOLDEN / name).write_bytes(data)
    assert produced == folder_bytes(GOLDEN)


def test_rewriting_a_folder_touches_only_changed_transcripts(tmp_path: Path) -> None:
    write_report(stream_report(*_by_stream(_events())), tmp_path)
    transcripts = sorted((tmp_path / "transcripts").iterdir())
    kept, edited = transcripts[0], transcripts[1]
    inode = kept.stat().st_ino
    edited.write_text("tampered")
    (tmp_path / "transcripts" / "stale-trace.md").write_text("from an older report")
    write_report(stream_report(*_by_stream(_events())), tmp_path)
    assert folder_bytes(tmp_path) == folder_bytes(GOLDEN)
    assert kept.stat().st_ino == inode, "an unchanged transcript is not rewritten"
    assert not list(tmp_path.glob("transcripts/.*")), "no temporary files left behind"


@st.composite
def interleavings(draw: st.DrawFn) -> list[list[StoredEvent]]:
    """The golden events merged in a random order that keeps each stream in order, cut
    into random chunks."""
    queues: dict[str, list[StoredEvent]] = {}
    for ev in _events():
        queues.setdefault(ev.stream_id, []).append(ev)
    merged = []
    while queues:
        stream = draw(st.sampled_from(sorted(queues)))
        merged.append(queues[stream].pop(0))
        if not queues[stream]:
            del queues[stream]
    cuts = sorted(draw(st.sets(st.integers(1, len(merged) - 1), max_size=6)))
    bounds = [0, *cuts, len(merged)]
    return [merged[a:b] for a, b in pairwise(bounds)]


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(chunks=interleavings())
def test_incremental_catch_up_in_any_chunks_equals_a_full_rebuild(
    tmp_path: Path, chunks: list[list[StoredEvent]]
) -> None:
    full = tmp_path / "full"
    write_report(stream_report(*_by_stream(_events())), full)
    live = tmp_path / "live"
    state = ReportState(EXP)
    summary_only = ReportState(EXP, keep_traces=False)
    for chunk in chunks:
        state.apply_all(chunk)
        summary_only.apply_all(chunk)
        write_report(state.report(), live)
    assert folder_bytes(live) == folder_bytes(full)
    assert summary_only.summary.successful == 2 and summary_only.summary.failed == 1


@pytest.fixture
def recorded(tmp_path: Path, store_url: str) -> tuple[EventStore, str]:
    project = make_project(tmp_path / "proj", iterations=2)
    settings = resolve_settings(project, None, Overrides())
    store = EventStore.open(store_url)
    result = ExperimentRunner(store).start(prepare(settings, {}))
    return store, result.experiment_id


def _summary(folder: Path) -> dict[str, Any]:
    return dict(orjson.loads((folder / "summary.json").read_bytes()))


def test_as_of_shows_the_experiment_as_it_stood(
    tmp_path: Path, recorded: tuple[EventStore, str]
) -> None:
    store, experiment_id = recorded
    try:
        events = list(store.read_all(correlation_id=experiment_id))
        finished = [e.position for e in events if e.type == "TraceCompleted"]
        start = events[0].position
        at_start = resolve_as_of(store, experiment_id, str(start), "9999")
        write_report(load_report(store, experiment_id, at_start), tmp_path / "a")
        summary = _summary(tmp_path / "a")
        assert (summary["status"], summary["total_traces"], summary["pending_runs"]) == (
            "running",
            0,
            6,
        )
        write_report(load_report(store, experiment_id, finished[2]), tmp_path / "b")
        summary = _summary(tmp_path / "b")
        assert (summary["status"], summary["total_traces"]) == ("running", 3)
        write_report(load_report(store, experiment_id, events[-1].position), tmp_path / "c")
        assert _summary(tmp_path / "c")["status"] == "completed"
        stamp = events[-1].recorded_at
        assert resolve_as_of(store, experiment_id, stamp, "9999") == events[-1].position
    finally:
        store.close()


@pytest.mark.parametrize(
    ("as_of", "message"),
    [
        ("0", "is before experiment"),
        ("99999", "is beyond the end of the log"),
        ("2999-01-01T00:00:00Z", "is in the future"),
        ("yesterday", "is neither a log position nor an ISO-8601 time"),
    ],
)
def test_as_of_outside_the_experiment_is_refused(
    recorded: tuple[EventStore, str], as_of: str, message: str
) -> None:
    store, experiment_id = recorded
    try:
        with pytest.raises(AsOfError, match=message):
            resolve_as_of(store, experiment_id, as_of, "2100-01-01T00:00:00.000000Z")
    finally:
        store.close()


def test_json_output_format_holds_the_same_rows_as_jsonl(tmp_path: Path) -> None:
    events = [
        e._replace(data={**e.data, "config": {**CONFIG, "output_format": "json"}})
        if e.type == "ExperimentStarted"
        else e
        for e in _events()
    ]
    write_report(stream_report(*_by_stream(events)), tmp_path)
    for name in ("trace_summary", "traces", "observations"):
        rows = [orjson.loads(line) for line in (GOLDEN / f"{name}.jsonl").read_bytes().splitlines()]
        text = (tmp_path / f"{name}.json").read_bytes()
        assert orjson.loads(text) == rows
        assert text == b"[\n" + b",\n".join(orjson.dumps(row) for row in rows) + b"\n]\n"


TOOL_AGENT = """
def run(input_text, ctx):
    return ctx.tool("upper", lambda text: text.upper(), {"text": input_text})
"""


def _run_experiment(store: EventStore, root: Path, fmt: str = "jsonl") -> str:
    # A tool call per trace: each has a transcript file, which the parts must share.
    project = make_project(
        root, agent=TOOL_AGENT, iterations=3, simulation={"output": {"format": fmt}}
    )
    settings = resolve_settings(project, None, Overrides())
    return ExperimentRunner(store).start(prepare(settings, {})).experiment_id


@pytest.mark.parametrize("fmt", ["jsonl", "json"])
def test_a_report_written_in_parts_has_the_bytes_of_one_writer(
    tmp_path: Path, store_url: str, fmt: str
) -> None:
    store = EventStore.open(store_url)
    try:
        experiment_id = _run_experiment(store, tmp_path / "proj", fmt)
        write_report(load_report(store, experiment_id), tmp_path / "one")
        cut = load_report(store, experiment_id, parts=3, min_part_events=1)
        assert len(cut.parts) == 3
        write_report(cut, tmp_path / "three")
        assert folder_bytes(tmp_path / "three") == folder_bytes(tmp_path / "one")
        assert (tmp_path / "one" / f"traces.{fmt}").exists()
        # As of the fourth finished trace, over the existing folder: transcripts updated in
        # place by every part, the ones not finished by then removed.
        events = store.read_all(correlation_id=experiment_id)
        finished = [e.position for e in events if e.type == "TraceCompleted"]
        write_report(load_report(store, experiment_id, finished[3]), tmp_path / "as-of")
        cut = load_report(store, experiment_id, finished[3], parts=3, min_part_events=1)
        write_report(cut, tmp_path / "three")
        assert len(list((tmp_path / "three" / "transcripts").iterdir())) == 4
        assert folder_bytes(tmp_path / "three") == folder_bytes(tmp_path / "as-of")
    finally:
        store.close()


def _fails_in_one_line() -> Iterator[Any]:
    raise StoreUnavailableError("cannot read store x.db: disk I/O error")


def _dies() -> Iterator[Any]:
    os._exit(3)


@pytest.mark.parametrize(
    ("part", "message"),
    [
        (_fails_in_one_line, "cannot read store x.db: disk I/O error"),
        (_dies, "ended with exit status 3 before finishing its part"),
    ],
)
def test_a_failing_part_fails_the_report_and_leaves_nothing_half_written(
    tmp_path: Path, part: TraceSource, message: str
) -> None:
    store = EventStore.open(str(tmp_path / "ledger.db"))
    try:
        experiment_id = _run_experiment(store, tmp_path / "proj")
        cut = load_report(store, experiment_id, parts=2, min_part_events=1)
        cut.parts = [cut.parts[0], part]
        with pytest.raises(ProjectionError, match=message):
            write_report(cut, tmp_path / "out")
        assert sorted(p.name for p in (tmp_path / "out").iterdir()) == []
    finally:
        store.close()


def test_temporaries_of_writers_that_died_are_removed_and_live_ones_kept(tmp_path: Path) -> None:
    import subprocess

    from agentledger.projections.writers import remove_stale_temporaries

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    dead_pid, live_pid = int(dead.stdout), os.getpid()
    transcripts = tmp_path / "transcripts"
    (tmp_path / f".transcripts.tmp-{dead_pid}").mkdir()
    (tmp_path / f".transcripts.tmp-{dead_pid}" / "a.md").write_text("x")
    transcripts.mkdir()
    stale = [
        tmp_path / f".traces.jsonl.tmp-{dead_pid}",
        tmp_path / f".traces.jsonl.part2-{dead_pid}",
        transcripts / f".e1-000001.md.tmp-{dead_pid}",
    ]
    kept = [
        tmp_path / f".traces.jsonl.tmp-{live_pid}",
        tmp_path / "summary.json",
        transcripts / "e1-000001.md",
    ]
    for path in stale + kept:
        path.write_text("x")
    assert remove_stale_temporaries(tmp_path) == 4
    assert not any(p.exists() for p in stale)
    assert not (tmp_path / f".transcripts.tmp-{dead_pid}").exists()
    assert all(p.exists() for p in kept)


def test_row_dicts_the_writers_use_are_what_the_row_models_hold() -> None:
    from agentledger.projections.rows import (
        TraceRow,
        TraceSummaryRow,
        trace_dict,
        trace_summary_dict,
    )

    traces = list(stream_report(*_by_stream(_events())).traces)
    assert traces
    for trace in traces:
        for model, build in ((TraceSummaryRow, trace_summary_dict), (TraceRow, trace_dict)):
            row = build(trace)
            dumped = model.model_validate(row).model_dump(mode="json")
            assert list(row) == list(model.model_fields) == list(dumped)
            assert orjson.dumps(row) == orjson.dumps(dumped)
