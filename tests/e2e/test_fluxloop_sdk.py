"""Projects written with the FluxLoop SDK (the real ``fluxloop`` package) run unchanged, and
what its decorators observe lands in the log, observations.jsonl and replays."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.support.projects import (
    agentledger,
    experiment_id,
    make_project,
    output_folder,
    read_jsonl,
)

SDK_AGENT = """
import asyncio
import time

import fluxloop


@fluxloop.tool(name="lookup")
def lookup(query):
    time.sleep(0.01)
    return query.upper()


@fluxloop.prompt(model="mock-1")
def draft(text):
    return {"text": text, "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}}


@fluxloop.agent(name="Echo")
def run(input_text):
    found = lookup(input_text)
    draft(found)
    return f"echo: {found}"


@fluxloop.tool(name="alookup")
async def alookup(query):
    await asyncio.sleep(0.01)
    return query.lower()


@fluxloop.agent(name="AsyncEcho")
async def arun(input_text):
    return f"async: {await alookup(input_text)}"
"""

INPUTS = [{"input": f"Question {n}", "persona": "novice" if n % 2 else "expert"} for n in range(6)]


def _project(tmp_path: Path, target: str, **simulation: Any) -> Path:
    return make_project(
        tmp_path / "proj",
        agent=SDK_AGENT,
        inputs=INPUTS,
        iterations=1,
        simulation={"runner": {"target": target}, **simulation},
    )


def _sdk_events(project: Path) -> list[tuple[str, dict[str, Any]]]:
    with sqlite3.connect(project / ".agentledger" / "ledger.db") as db:
        rows = db.execute(
            "SELECT stream_id, data FROM events WHERE type = 'SdkObservationRecorded' "
            "ORDER BY position"
        ).fetchall()
    return [(stream, orjson.loads(data)) for stream, data in rows]


@pytest.mark.parametrize("parallel", [1, 3])
def test_sync_agent_observations_go_to_their_own_trace(tmp_path: Path, parallel: int) -> None:
    project = _project(tmp_path, "agent:run", parallel_runs=parallel)
    result = agentledger("run", "experiment", "--yes", cwd=project)
    assert result.returncode == 0, result.stderr
    folder = output_folder(result)
    summaries = {row["trace_id"]: row for row in read_jsonl(folder / "trace_summary.jsonl")}
    observations = read_jsonl(folder / "observations.jsonl")
    assert len(observations) == 3 * len(INPUTS)
    by_trace: dict[str, list[dict[str, Any]]] = {}
    for row in observations:
        assert list(row)[:10] == [
            "id", "type", "name", "start_time", "end_time", "input", "output", "level",
            "metadata", "trace_id",
        ]  # fmt: skip
        assert row["level"] == "info"
        by_trace.setdefault(row["trace_id"], []).append(row)
    assert set(by_trace) == set(summaries)
    for trace_id, rows in by_trace.items():
        named = {row["name"]: row for row in rows}
        agent, tool, prompt = named["Echo"], named["lookup"], named["draft"]
        question = summaries[trace_id]["input"]
        # Each run's observations hold that run's input, whatever ran beside it.
        assert agent["input"] == {"input_text": question}
        assert tool["input"] == {"query": question} and tool["output"] == question.upper()
        assert tool["parent_observation_id"] == agent["id"] == prompt["parent_observation_id"]
        assert "parent_observation_id" not in agent
        assert (prompt["type"], prompt["model"], prompt["total_tokens"]) == (
            "generation",
            "mock-1",
            5,
        )
        assert agent["start_time"] <= tool["start_time"] <= tool["end_time"] <= agent["end_time"]
        actions = summaries[trace_id]["conversation"][1]["metadata"]["actions"]
        assert actions == ["agent:Echo", "tool:lookup", "generation:draft"]
    events = _sdk_events(project)
    assert len(events) == 3 * len(INPUTS)
    assert {stream.removeprefix("trace-") for stream, _ in events} == set(summaries)
    # The SDK wrote nothing of its own: no collector, no offline files.
    assert not (project / "experiments" / "artifacts").exists()


def test_async_agent_with_nested_tool_is_observed(tmp_path: Path) -> None:
    project = _project(tmp_path, "agent:arun", parallel_runs=4)
    result = agentledger("run", "experiment", "--yes", cwd=project)
    assert result.returncode == 0, result.stderr
    observations = read_jsonl(output_folder(result) / "observations.jsonl")
    pairs = {}
    for row in observations:
        pairs.setdefault(row["trace_id"], {})[row["name"]] = row
    assert len(pairs) == len(INPUTS)
    for rows in pairs.values():
        assert rows["alookup"]["parent_observation_id"] == rows["AsyncEcho"]["id"]
        assert rows["AsyncEcho"]["output"] == f"async: {rows['alookup']['output']}"


def test_workers_record_sdk_observations(tmp_path: Path) -> None:
    project = _project(tmp_path, "agent:run")
    result = agentledger("run", "experiment", "--yes", "--workers", "2", cwd=project)
    assert result.returncode == 0, result.stderr
    observations = read_jsonl(output_folder(result) / "observations.jsonl")
    assert len(observations) == 3 * len(INPUTS)
    assert all(row["input"] for row in observations)


def test_replay_records_the_same_observations(tmp_path: Path) -> None:
    project = _project(tmp_path, "agent:run")
    first = agentledger("run", "experiment", "--yes", cwd=project)
    assert first.returncode == 0, first.stderr
    replay = agentledger("replay", experiment_id(first), cwd=project)
    assert replay.returncode == 0, replay.stdout + replay.stderr

    def shape(rows: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
        # Ids and times are new in every run; names, types, data and nesting are not.
        ids = {row["id"]: row["name"] for row in rows}
        return [
            (row["name"], row["type"], orjson.dumps(row["input"]), orjson.dumps(row["output"]),
             ids.get(row.get("parent_observation_id")))
            for row in rows
        ]  # fmt: skip

    recorded = read_jsonl(output_folder(first) / "observations.jsonl")
    replayed = read_jsonl(output_folder(replay) / "observations.jsonl")
    assert shape(replayed) == shape(recorded)


def test_a_project_using_the_sdk_without_it_installed_fails_before_any_run(
    tmp_path: Path,
) -> None:
    project = _project(tmp_path, "agent:run")
    hide = tmp_path / "hide"
    hide.mkdir()
    # What an environment without the package looks like to the importer.
    (hide / "sitecustomize.py").write_text(
        "import sys\n"
        "class _NoFluxLoop:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'fluxloop' or name.startswith('fluxloop.'):\n"
        "            raise ModuleNotFoundError(f\"No module named '{name}'\", name=name)\n"
        "sys.meta_path.insert(0, _NoFluxLoop())\n"
    )
    result = agentledger("run", "experiment", "--yes", cwd=project, env={"PYTHONPATH": str(hide)})
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        "Error: target agent:run uses the FluxLoop SDK (import fluxloop), which is not "
        "installed; install it with: pip install 'agentledger[fluxloop]'"
    )
    assert "Traceback" not in result.stderr
    assert not list((project / "experiments").glob("*/trace_summary.jsonl"))


def test_every_reader_of_the_log_takes_sdk_observations(tmp_path: Path) -> None:
    project = _project(tmp_path, "agent:run", output={"html": True})
    result = agentledger("run", "experiment", "--yes", cwd=project)
    assert result.returncode == 0, result.stderr
    folder = output_folder(result)
    assert (folder / "report.html").exists()
    summary = orjson.loads((folder / "summary.json").read_bytes())
    assert summary["tool_calls"] == len(INPUTS)  # each run's @fluxloop.tool call
    trace_id = read_jsonl(folder / "trace_summary.jsonl")[0]["trace_id"]
    shown = agentledger("traces", "show", trace_id, cwd=project)
    assert shown.returncode == 0, shown.stderr
    assert "sdk:tool" in shown.stdout and "lookup" in shown.stdout
    html = agentledger("report", "html", experiment_id(result), "-o", "r.html", cwd=project)
    assert html.returncode == 0, html.stderr
    transcript = agentledger("transcript", trace_id, cwd=project)
    assert transcript.returncode == 0 and "lookup" in transcript.stdout
