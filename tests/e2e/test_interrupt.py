"""Interruption with real signals: Ctrl-C (SIGINT) and SIGKILL, then --resume."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import orjson
import pytest

from agentledger.eventstore import EventStore
from tests.support.projects import AGENTLEDGER, agentledger, make_project, output_folder, read_jsonl

pytestmark = pytest.mark.slow

SLOW_AGENT = """
import time
def run(input_text):
    time.sleep(0.15)
    return "done: " + input_text
"""
INPUTS = [{"input": f"question {n}"} for n in range(10)]


def start(project: Path, store: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [AGENTLEDGER, "--store", store, "run", "experiment", "-y", "--parallel", "2"],
        cwd=project,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )


def wait_for_traces(store_url: str, count: int, deadline: float = 30.0) -> None:
    """Block until ``count`` traces have finished in the store."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        try:
            with EventStore.open(store_url, create=False) as store:
                done = sum(1 for _ in store.read_all(types=["TraceCompleted"]))
        except Exception:
            done = 0
        if done >= count:
            return
        time.sleep(0.05)
    raise AssertionError(f"fewer than {count} traces finished in {deadline}s")


def completions(store_url: str) -> dict[str, int]:
    """Finished-trace count per trace stream."""
    counts: dict[str, int] = {}
    with EventStore.open(store_url, create=False) as store:
        for ev in store.read_all(types=["TraceCompleted", "TraceFailed"]):
            if ev.type == "TraceCompleted" or ev.data.get("reason") != "interrupted":
                counts[ev.stream_id] = counts.get(ev.stream_id, 0) + 1
    return counts


def experiment_of(store_url: str) -> str:
    with EventStore.open(store_url, create=False) as store:
        return str(next(store.read_all(types=["ExperimentStarted"])).data["experiment_id"])


def test_ctrl_c_writes_a_partial_report_exits_130_and_resume_finishes(
    tmp_path: Path, store_url: str
) -> None:
    project = make_project(tmp_path, agent=SLOW_AGENT, inputs=INPUTS, iterations=1)
    proc = start(project, store_url)
    wait_for_traces(store_url, 2)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130, stderr
    assert "Interrupted: resume with agentledger run experiment --resume" in stderr
    folder = Path(next(x for x in stdout.splitlines() if x.startswith("Output: "))[8:])
    summary = orjson.loads((folder / "summary.json").read_bytes())
    assert summary["status"] == "interrupted" and summary["interrupted"] is True
    assert 2 <= summary["successful"] < 10

    experiment = experiment_of(store_url)
    resumed = agentledger("run", "experiment", "--resume", experiment, cwd=project, store=store_url)
    assert resumed.returncode == 0, resumed.stderr
    assert output_folder(resumed) == folder
    summary = orjson.loads((folder / "summary.json").read_bytes())
    assert (summary["status"], summary["successful"], summary["resumed"]) == ("completed", 10, 1)
    assert list(completions(store_url).values()) == [1] * 10
    assert len(read_jsonl(folder / "trace_summary.jsonl")) == 10
    assert agentledger("verify", experiment, cwd=project, store=store_url).returncode == 0


def test_sigkill_then_resume_completes_every_slot_exactly_once(
    tmp_path: Path, store_url: str
) -> None:
    project = make_project(tmp_path, agent=SLOW_AGENT, inputs=INPUTS, iterations=1)
    proc = start(project, store_url)
    wait_for_traces(store_url, 3)
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=30)
    experiment = experiment_of(store_url)
    resumed = agentledger("run", "experiment", "--resume", experiment, cwd=project, store=store_url)
    assert resumed.returncode == 0, resumed.stderr
    assert sorted(completions(store_url).values()) == [1] * 10
    summary = orjson.loads((output_folder(resumed) / "summary.json").read_bytes())
    assert (summary["status"], summary["successful"]) == ("completed", 10)
    again = agentledger("run", "experiment", "--resume", experiment, cwd=project, store=store_url)
    assert again.returncode == 2 and "already completed" in again.stderr
    assert agentledger("verify", experiment, cwd=project, store=store_url).returncode == 0
