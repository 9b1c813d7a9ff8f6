"""Hostile input through every path: text that is not valid Unicode (lone surrogates), NUL,
invalid UTF-8 files and arguments, YAML alias bombs. Nothing hangs, nothing is lost,
every refusal is one line with exit status 2."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import orjson
import pytest

from agentledger.eventstore import EventStore
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

BAD = "bad \ud800 and \udcff and \x00 nul"
"""Lone surrogates (what os.fsdecode makes of invalid UTF-8) and a NUL."""
STORED = "bad \\ud800 and \\udcff and \x00 nul"
"""How the store keeps it: each lone surrogate as its escape text (docs/event-store.md)."""

HOSTILE_AGENT = f"""
BAD = {BAD!r}

def lookup(query):
    return "tool says " + BAD

def run(input_text, ctx):
    ctx.log("log " + BAD)
    ctx.observe("observe " + BAD, value=BAD, **{{BAD: 1}})
    with ctx.span("span " + BAD):
        tool = ctx.tool("lookup", lookup, {{"query": BAD}})
    reply = ctx.openai.chat.completions.create(
        model=ctx.model, messages=[{{"role": "user", "content": "hi"}}]
    ).choices[0].message.content
    return " | ".join([input_text, tool, reply, BAD])
"""


def test_surrogates_and_nul_through_every_experiment_path_are_stored_and_verified(
    tmp_path: Path, model_server: ModelServer
) -> None:
    model_server.replies = [f"model says {BAD}"]
    # The inputs file and the config carry them as YAML escapes.
    inputs = tmp_path / "inputs.yaml"
    inputs.write_text('inputs:\n  - input: "input \\ud800 \\0 x"\n    metadata: {k: "\\udcff"}\n')
    project = make_project(
        tmp_path / "proj",
        agent=HOSTILE_AGENT,
        iterations=1,
        simulation={
            "model": {"provider": "openai", "name": "m", "base_url": model_server.base_url},
            "description": "desc \ud800",
        },
    )
    env = {"OPENAI_API_KEY": "sk-test-hostile"}
    result = agentledger(
        "run", "experiment", "--yes", "--inputs", str(inputs), "--name", "name \udcff",
        cwd=project, env=env, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    [row] = read_jsonl(output_folder(result) / "trace_summary.jsonl")
    assert row["output"] == " | ".join(
        ["input \\ud800 \x00 x", f"tool says {STORED}", f"model says {STORED}", STORED]
    )
    names = {row["name"] for row in read_jsonl(output_folder(result) / "observations.jsonl")}
    assert {f"log {STORED}", f"observe {STORED}", f"span {STORED}"} <= names
    verify = agentledger("verify", cwd=project)
    assert verify.returncode == 0 and "intact" in verify.stdout
    with EventStore.open(str(project / ".agentledger" / "ledger.db"), create=False) as store:
        [started] = [e for e in store.read_all(types=["ExperimentStarted"])]
    assert started.data["name"] == "name \\udcff"
    rebuilt = tmp_path / "rebuilt"
    rebuild = agentledger("report", "rebuild", started.data["experiment_id"],
                          "--output-dir", str(rebuilt), cwd=project)  # fmt: skip
    assert rebuild.returncode == 0, rebuild.stderr
    assert (rebuilt / "trace_summary.jsonl").read_bytes() == (
        output_folder(result) / "trace_summary.jsonl"
    ).read_bytes()


@pytest.fixture
def agent_project(tmp_path: Path) -> Path:
    project = tmp_path / "agentproj"
    project.mkdir()
    (project / "agentledger.yaml").write_text("agents:\n  - {name: py, target: 'agent:run'}\n")
    (project / "agent.py").write_text("def run(input_text):\n    return 'got ' + input_text\n")
    return project


def run_agent_bytes(project: Path, *args: bytes, stdin: bytes = b"") -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("AGENTLEDGER_STORE",)}
    return subprocess.run(
        [AGENTLEDGER.encode(), b"run", b"agent", bytes(project), b"py", *args],
        cwd=project, input=stdin, capture_output=True, timeout=60, env=env,
    )  # fmt: skip


def test_run_agent_refuses_input_that_is_not_utf8_naming_where_it_came_from(
    agent_project: Path,
) -> None:
    given = run_agent_bytes(agent_project, b"-i", b"bad \xff here")
    assert given.returncode == 2
    assert given.stderr.decode() == (
        "Error: -i: not valid UTF-8 text (byte 0xff at character 4); pass UTF-8\n"
    )
    piped = run_agent_bytes(agent_project, stdin=b"stdin \xfe bytes\n")
    assert piped.returncode == 2
    assert piped.stderr.decode() == (
        "Error: stdin: not valid UTF-8 (byte 0xfe at offset 6); save it as UTF-8\n"
    )
    (agent_project / "in.txt").write_bytes(b"file \xc3\x28 bytes")
    from_file = run_agent_bytes(agent_project, b"-i", b"@in.txt")
    assert from_file.returncode == 2
    assert b"in.txt: not valid UTF-8 (byte 0xc3 at offset 5); save it as UTF-8" in (
        from_file.stderr
    )
    nul = run_agent_bytes(agent_project, stdin=b"has \x00 nul")
    assert nul.returncode == 0, nul.stderr
    assert nul.stdout == b"got has \x00 nul\n"


BOMB = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 10)}]\n" for i in range(9)
)


def test_a_yaml_alias_bomb_is_refused_in_one_line_wherever_it_is_read(
    tmp_path: Path, agent_project: Path
) -> None:
    project = make_project(tmp_path / "proj", iterations=1)
    (project / "bomb.yaml").write_text("inputs:\n  - input: x\n" + BOMB)
    result = agentledger("run", "experiment", "--yes", "--inputs", "bomb.yaml", cwd=project)
    assert result.returncode == 2
    assert result.stderr.strip().endswith(
        "bomb.yaml: expands to more than 5,000,000 values (through YAML aliases); write the "
        "values out or make the document smaller"
    )
    assert len(result.stderr.strip().splitlines()) == 1
    (agent_project / "bomb.yaml").write_text(BOMB)
    agent = agentledger("run", "agent", str(agent_project), "py", "-i", "@bomb.yaml",
                        cwd=agent_project)  # fmt: skip
    assert agent.returncode == 2
    assert "bomb.yaml: expands to more than 5,000,000 values" in agent.stderr
    (project / "configs" / "simulation.yaml").write_text("name: x\n" + BOMB)
    config = agentledger("run", "experiment", "--yes", cwd=project)
    assert config.returncode == 2 and "expands to more than" in config.stderr
    # Fewer values, but long strings: bounded by the characters they expand to.
    long = "x" * 1024
    wide = f"a: &a [{', '.join([repr(long)] * 10)}]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 10)}]\n" for i in range(5)
    )
    fresh = make_project(tmp_path / "fresh", iterations=1)
    (fresh / "wide.yaml").write_text("inputs:\n  - input: x\n" + wide)
    widened = agentledger("run", "experiment", "--yes", "--inputs", "wide.yaml", cwd=fresh)
    assert widened.returncode == 2
    assert "expands to more than 64 Mi characters of text" in widened.stderr


@pytest.mark.parametrize(
    "config", ["configs/simulation.yaml", "configs/project.yaml", "inputs/generated.yaml"]
)
def test_a_config_file_that_is_not_utf8_is_a_one_line_error(tmp_path: Path, config: str) -> None:
    project = make_project(tmp_path / "proj", iterations=1)
    path = project / config
    path.write_bytes(b"name: caf\xe9\n" + (path.read_bytes() if path.exists() else b""))
    result = agentledger("run", "experiment", "--yes", cwd=project)
    assert result.returncode == 2
    assert result.stderr.startswith("Error: ")
    assert result.stderr.strip().endswith(
        f"{path}: not valid UTF-8 (byte 0xe9 at offset 9); save it as UTF-8"
    )
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (project / "experiments").exists()


def test_a_very_long_experiment_name_is_kept_in_the_log_and_shortened_in_the_folder(
    tmp_path: Path,
) -> None:
    project = make_project(tmp_path / "proj", iterations=1)
    result = agentledger("run", "experiment", "--yes", "--name", "n" * 5000, cwd=project)
    assert result.returncode == 0, result.stderr
    assert output_folder(result).name.startswith("n" * 100 + "_")
    summary = orjson.loads((output_folder(result) / "summary.json").read_bytes())
    assert summary["experiment_name"] == "n" * 5000


def test_listings_show_control_characters_and_ansi_escapes_escaped(tmp_path: Path) -> None:
    agent = (
        'def run(input_text, ctx):\n    ctx.log("\\x1b[2Jcleared")\n    return "\\x1b[31mred\\r"\n'
    )
    project = make_project(tmp_path / "proj", agent=agent, iterations=1)
    name = "evil\x1b[31mname\u202e"
    result = agentledger("run", "experiment", "--yes", "--name", name, cwd=project)
    assert result.returncode == 0, result.stderr
    trace = f"{experiment_id(result)}-000000"
    for args in (
        ["experiments", "list"],
        ["experiments", "show", experiment_id(result)],
        ["traces", "show", trace],
        ["report", "show", experiment_id(result)],
        ["events", "list"],
        ["events", "list", "--json"],
        ["transcript", trace],
    ):
        shown = agentledger(*args, cwd=project)
        assert shown.returncode == 0, (args, shown.stderr)
        text = shown.stdout + shown.stderr
        assert "\x1b" not in text and "\r" not in text and "\u202e" not in text, (args, text)
    listed = agentledger("experiments", "list", cwd=project).stdout
    assert "evil\\x1b[31mname\\u202e" in listed


def test_rebuild_from_a_copy_of_the_store_never_writes_into_the_original_project(
    tmp_path: Path,
) -> None:
    import shutil

    original = make_project(tmp_path / "original", iterations=1)
    result = agentledger("run", "experiment", "--yes", cwd=original)
    assert result.returncode == 0, result.stderr
    folder = output_folder(result)
    (folder / "summary.json").write_text('{"experiment_id": "mine", "edited": true}')
    before = (folder / "summary.json").read_bytes()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    copy = elsewhere / "copy.db"
    shutil.copyfile(original / ".agentledger" / "ledger.db", copy)
    experiment = experiment_id(result)
    rebuilt = agentledger("report", "rebuild", experiment, cwd=elsewhere, store=str(copy))
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert (folder / "summary.json").read_bytes() == before, "the original report was touched"
    assert (elsewhere / "experiments" / folder.name / "summary.json").is_file()
    # In the original project, the folder now holds "another" experiment's report.
    refused = agentledger("report", "rebuild", experiment, cwd=original)
    assert refused.returncode == 2
    assert refused.stderr.strip() == (
        f"Error: {folder} holds the report of experiment mine; pass --force to overwrite it, "
        "or --output-dir elsewhere"
    )
    forced = agentledger("report", "rebuild", experiment, "--force", cwd=original)
    assert forced.returncode == 0, forced.stderr
    assert b'"edited"' not in (folder / "summary.json").read_bytes()


def test_a_surrogate_in_a_persona_or_an_output_key_is_recorded_not_a_traceback(
    tmp_path: Path,
) -> None:
    agent = 'def run(input_text):\n    return {"k\\ud800": input_text}\n'
    inputs = tmp_path / "inputs.yaml"
    inputs.write_text('inputs:\n  - input: "q"\n    persona: "p\\ud800"\n')
    project = make_project(tmp_path / "proj", agent=agent, iterations=1)
    result = agentledger("run", "experiment", "--yes", "--inputs", str(inputs), cwd=project)
    assert result.returncode == 0, result.stderr
    assert "(personas: p\\ud800)" in result.stdout
    [row] = read_jsonl(output_folder(result) / "trace_summary.jsonl")
    assert (row["persona"], row["output"]) == ("p\\ud800", {"k\\ud800": "q"})


@pytest.mark.parametrize(
    "args",
    [
        ["run", "experiment", "--yes"],
        ["run", "experiment", "--yes", "--resume", "nope"],
        ["replay", "nope"],
        ["diff", "a", "b"],
        ["verify"],
        ["experiments", "list"],
        ["report", "show", "nope"],
    ],
    ids=lambda a: "-".join(a[:2]),
)
def test_a_failed_command_in_a_folder_that_is_not_a_project_leaves_no_store(
    tmp_path: Path, args: list[str]
) -> None:
    result = agentledger(*args, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("Error: ") and len(result.stderr.splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


def test_manual_tool_approval_on_a_single_turn_experiment_is_refused_not_ignored(
    tmp_path: Path,
) -> None:
    project = make_project(tmp_path / "proj", iterations=1)
    result = agentledger("run", "experiment", "--yes", "--manual-approve-tools", cwd=project)
    assert result.returncode == 2
    assert "this experiment is single-turn (its tools run approved)" in result.stderr
    assert not (project / "experiments").exists() or not any((project / "experiments").iterdir())


MODEL_AGENT = """
def run(input_text, ctx):
    return ctx.openai.chat.completions.create(
        model=ctx.model, messages=[{"role": "user", "content": input_text}]
    ).choices[0].message.content
