"""Fuzz: hypothesis-generated text through every input path of the installed command.

Lone surrogates (what ``os.fsdecode`` makes of invalid UTF-8), NUL, RTL and other
bidirectional marks, control characters and ANSI escapes, YAML and template syntax, and
1 MiB strings go through the inputs file, the config, ``run agent``'s stdin and ``-i``,
what the target returns, ``ctx.log``/observations, tool results and model responses (from
the loopback model server); raw bytes that are not UTF-8 go into the files; and stored
databases get bytes flipped. For every case: the command ends within its bound (a hang
fails the test), no traceback, exit status 0, 1 or 2 as documented (2 with one line
``Error: ...``), and what was recorded reads back intact: verify passes and the report
rebuilds byte for byte.

Few examples per path and ``derandomize=True``: the same cases on every run (CI), a few
seconds per path.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import subprocess
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from agentledger.eventstore import EventStore
from agentledger.eventstore.envelope import escape_text
from agentledger.eventstore.integrity import verify
from tests.support.modelserver import ModelServer
from tests.support.projects import (
    AGENTLEDGER,
    agentledger,
    experiment_id,
    folder_bytes,
    make_project,
    output_folder,
)

pytestmark = pytest.mark.slow

SPECIALS = [
    "\ud800", "\udbff", "\udc80", "\udfff",  # lone surrogates, high and low
    "\x00", "\x1b[31m", "\x1b]0;title\x07", "\x1b[2J", "\r", "\n", "\t", "\x7f", "\x85",
    "\u202e", "\u200f", "\u2066", "\u061c",  # RTL override, RTL mark, isolates
    "\ufeff", "\uffff", "\U0010ffff", "\u2028",
    "\\", '"', "'", "{{input}}", "{x}", "%s", "${HOME}", "*a", "&a", "!!python/object:os.system",
    "---", "# ", ": ", "- ", "@file", "[", "]",
]  # fmt: skip

hostile_text = st.lists(
    st.one_of(
        st.characters(),
        st.integers(0xD800, 0xDFFF).map(chr),
        st.sampled_from(SPECIALS),
    ),
    max_size=30,
).map("".join)
"""Text as a hostile user or a broken agent makes it: anything a Python str can hold."""

MEBIBYTE = "x\ud800\x00\u202e\x1b[31m" * (1024 * 1024 // 9)
"""A 1 MiB string with a surrogate, NUL, RTL override and ANSI escape in every 9 chars."""

VALID = "ok \x00 \u202e\u200f \x1b[31mred\x1b[0m \r\x85 \U0010ffff {{input}}"
"""Hostile but valid UTF-8: what a process can pass on stdin and in argv unchanged."""

FUZZ = settings(
    max_examples=10,
    deadline=None,  # each case is bounded by its subprocess timeout instead
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
BOUND = 90
"""Seconds any one command may take: past it, the case is a hang and fails."""

_cases = itertools.count()


def case_dir(tmp_path: Path) -> Path:
    """A fresh folder per example (hypothesis reuses the function's tmp_path)."""
    folder = tmp_path / f"case{next(_cases)}"
    folder.mkdir()
    return folder


def check_exit(result: subprocess.CompletedProcess[Any], allowed: set[int]) -> None:
    """Never a traceback; an allowed, documented exit status; a refusal is one line."""
    stderr = result.stderr if isinstance(result.stderr, str) else result.stderr.decode()
    assert "Traceback" not in stderr, stderr[-3000:]
    assert result.returncode in allowed, (result.returncode, stderr[-3000:])
    if result.returncode == 2:
        lines = stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("Error: "), stderr[-3000:]


def stored(text: str) -> str:
    """How the store keeps ``text``: each lone surrogate as its escape text."""
    return escape_text(text)


def read_back(db: Path) -> list[Any]:
    """Every event of the store, after checking that verify finds it intact."""
    with EventStore.open(str(db), create=False, schema="require", readonly=True) as store:
        report = verify(store)
        assert report.ok, ([p.describe() for p in report.problems], report.damage)
        return list(store.read_all())


def check_rebuild(project: Path, result: subprocess.CompletedProcess[str]) -> None:
    """The report rebuilt from the log is byte for byte the one written during the run."""
    rebuilt = project / "rebuilt"
    rebuild = agentledger(
        "report", "rebuild", experiment_id(result), "--output-dir", str(rebuilt),
        cwd=project, timeout=BOUND,
    )  # fmt: skip
    check_exit(rebuild, {0})
    assert folder_bytes(rebuilt) == folder_bytes(output_folder(result))


def run_experiment(project: Path, *args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return agentledger("run", "experiment", "--yes", *args, cwd=project, timeout=BOUND, **kwargs)


# --- text in the files a user writes: the inputs file and the config ---------------------


@FUZZ
@given(text=hostile_text)
@example(text=MEBIBYTE)
def test_fuzzed_text_in_the_inputs_file_and_config_is_recorded_intact(
    tmp_path: Path, text: str
) -> None:
    # The 1 MiB case goes through the input only (five copies would only time PyYAML).
    small = text if len(text) < 4096 else "big"
    project = make_project(
        case_dir(tmp_path),
        inputs=[{"input": "q " + text, "persona": "p " + small, "metadata": {"note": small}}],
        simulation={"name": "n " + small, "description": small},
        iterations=1,
    )
    result = run_experiment(project)
    check_exit(result, {0})
    events = read_back(project / ".agentledger" / "ledger.db")
    [started] = [e for e in events if e.type == "ExperimentStarted"]
    [trace] = [e for e in events if e.type == "TraceStarted"]
    assert started.data["name"] == stored("n " + small)
    assert (trace.data["input"], trace.data["persona"]) == (
        stored("q " + text),
        stored("p " + small),
    )
    [item] = started.data["plan"]["inputs"]
    assert item["metadata"] == {"note": stored(small)}
    [done] = [e for e in events if e.type == "TraceCompleted"]
    assert done.data["output"] == "echo: " + stored("q " + text)
    check_rebuild(project, result)


@FUZZ
@given(blob=st.binary(max_size=40), where=st.sampled_from(["inputs", "config"]))
@example(blob=b"\xff\xfe", where="inputs")
@example(blob=b"\xed\xa0\x80", where="config")  # a surrogate encoded as if it were UTF-8
@example(blob=b"\x00", where="inputs")  # valid UTF-8 that YAML does not allow raw
@example(blob=b"\x1b[31m", where="config")
def test_raw_bytes_in_the_inputs_file_or_config_are_recorded_or_refused_in_one_line(
    tmp_path: Path, blob: bytes, where: str
) -> None:
    project = make_project(case_dir(tmp_path), iterations=1)
    if where == "inputs":
        path = project / "inputs" / "generated.yaml"
        path.write_bytes(b'inputs:\n  - input: "q ' + blob + b'"\n')
    else:
        path = project / "configs" / "simulation.yaml"
        path.write_bytes(path.read_bytes() + b'description: "' + blob + b'"\n')
    result = run_experiment(project)
    check_exit(result, {0, 2})
    if result.returncode == 0:
        read_back(project / ".agentledger" / "ledger.db")
        check_rebuild(project, result)
    else:  # refused before anything ran: nothing recorded, no report folder
        assert not (project / "experiments").exists()
        if (project / ".agentledger" / "ledger.db").exists():
            assert read_back(project / ".agentledger" / "ledger.db") == []


# --- text the agent makes: its output, ctx.log / observations, tool results ---------------

AGENT_OF_PAYLOAD = """
from payload import TEXT

def lookup(query):
    return "tool " + TEXT

def run(input_text, ctx):
    ctx.log("log " + TEXT)
    ctx.observe("observe " + TEXT, value=TEXT)
    with ctx.span("span " + TEXT):
        tool = ctx.tool("lookup", lookup, {"query": TEXT})
    return {"output": "out " + TEXT, "tool": tool}
"""


@FUZZ
@given(text=hostile_text)
@example(text=MEBIBYTE)
def test_fuzzed_text_from_the_target_logs_observations_and_tools_is_recorded_intact(
    tmp_path: Path, text: str
) -> None:
    project = make_project(
        case_dir(tmp_path), agent=AGENT_OF_PAYLOAD, inputs=[{"input": "q"}], iterations=1
    )
    # repr escapes every surrogate and control character: the agent gets ``text`` exactly
    # (JSON would not: it joins an escaped surrogate pair into one character).
    (project / "payload.py").write_text(f"TEXT = {text!r}\n")
    result = run_experiment(project)
    check_exit(result, {0})
    events = read_back(project / ".agentledger" / "ledger.db")
    [done] = [e for e in events if e.type == "TraceCompleted"]
    assert done.data["output"] == {"output": "out " + stored(text), "tool": "tool " + stored(text)}
    names = {e.data["name"] for e in events if e.type == "ObservationRecorded"}
    assert {"log " + stored(text), "observe " + stored(text), "span " + stored(text)} <= names
    [tool] = [e for e in events if e.type == "ToolCallCompleted"]
    assert tool.data["result"] == "tool " + stored(text)
    check_rebuild(project, result)


# --- model responses from a real (loopback) server ---------------------------------------

AGENT_OF_MODEL = """
def run(input_text, ctx):
    reply = ctx.openai.chat.completions.create(
        model=ctx.model, messages=[{"role": "user", "content": input_text}]
    )
    return reply.choices[0].message.content
"""


@FUZZ
@given(text=hostile_text)
@example(text=MEBIBYTE)
def test_fuzzed_model_responses_are_recorded_intact(
    tmp_path: Path, model_server: ModelServer, text: str
) -> None:
    model_server.replies = [text]
    project = make_project(
        case_dir(tmp_path),
        agent=AGENT_OF_MODEL,
        inputs=[{"input": "q"}],
        iterations=1,
        simulation={
            "model": {"provider": "openai", "name": "m", "base_url": model_server.base_url}
        },
    )
    result = run_experiment(project, env={"OPENAI_API_KEY": "sk-fuzz-not-a-key"})
    check_exit(result, {0})
    events = read_back(project / ".agentledger" / "ledger.db")
    [done] = [e for e in events if e.type == "TraceCompleted"]
    # What the agent's client decoded: JSON joins an escaped surrogate pair into one
    # character (as any client of a real server would), lone ones stay lone.
    assert done.data["output"] == stored(json.loads(json.dumps(text)))
    calls = [e.type for e in events if e.type.startswith("ModelCall")]
    assert calls == ["ModelCallStarted", "ModelCallCompleted"]
    check_rebuild(project, result)


# --- run agent: stdin and -i -------------------------------------------------------------


@pytest.fixture
def agent_project(tmp_path: Path) -> Path:
    project = tmp_path / "agentproj"
    project.mkdir()
    (project / "agentledger.yaml").write_text("agents:\n  - {name: py, target: 'agent:run'}\n")
    (project / "agent.py").write_text("def run(input_text):\n    return 'got ' + input_text\n")
    return project


def run_agent(project: Path, *args: bytes, stdin: bytes = b"") -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "AGENTLEDGER_STORE"}
    return subprocess.run(
        [AGENTLEDGER.encode(), b"run", b"agent", bytes(project), b"py", *args],
        cwd=project, input=stdin, capture_output=True, timeout=BOUND, env=env,
    )  # fmt: skip


def as_bytes(text: str) -> bytes:
    """``text`` as a process passes it: lone surrogates become the bytes they would be in
    UTF-8, which is not valid UTF-8 (as a file or terminal may hold them)."""
    return text.encode("utf-8", "surrogatepass")


def is_utf8(data: bytes) -> bool:
    try:
        data.decode()
    except UnicodeDecodeError:
        return False
    return True


def recorded_turn(project: Path) -> tuple[str, str]:
    """(user message, agent output) of the last turn ``run agent`` recorded."""
    events = read_back(project / ".agentledger" / "ledger.db")
    started = [e for e in events if e.type == "TurnStarted"][-1]
    completed = [e for e in events if e.type == "TurnCompleted"][-1]
    return started.data["user_message"], completed.data["agent_output"]


@FUZZ
@given(text=hostile_text)
@example(text=MEBIBYTE)
@example(text=VALID)
@example(text="\r\n\t ")  # blank: no input
def test_fuzzed_stdin_of_run_agent_is_recorded_or_refused_in_one_line(
    agent_project: Path, text: str
) -> None:
    data = as_bytes(text)
    result = run_agent(agent_project, stdin=data)
    if not is_utf8(data):
        check_exit(result, {2})
        assert b"stdin: not valid UTF-8" in result.stderr
        return
    check_exit(result, {0})
    # Blank stdin is no input (as an empty pipe is): the agent runs with none.
    given = text if text.strip() else ""
    assert recorded_turn(agent_project) == (given, "got " + given)


@FUZZ
@given(text=hostile_text.filter(lambda t: "\x00" not in t))  # argv cannot hold NUL
@example(text=MEBIBYTE.replace("\x00", "")[: 32 * 1024])  # argv holds 128 KiB per item
@example(text=VALID.replace("\x00", ""))
def test_fuzzed_dash_i_of_run_agent_is_recorded_or_refused_in_one_line(
    agent_project: Path, text: str
) -> None:
    data = as_bytes(text)
    result = run_agent(agent_project, b"-i", data)
    if not is_utf8(data):
        check_exit(result, {2})
        assert b"-i: not valid UTF-8 text" in result.stderr
        return
    check_exit(result, {0, 2})
    if result.returncode == 2:  # @file that does not exist, or no input at all
        assert text.startswith("@") or not text.strip(), result.stderr
        return
    assert recorded_turn(agent_project) == (text, "got " + text)


# --- stored databases with flipped bytes -------------------------------------------------


@pytest.fixture(scope="module")
def recorded_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, dict]:
    """A store holding one experiment of 6 runs, and every listing's output over it."""
    project = make_project(tmp_path_factory.mktemp("flip") / "proj", iterations=2)
    result = run_experiment(project)
    check_exit(result, {0})
    experiment = experiment_id(result)
    db = project / ".agentledger" / "ledger.db"
    pristine = {key: listing(db, args, project) for key, args in listings(experiment).items()}
    assert all(r.returncode == 0 for r in pristine.values())
    return db, experiment, {key: r.stdout for key, r in pristine.items()}


