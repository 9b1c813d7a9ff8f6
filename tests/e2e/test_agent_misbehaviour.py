"""Agents that exit, interrupt themselves, tamper with the alarm or hold the event loop:
their run fails (or times out), the experiment goes on, and the command never hangs."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.support.projects import (
    AGENTLEDGER,
    agentledger,
    make_project,
    output_folder,
    read_jsonl,
)

INPUTS = [{"input": "a"}, {"input": "exit"}, {"input": "c"}]


@pytest.mark.parametrize(
    ("agent", "parallel", "error_type"),
    [
        ("import sys\ndef run(input_text):\n    if input_text == 'exit':\n        sys.exit(0)\n"
         "    return 'ok'\n", "1", "SystemExit"),
        ("import sys\ndef run(input_text):\n    if input_text == 'exit':\n        sys.exit(3)\n"
         "    return 'ok'\n", "4", "SystemExit"),
        ("def run(input_text):\n    if input_text == 'exit':\n        raise KeyboardInterrupt\n"
         "    return 'ok'\n", "4", "KeyboardInterrupt"),
        ("async def run(input_text):\n    if input_text == 'exit':\n        raise SystemExit(0)\n"
         "    return 'ok'\n", "2", "SystemExit"),
    ],
)  # fmt: skip
def test_an_agent_that_exits_fails_its_run_and_the_experiment_goes_on(
    tmp_path: Path, agent: str, parallel: str, error_type: str
) -> None:
    project = make_project(tmp_path / "proj", agent=agent, inputs=INPUTS, iterations=1)
    result = agentledger("run", "experiment", "--yes", "--parallel", parallel, cwd=project)
    assert result.returncode == 1, result.stderr
    rows = read_jsonl(output_folder(result) / "trace_summary.jsonl")
    assert [r["success"] for r in rows] == [True, False, True]
    assert rows[1]["error"]["type"] == error_type


def test_a_target_module_that_exits_on_import_is_a_one_line_error(tmp_path: Path) -> None:
    project = make_project(tmp_path / "proj", agent="import sys\nsys.exit(0)\n")
    result = agentledger("run", "experiment", "--yes", cwd=project)
    assert result.returncode == 2
    assert result.stderr.strip().startswith("Error: importing agent for target agent:run raised")


@pytest.mark.parametrize(
    "agent",
    [
        # At --parallel 1 sync runs are called on the main thread: the timeout interrupts
        # the run itself, and an agent's except Exception does not swallow it ...
        "import time\ndef run(input_text):\n    try:\n        time.sleep(3600)\n"
        "    except Exception:\n        return 'swallowed'\n",
        # ... and a run that returns after swallowing it still timed out.
        "import time\ndef run(input_text):\n    try:\n        time.sleep(3600)\n"
        "    except BaseException:\n        return 'too late'\n",
        "import signal, time\ndef run(input_text):\n    signal.alarm(0)\n    time.sleep(3)\n",
        "import signal, time\ndef run(input_text):\n"
        "    signal.signal(signal.SIGALRM, lambda *a: None)\n    time.sleep(3)\n",
        "import time\ndef run(input_text):\n    try:\n        time.sleep(3)\n"
        "    except BaseException:\n        raise RuntimeError('wrapped')\n",
    ],
)
def test_a_run_past_its_timeout_times_out_whatever_it_does_about_the_alarm(
    tmp_path: Path, agent: str
) -> None:
    project = make_project(tmp_path / "proj", agent=agent, inputs=INPUTS[:2], iterations=1)
    result = agentledger("run", "experiment", "--yes", "--timeout", "0.5", cwd=project, timeout=60)
    assert result.returncode == 1, result.stderr
    assert "Runs: 2/2  ok: 0  failed: 2" in result.stdout
    rows = read_jsonl(output_folder(result) / "trace_summary.jsonl")
    assert [r["error"]["reason"] for r in rows] == ["timeout", "timeout"]


def test_a_second_ctrl_c_quits_even_when_a_run_holds_the_event_loop(tmp_path: Path) -> None:
    busy = "async def run(input_text):\n    while True:\n        pass\n"
    project = make_project(tmp_path / "proj", agent=busy, inputs=INPUTS[:1], iterations=1)
    proc = subprocess.Popen(
        [AGENTLEDGER, "run", "experiment", "--yes", "--timeout", "2"],
        cwd=project,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    time.sleep(3)
    proc.send_signal(signal.SIGINT)
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=20)  # the hang guard: it must end on its own
    assert proc.returncode == 130


def test_an_endless_run_delay_is_refused(tmp_path: Path) -> None:
    project = make_project(tmp_path / "proj", simulation={"run_delay_seconds": float("inf")})
    result = agentledger("run", "experiment", "--yes", cwd=project)
    assert result.returncode == 2
    assert "run_delay_seconds" in result.stderr and "3600" in result.stderr