"""


def test_a_model_response_with_an_escaped_lone_surrogate_is_recorded_and_replays(
    tmp_path: Path,
) -> None:
    # JSON allows "\ud800" and the openai client accepts it; orjson does not, and the call
    # used to be recorded as failed (MalformedResponse) while the agent went on with it.
    with ModelServer() as server:
        server.replies = [BAD]
        project = make_project(
            tmp_path / "proj", agent=MODEL_AGENT, inputs=[{"input": "q"}], iterations=1,
            simulation={"model": {"provider": "openai", "name": "m", "base_url": server.base_url}},
        )  # fmt: skip
        env = {"OPENAI_API_KEY": "sk-test-hostile"}
        result = agentledger("run", "experiment", "--yes", cwd=project, env=env)
    assert result.returncode == 0, result.stderr
    with EventStore.open(str(project / ".agentledger" / "ledger.db"), create=False) as store:
        calls = [e for e in store.read_all() if e.type.startswith("ModelCall")]
    assert [e.type for e in calls] == ["ModelCallStarted", "ModelCallCompleted"]
    [choice] = calls[1].data["response"]["choices"]
    assert choice["message"]["content"] == STORED
    # The server is gone: the replay is answered from the log alone.
    replayed = agentledger("replay", experiment_id(result), cwd=project)
    assert replayed.returncode == 0, replayed.stdout + replayed.stderr
    assert "Replay: 1 identical, 0 output changed, 0 diverged" in replayed.stdout


def test_an_experiment_start_that_lost_its_id_is_a_one_line_error_in_every_command(
    tmp_path: Path,
) -> None:
    import sqlite3

    project = make_project(tmp_path / "proj", iterations=1)
    result = agentledger("run", "experiment", "--yes", cwd=project)
    assert result.returncode == 0, result.stderr
    experiment = experiment_id(result)
    # A flipped byte inside a key: still JSON, no longer what ExperimentStarted holds.
    with sqlite3.connect(project / ".agentledger" / "ledger.db") as conn:
        conn.execute(
            "UPDATE events SET data = replace(data, '\"experiment_id\"', '\"experiment_iD\"') "
            "WHERE type = 'ExperimentStarted'"
        )
    for args in (
        ["experiments", "list"],
        ["experiments", "show", experiment],
        ["report", "show", experiment],
        ["diff", experiment, experiment],
        ["replay", experiment],
    ):
        shown = agentledger(*args, cwd=project)
        assert shown.returncode == 2, (args, shown.stderr)
        assert shown.stderr == (
            f"Error: event at position 1 (experiment-{experiment} v1, ExperimentStarted) does "
            "not hold what a ExperimentStarted holds (KeyError: 'experiment_id'); the log is "
            "damaged: run `agentledger verify`\n"
        ), args


@pytest.mark.parametrize(
    ("config", "raw"),
    [("inputs/generated.yaml", b"\x00"), ("configs/simulation.yaml", b"\x1b[31m")],
)
def test_a_control_character_written_raw_in_a_yaml_file_is_a_one_line_error(
    tmp_path: Path, config: str, raw: bytes
) -> None:
    project = make_project(tmp_path / "proj", iterations=1)
    path = project / config
    path.write_bytes(path.read_bytes() + b'description: "x' + raw + b'"\n')
    result = agentledger("run", "experiment", "--yes", cwd=project)
    assert result.returncode == 2, result.stderr
    line = path.read_text().count("\n")
    assert result.stderr.strip().endswith(
        f"{path} line {line}: character U+{raw[0]:04X} is not allowed in YAML; write it as an "
        'escape in a double-quoted string (e.g. "\\0", "\\e", "\\uD800") or remove it'
    ), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