def listings(experiment: str) -> dict[str, list[str]]:
    trace = f"{experiment}-000001"
    return {
        "experiments list": ["experiments", "list"],
        "experiments show": ["experiments", "show", experiment],
        "traces show": ["traces", "show", trace],
        "events list": ["events", "list", "--json"],
        "export": ["export"],
        "report show": ["report", "show", experiment],
        "transcript": ["transcript", trace],
    }


def listing(db: Path, args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return agentledger(*args, cwd=cwd, store=str(db), timeout=BOUND)


@settings(FUZZ, max_examples=5)
@given(seed=st.integers(0, 2**32 - 1))
def test_listings_over_a_byte_flipped_store_agree_with_verify(
    tmp_path: Path, recorded_store: tuple[Path, str, dict], seed: int
) -> None:
    db, experiment, pristine = recorded_store
    rng = random.Random(seed)
    damaged = bytearray(db.read_bytes())
    for _ in range(20):  # past the first page: the schema stays readable
        damaged[rng.randrange(4096, len(damaged))] = rng.randrange(256)
    folder = case_dir(tmp_path)
    copy = folder / "damaged.db"
    copy.write_bytes(bytes(damaged))
    verified = listing(copy, ["verify"], folder)
    check_exit(verified, {0, 1})
    for key, args in listings(experiment).items():
        result = listing(copy, args, folder)
        check_exit(result, {0, 2})
        if verified.returncode == 0:  # the flips hit nothing live: every listing as before
            assert (result.returncode, result.stdout) == (0, pristine[key]), key
        elif result.returncode == 2:
            # A row or page that does not decode is named, with what to do; a damaged index
            # can only hide what is looked up through it (which verify's full scan sees).
            assert "agentledger verify" in result.stderr or "Error: no " in result.stderr, (
                key,
                result.stderr,
            )
