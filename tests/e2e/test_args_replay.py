"""Argument replay end to end: FluxLoop recording files and ArgsRecorded events."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from tests.support.projects import (
    agentledger,
    experiment_id,
    make_project,
    output_folder,
    read_jsonl,
)

pytestmark = pytest.mark.slow

SECRET = "argsecret-0123456789"
AGENT = """
def handle(data, api_key, ctx):
    ctx.observe("replayed", user=data["user"])
    return f"{data['content']}|{data['user']}|{api_key == 'SECRET'}"
""".replace("SECRET", SECRET)


def recording_line(iteration: int, user: str, target: str = "agent:handle") -> bytes:
    return orjson.dumps(
        {
            "_version": "1",
            "iteration": iteration,
            "target": target,
            "kwargs": {"data": {"content": "original text", "user": user}, "api_key": "***"},
            "timestamp": "2026-11-20T10:00:00Z",
        }
    )


def args_project(tmp_path: Path, **replay_args: object) -> Path:
    project = make_project(
        tmp_path / "proj",
        agent=AGENT,
        iterations=1,
        inputs=[{"input": "first question"}, {"input": "second question"}],
        simulation={
            "runner": {"target": "agent:handle"},
            "replay_args": {
                "enabled": True,
                "recording_file": "recordings/args.jsonl",
                "override_param_path": "data.content",
                **replay_args,
            },
        },
    )
    (project / "recordings").mkdir()
    (project / "recordings" / "args.jsonl").write_bytes(
        b"\n".join(
            [recording_line(0, "ann"), recording_line(1, "bob"), recording_line(0, "x", "other:fn")]
        )
        + b"\n"
    )
    return project


def test_every_recording_runs_with_every_input_written_at_the_path(tmp_path: Path) -> None:
    project = args_project(tmp_path)
    result = agentledger(
        "run", "experiment", "--yes", cwd=project, env={"AGENTLEDGER_ARG_API_KEY": SECRET}
    )
    assert result.returncode == 0, result.stderr
    assert "Plan: 2 inputs x 2 recorded calls x 1 iteration = 4 runs" in result.stdout
    rows = read_jsonl(output_folder(result) / "trace_summary.jsonl")
    assert [r["output"] for r in rows] == [
        "first question|ann|True",
        "first question|bob|True",
        "second question|ann|True",
        "second question|bob|True",
    ]
    traces = read_jsonl(output_folder(result) / "traces.jsonl")
    assert traces[0]["call_args"] == {
        "data": {"content": "first question", "user": "ann"},
        "api_key": "***",
    }
    stored = b"".join(p.read_bytes() for p in (project / ".agentledger").iterdir())
    assert SECRET.encode() not in stored
    replay = agentledger(
        "replay", experiment_id(result), cwd=project, env={"AGENTLEDGER_ARG_API_KEY": SECRET}
    )
    assert replay.returncode == 0, replay.stdout + replay.stderr
    assert "Replay: 4 identical" in replay.stdout


def test_a_masked_argument_without_a_value_stops_before_any_run(tmp_path: Path) -> None:
    project = args_project(tmp_path, secrets_from_env={"api_key": "MY_KEY"})
    result = agentledger("run", "experiment", "--yes", cwd=project)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "Error: recorded argument 'api_key' is masked (***) in planned input #0; set MY_KEY "
        "to the value to replay (or name another variable in replay_args.secrets_from_env)"
    )


def test_a_path_missing_from_the_recording_names_the_keys_there(tmp_path: Path) -> None:
    project = args_project(tmp_path, override_param_path="data.body")
    result = agentledger("run", "experiment", "--yes", cwd=project)
    assert result.returncode == 2
    assert "override_param_path 'data.body': 'body' does not exist in data" in result.stderr
    assert "keys there: content, user" in result.stderr


def test_a_target_with_no_recording_lists_the_recorded_targets(tmp_path: Path) -> None:
    project = args_project(tmp_path)
    (project / "recordings" / "args.jsonl").write_bytes(recording_line(0, "x", "other:fn") + b"\n")
    result = agentledger("run", "experiment", "--yes", cwd=project)
    assert result.returncode == 2
    assert "has no recorded call of agent:handle; recorded targets: other:fn" in result.stderr


def test_arguments_recorded_in_production_are_replayed_from_the_store(tmp_path: Path) -> None:
    project = args_project(tmp_path)
    config = project / "configs" / "simulation.yaml"
    config.write_text(config.read_text().replace("  recording_file: recordings/args.jsonl\n", ""))
    production = project / "production.py"
    production.write_text(
        "import agentledger\n"
        "\n"
        "@agentledger.recorded_args('agent:handle')\n"
        "def handle(data, api_key):\n"
        "    return data\n"
        "\n"
        "handle({'content': 'live one', 'user': 'cat'}, api_key='SECRET')\n"
        "agentledger.record_args('agent:handle', data={'content': 'x', 'user': 'dan'}, "
        "api_key='SECRET')\n".replace("SECRET", SECRET)
    )
    subprocess.run([sys.executable, str(production)], cwd=project, check=True)
    result = agentledger(
        "run", "experiment", "--yes", cwd=project, env={"AGENTLEDGER_ARG_API_KEY": SECRET}
    )
    assert result.returncode == 0, result.stderr
    rows = read_jsonl(output_folder(result) / "trace_summary.jsonl")
    assert [r["output"] for r in rows][:2] == ["first question|cat|True", "first question|dan|True"]


CALLBACK_AGENT = """
def handle(data, send_callback, on_error, ctx):
    if "bad" in data["content"]:
        on_error("cannot: " + data["content"])
        return "failed softly"
    send_callback({"text": "re: " + data["content"]})
