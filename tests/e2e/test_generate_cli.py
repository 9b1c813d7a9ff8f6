"""End to end: ``agentledger generate inputs``, the installed command in a subprocess.

Models: the in-process mock (the default) or the loopback OpenAI-compatible server in this
process; the store is the project's SQLite file.
"""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from agentledger.eventstore import EventStore
from tests.generation.support import llm, write_config
from tests.support.modelserver import ModelServer
from tests.support.projects import AGENTLEDGER, agentledger

pytestmark = pytest.mark.slow

KEY = "sk-test-GenerateCli0123456789"


def generation_of(project: Path, name: str = "inputs/generated.yaml") -> str:
    return str(yaml.safe_load((project / name).read_text())["generation_config"]["generation_id"])


def test_offline_generation_feeds_an_experiment_that_records_it(tmp_path: Path) -> None:
    project = write_config(tmp_path / "proj", variation_strategies=["typo", "persona_based"])
    (project / "configs" / "simulation.yaml").write_text(
        "name: gen\niterations: 1\nrunner:\n  target: agent:run\n"
    )
    (project / "agent.py").write_text("def run(input_text):\n    return input_text\n")
    result = agentledger("generate", "inputs", cwd=project)
    assert result.returncode == 0, result.stderr
    assert "Generated 8 inputs from 8 calls: failed 0, duplicates dropped 0" in result.stdout
    generation = generation_of(project)
    assert f"Generation: {generation}" in result.stdout
    ran = agentledger("run", "experiment", "--yes", cwd=project)
    assert ran.returncode == 0, ran.stderr
    assert "Runs: 8/8" in ran.stdout
    listed = agentledger("events", "list", "--type", "ExperimentStarted", "--json", cwd=project)
    assert f'"inputs_generation":"{generation}"' in listed.stdout
    verified = agentledger("verify", cwd=project)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    types = agentledger("events", "list", "--stream", f"generation-{generation}", cwd=project)
    assert types.stdout.split()[-1] == "InputsGenerationCompleted"


def test_replay_rewrites_the_file_byte_for_byte_offline(
    tmp_path: Path, model_server: ModelServer
) -> None:
    project = write_config(tmp_path / "proj", input_generation=llm(model_server.base_url))
    first = agentledger("generate", "inputs", "--parallel", "4", cwd=project)
    assert first.returncode == 0, first.stderr
    written = (project / "inputs" / "generated.yaml").read_bytes()
    model_server.stop()
    generation = generation_of(project)
    again = agentledger(
        "generate", "inputs", "--replay", generation, "-o", "again.yaml", cwd=project
    )
    assert again.returncode == 0, again.stderr
    assert (project / "again.yaml").read_bytes() == written
    # from another store: exported and imported
    exported = agentledger("export", "-o", str(tmp_path / "log.jsonl"), cwd=project)
    assert exported.returncode == 0, exported.stderr
    other = str(tmp_path / "other.db")
    assert (
        agentledger("import", str(tmp_path / "log.jsonl"), cwd=project, store=other).returncode == 0
    )
    moved = agentledger(
        "generate",
        "inputs",
        "--replay",
        "inputs/generated.yaml",
        "-o",
        "moved.yaml",
        cwd=project,
        store=other,
    )
    assert moved.returncode == 0, moved.stderr
    assert (project / "moved.yaml").read_bytes() == written


def test_dry_run_prints_the_plan_and_prompts_and_calls_nothing(
    tmp_path: Path, model_server: ModelServer
) -> None:
    project = write_config(tmp_path / "proj", input_generation=llm(model_server.base_url))
    result = agentledger("generate", "inputs", "--dry-run", "-l", "3", cwd=project)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith(
        "Plan: 2 base inputs x 2 personas x 3 strategies x 1 variations = 12 calls "
        "(--limit 3: 3), model openai:gen-test (llm)"
    )
    assert "#2 base 0, persona novice_user, strategy concise, prompt_hash " in result.stdout
    assert "    Base Input: How do I export my notes?" in lines
    assert model_server.requests == []
    assert not (project / ".agentledger").exists()
    assert not (project / "inputs").exists()


def test_some_calls_failing_exit_1_unless_allow_partial(
    tmp_path: Path, model_server: ModelServer
) -> None:
    project = write_config(
        tmp_path / "proj", personas=[], input_generation=llm(model_server.base_url)
    )
    model_server.fail_next("malformed", times=1)
    result = agentledger("generate", "inputs", "--parallel", "1", cwd=project)
    assert result.returncode == 1
    assert "Generated 5 inputs from 6 calls: failed 1" in result.stdout
    assert "1 of 6 calls failed (first: #0 (base 0, rephrase): NoText: the reply is not JSON)" in (
        result.stderr
    )
    assert len(yaml.safe_load((project / "inputs" / "generated.yaml").read_text())["inputs"]) == 5
    model_server.fail_next("malformed", times=1)
    partial = agentledger(
        "generate", "inputs", "--parallel", "1", "--overwrite", "--allow-partial", cwd=project
    )
    assert partial.returncode == 0, partial.stderr


