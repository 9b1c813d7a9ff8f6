"""Multi-turn experiments end to end: supervisors, turns, tools and their approval."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.support.modelserver import ModelServer
from tests.support.projects import (
    AGENTLEDGER,
    agentledger,
    experiment_id,
    make_project,
    output_folder,
    read_jsonl,
)

pytestmark = pytest.mark.slow

CONVERSING_AGENT = """
def run(input_text, messages, history, conversation_state, ctx):
    return f"reply {conversation_state['turn_index']} to {input_text} after {len(history)}"
"""
ONE_INPUT = [{"input": "hello", "persona": "novice"}]


def multi_turn(**settings: Any) -> dict[str, Any]:
    return {"multi_turn": {"enabled": True, **settings}}


def mock_supervisor(questions: list[str], closing: str | None = "thanks, bye") -> dict[str, Any]:
    return {
        "provider": "mock",
        "metadata": {"scripted_questions": questions, "mock_closing": closing},
    }


@pytest.mark.parametrize(
    ("questions", "max_turns", "turns", "reason", "state"),
    [
        ([], 3, 1, "script_complete", "completed"),
        (["more?", "and?"], 4, 3, "script_complete", "completed"),
        (["a", "b", "c", "d", "e"], 3, 3, "max_turns", "terminated"),
    ],
)
def test_scripted_supervisor_plays_its_questions_within_max_turns(
    tmp_path: Path, questions: list[str], max_turns: int, turns: int, reason: str, state: str
) -> None:
    project = make_project(
        tmp_path / "proj",
        agent=CONVERSING_AGENT,
        inputs=ONE_INPUT,
        iterations=1,
        simulation=multi_turn(max_turns=max_turns, supervisor=mock_supervisor(questions)),
    )
    result = agentledger("run", "experiment", "--yes", cwd=project)
    assert result.returncode == 0, result.stderr
    row = read_jsonl(output_folder(result) / "trace_summary.jsonl")[0]
    assert (row["turn_count"], row["termination_reason"], row["conversation_status"]) == (
        turns,
        reason,
        state,
    )
    assert row["conversation_state"]["metadata"]["status"] == state
    assert row["conversation_state"]["turns"] == [
        {key: m[key] for key in ("role", "content")}
        | ({"closing": True} if m["metadata"].get("closing") else {})
        for m in row["conversation"]
    ]
    users = [m["content"] for m in row["conversation"] if m["role"] == "user"]
    expected = ["hello", *questions[: turns - 1]]
    if reason == "script_complete":
        expected.append("thanks, bye")  # the closing message; the agent is not called for it
    assert users == expected
    agents = [m["content"] for m in row["conversation"] if m["role"] == "assistant"]
    assert agents[-1] == f"reply {turns - 1} to {expected[turns - 1]} after {2 * (turns - 1)}"
    assert row["output"] == agents[-1]
    transcript = (output_folder(result) / "transcripts" / f"{row['trace_id']}.md").read_text()
    assert f"ended by {reason} after {turns} turn(s)" in transcript


def test_flags_override_the_config(tmp_path: Path) -> None:
    project = make_project(
        tmp_path / "proj", agent=CONVERSING_AGENT, inputs=ONE_INPUT, iterations=1
    )
    config = project / "configs" / "simulation.yaml"
    config.write_text(
        config.read_text() + "multi_turn:\n  supervisor:\n    provider: mock\n    metadata:\n"
        "      scripted_questions: [one, two, three]\n"
    )
    result = agentledger(
        "run", "experiment", "--yes", "--multi-turn", "--max-turns", "2", cwd=project
    )
    assert result.returncode == 0, result.stderr
    row = read_jsonl(output_folder(result) / "trace_summary.jsonl")[0]
    assert (row["turn_count"], row["termination_reason"]) == (2, "max_turns")
    single = agentledger("run", "experiment", "--yes", "--no-multi-turn", cwd=project)
    single_row = read_jsonl(output_folder(single) / "trace_summary.jsonl")[0]
    assert "turn_count" not in single_row and "conversation_state" not in single_row
    assert [m["turn_index"] for m in single_row["conversation"]] == [1, 1]


def test_conversation_entries_read_like_fluxloops(tmp_path: Path) -> None:
    """turn_index from 1 shared by a question and its answer; the supervisor's closing
    message marked and last; sources input, agent, supervisor."""
    project = make_project(
        tmp_path / "proj",
        agent=CONVERSING_AGENT,
        inputs=ONE_INPUT,
        iterations=1,
        simulation=multi_turn(max_turns=5, supervisor=mock_supervisor(["and then?"])),
    )
    result = agentledger("run", "experiment", "--yes", cwd=project)
    assert result.returncode == 0, result.stderr
    row = read_jsonl(output_folder(result) / "traces.jsonl")[0]
    shape = [(m["turn_index"], m["role"], m["source"]) for m in row["conversation"]]
    assert shape == [
        (1, "user", "input"),
        (1, "assistant", "agent"),
        (2, "user", "supervisor"),
        (2, "assistant", "agent"),
        (3, "user", "supervisor"),
    ]
    assert row["conversation"][-1]["metadata"] == {"closing": True}
    assert [m["metadata"].get("closing") for m in row["conversation"][:-1]] == [None] * 4
    assert row["conversation"][1]["metadata"]["actions"] == []
    assert row["termination_reason"] == "script_complete"
    assert row["conversation_state"]["context"]["persona"] == "novice"


def test_an_agent_error_ends_the_conversation_with_reason_error(tmp_path: Path) -> None:
    agent = """
    def run(input_text, history):
        if history:
            raise RuntimeError("second turn breaks")
        return "first"
    """
    project = make_project(
        tmp_path / "proj",
        agent=agent,
        inputs=ONE_INPUT,
        iterations=1,
        simulation=multi_turn(supervisor=mock_supervisor(["again"])),
    )
    result = agentledger("run", "experiment", "--yes", cwd=project)
    assert result.returncode == 1
    row = read_jsonl(output_folder(result) / "trace_summary.jsonl")[0]
    assert (row["success"], row["termination_reason"], row["turn_count"]) == (False, "error", 1)
    assert row["conversation_status"] == "terminated"
    assert row["conversation_state"]["metadata"]["termination_reason"] == "error"


def decision(kind: str, reason: str, message: str = "", closing: str = "") -> str:
    return orjson.dumps(
        {"decision": kind, "reason": reason, "next_message": message, "closing_message": closing}
    ).decode()


def test_llm_supervisor_continues_then_stops_and_replays_offline(tmp_path: Path) -> None:
    key = "sk-test-Supervisor012345678"
    with ModelServer() as server:
        server.queue.extend(
            [
                decision("continue", "wants detail", "tell me more"),
                decision("stop", "satisfied", closing="great, thanks"),
            ]
        )
        supervisor = {
            "provider": "openai",
            "model": "sup-model",
            "base_url": server.base_url,
            "system_prompt": "Play the user.",
        }
        project = make_project(
            tmp_path / "proj",
            agent=CONVERSING_AGENT,
            inputs=ONE_INPUT,
            iterations=1,
            simulation=multi_turn(supervisor=supervisor),
        )
        result = agentledger(
            "run",
            "experiment",
            "--yes",
            "--supervisor-api-key",
            key,
            "--supervisor-temperature",
            "0.2",
            "--supervisor-model",
            "sup-flag-model",
            "--persona-override",
            "impatient expert",
            cwd=project,
        )
        assert result.returncode == 0, result.stderr
        assert {r.headers["authorization"] for r in server.requests} == {f"Bearer {key}"}
        sent = server.requests[0].body
    assert sent["model"] == "sup-flag-model" and sent["temperature"] == 0.2
    assert sent["messages"][0]["content"].startswith("Play the user.")
    assert "Persona: impatient expert" in sent["messages"][0]["content"]
    assert sent["response_format"]["type"] == "json_schema"
    folder = output_folder(result)
    trace = read_jsonl(folder / "traces.jsonl")[0]
    assert (trace["turn_count"], trace["termination_reason"]) == (2, "supervisor_stop")
    decisions = [t.get("supervisor") for t in trace["turns"]]
    assert decisions[0] == {
        "decision": "continue",
        "reason": "wants detail",
        "next_message": "tell me more",
    }
    assert decisions[1]["decision"] == "stop"
    assert [t["user_message"] for t in trace["turns"]] == ["hello", "tell me more", "great, thanks"]
    assert len(trace["model_calls"]) == 2
    for path in [*(project / ".agentledger").iterdir(), *folder.rglob("*")]:
        if path.is_file():
            assert key.encode() not in path.read_bytes(), path
    replay = agentledger("replay", experiment_id(result), cwd=project)
    assert replay.returncode == 0, replay.stdout + replay.stderr
    assert "Replay: 1 identical" in replay.stdout


TOOL_AGENT = """
def lookup(q):
    return f"doc for {q}"

