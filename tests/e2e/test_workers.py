"""Scale-out: worker processes sharing one experiment through the store (SQLite and a real
PostgreSQL), with leases, takeover after SIGKILL, late results refused, and resume."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest

from agentledger.eventstore import EventStore
from agentledger.eventstore.faults import HOLD_VARIABLE
from agentledger.eventstore.slots import Claim, SlotBoard
from tests.support.projects import (
    AGENTLEDGER,
    agentledger,
    experiment_id,
    folder_bytes,
    make_project,
    output_folder,
    read_jsonl,
)

pytestmark = pytest.mark.slow

SLOW_AGENT = """
import time
def run(input_text, persona, iteration, ctx):
    ctx.observe("start", iteration=iteration)
    time.sleep(0.4)
    return f"{persona}: {input_text} #{iteration}"
"""
INPUTS = [
    {"input": "alpha", "persona": "novice"},
    {"input": "beta", "persona": "expert"},
    {"input": "gamma", "persona": "novice"},
]
ITERATIONS = 10
TOTAL = len(INPUTS) * ITERATIONS


def popen(*args: str, cwd: Path, store: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if k != "AGENTLEDGER_STORE"}
    return subprocess.Popen(
        [AGENTLEDGER, "--store", store, *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env={**env, "PYTHONUNBUFFERED": "1"},
    )


def wait_until(check: Any, what: str, deadline: float = 60.0) -> Any:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        try:
            value = check()
        except Exception:
            value = None
        if value:
            return value
        time.sleep(0.03)
    raise AssertionError(f"timed out waiting for {what}")


def events(store_url: str, *types: str) -> list[Any]:
    with EventStore.open(store_url, create=False) as store:
        return list(store.read_all(types=list(types)))


def started_experiment(store_url: str) -> str | None:
    found = events(store_url, "ExperimentStarted")
    return str(found[-1].data["experiment_id"]) if found else None


def running_trace_of(store_url: str, pid: int) -> str | None:
    """A trace the process ``pid`` started and has not finished."""
    open_traces: dict[str, int] = {}
    for ev in events(store_url, "TraceStarted", "TraceCompleted", "TraceFailed"):
        if ev.type == "TraceStarted":
            open_traces[ev.stream_id] = ev.metadata["pid"]
        else:
            open_traces.pop(ev.stream_id, None)
    return next((s for s, p in open_traces.items() if p == pid), None)


def finals(store_url: str) -> Counter[str]:
    """Final events per trace stream."""
    counts: Counter[str] = Counter()
    for ev in events(store_url, "TraceCompleted", "TraceFailed"):
        if ev.type == "TraceCompleted" or ev.data.get("reason") != "interrupted":
            counts[ev.stream_id] += 1
    return counts


VOLATILE = {
    "experiment_id",
    "started_at",
    "completed_at",
    "avg_duration_ms",
    "duration_ms",
    "date",
    "duration_seconds",
}


def normal(value: Any) -> Any:
    """A report value without what differs between any two runs (ids, times, durations)."""
    if isinstance(value, dict):
        return {k: normal(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [normal(v) for v in value]
    return value


def report_of(folder: Path) -> tuple[Any, list[Any]]:
    summary = normal(orjson.loads((folder / "summary.json").read_bytes()))
    traces = [
        {**normal(row), "trace_id": row["trace_id"].rsplit("-", 1)[1]}
        for row in read_jsonl(folder / "trace_summary.jsonl")
    ]
    return summary, traces


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return make_project(
        tmp_path / "project",
        agent=SLOW_AGENT,
        inputs=INPUTS,
        iterations=ITERATIONS,
        simulation={"parallel_runs": 2},
    )


def test_workers_survive_a_sigkilled_worker_every_slot_once_same_report(
    project: Path, store_url: str
) -> None:
    starter = popen(
        "run", "experiment", "-y", "--workers", "2", "--lease-seconds", "1.5",
        cwd=project, store=store_url,
    )  # fmt: skip
    experiment = wait_until(lambda: started_experiment(store_url), "the experiment to start")
    joined = [popen("worker", experiment, cwd=project, store=store_url) for _ in range(2)]
    victim = joined[0]
    killed_trace = wait_until(
        lambda: running_trace_of(store_url, victim.pid), "the joined worker to start a run"
    )
    victim.send_signal(signal.SIGKILL)
    stdout, stderr = starter.communicate(timeout=120)
    assert starter.returncode == 0, stderr
    survivor_out, survivor_err = joined[1].communicate(timeout=60)
    assert joined[1].returncode == 0, survivor_err
    victim.communicate(timeout=10)

    # Every slot finished exactly once; the killed worker's run was taken over and redone.
    assert sorted(finals(store_url).values()) == [1] * TOTAL
    restarts = Counter(ev.stream_id for ev in events(store_url, "TraceStarted"))
    assert restarts[killed_trace] == 2
    pids = {ev.metadata["pid"] for ev in events(store_url, "TraceCompleted")}
    assert len(pids) >= 3, "the local workers and the surviving joined worker all ran slots"
    completed = events(store_url, "ExperimentCompleted")
    assert len(completed) == 1 and completed[0].data["successful"] == TOTAL
    with EventStore.open(store_url, create=False) as store:
        counts = SlotBoard(store).counts(experiment)
    assert (counts.done, counts.remaining) == (TOTAL, 0)
    verify = agentledger("verify", experiment, cwd=project, store=store_url)
    assert verify.returncode == 0, verify.stdout + verify.stderr

    # The report is the one a single process writes for the same plan, and rebuilds
    # byte for byte from the log.
    shared = output_folder(subprocess.CompletedProcess([], 0, stdout, stderr))
    single = agentledger("run", "experiment", "-y", cwd=project, store=store_url)
    assert single.returncode == 0, single.stderr
    assert report_of(shared) == report_of(output_folder(single))
    rebuilt = project / "rebuilt"
    rebuild = agentledger(
        "report", "rebuild", experiment, "--output-dir", str(rebuilt), cwd=project, store=store_url
    )
    assert rebuild.returncode == 0, rebuild.stderr
    assert folder_bytes(rebuilt) == folder_bytes(shared)
    assert f"Experiment {experiment}: " in survivor_out


def test_a_late_lease_holder_is_refused_and_recorded(project: Path, store_url: str) -> None:
    starter = popen(
        "run", "experiment", "-y", "--workers", "1", "--lease-seconds", "1",
        cwd=project, store=store_url,
    )  # fmt: skip
    experiment = wait_until(lambda: started_experiment(store_url), "the experiment to start")
    late = popen("worker", experiment, "--parallel", "1", cwd=project, store=store_url)
    trace = wait_until(lambda: running_trace_of(store_url, late.pid), "the late worker's run")
    late.send_signal(signal.SIGSTOP)  # a paused machine: no renewals, the lease runs out
    try:
        wait_until(lambda: finals(store_url)[trace] == 1, "another worker to finish its slot")
    finally:
        late.send_signal(signal.SIGCONT)
    out, err = late.communicate(timeout=60)
    assert late.returncode == 0, err
    assert "1 refused (slot taken over)" in out
    stdout, stderr = starter.communicate(timeout=120)
    assert starter.returncode == 0, stderr

    assert sorted(finals(store_url).values()) == [1] * TOTAL
    rejected = events(store_url, "SlotResultRejected")
    assert [ev.data["trace_id"] for ev in rejected] == [trace.removeprefix("trace-")]
    assert rejected[0].metadata["pid"] == late.pid
    assert "lease expired" in rejected[0].data["reason"]
    assert agentledger("verify", experiment, cwd=project, store=store_url).returncode == 0
    show = agentledger("experiments", "show", experiment, cwd=project, store=store_url)
    assert f"0 pending, 0 running, 0 lease expired, {TOTAL} done (lease 1s)" in show.stdout
    assert "workers     none holding a lease" in show.stdout
    assert "refused     1 late result(s) of slots taken over" in show.stdout
    folder = output_folder(subprocess.CompletedProcess([], 0, stdout, stderr))
    report = orjson.loads((folder / "summary.json").read_bytes())
    assert (report["status"], report["successful"]) == ("completed", TOTAL)


def test_ctrl_c_stops_every_worker_and_resume_finishes(project: Path, tmp_path: Path) -> None:
    store_url = str(tmp_path / "ledger.db")
    starter = popen("run", "experiment", "-y", "--workers", "2", cwd=project, store=store_url)
    wait_until(lambda: len(finals(store_url)) >= 2, "two runs to finish")
    starter.send_signal(signal.SIGINT)
    _, stderr = starter.communicate(timeout=60)
    assert starter.returncode == 130, stderr
    assert "--resume" in stderr
    experiment = started_experiment(store_url)
    assert experiment is not None
    interrupted = events(store_url, "ExperimentInterrupted")
    assert interrupted and interrupted[0].data["reason"] == "interrupted"
    with EventStore.open(store_url, create=False) as store:
        counts = SlotBoard(store).counts(experiment)
    assert counts.running == 0 and counts.expired == 0, "interrupted workers give slots back"

    resumed = agentledger(
        "run", "experiment", "--resume", experiment, "--workers", "3", cwd=project, store=store_url
    )
    assert resumed.returncode == 0, resumed.stderr
    assert sorted(finals(store_url).values()) == [1] * TOTAL
    summary = orjson.loads((output_folder(resumed) / "summary.json").read_bytes())
    assert (summary["status"], summary["successful"], summary["resumed"]) == (
        "completed",
        TOTAL,
        1,
    )
    assert experiment_id(resumed) == experiment
    assert agentledger("verify", cwd=project, store=store_url).returncode == 0


def test_worker_and_workers_flags_refuse_bad_input(project: Path, tmp_path: Path) -> None:
    store_url = str(tmp_path / "ledger.db")
    lease = agentledger("run", "experiment", "-y", "--lease-seconds", "5", cwd=project)
    assert lease.returncode == 2 and "add --workers N" in lease.stderr
    manual = agentledger(
        "run", "experiment", "-y", "--workers", "2", "--multi-turn", "--manual-approve-tools",
        cwd=project,
    )  # fmt: skip
    assert manual.returncode == 2
    single = agentledger("run", "experiment", "-y", "-i", "1", cwd=project, store=store_url)
    assert single.returncode == 0, single.stderr
    one = experiment_id(single)
    refused = agentledger("worker", one, cwd=project, store=store_url)
    assert refused.returncode == 2
    assert "runs in one process" in refused.stderr and "--workers N" in refused.stderr
    assert "Traceback" not in refused.stderr
    unknown = agentledger("worker", "nope", cwd=project, store=store_url)
    assert unknown.returncode == 2 and "no experiment 'nope'" in unknown.stderr
    resume = agentledger(
        "run", "experiment", "--resume", one, "--workers", "2", cwd=project, store=store_url
    )
    assert resume.returncode == 2 and "without --workers" in resume.stderr
    lease_on_resume = agentledger(
        "run", "experiment", "--resume", one, "--lease-seconds", "5", cwd=project, store=store_url
    )
    assert lease_on_resume.returncode == 2 and "drop --lease-seconds" in lease_on_resume.stderr
    nowhere = agentledger(
        "worker", one, "--project", str(tmp_path / "missing"), cwd=project, store=store_url
    )
    assert nowhere.returncode == 2 and "'--project'" in nowhere.stderr
    assert "does not exist" in nowhere.stderr


def test_worker_finds_a_moved_project_with_project_flag(project: Path, tmp_path: Path) -> None:
    store_url = str(tmp_path / "ledger.db")
    started = agentledger(
        "run", "experiment", "-y", "--workers", "1", "-i", "1", cwd=project, store=store_url
    )
    assert started.returncode == 0, started.stderr
    # A finished experiment: a joining worker finds nothing left and says so.
    late = agentledger("worker", experiment_id(started), cwd=tmp_path, store=store_url)
    assert late.returncode == 0, late.stderr
    assert "0 runs" in late.stdout and ": complete" in late.stdout
    # On a machine where the project lives elsewhere, the recorded path is refused, with
    # the flag to use.
    moved = tmp_path / "elsewhere"
    project.rename(moved)
    missing = agentledger("worker", experiment_id(started), cwd=tmp_path, store=store_url)
    assert missing.returncode == 2 and "--project DIR" in missing.stderr
    found = agentledger(
        "worker", experiment_id(started), "--project", str(moved), cwd=tmp_path, store=store_url
    )
    assert found.returncode == 0, found.stderr


def test_claims_are_exclusive_under_concurrency_and_leases_expire(store: EventStore) -> None:
    board = SlotBoard(store)
    board.create("exp", range(200))
    claimed: list[list[int]] = [[] for _ in range(4)]

    def claim_all(n: int) -> None:
        while True:
            got = board.claim("exp", f"w{n}", limit=3, lease_seconds=60)
            if not got.slots:
                return
            claimed[n].extend(s for s, _ in got.slots)

    threads = [threading.Thread(target=claim_all, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    every = sorted(s for mine in claimed for s in mine)
    assert every == list(range(200)), "each slot claimed exactly once"
    assert board.counts("exp").running == 200

    # w0's leases run out: another worker claims them again, and w0 learns it lost them.
    board.create("short", range(3))
    first = board.claim("short", "w0", limit=3, lease_seconds=0.2)
    assert [(s, before) for s, before in first.slots] == [(0, 0), (1, 0), (2, 0)]
    assert board.claim("short", "w1", limit=3, lease_seconds=60) == Claim([], 3)
    time.sleep(0.4)
    assert board.counts("short").expired == 3
    taken = board.claim("short", "w1", limit=2, lease_seconds=60, done=[])
    assert taken.slots == [(0, 1), (1, 1)] and taken.remaining is None
    assert board.renew("short", "w0", [0, 1, 2], lease_seconds=60) == [0, 1]
    board.release("short", "w0", [2])
    assert board.claim("short", "w2", limit=5, lease_seconds=60, done=[0]).slots == [(2, 1)]
    board.finish("short", [1, 2])
    counts = board.counts("short")
    assert (counts.done, counts.remaining) == (3, 0)


def test_ctrl_c_in_a_joined_worker_frees_its_slots_for_the_others(
    project: Path, tmp_path: Path
) -> None:
    store_url = str(tmp_path / "ledger.db")
    starter = popen("run", "experiment", "-y", "--workers", "1", cwd=project, store=store_url)
    experiment = wait_until(lambda: started_experiment(store_url), "the experiment to start")
    joined = popen("worker", experiment, cwd=project, store=store_url)
    trace = wait_until(lambda: running_trace_of(store_url, joined.pid), "the worker's run")
    joined.send_signal(signal.SIGINT)
    _out, err = joined.communicate(timeout=60)
    assert joined.returncode == 130, err
    assert "Interrupted: its unfinished slots are free for other workers." in err
    _stdout, stderr = starter.communicate(timeout=120)
    assert starter.returncode == 0, stderr
    assert sorted(finals(store_url).values()) == [1] * TOTAL
    interrupted = [
        ev for ev in events(store_url, "TraceFailed") if ev.data["reason"] == "interrupted"
    ]
    assert trace in {ev.stream_id for ev in interrupted}
    assert {ev.metadata["pid"] for ev in interrupted} == {joined.pid}


QUICK_AGENT = """
import time
def run(input_text, persona, iteration, ctx):
    ctx.observe("start", iteration=iteration)
    time.sleep(0.05)
    return f"{persona}: {input_text} #{iteration}"
