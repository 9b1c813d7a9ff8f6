"""Fault injection: SIGKILL at random moments of run experiment, two resumes at once,
workers and report rebuild. Whatever moment the kill lands on: no slot lost, none
recorded twice, verify clean, no temporaries left.

The number of trials comes from AGENTLEDGER_FAULT_TRIALS (default 10 on SQLite, 4 on
PostgreSQL, a few minutes in all); a release runs it with 50 (SQLite) and 20 (PostgreSQL)
trials, see docs/development.md."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import orjson
import pytest

from agentledger.eventstore import EventStore
from agentledger.eventstore.errors import StoreError
from tests.support.projects import AGENTLEDGER, make_project

pytestmark = pytest.mark.slow

AGENT = """
import time
def run(input_text, ctx):
    for step in range(3):
        ctx.observe("step", n=step)
        time.sleep(0.01)
    return "done: " + input_text
"""
INPUTS = [{"input": f"question {n}"} for n in range(12)]
TEMPORARY_MARKS = (".tmp-", ".part")


def trials(backend: str) -> int:
    configured = os.environ.get("AGENTLEDGER_FAULT_TRIALS")
    if configured:
        count = int(configured)
        return count if backend == "sqlite" else max(1, count * 2 // 5)
    return 10 if backend == "sqlite" else 4


def command(store: str, *args: str) -> list[str]:
    return [AGENTLEDGER, "--store", store, *args]


def spawn(args: list[str], cwd: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if k != "AGENTLEDGER_STORE"}
    return subprocess.Popen(
        args, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, env=env, start_new_session=False,
    )  # fmt: skip


def finish(process: subprocess.Popen[bytes], timeout: float = 120) -> None:
    _, stderr = process.communicate(timeout=timeout)
    assert process.returncode == 0, stderr.decode()


def kill_later(process: subprocess.Popen[bytes], rng: random.Random, most: float) -> None:
    time.sleep(rng.uniform(0.05, most))
    if process.poll() is None:
        os.kill(process.pid, signal.SIGKILL)
    process.communicate(timeout=60)


def experiments(store_url: str) -> list[str]:
    """Every experiment the store has started, oldest first (none if no store yet)."""
    try:
        with EventStore.open(store_url, create=False) as store:
            started = store.read_all(types=["ExperimentStarted"])
            return [str(e.data["experiment_id"]) for e in started]
    except StoreError:
        return []  # killed before it created the store


def check_invariants(store_url: str, experiment: str, project: Path) -> None:
    finals: Counter[str] = Counter()
    with EventStore.open(store_url, create=False) as store:
        for ev in store.read_all(
            correlation_id=experiment, types=["TraceCompleted", "TraceFailed"]
        ):
            if ev.type == "TraceCompleted" or ev.data.get("reason") != "interrupted":
                finals[ev.stream_id] += 1
        completions = list(store.read_all(correlation_id=experiment, types=["ExperimentCompleted"]))
        [started] = store.read_all(correlation_id=experiment, types=["ExperimentStarted"])
    assert sorted(finals.values()) == [1] * len(INPUTS), finals
    assert len(completions) == 1
    verify = subprocess.run(
        command(store_url, "verify", experiment), cwd=project, capture_output=True, text=True,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert verify.returncode == 0, verify.stdout + verify.stderr
    folder = Path(started.data["output_dir"])
    summary = orjson.loads((folder / "summary.json").read_bytes())
    assert summary["status"] == "completed" and summary["successful"] == len(INPUTS)
    leftovers = [p for p in folder.rglob("*") if any(m in p.name for m in TEMPORARY_MARKS)]
    assert not leftovers, leftovers


def kill_run_then_two_resumes(project: Path, store: str, rng: random.Random) -> None:
    before = len(experiments(store))
    run = spawn(command(store, "run", "experiment", "-y", "--parallel", "2"), project)
    kill_later(run, rng, 1.5)
    found = experiments(store)[before:]
    if not found:
        return  # killed before the experiment started: nothing recorded, nothing to check
    resumes = [
        spawn(command(store, "run", "experiment", "--resume", found[-1]), project) for _ in range(2)
    ]
    for resume in resumes:
        finish(resume)
    check_invariants(store, found[-1], project)


def kill_a_workers_process_then_resume(project: Path, store: str, rng: random.Random) -> None:
    before = len(experiments(store))
    start = spawn(
        command(store, "run", "experiment", "-y", "--workers", "2", "--lease-seconds", "2"),
        project,
    )
    kill_later(start, rng, 2.0)  # the starting process only: its workers go on
    found = experiments(store)[before:]
    if not found:
        return
    finish(spawn(command(store, "run", "experiment", "--resume", found[-1]), project))
    check_invariants(store, found[-1], project)


def kill_a_rebuild_then_rebuild(project: Path, store: str, rng: random.Random) -> None:
    finish(spawn(command(store, "run", "experiment", "-y"), project))
    experiment = experiments(store)[-1]
    rebuild = command(store, "report", "rebuild", experiment)
    kill_later(spawn(rebuild, project), rng, 0.8)
    finish(spawn(rebuild, project))
    check_invariants(store, experiment, project)


SCENARIOS = [
    kill_run_then_two_resumes,
    kill_a_workers_process_then_resume,
    kill_a_rebuild_then_rebuild,
]


def test_sigkill_at_random_moments_loses_nothing_and_records_nothing_twice(
    tmp_path: Path, store_url: str, backend: str
) -> None:
    rng = random.Random(20261202)
    for trial in range(trials(backend)):
        project = make_project(tmp_path / f"trial{trial}", agent=AGENT, inputs=INPUTS, iterations=1)
        # PostgreSQL: one database for every trial (experiments are told apart by id).
        store = store_url if backend == "postgresql" else str(project / "ledger.db")
        scenario = SCENARIOS[trial % len(SCENARIOS)]
        scenario(project, store, rng)