"""


def callback_project(tmp_path: Path, providers: dict[str, str] | None) -> Path:
    project = make_project(
        tmp_path / "proj",
        agent=CALLBACK_AGENT,
        iterations=1,
        inputs=[{"input": "good question"}, {"input": "bad question"}],
        simulation={
            "runner": {"target": "agent:handle"},
            "replay_args": {
                "enabled": True,
                "recording_file": "recordings/args.jsonl",
                "override_param_path": "data.content",
                **({"callable_providers": providers} if providers is not None else {}),
            },
        },
    )
    (project / "hooks.py").write_text(
        "ERRORS = []\n\ndef report(message):\n    ERRORS.append(message)\n"
    )
    (project / "recordings").mkdir()
    line = {
        "_version": "1",
        "iteration": 0,
        "target": "agent:handle",
        "kwargs": {
            "data": {"content": "recorded"},
            "send_callback": "<builtin:collector.send>",
            "on_error": "<callable:report>",
        },
        "timestamp": "2026-11-20T10:00:00Z",
    }
    (project / "recordings" / "args.jsonl").write_bytes(orjson.dumps(line) + b"\n")
    return project


def test_recorded_callbacks_are_restored_and_collected(tmp_path: Path) -> None:
    project = callback_project(tmp_path, {"on_error": "builtin:collector.error"})
    result = agentledger("run", "experiment", "--yes", cwd=project)
    assert result.returncode == 0, result.stderr
    folder = output_folder(result)
    rows = read_jsonl(folder / "trace_summary.jsonl")
    # A target that answers through its send callback answers with what it sent.
    assert [r["output"] for r in rows] == [{"text": "re: good question"}, "failed softly"]
    logged = [(o["name"], o["level"], o["data"]) for o in read_jsonl(folder / "observations.jsonl")]
    sent = {"argument": "send_callback", "value": {"text": "re: good question"}}
    failed = {"argument": "on_error", "value": "cannot: bad question"}
    assert logged == [("collector.send", "info", sent), ("collector.error", "error", failed)]
    replay = agentledger("replay", experiment_id(result), cwd=project)
    assert replay.returncode == 0, replay.stdout + replay.stderr


def test_a_callable_provider_may_be_a_project_function(tmp_path: Path) -> None:
    project = callback_project(tmp_path, {"on_error": "hooks:report"})
    result = agentledger("run", "experiment", "--yes", cwd=project)
    assert result.returncode == 0, result.stderr


def test_a_recorded_callable_without_a_provider_stops_before_any_run(tmp_path: Path) -> None:
    project = callback_project(tmp_path, None)
    result = agentledger("run", "experiment", "--yes", cwd=project)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "Error: recorded argument 'on_error' is a callable (<callable:report>); name what to "
        "call instead in replay_args.callable_providers, e.g. on_error: builtin:collector.send"
    )
    bad = callback_project(tmp_path / "other", {"on_error": "hooks:missing"})
    result = agentledger("run", "experiment", "--yes", cwd=bad)
    assert result.returncode == 2
    assert "replay_args.callable_providers.on_error: cannot import hooks:missing" in result.stderr


def test_input_text_that_looks_like_a_placeholder_stays_text(tmp_path: Path) -> None:
    project = callback_project(tmp_path, {"on_error": "builtin:collector.error"})
    inputs = project / "inputs" / "generated.yaml"
    inputs.write_text('inputs:\n  - input: "<builtin:collector.send>"\n  - input: "<callable:x>"\n')
    result = agentledger("run", "experiment", "--yes", cwd=project)
    assert result.returncode == 0, result.stderr
    rows = read_jsonl(output_folder(result) / "trace_summary.jsonl")
    assert [r["output"] for r in rows] == [
        {"text": "re: <builtin:collector.send>"},
        {"text": "re: <callable:x>"},
    ]