"""


def test_when_the_starting_process_dies_the_workers_finish_and_write_the_report(
    tmp_path: Path, store_url: str
) -> None:
    project = make_project(
        tmp_path / "quick", agent=QUICK_AGENT, inputs=INPUTS, iterations=ITERATIONS
    )
    total = len(INPUTS) * ITERATIONS
    # The worker stops before recording its second run (a fault hook, eventstore.faults),
    # so that what follows happens at that exact point, not at a lucky moment.
    hold = tmp_path / "hold"
    hold.touch()
    env = {HOLD_VARIABLE: f"TraceCompleted:2:{hold}"}
    # Output to a file: the worker inherits it and goes on writing after the starter died.
    log = (tmp_path / "starter.log").open("w")
    starter = subprocess.Popen(
        [AGENTLEDGER, "--store", store_url, "run", "experiment", "-y", "--workers", "1",
         "--parallel", "1"],
        cwd=project, stdout=log, stderr=log, stdin=subprocess.DEVNULL,
        env={**os.environ, **env, "PYTHONUNBUFFERED": "1", "AGENTLEDGER_STORE": ""},
    )  # fmt: skip
    log.close()
    wait_until(lambda: Path(f"{hold}.held").exists(), "the worker to reach its second run")
    experiment = started_experiment(store_url)
    [first] = events(store_url, "TraceCompleted")
    worker = first.metadata["pid"]
    starter.send_signal(signal.SIGKILL)  # the starting process only: the worker goes on
    starter.wait(timeout=30)
    # Another process opens and closes the store while the worker is mid-experiment (a
    # user looking). On SQLite, a worker that inherited the starter's open database file
    # believes it holds locks it does not: this reader, the last to close, then
    # checkpoints and deletes the WAL the worker goes on writing to, and every later
    # commit of the worker vanishes.
    looked = agentledger("experiments", "list", cwd=project, store=store_url)
    assert looked.returncode == 0, looked.stderr
    hold.unlink()  # release the worker

    wait_until(lambda: not _alive(worker), "the worker to exit", 90)
    finished = finals(store_url)
    assert sorted(finished.values()) == [1] * total, f"{len(finished)} of {total} runs kept"
    assert len(events(store_url, "ExperimentCompleted")) == 1
    [started] = events(store_url, "ExperimentStarted")
    folder = Path(started.data["output_dir"])
    summary = wait_until(
        lambda: (
            (s := orjson.loads((folder / "summary.json").read_bytes()))["status"] == "completed"
            and s
        ),
        "the report of the completed experiment",
    )
    assert summary["successful"] == total
    assert len(read_jsonl(folder / "trace_summary.jsonl")) == total
    verify = agentledger("verify", experiment, cwd=project, store=store_url)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    rebuilt = project / "rebuilt"
    rebuild = agentledger(
        "report", "rebuild", experiment, "--output-dir", str(rebuilt), cwd=project, store=store_url
    )
    assert rebuild.returncode == 0, rebuild.stderr
    assert folder_bytes(rebuilt) == folder_bytes(folder)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
