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


def start(project: Path, store: str, parallel: str = "2") -> subprocess.Popen[str]:
    return subprocess.Popen(
        [AGENTLEDGER, "--store", store, "run", "experiment", "-y", "--parallel", parallel],
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
    assert agentledger("verify", experiment, cwd=project, store=store_url).returncode == 0


STEPPING_AGENT = """
import time
def run(input_text, ctx):
    for step in range(6):
        ctx.observe("step", n=step)
        time.sleep(0.02)
    return "done: " + input_text
"""


def test_two_resumes_at_once_complete_every_slot_exactly_once(
    tmp_path: Path, store_url: str
) -> None:
    # Runs that record a step at a time: two processes running the same slot interleave
    # their appends, so a run that lost its slot would find the stream's next version
    # free again and again unless it stops at its first refused append.
    inputs = [{"input": f"question {n}"} for n in range(24)]
    project = make_project(tmp_path, agent=STEPPING_AGENT, inputs=inputs, iterations=1)
    proc = start(project, store_url)
    wait_for_traces(store_url, 3)
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=30)
    experiment = experiment_of(store_url)
    command = [AGENTLEDGER, "--store", store_url, "run", "experiment", "--resume", experiment]
    both = [
        subprocess.Popen(
            [*command, "--parallel", "4"],
            cwd=project,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
        )
        for _ in range(2)
    ]
    for resumed in both:
        _, stderr = resumed.communicate(timeout=120)
        assert resumed.returncode == 0, stderr
    assert sorted(completions(store_url).values()) == [1] * 24
    with EventStore.open(store_url, create=False) as store:
        endings = list(store.read_all(types=["ExperimentCompleted"]))
    assert len(endings) == 1 and endings[0].data["successful"] == 24
    shown = agentledger("experiments", "show", experiment, cwd=project, store=store_url)
    assert "progress    24/24 runs finished" in shown.stdout, shown.stdout
    assert agentledger("verify", experiment, cwd=project, store=store_url).returncode == 0


def test_resume_of_a_completed_experiment_writes_its_missing_report_again(
    tmp_path: Path, store_url: str
) -> None:
    project = make_project(tmp_path, agent="def run(input_text):\n    return input_text\n")
    first = agentledger("run", "experiment", "--yes", cwd=project, store=store_url)
    assert first.returncode == 0, first.stderr
    folder = output_folder(first)
    before = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}
    for path in folder.iterdir():
        if path.is_file():
            path.unlink()
    experiment = experiment_of(store_url)
    again = agentledger("run", "experiment", "--resume", experiment, cwd=project, store=store_url)
    assert again.returncode == 0, again.stderr
    assert "Already completed: nothing left to run" in again.stderr
    assert {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()} == before


def test_a_sync_target_that_hangs_past_its_timeout_does_not_hold_the_command_open(
    tmp_path: Path,
) -> None:
    hangs = "import time\ndef run(input_text):\n    time.sleep(3600)\n"
    project = make_project(tmp_path, agent=hangs, iterations=1)
    # The subprocess timeout is the hang guard: the command must end on its own.
    result = agentledger(
        "run", "experiment", "--yes", "--timeout", "1", "--parallel", "3", cwd=project, timeout=60
    )
    assert result.returncode == 1, result.stderr
    assert "Runs: 3/3  ok: 0  failed: 3" in result.stdout
    rows = read_jsonl(output_folder(result) / "trace_summary.jsonl")
    assert [row["error"]["reason"] for row in rows] == ["timeout"] * 3


def test_an_async_target_that_swallows_cancellation_does_not_hold_the_command_open(
    tmp_path: Path,
) -> None:
    stubborn = (
        "import asyncio\n"
        "async def run(input_text):\n"
        "    while True:\n"
        "        try:\n"
        "            await asyncio.sleep(3600)\n"
        "        except BaseException:\n"
        "            pass\n"
    )
    project = make_project(tmp_path, agent=stubborn, iterations=1)
    # The subprocess timeout is the hang guard: the command must end on its own.
    result = agentledger(
        "run", "experiment", "--yes", "--timeout", "1", "--parallel", "3", cwd=project, timeout=60
    )
    assert result.returncode == 1, result.stderr
    assert "Runs: 3/3  ok: 0  failed: 3" in result.stdout
    rows = read_jsonl(output_folder(result) / "trace_summary.jsonl")
    assert [row["error"]["reason"] for row in rows] == ["timeout"] * 3


def test_one_at_a_time_a_run_that_ignores_every_interruption_ends_the_command(
    tmp_path: Path, store_url: str
) -> None:
    stubborn = (
        "import time\n"
        "def run(input_text):\n"
        "    while True:\n"
        "        try:\n"
        "            time.sleep(3600)\n"
        "        except BaseException:\n"
        "            pass\n"
    )
    project = make_project(tmp_path, agent=stubborn, iterations=1)
    # The subprocess timeout is the hang guard: the command must end on its own.
    result = agentledger(
        "run", "experiment", "--yes", "--timeout", "0.2", cwd=project, store=store_url, timeout=60
    )
    assert result.returncode == 3
    assert "ignored its timeout 5 times and cannot be stopped; exiting" in result.stderr
    assert "--resume" in result.stderr
    experiment = experiment_of(store_url)
    with EventStore.open(store_url, create=False) as store:
        assert [e.type for e in store.read_all(types=["ExperimentStarted", "TraceStarted"])] == [
            "ExperimentStarted",
            "TraceStarted",
        ]
    assert agentledger("verify", experiment, cwd=project, store=store_url).returncode == 0


def test_ctrl_c_reaches_a_long_sync_run_at_once(tmp_path: Path, store_url: str) -> None:
    slow = "import time\ndef run(input_text):\n    time.sleep(30)\n    return 'done'\n"
    project = make_project(tmp_path, agent=slow, inputs=INPUTS, iterations=1)
    proc = subprocess.Popen(
        [AGENTLEDGER, "--store", store_url, "run", "experiment", "-y", "--parallel", "1"],
        cwd=project,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    end = time.monotonic() + 30
    while time.monotonic() < end:
        try:
            with EventStore.open(store_url, create=False) as store:
                if any(True for _ in store.read_all(types=["TraceStarted"])):
                    break
        except Exception:
            pass
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _stdout, stderr = proc.communicate(timeout=20)  # well before the 30 s run would end
    assert proc.returncode == 130, stderr
    with EventStore.open(store_url, create=False) as store:
        failed = [e.data for e in store.read_all(types=["TraceFailed"])]
    assert [f["reason"] for f in failed] == ["interrupted"]


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_between_quick_runs_one_at_a_time_stops_the_experiment(
    tmp_path: Path, store_url: str, signum: int
) -> None:
    """At --parallel 1 sync runs are awaited on the loop's own step, one after another:
    the loop still hears a signal that lands between them, and the experiment stops."""
    inputs = [{"input": f"question {n}"} for n in range(200)]
    project = make_project(tmp_path, inputs=inputs, iterations=100)
    proc = start(project, store_url, parallel="1")
    wait_for_traces(store_url, 50)
    proc.send_signal(signum)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    folder = Path(next(x for x in stdout.splitlines() if x.startswith("Output: "))[8:])
    summary = orjson.loads((folder / "summary.json").read_bytes())
    assert summary["status"] == "interrupted" and 50 <= summary["successful"] < 20_000
    assert all(count == 1 for count in completions(store_url).values())
