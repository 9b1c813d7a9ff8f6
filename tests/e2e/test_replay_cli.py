"""End to end: record against the loopback model server, then replay offline and diff."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.support.modelserver import ModelServer
from tests.support.projects import (
    agentledger,
    experiment_id,
    make_project,
    output_folder,
    read_jsonl,
)

pytestmark = pytest.mark.slow

# Plain, streamed and tool-calling traffic, plus the recorded clock and id stand-ins.
AGENT = """
import json

TOOLS = [{"type": "function", "function": {"name": "lookup", "parameters": {
    "type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]}}}]
PROMPT = "You are terse."

def run(input_text, ctx):
    plain = ctx.chat(input_text, system=PROMPT)
    stream = ctx.openai.chat.completions.create(
        model=ctx.model, messages=[{"role": "user", "content": plain + " streamed"}], stream=True
    )
    streamed = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    messages = [{"role": "user", "content": input_text}]
    first = ctx.openai.chat.completions.create(model=ctx.model, messages=messages, tools=TOOLS)
    call = first.choices[0].message.tool_calls[0]
    messages += [first.choices[0].message.model_dump(exclude_none=True),
                 {"role": "tool", "tool_call_id": call.id, "content": "found " + input_text}]
    final = ctx.openai.chat.completions.create(model=ctx.model, messages=messages)
    return {"plain": plain, "streamed": streamed, "tool": final.choices[0].message.content,
            "id": ctx.uuid(), "at": ctx.now().isoformat(), "r": ctx.random.random()}
"""


def record(tmp_path: Path, server: ModelServer, agent: str = AGENT, **simulation: Any) -> Path:
    config = {"provider": "openai", "name": "gpt-test", "base_url": server.base_url}
    project = make_project(
        tmp_path / "proj", agent=agent, simulation={"model": config, **simulation}, iterations=1
    )
    result = agentledger("run", "experiment", "--yes", cwd=project, env={"OPENAI_API_KEY": "sk-x"})
    assert result.returncode == 0, result.stderr
    (project / "recorded.txt").write_text(experiment_id(result))
    return project


def recorded_id(project: Path) -> str:
    return (project / "recorded.txt").read_text()


def test_replay_with_the_model_server_stopped_is_identical(tmp_path: Path) -> None:
    with ModelServer() as server:
        project = record(tmp_path, server)
        served = len(server.requests)
    assert served == 12  # 3 runs x 4 calls
    result = agentledger("replay", recorded_id(project), cwd=project)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Replay: 3 identical, 0 output changed, 0 diverged" in result.stdout
    folder = output_folder(result)
    traces = read_jsonl(folder / "traces.jsonl")
    assert {c["source"] for t in traces for c in t["model_calls"]} == {"replay"}
    assert [len(t["model_calls"]) for t in traces] == [4, 4, 4]
    summary = orjson.loads((folder / "summary.json").read_bytes())
    assert summary["experiment_name"] == "demo-replay"


def test_replay_of_one_trace_runs_only_that_slot(tmp_path: Path) -> None:
    with ModelServer() as server:
        project = record(tmp_path, server)
    trace = f"{recorded_id(project)}-000001"
    result = agentledger("replay", trace, "--json", cwd=project)
    assert result.returncode == 0, result.stderr
    rows = [orjson.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert [(r["source_trace_id"], r["verdict"]) for r in rows] == [(trace, "identical")]


def test_editing_the_prompt_diverges_naming_the_field(tmp_path: Path) -> None:
    with ModelServer() as server:
        project = record(tmp_path, server)
    agent = project / "agent.py"
    agent.write_text(agent.read_text().replace("You are terse.", "You are verbose."))
    result = agentledger("replay", recorded_id(project), cwd=project)
    assert result.returncode == 1
    assert "Replay: 0 identical, 0 output changed, 3 diverged" in result.stdout
    rows = read_jsonl(output_folder(result) / "trace_summary.jsonl")
    error = rows[0]["error"]
    assert error["reason"] == "divergence" and error["type"] == "ReplayDivergence"
    assert "at model call #0" in error["message"]
    assert (
        'first difference at messages[0].content (recorded "You are terse.", actual '
        '"You are verbose.")' in error["message"]
    )
    trace = read_jsonl(output_folder(result) / "traces.jsonl")[0]
    assert trace["error"]["divergence"]["path"] == "messages[0].content"
    assert trace["error"]["divergence"]["call_index"] == 0


def test_replay_or_live_calls_the_model_on_a_miss_and_records_it(tmp_path: Path) -> None:
    with ModelServer() as server:
        project = record(tmp_path, server)
        agent = project / "agent.py"
        agent.write_text(agent.read_text().replace("You are terse.", "You are verbose."))
        before = len(server.requests)
        result = agentledger(
            "replay",
            recorded_id(project),
            "--mode",
            "replay-or-live",
            cwd=project,
            env={"OPENAI_API_KEY": "sk-x"},
        )
        live_calls = len(server.requests) - before
    assert live_calls == 3  # only the changed first call of each run
    assert result.returncode == 0, result.stdout + result.stderr
    traces = read_jsonl(output_folder(result) / "traces.jsonl")
    assert [c["source"] for c in traces[0]["model_calls"]] == ["live", "replay", "replay", "replay"]


def test_a_run_making_fewer_calls_diverges(tmp_path: Path) -> None:
    with ModelServer() as server:
        project = record(tmp_path, server)
    agent = project / "agent.py"
    agent.write_text(
        agent.read_text().replace("    final = ctx.openai", "    return 1\n    final = ctx.openai")
    )
    result = agentledger("replay", recorded_id(project), cwd=project)
    assert result.returncode == 1
    message = read_jsonl(output_folder(result) / "trace_summary.jsonl")[0]["error"]["message"]
    assert "recorded call #3 was never made (3 of 4 recorded calls replayed)" in message


def test_recorded_rate_limit_and_retry_replay_identically(tmp_path: Path) -> None:
    agent = """
    def run(input_text, ctx):
        return ctx.chat(input_text)
    """
    with ModelServer() as server:
        server.fail_next("429")
        project = record(tmp_path, server, agent=agent)
    result = agentledger("replay", recorded_id(project), cwd=project)
    assert result.returncode == 0, result.stdout
    calls = read_jsonl(output_folder(result) / "traces.jsonl")[0]["model_calls"]
    assert [c.get("status_code") for c in calls] == [429, 200]


def test_run_experiment_record_mode_replay_answers_from_the_last_run(tmp_path: Path) -> None:
    with ModelServer() as server:
        project = record(tmp_path, server)
    result = agentledger("run", "experiment", "--yes", "--record-mode", "replay", cwd=project)
    assert result.returncode == 0, result.stderr
    assert f"replay from {recorded_id(project)}" in result.stdout
    traces = read_jsonl(output_folder(result) / "traces.jsonl")
    assert {c["source"] for t in traces for c in t["model_calls"]} == {"replay"}


def test_misspelled_record_mode_lists_the_valid_ones(tmp_path: Path) -> None:
    project = make_project(tmp_path / "proj")
    result = agentledger("run", "experiment", "--yes", "--record-mode", "replai", cwd=project)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "Error: --record-mode 'replai' is not a record mode; use one of live, replay, "
        "replay-or-live"
    )
    result = agentledger("replay", "x", "--mode", "livee", cwd=project)
    assert result.returncode == 2 and "--mode 'livee' is not a record mode" in result.stderr


def test_replay_of_an_unknown_experiment_is_a_one_line_error(tmp_path: Path) -> None:
    project = make_project(tmp_path / "proj")
    nothing = agentledger("replay", "nope", cwd=project)
    assert nothing.returncode == 2
    assert "no store at" in nothing.stderr and "run an experiment first" in nothing.stderr
    assert not (project / ".agentledger").exists(), "a failed replay must not create a store"
    assert agentledger("run", "experiment", "--yes", cwd=project).returncode == 0
    result = agentledger("replay", "nope", cwd=project)
    assert result.returncode == 2
    assert (
        "no experiment 'nope'" in result.stderr and "nor is there a trace 'nope'" in result.stderr
    )


def test_diff_reports_regressions_with_an_output_diff(tmp_path: Path) -> None:
    agent = """
    def run(input_text):
        return f"answer to {input_text}"
    """
    project = make_project(tmp_path / "proj", agent=agent, iterations=1)
    first = agentledger("run", "experiment", "--yes", cwd=project)
    (project / "agent.py").write_text(
        "def run(input_text):\n"
        "    if input_text.startswith('second'):\n"
        "        raise ValueError('broken')\n"
        "    return f'reply to {input_text}' if input_text.startswith('third') "
        "else f'answer to {input_text}'\n"
    )
    second = agentledger("run", "experiment", "--yes", cwd=project)
    a, b = experiment_id(first), experiment_id(second)
    result = agentledger("diff", a, b, cwd=project)
    assert result.returncode == 1
    assert "Changed runs: 2, regressions: 1" in result.stdout
    assert "REGRESSION input #1 iteration 0 persona expert: success True -> False" in result.stdout
    assert "-answer to third question\n+reply to third question" in result.stdout
    as_json = orjson.loads(agentledger("diff", a, b, "--json", cwd=project).stdout)
    assert as_json["a"]["success_rate"] == 1.0 and as_json["b"]["successful"] == 2
    assert as_json["success_rate_delta"] == pytest.approx(-0.3333)
    assert [c["regression"] for c in as_json["changed"]] == [True, False]
    same = agentledger("diff", a, a, cwd=project)
    assert same.returncode == 0 and "Changed runs: 0, regressions: 0" in same.stdout
