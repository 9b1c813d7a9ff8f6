"""Scale-out figures (issue 9 targets), one process and workers side by side in one run.

2,000 runs that each wait 200 ms (a model-bound run: the agent sleeps where it would wait
for the model), on PostgreSQL (a throwaway durable cluster) and on SQLite:

1. 4 local workers x --parallel 16: wall clock of the whole command, and of the run phase
   (first TraceStarted to ExperimentCompleted in the log), against the ideal
   2,000 x 0.2 s / 64 = 6.25 s (target: within 1.2x).
2. The store's overhead on the runs: mean recorded run duration with 4 workers vs one
   process at --parallel 64, same plan, same store, same run (target: under 5%).

    python benchmarks/bench_scaleout.py [--rounds 3] [--runs 2000] [--skip-sqlite]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
from datetime import datetime
from pathlib import Path

from benchlib import AGENTLEDGER, machine, median, repo_first, run_command, work_dir

repo_first()

from agentledger.eventstore import EventStore  # noqa: E402

SLEEP = "import time\n\ndef run(input_text):\n    time.sleep(0.2)\n    return input_text\n"
WORKERS, PARALLEL = 4, 16


def project(root: Path, runs: int) -> Path:
    shutil.rmtree(root, ignore_errors=True)
    (root / "configs").mkdir(parents=True)
    (root / "inputs").mkdir()
    (root / "configs" / "simulation.yaml").write_text(
        f"name: scaleout\niterations: {runs}\nparallel_runs: {PARALLEL}\n"
        "runner:\n  target: agent:run\n  timeout_seconds: 60\n  max_retries: 0\n"
        "output_directory: experiments\n"
    )
    (root / "inputs" / "generated.yaml").write_text("inputs:\n  - input: hello\n")
    (root / "agent.py").write_text(SLEEP)
    return root


def _moment(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def last_experiment(store_url: str) -> tuple[float, float]:
    """(run phase seconds, mean recorded run duration ms) of the newest experiment."""
    with EventStore.open(store_url, create=False) as store:
        started = list(store.read_all(types=["ExperimentStarted"]))[-1]
        experiment = started.data["experiment_id"]
        events = list(
            store.read_all(
                after=started.position,
                correlation_id=experiment,
                types=["TraceStarted", "TraceCompleted", "ExperimentCompleted"],
            )
        )
    first = min(_moment(e.recorded_at) for e in events if e.type == "TraceStarted")
    done = next(_moment(e.recorded_at) for e in events if e.type == "ExperimentCompleted")
    durations = [e.data["duration_ms"] for e in events if e.type == "TraceCompleted"]
    return (done - first).total_seconds(), statistics.fmean(durations)


def measure(label: str, store_url: str, root: Path, runs: int, rounds: int) -> None:
    ideal = runs * 0.2 / (WORKERS * PARALLEL)
    command = [AGENTLEDGER, "--store", store_url, "run", "experiment", "--yes"]
    walls, phases, shared_ms, single_ms, singles, single_phases = [], [], [], [], [], []
    for _ in range(rounds):
        shutil.rmtree(root / "experiments", ignore_errors=True)
        wall, _ = run_command([*command, "--workers", str(WORKERS)], root)
        phase, mean_ms = last_experiment(store_url)
        walls.append(wall)
        phases.append(phase)
        shared_ms.append(mean_ms)
        wall, _ = run_command([*command, "--parallel", str(WORKERS * PARALLEL)], root)
        singles.append(wall)
        phase, mean_ms = last_experiment(store_url)
        single_phases.append(phase)
        single_ms.append(mean_ms)
    print(
        f"{label}: {WORKERS} workers x --parallel {PARALLEL}, {runs:,} runs of 200 ms: "
        f"command median {median(walls):.2f} s ({median(walls) / ideal:.2f}x ideal), "
        f"run phase median {median(phases):.2f} s ({median(phases) / ideal:.2f}x ideal "
        f"{ideal:.2f} s; target <= 1.2x)"
    )
    overhead = median(shared_ms) / median(single_ms) - 1
    print(
        f"{label}: mean run duration {median(shared_ms):.1f} ms with workers vs "
        f"{median(single_ms):.1f} ms in one process at --parallel {WORKERS * PARALLEL} "
        f"-> store overhead {overhead:+.1%} (target < 5%); one process: command median "
        f"{median(singles):.2f} s, run phase median {median(single_phases):.2f} s "
        f"({median(single_phases) / ideal:.2f}x ideal)"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--skip-sqlite", action="store_true")
    args = parser.parse_args()
    base = work_dir("scaleout")
    print(f"machine: {machine()}")
    root = project(base / "project", args.runs)

    from tests.support.pgserver import PostgresCluster, find_bindir

    bindir = find_bindir()
    if bindir is None:
        print("PostgreSQL binaries not found: skipping the PostgreSQL figures")
    else:
        cluster = PostgresCluster(bindir, durable=True).start()
        try:
            measure("postgresql", cluster.create_database("scaleout"), root, args.runs, args.rounds)
        finally:
            cluster.stop()
    if not args.skip_sqlite:
        store = base / "ledger.db"
        store.unlink(missing_ok=True)
        measure("sqlite", str(store), root, args.runs, args.rounds)


if __name__ == "__main__":
    main()