def test_every_call_failing_exits_1_and_writes_nothing(
    tmp_path: Path, model_server: ModelServer
) -> None:
    project = write_config(
        tmp_path / "proj",
        personas=[],
        base_inputs=[{"input": "hi"}],
        input_generation=llm(model_server.base_url),
    )
    model_server.fail_next("malformed", times=3)
    result = agentledger("generate", "inputs", cwd=project)
    assert result.returncode == 1
    assert "No file written: every call failed (first: #0" in result.stderr
    assert not (project / "inputs" / "generated.yaml").exists()


def test_existing_file_is_refused_without_overwrite(tmp_path: Path) -> None:
    project = write_config(tmp_path / "proj")
    (project / "inputs").mkdir()
    (project / "inputs" / "generated.yaml").write_text("inputs: [{input: mine}]\n")
    result = agentledger("generate", "inputs", cwd=project)
    assert result.returncode == 2
    assert result.stderr == (
        f"Error: {project / 'inputs' / 'generated.yaml'} exists; pass --overwrite to "
        "replace it, or -o FILE\n"
    )
    assert (project / "inputs" / "generated.yaml").read_text() == "inputs: [{input: mine}]\n"
    assert not (project / ".agentledger").exists()


def test_a_real_provider_without_a_key_is_refused_before_any_store(tmp_path: Path) -> None:
    project = write_config(tmp_path / "proj", input_generation={"llm": {"enabled": True}})
    result = agentledger("generate", "inputs", cwd=project)
    assert result.returncode == 2
    assert result.stderr == (
        "Error: model openai:gpt-4o-mini needs an API key: pass --llm-api-key or set "
        "OPENAI_API_KEY (or FLUXLOOP_LLM_API_KEY, or input_generation.llm.api_key); "
        "--mode deterministic generates offline\n"
    )
    assert len(result.stderr.splitlines()) == 1
    assert not (project / ".agentledger").exists()


def test_the_key_flag_is_used_and_never_stored(tmp_path: Path, model_server: ModelServer) -> None:
    project = write_config(tmp_path / "proj", personas=[])
    model_server.reflect_auth = True
    result = agentledger(
        "generate",
        "inputs",
        "--base-url",
        model_server.base_url,
        "--llm-model",
        "m",
        "--llm-api-key",
        KEY,
        cwd=project,
    )
    assert result.returncode == 0, result.stderr
    assert model_server.requests[0].headers["authorization"] == f"Bearer {KEY}"
    exported = agentledger("export", cwd=project)
    assert exported.returncode == 0 and "InputGenerated" in exported.stdout
    assert KEY not in exported.stdout
    assert KEY not in (project / "inputs" / "generated.yaml").read_text()


@pytest.mark.parametrize(
    ("args", "config", "message"),
    [
        ((), {"input_generation": {"llm": {"modle": "x"}}}, "did you mean 'model'?"),
        (("-s", "typos"), {}, "-s/--strategy: unknown strategy 'typos'; did you mean 'typo'?"),
        (("--replay", "abc", "--limit", "2"), {}, "calls no model; drop -l/--limit"),
        (("--replay", "abc"), {}, "no generation 'abc' in store"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    tmp_path: Path, args: tuple[str, ...], config: dict[str, object], message: str
) -> None:
    project = write_config(tmp_path / "proj", **config)
    if args[:2] == ("--replay", "abc") and len(args) == 2:
        assert agentledger("generate", "inputs", cwd=project).returncode == 0
    result = agentledger("generate", "inputs", *args, cwd=project)
    assert result.returncode == 2, result.stdout
    assert message in result.stderr
    assert len(result.stderr.splitlines()) == 1
    assert "Traceback" not in result.stderr


def test_ctrl_c_records_the_interruption_and_writes_nothing(
    tmp_path: Path, model_server: ModelServer
) -> None:
    model_server.latency = 0.2
    project = write_config(
        tmp_path / "proj", variation_count=5, input_generation=llm(model_server.base_url)
    )
    store = str(tmp_path / "ledger.db")
    process = subprocess.Popen(
        [AGENTLEDGER, "--store", store, "generate", "inputs", "--parallel", "2"],
        cwd=project,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    deadline = time.monotonic() + 30
    while len(model_server.requests) < 4 and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 130, stderr
    assert not (project / "inputs" / "generated.yaml").exists()
    with EventStore.open(store, create=False) as opened:
        last = list(opened.read_all())[-1]
    assert last.type == "InputsGenerationInterrupted"
    assert last.data["reason"] == "interrupted"
    again = agentledger(
        "generate", "inputs", "--replay", last.data["generation_id"], cwd=project, store=store
    )
    assert again.returncode == 2
    assert "was interrupted" in again.stderr


def test_replay_of_a_tampered_generation_is_refused_and_writes_nothing(tmp_path: Path) -> None:
    import sqlite3

    project = write_config(tmp_path / "proj", variation_strategies=["typo"])
    assert agentledger("generate", "inputs", cwd=project).returncode == 0
    generation = generation_of(project)
    with sqlite3.connect(project / ".agentledger" / "ledger.db") as db:
        db.execute(
            """UPDATE events SET data = replace(data, '"input":"', '"input":"TAMPERED ') """
            "WHERE type = 'InputGenerated' AND rowid = (SELECT min(rowid) FROM events "
            "WHERE type = 'InputGenerated')"
        )
    out = project / "again.yaml"
    result = agentledger("generate", "inputs", "--replay", generation, "-o", str(out), cwd=project)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "log fails verify" in result.stderr and not out.exists()