def run(input_text, ctx):
    first = ctx.tool("lookup", lookup, {"q": input_text})
    try:
        second = ctx.tool("lookup", lookup, {"q": "again"})
    except Exception as exc:
        second = type(exc).__name__
    return f"{first} / {second}"
"""


def test_tools_are_recorded_and_auto_approved(tmp_path: Path) -> None:
    project = make_project(
        tmp_path / "proj",
        agent=TOOL_AGENT,
        inputs=ONE_INPUT,
        iterations=1,
        simulation=multi_turn(max_turns=1, supervisor=mock_supervisor([])),
    )
    result = agentledger("run", "experiment", "--yes", cwd=project)
    assert result.returncode == 0, result.stderr
    trace = read_jsonl(output_folder(result) / "traces.jsonl")[0]
    assert trace["output"] == "doc for hello / doc for again"
    calls = trace["tool_calls"]
    assert [(c["tool_name"], c["arguments"], c["status"], c["decided_by"]) for c in calls] == [
        ("lookup", {"q": "hello"}, "completed", "auto"),
        ("lookup", {"q": "again"}, "completed", "auto"),
    ]
    assert calls[0]["result"] == "doc for hello" and calls[0]["turn_index"] == 0


def test_model_tool_calls_through_the_gateway_are_recorded(tmp_path: Path) -> None:
    result = agentledger("init", str(tmp_path / "demo"), "--template", "experiment", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    run = agentledger("run", "experiment", "--yes", cwd=tmp_path / "demo")
    assert run.returncode == 0, run.stderr
    trace = read_jsonl(output_folder(run) / "traces.jsonl")[0]
    (call,) = trace["tool_calls"]
    assert call["tool_name"] == "lookup_docs" and call["status"] == "completed"
    assert call["arguments"] == {"question": trace["input"]}
    assert call["result"].startswith("Open the sidebar")


def test_manual_approval_without_a_terminal_is_refused_up_front(tmp_path: Path) -> None:
    project = make_project(
        tmp_path / "proj",
        agent=TOOL_AGENT,
        simulation=multi_turn(supervisor=mock_supervisor([])),
    )
    result = agentledger("run", "experiment", "--yes", "--manual-approve-tools", cwd=project)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "Error: --manual-approve-tools asks about each tool call on a terminal, and stdin is "
        "not one; use --auto-approve-tools"
    )
    assert not (project / "experiments").exists() or not any((project / "experiments").iterdir())


def _converse(master: int, answers: list[str], deadline: float) -> str:
    """Read the terminal, answering each approval question in turn."""
    seen = b""
    answered = 0
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(master, 4096)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
            if seen.count(b"Approve?") > answered and answered < len(answers):
                os.write(master, answers[answered].encode() + b"\n")
                answered += 1
    return seen.decode(errors="replace")


def _on_terminal(project: Path, *flags: str, answers: list[str]) -> tuple[int, str]:
    """Run the experiment on a pseudo-terminal, answering approval questions in turn;
    returns the exit status and everything the terminal showed."""
    master, slave = pty.openpty()
    env = {k: v for k, v in os.environ.items() if k != "AGENTLEDGER_STORE"}
    proc = subprocess.Popen(
        [AGENTLEDGER, "run", "experiment", "--yes", *flags],
        cwd=project,
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env={**env, "NO_COLOR": "1", "TERM": "dumb"},
        close_fds=True,
    )
    os.close(slave)
    try:
        screen = _converse(master, answers, time.monotonic() + 60)
        return proc.wait(timeout=30), screen
    finally:
        os.close(master)


def test_manual_approval_asks_on_the_terminal(tmp_path: Path) -> None:
    project = make_project(
        tmp_path / "proj",
        agent=TOOL_AGENT,
        inputs=[{"input": "one"}, {"input": "two"}],
        iterations=1,
        simulation=multi_turn(max_turns=1, supervisor=mock_supervisor([])),
    )
    # Run one: approve, then reject. Run two: approve all (no more questions).
    code, screen = _on_terminal(project, "--manual-approve-tools", answers=["y", "n", "a"])
    assert code == 0, screen
    assert screen.count("Approve?") == 3
    assert "Tool call in" in screen and 'lookup({"q":"one"})' in screen
    folder = next((project / "experiments").iterdir())
    traces = read_jsonl(folder / "traces.jsonl")
    assert traces[0]["output"] == "doc for one / ToolRejected"
    assert [(c["status"], c["decided_by"]) for c in traces[0]["tool_calls"]] == [
        ("completed", "user"),
        ("rejected", "user"),
    ]
    assert traces[1]["output"] == "doc for two / doc for again"
    assert {c["decided_by"] for c in traces[1]["tool_calls"]} == {"user"}


def test_a_conversation_past_its_timeout_ends_with_reason_timeout(tmp_path: Path) -> None:
    agent = """
    import asyncio

    async def run(input_text, history):
        await asyncio.sleep(0.6 if history else 0.01)
        return "ok"
    """
    project = make_project(
        tmp_path / "proj",
        agent=agent,
        inputs=ONE_INPUT,
        iterations=1,
        simulation=multi_turn(supervisor=mock_supervisor(["slow one"])),
    )
    result = agentledger("run", "experiment", "--yes", "--timeout", "0.3", cwd=project)
    assert result.returncode == 1
    row = read_jsonl(output_folder(result) / "trace_summary.jsonl")[0]
    assert (row["termination_reason"], row["turn_count"], row["error"]["reason"]) == (
        "timeout",
        1,
        "timeout",
    )


def test_auto_approval_on_a_terminal_asks_nothing(tmp_path: Path) -> None:
    project = make_project(
        tmp_path / "proj",
        agent=TOOL_AGENT,
        inputs=[{"input": "one"}],
        iterations=1,
        simulation=multi_turn(max_turns=1, supervisor=mock_supervisor([])),
    )
    code, screen = _on_terminal(project, "--auto-approve-tools", answers=[])
    assert code == 0, screen
    assert "Approve?" not in screen
    folder = next((project / "experiments").iterdir())
    calls = read_jsonl(folder / "traces.jsonl")[0]["tool_calls"]
    assert [c["decided_by"] for c in calls] == ["auto", "auto"]
