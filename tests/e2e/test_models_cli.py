"""End to end: ``run experiment`` agents calling a real loopback model server.

The installed ``agentledger`` runs in a subprocess; the model server runs in this process.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from agentledger.eventstore import EventStore
from tests.support.modelserver import ModelServer
from tests.support.projects import agentledger, make_project, output_folder, read_jsonl

pytestmark = pytest.mark.slow

CONFIG_KEY = "sk-test-Config0123456789abc"
ENV_KEY = "sk-test-Environ9876543210xyz"

# Both ways an agent can reach a model: the recorded ctx client, and its own module-level
# openai.OpenAI() (configured from OPENAI_BASE_URL / OPENAI_API_KEY like any app would).
TWO_CLIENTS_AGENT = """
import os
import openai

own = openai.OpenAI()

def run(input_text, ctx):
    first = ctx.chat(f"ctx: {input_text}")
    second = own.chat.completions.create(
        model="gpt-own", messages=[{"role": "user", "content": f"own: {input_text}"}]
    ).choices[0].message.content
    return f"{first} | {second} | key {os.environ['OPENAI_API_KEY']}"
"""


def model_config(server: ModelServer, **extra: Any) -> dict[str, Any]:
    return {"provider": "openai", "name": "gpt-test", "base_url": server.base_url, **extra}


def server_env(server: ModelServer) -> dict[str, str]:
    return {"OPENAI_BASE_URL": server.base_url, "OPENAI_API_KEY": ENV_KEY}


def test_every_model_call_is_recorded_with_the_trace_that_made_it(
    tmp_path: Path, model_server: ModelServer
) -> None:
    project = make_project(
        tmp_path / "proj",
        agent=TWO_CLIENTS_AGENT,
        simulation={"parallel_runs": 4, "model": model_config(model_server, api_key=CONFIG_KEY)},
        iterations=3,
    )
    result = agentledger("run", "experiment", "--yes", cwd=project, env=server_env(model_server))
    assert result.returncode == 0, result.stderr
    assert "model openai:gpt-test" in result.stdout
    folder = output_folder(result)
    traces = read_jsonl(folder / "traces.jsonl")
    assert len(traces) == 9
    for trace in traces:
        calls = trace["model_calls"]
        assert [c["request"]["messages"][-1]["content"] for c in calls] == [
            f"ctx: {trace['input']}",
            f"own: {trace['input']}",
        ]
        assert [c["model"] for c in calls] == ["gpt-test", "gpt-own"]
        assert all(c["status"] == "completed" for c in calls)
        assert trace["usage"]["model_calls"] == 2
        assert trace["output"].endswith("| key ***")
    summary = orjson.loads((folder / "summary.json").read_bytes())
    assert summary["model_calls"]["total"] == 18
    assert summary["model_calls"]["total_tokens"] == sum(t["usage"]["total_tokens"] for t in traces)
    assert summary["config_snapshot"]["model"]["api_key"] == "***"
    assert "## Model calls" in next((folder / "transcripts").iterdir()).read_text()
    # The keys reached the server ...
    sent = {r.headers["authorization"] for r in model_server.requests}
    assert sent == {f"Bearer {CONFIG_KEY}", f"Bearer {ENV_KEY}"}
    # ... and nowhere else: not the database files, not any output file.
    for path in [*(project / ".agentledger").iterdir(), *folder.rglob("*")]:
        if path.is_file():
            data = path.read_bytes()
            assert CONFIG_KEY.encode() not in data and ENV_KEY.encode() not in data, path


def test_a_failing_model_fails_its_run_and_the_experiment_goes_on(
    tmp_path: Path, model_server: ModelServer
) -> None:
    agent = """
    def run(input_text, ctx):
        return ctx.openai.with_options(max_retries=1).chat.completions.create(
            model=ctx.model, messages=[{"role": "user", "content": input_text}]
        ).choices[0].message.content
    """
    project = make_project(
        tmp_path / "proj",
        agent=agent,
        simulation={"model": model_config(model_server)},
        iterations=1,
    )
    model_server.fail_next("500", times=2)
    result = agentledger("run", "experiment", "--yes", cwd=project)
    assert result.returncode == 1, result.stderr
    rows = read_jsonl(output_folder(result) / "trace_summary.jsonl")
    assert [r["success"] for r in rows] == [False, True, True]
    assert rows[0]["error"]["type"] == "InternalServerError"
    assert rows[1]["output"] == "second question"
    trace = read_jsonl(output_folder(result) / "traces.jsonl")[0]
    assert [c["status_code"] for c in trace["model_calls"]] == [500, 500]
    summary = orjson.loads((output_folder(result) / "summary.json").read_bytes())
    assert summary["model_calls"]["failed"] == 2 and summary["model_calls"]["total"] == 4


def test_mock_model_is_the_default_without_a_key(tmp_path: Path) -> None:
    agent = """
    def run(input_text, ctx):
        return ctx.chat(input_text)
    """
    project = make_project(tmp_path / "proj", agent=agent, iterations=1)
    result = agentledger("run", "experiment", "--yes", cwd=project)
    assert result.returncode == 0, result.stderr
    assert "model mock:echo" in result.stdout
    rows = read_jsonl(output_folder(result) / "traces.jsonl")
    assert rows[0]["output"] == "first question"
    assert rows[0]["model_calls"][0]["provider"] == "mock"


def test_missing_key_is_an_error_before_anything_runs(tmp_path: Path) -> None:
    project = make_project(tmp_path / "proj", simulation={"model": "openai:gpt-4o-mini"})
    result = agentledger("run", "experiment", "--yes", cwd=project)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "Error: model openai:gpt-4o-mini needs an API key: set OPENAI_API_KEY (or api_key in "
        "the model config); use mock:echo to run offline"
    )
    with EventStore.open(str(project / ".agentledger" / "ledger.db")) as store:
        assert list(store.read_all()) == []


def test_dotenv_file_supplies_the_key(tmp_path: Path, model_server: ModelServer) -> None:
    agent = """
    def run(input_text, ctx):
        return ctx.chat(input_text)
    """
    project = make_project(
        tmp_path / "proj", agent=agent, simulation={"model": "openai:gpt-test"}, iterations=1
    )
    (project / ".env").write_text(
        f"OPENAI_API_KEY={ENV_KEY}\nOPENAI_BASE_URL={model_server.base_url}\n"
    )
    result = agentledger("run", "experiment", "--yes", cwd=project)
    assert result.returncode == 0, result.stderr
    assert model_server.requests[0].headers["authorization"] == f"Bearer {ENV_KEY}"


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ("gpt4", "'model' 'gpt4' must be provider:model, e.g. openai:gpt-4o-mini or mock:echo"),
        ({"provider": "openai", "name": "x", "temperature": 9}, "temperature 9 is out of range"),
        ("mock:parrot", "unknown mock model 'parrot'"),
    ],
)
def test_bad_model_in_config_is_a_one_line_error(tmp_path: Path, model: Any, message: str) -> None:
    project = make_project(tmp_path / "proj", simulation={"model": model})
    result = agentledger("run", "experiment", "--yes", cwd=project)
    assert result.returncode == 2
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
