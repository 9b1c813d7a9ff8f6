"""The command's start-up: the cycle collector is back on before any run, and a command
loads only the module that defines it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.projects import agentledger, make_project, output_folder, read_jsonl

pytestmark = pytest.mark.slow

PROBE = """
import gc
import sys


def run(input_text):
    others = ("agentledger.cli.view", "agentledger.cli.agent")
    loaded = sorted(m for m in others if m in sys.modules)
    return f"gc {gc.isenabled()} frozen {gc.get_freeze_count() > 0} loaded {loaded}"
"""


@pytest.mark.parametrize("parallel", ["1", "3"])
def test_runs_see_the_collector_on_and_only_the_experiment_command_loaded(
    tmp_path: Path, parallel: str
) -> None:
    project = make_project(tmp_path / "proj", agent=PROBE, iterations=1)
    result = agentledger("run", "experiment", "--yes", "--parallel", parallel, cwd=project)
    assert result.returncode == 0, result.stderr
    rows = read_jsonl(output_folder(result) / "trace_summary.jsonl")
    assert {row["output"] for row in rows} == {"gc True frozen True loaded []"}


DIES_ONCE = (
    PROBE
    + """
import os
from pathlib import Path

_run = run


def run(input_text):
    if "second" in input_text and not Path("died").exists():
        Path("died").write_text("once")
        os._exit(9)  # the process is killed mid-experiment
    return _run(input_text)
"""
)


def test_resumed_runs_see_the_collector_on(tmp_path: Path) -> None:
    project = make_project(tmp_path / "proj", agent=DIES_ONCE, iterations=1)
    first = agentledger("run", "experiment", "--yes", cwd=project)
    assert first.returncode == 9, first.stderr
    resumed = agentledger("run", "experiment", "--resume", "demo", cwd=project)
    assert resumed.returncode == 0, resumed.stderr
    rows = read_jsonl(output_folder(resumed) / "trace_summary.jsonl")
    outputs = {row["input"]: row["output"] for row in rows}
    assert outputs["second question"] == "gc True frozen True loaded []"


def test_other_commands_run_with_the_collector_on(tmp_path: Path) -> None:
    """Every command but ``run experiment`` gets the collector back when it starts."""
    code = (
        "import gc, sys\n"
        "from agentledger.cli import init\n"
        "from agentledger.cli.main import main\n"
        "seen = []\n"
        "real = init.init.callback\n"
        "def probe(*args, **kwargs):\n"
        "    seen.append(gc.isenabled())\n"
        "    return real(*args, **kwargs)\n"
        "init.init.callback = probe\n"
        "sys.argv = ['agentledger', 'init', sys.argv[1]]\n"
        "try:\n"
        "    main()\n"
        "except SystemExit as exc:\n"
        "    print(exc.code, seen)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "new")],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=60,
    )
    assert done.stdout.splitlines()[-1] == "0 [True]", done.stderr


def test_library_use_keeps_the_callers_collector_settings() -> None:
    code = (
        "import gc\n"
        "from agentledger import heap\n"
        "heap.settle()\n"
        "print(gc.isenabled(), gc.get_freeze_count())\n"
        "gc.disable()\n"
        "heap.defer()\n"
        "heap.settle()\n"
        "print(gc.isenabled())\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    # settle without defer changes nothing; defer leaves a caller's disabled collector be.
    assert done.stdout.split() == ["True", "0", "False"]
