"""``agentledger run experiment`` end to end: the installed command on real files and stores."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from agentledger.eventstore import EventStore
from tests.support.projects import (
    agentledger,
    experiment_id,
    folder_bytes,
    make_project,
    output_folder,
    read_jsonl,
)

pytestmark = pytest.mark.slow


def test_run_records_every_slot_and_writes_the_report(tmp_path: Path, store_url: str) -> None:
    project = make_project(tmp_path / "proj")
    result = agentledger("run", "experiment", "--yes", cwd=project, store=store_url)
    assert result.returncode == 0, result.stderr
    assert "Plan: 3 inputs x 2 iterations (personas: expert, novice) = 6 runs" in result.stdout
    folder = output_folder(result)
    assert folder.parent == project / "experiments" and folder.name.startswith("demo_")
    summary = orjson.loads((folder / "summary.json").read_bytes())
    assert summary["experiment_id"] == experiment_id(result)
    assert (summary["total_traces"], summary["successful"], summary["failed"]) == (6, 6, 0)
    assert summary["status"] == "completed" and summary["success_rate"] == 1.0
    rows = read_jsonl(folder / "trace_summary.jsonl")
    assert [(r["input_index"], r["iteration"]) for r in rows] == [
        (i, n) for i in range(3) for n in range(2)
    ]
    assert rows[0]["output"] == "echo: first question" and rows[0]["persona"] == "novice"
    observations = read_jsonl(folder / "observations.jsonl")
    assert [o["type"] for o in observations[:3]] == ["span_start", "event", "span_end"]
    assert observations[1]["parent_id"] == observations[0]["observation_id"]
    # Plain single-turn traces get no transcript file; the log prints any transcript.
    assert not (folder / "transcripts").exists()
    shown = agentledger("transcript", rows[0]["trace_id"], cwd=project, store=store_url)
    assert shown.returncode == 0 and "echo: first question" in shown.stdout
    verify = agentledger("verify", experiment_id(result), cwd=project, store=store_url)
    assert verify.returncode == 0 and "intact" in verify.stdout


def test_rebuild_after_deleting_the_folder_is_byte_identical(
    tmp_path: Path, store_url: str
) -> None:
    project = make_project(tmp_path / "proj")
    result = agentledger("run", "experiment", "-y", cwd=project, store=store_url)
    folder = output_folder(result)
    before = folder_bytes(folder)
    for path in sorted(folder.rglob("*"), reverse=True):
        path.rmdir() if path.is_dir() else path.unlink()
    folder.rmdir()
    rebuilt = agentledger(
        "report", "rebuild", experiment_id(result), "--jobs", "2", cwd=project, store=store_url
    )
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert folder_bytes(folder) == before
    refused = agentledger(
        "report", "rebuild", experiment_id(result), "--jobs", "0", cwd=project, store=store_url
    )
    assert refused.returncode == 2
    assert "Invalid value for '--jobs': 0 is not in the range x>=1." in refused.stderr
    (tmp_path / "a-file").write_text("")
    unwritable = tmp_path / "a-file" / "report"
    refused = agentledger(
        "report", "rebuild", experiment_id(result), "--output-dir", str(unwritable),
        cwd=project, store=store_url,
    )  # fmt: skip
    assert refused.returncode == 2
    assert refused.stderr == (
        f"Error: cannot write the report into {unwritable}: Not a directory ({unwritable}); "
        "choose a writable folder (--output-dir) or free some space\n"
    )


def test_parallel_rows_are_in_plan_order(tmp_path: Path) -> None:
    agent = """
    import random, time
    def run(input_text, iteration):
        time.sleep(random.Random(input_text + str(iteration)).random() / 50)
        return input_text
    """
    project = make_project(tmp_path, agent=agent, iterations=4)
    result = agentledger("run", "experiment", "-y", "--parallel", "8", cwd=project)
    assert result.returncode == 0, result.stderr
    rows = read_jsonl(output_folder(result) / "trace_summary.jsonl")
    assert [r["trace_id"] for r in rows] == sorted(r["trace_id"] for r in rows)
    assert [(r["input_index"], r["iteration"]) for r in rows] == [
        (i, n) for i in range(3) for n in range(4)
    ]


def test_sync_async_and_generator_targets_all_run(tmp_path: Path) -> None:
    agent = """
    import asyncio
    def plain(text): return text.upper()
    async def coro(input):
        await asyncio.sleep(0)
        return input[::-1]
    def gen(input_text):
        yield "a"
        yield "b"
    async def agen(input_text):
        yield 1
        yield 2
    """
    expected = {"plain": "FIRST QUESTION", "coro": "noitseuq tsrif", "gen": "ab", "agen": [1, 2]}
    for name, output in expected.items():
        project = make_project(
            tmp_path / name, agent=agent, simulation={"runner": {"target": f"agent:{name}"}}
        )
        result = agentledger("run", "experiment", "-y", "-i", "1", cwd=project)
        assert result.returncode == 0, result.stderr
        rows = read_jsonl(output_folder(result) / "trace_summary.jsonl")
        assert rows[0]["output"] == output


def test_failed_runs_exit_1_unless_max_failures_allows(tmp_path: Path) -> None:
    agent = """
    def run(input_text):
        if input_text.startswith("second"):
            raise ValueError("cannot answer " + input_text)
        return "ok"
    """
    project = make_project(tmp_path, agent=agent, iterations=1)
    failed = agentledger("run", "experiment", "-y", cwd=project)
    assert failed.returncode == 1
    assert "1 run(s) failed, more than --max-failures 0 allows" in failed.stderr
    rows = read_jsonl(output_folder(failed) / "trace_summary.jsonl")
    assert [r["success"] for r in rows] == [True, False, True]
    assert rows[1]["error"] == {
        "type": "ValueError",
        "message": "cannot answer second question",
        "reason": "exception",
    }
    traces = read_jsonl(output_folder(failed) / "traces.jsonl")
    assert 'raise ValueError("cannot answer "' in traces[1]["error"]["traceback"]
    allowed = agentledger("run", "experiment", "-y", "--max-failures", "34%", cwd=project)
    assert allowed.returncode == 0, allowed.stderr


def test_timeout_fails_the_run_with_reason_timeout_and_the_experiment_goes_on(
    tmp_path: Path,
) -> None:
    agent = """
    import asyncio
    async def run(input_text):
        if input_text.startswith("first"):
            await asyncio.sleep(30)
        return "done"
    """
    project = make_project(tmp_path, agent=agent, iterations=1)
    result = agentledger("run", "experiment", "-y", "--timeout", "0.3", cwd=project)
    assert result.returncode == 1
    summary = orjson.loads((output_folder(result) / "summary.json").read_bytes())
    assert (summary["successful"], summary["failed"]) == (2, 1)
    assert summary["failures"]["by_reason"] == {"timeout": 1}


def test_retries_record_every_attempt(tmp_path: Path) -> None:
    agent = """
    from pathlib import Path
    def run(input_text, iteration):
        marker = Path("attempts-" + input_text.split()[0])
        count = int(marker.read_text()) + 1 if marker.exists() else 1
        marker.write_text(str(count))
        if count < 3:
            raise ConnectionError(f"flaky {count}")
        return count
    """
    project = make_project(
        tmp_path,
        agent=agent,
        iterations=1,
        inputs=[{"input": "only question"}],
        simulation={"runner": {"max_retries": 2}},
    )
    result = agentledger("run", "experiment", "-y", cwd=project)
    assert result.returncode == 0, result.stderr
    [trace] = read_jsonl(output_folder(result) / "traces.jsonl")
    assert trace["output"] == 3 and trace["attempt_count"] == 3
    assert [a["error_message"] for a in trace["attempts"]] == ["flaky 1", "flaky 2"]


def test_inputs_flag_generated_inputs_key_and_documentation_layout(tmp_path: Path) -> None:
    project = make_project(tmp_path)
    (project / "configs" / "simulation.yaml").write_text(
        "runner:\n  target: agent:run\n  iterations: 2\noutput:\n  directory: out\n  format: json\n"
    )
    (project / "other.yaml").write_text(
        "generated_inputs:\n  - input: from the other file\n    persona: expert\n"
    )
    result = agentledger(
        "run", "experiment", "-y", "--inputs", "other.yaml", "--name", "docs", cwd=project
    )
    assert result.returncode == 0, result.stderr
    folder = output_folder(result)
    assert folder.parent == project / "out" and folder.name.startswith("docs_")
    rows = orjson.loads((folder / "trace_summary.json").read_bytes())
    assert [r["input"] for r in rows] == ["from the other file"] * 2


def test_personas_filter_runs_only_their_inputs(tmp_path: Path) -> None:
    project = make_project(tmp_path, iterations=1)
    result = agentledger("run", "experiment", "-y", "-p", "novice", cwd=project)
    rows = read_jsonl(output_folder(result) / "trace_summary.jsonl")
    assert [r["input_index"] for r in rows] == [0, 2]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"runner": {"target": "agent:run", "timout_seconds": 3}},
            "unknown key 'runner.timout_seconds'; did you mean 'timeout_seconds'?",
        ),
        ({"iteratons": 3}, "unknown key 'iteratons'; did you mean 'iterations'?"),
        ({"parallel_runs": 0}, "'parallel_runs': Input should be greater than or equal to 1"),
        (
            {"runner": {"target": "nosuchmodule:run"}},
            "cannot import module 'nosuchmodule' of target nosuchmodule:run",
        ),
        (
            {"runner": {"target": "agent:missing"}},
            "has no function 'missing'; functions there: run",
        ),
        (
            {"multi_turn": {"enabled": True}},
            "the supervisor's model openai:gpt-4o-mini needs an API key: pass "
            "--supervisor-api-key, set OPENAI_API_KEY, or use --supervisor-provider mock",
        ),
        (
            {"multi_turn": {"enabled": True, "supervisor": {"provider": "mock", "temprature": 1}}},
            "unknown key 'multi_turn.supervisor.temprature'; did you mean 'temperature'?",
        ),
    ],
)
def test_bad_config_is_one_line_exit_2_before_any_run(
    tmp_path: Path, change: dict[str, object], message: str
) -> None:
    project = make_project(tmp_path, simulation=change)
    result = agentledger("run", "experiment", "-y", cwd=project)
    assert result.returncode == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr
    assert not (project / "experiments").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-p", "wizard"], "unknown persona 'wizard' in --personas; known: expert, novice"),
        (["--inputs", "nope.yaml"], "nope.yaml not found; generate it or pass --inputs FILE"),
        (["--max-failures", "lots"], "--max-failures 'lots': give a count (3) or a percentage"),
        (["--resume", "x", "-i", "2"], "--resume runs the plan recorded with the experiment"),
        (["-c", "missing.yaml"], "missing.yaml not found; pass -c/--config"),
        (["--resume", "nosuch"], "no experiment 'nosuch' in store"),
    ],
)
def test_bad_flags_are_one_line_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    project = make_project(tmp_path)
    result = agentledger("run", "experiment", "-y", *args, cwd=project)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_inputs_file_names_the_item(tmp_path: Path) -> None:
    project = make_project(tmp_path, inputs=[{"input": "ok"}, {"inptu": "typo"}])
    result = agentledger("run", "experiment", "-y", cwd=project)
    assert result.returncode == 2
    assert "item 2 has unknown key 'inptu'; did you mean 'input'?" in result.stderr


def test_init_template_runs_offline(tmp_path: Path) -> None:
    init = agentledger("init", "proj", cwd=tmp_path)
    assert init.returncode == 0, init.stderr
    result = agentledger("run", "experiment", "--yes", cwd=tmp_path / "proj")
    assert result.returncode == 0, result.stderr
    assert "Runs: 8/8  ok: 8  failed: 0" in result.stdout
    again = agentledger("init", "proj", cwd=tmp_path)
    assert again.returncode == 2 and "already exists; choose an empty DIR" in again.stderr


def test_config_snapshot_is_redacted_in_the_store_and_the_folder(tmp_path: Path) -> None:
    project = make_project(tmp_path)
    (project / "configs" / "input.yaml").write_text(
        "personas:\n  - name: novice\n    api_key: sk-live-0123456789abcdef\n"
    )
    result = agentledger("run", "experiment", "-y", cwd=project)
    assert result.returncode == 0, result.stderr
    with EventStore.open(str(project / ".agentledger" / "ledger.db")) as store:
        started = next(store.read_all(types=["ExperimentStarted"]))
    assert started.data["config"]["personas"][0]["api_key"] == "***"
    assert b"sk-live" not in (project / ".agentledger" / "ledger.db").read_bytes()
    for data in folder_bytes(output_folder(result)).values():
        assert b"sk-live" not in data


def _large_experiment(path: Path, traces: int, observations: int) -> str:
    """An experiment of ``traces`` x (``observations`` + 2) events written straight to a
    SQLite store: big enough for a rebuild to be cut into parts."""
    from agentledger.events.payloads import (
        ExperimentCompleted,
        ExperimentPlan,
        ExperimentStarted,
        ObservationRecorded,
        PlanInput,
        TraceCompleted,
        TraceStarted,
    )
    from agentledger.events.streams import experiment_stream, trace_stream
    from agentledger.eventstore.store import NO_STREAM, AppendRequest

    name = "large0000001"
    meta = {"correlation_id": name}
    plan = ExperimentPlan(
        inputs=[PlanInput(index=0, input="hi")], iterations=traces, total_runs=traces
    )
    store = EventStore.open(str(path))
    started = ExperimentStarted(
        experiment_id=name, name="large", config={"name": "large"}, plan=plan, seed=1,
        output_dir=str(path.parent / "out"),
    )  # fmt: skip
    store.append(experiment_stream(name), [started], expected_version=NO_STREAM, metadata=meta)
    requests = []
    for slot in range(traces):
        trace_id = f"{name}-{slot:06d}"
        events = [
            TraceStarted(
                experiment_id=name, trace_id=trace_id, slot=slot, input_index=0,
                iteration=slot, input="hi", seed=slot,
            ),
            *(
                ObservationRecorded(
                    observation_id=f"{trace_id}:{n}", kind="event", name="step",
                    timestamp="2026-01-01T00:00:00.000000Z", data={"n": n},
                )
                for n in range(observations)
            ),
            TraceCompleted(output=f"answer {slot}", duration_ms=float(slot % 7)),
        ]  # fmt: skip
        requests.append(AppendRequest(trace_stream(trace_id), tuple(events), NO_STREAM, meta))
    for start in range(0, traces, 100):
        store.append_batch(requests[start : start + 100])
    done = ExperimentCompleted(experiment_id=name, total_traces=traces, successful=traces, failed=0)
    store.append(experiment_stream(name), [done], metadata=meta)
    store.close()
    return name


def test_rebuild_of_a_large_experiment_in_two_processes_matches_one(tmp_path: Path) -> None:
    db = tmp_path / "ledger.db"
    name = _large_experiment(db, traces=1000, observations=98)  # 100,002 events
    one, two = tmp_path / "one", tmp_path / "two"
    single = agentledger(
        "report",
        "rebuild",
        name,
        "--jobs",
        "1",
        "--output-dir",
        str(one),
        cwd=tmp_path,
        store=str(db),
    )
    assert single.returncode == 0, single.stderr
    assert single.stdout.endswith("(completed)\n")
    double = agentledger(
        "report",
        "rebuild",
        name,
        "--jobs",
        "2",
        "--output-dir",
        str(two),
        cwd=tmp_path,
        store=str(db),
    )
    assert double.returncode == 0, double.stderr
    assert double.stdout.endswith("(completed; 2 processes)\n")
    assert folder_bytes(two) == folder_bytes(one)
