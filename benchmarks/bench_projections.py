"""Rebuilding a large experiment's report from the log (issue 4 target).

An experiment of 1,000,000 events (20,000 traces of TraceStarted, 48 observations and
TraceCompleted) is written to a SQLite store, then ``agentledger report rebuild`` writes
every file of its folder (by default one process per CPU, each a run of the traces);
wall clock and peak RSS summed over the command's processes, against reading the same
events raw with ``sqlite3`` + orjson in this process and against ``--jobs 1`` (one
process). Targets: <= 15 s, <= 150 MB.

    python benchmarks/bench_projections.py [--traces 20000] [--rounds 3]
"""

from __future__ import annotations

# ruff: noqa: E402  (imports follow the sys.path set-up below)
import argparse
import os
import shutil
import sqlite3
import time
from pathlib import Path

from benchlib import repo_first

repo_first()

import orjson
from benchlib import AGENTLEDGER, machine, median, run_command_tree, work_dir

from agentledger.events.payloads import (
    ExperimentCompleted,
    ExperimentPlan,
    ExperimentStarted,
    ObservationRecorded,
    PlanInput,
    TraceCompleted,
    TraceStarted,
)
from agentledger.events.streams import experiment_stream, trace_stream
from agentledger.eventstore import EventStore
from agentledger.eventstore.envelope import utc_now
from agentledger.eventstore.store import NO_STREAM, AppendRequest

OBSERVATIONS = 48
EXPERIMENT = "benchproj000"


def build(path: Path, traces: int) -> int:
    """Write the experiment; returns the number of events."""
    store = EventStore.open(str(path))
    plan = ExperimentPlan(
        inputs=[PlanInput(index=0, input="hello")], iterations=traces, total_runs=traces
    )
    store.append(
        experiment_stream(EXPERIMENT),
        [
            ExperimentStarted(
                experiment_id=EXPERIMENT,
                name="bench",
                config={"name": "bench"},
                plan=plan,
                seed=1,
                output_dir=str(path.parent / "out"),
            )
        ],
        expected_version=NO_STREAM,
        metadata={"correlation_id": EXPERIMENT},
    )
    meta = {"correlation_id": EXPERIMENT}
    now = utc_now()
    batch: list[AppendRequest] = []
    for slot in range(traces):
        trace_id = f"{EXPERIMENT}-{slot:06d}"
        events = [
            TraceStarted(
                experiment_id=EXPERIMENT,
                trace_id=trace_id,
                slot=slot,
                input_index=0,
                iteration=slot,
                input="hello",
                seed=slot,
            ),
            *(
                ObservationRecorded(
                    observation_id=f"{trace_id}:{n}",
                    kind="event",
                    name="step",
                    timestamp=now,
                    data={"n": n, "note": "a small observation payload"},
                )
                for n in range(OBSERVATIONS)
            ),
            TraceCompleted(output=f"answer {slot}", duration_ms=12.5),
        ]
        batch.append(AppendRequest(trace_stream(trace_id), tuple(events), NO_STREAM, meta))
        if len(batch) == 50:
            store.append_batch(batch)
            batch = []
    if batch:
        store.append_batch(batch)
    store.append(
        experiment_stream(EXPERIMENT),
        [
            ExperimentCompleted(
                experiment_id=EXPERIMENT, total_traces=traces, successful=traces, failed=0
            )
        ],
        metadata=meta,
    )
    store.close()
    return 2 + traces * (OBSERVATIONS + 2)


def raw_read(path: Path) -> tuple[float, int]:
    started = time.perf_counter()
    conn = sqlite3.connect(path)
    count = 0
    for data, metadata in conn.execute("SELECT data, metadata FROM events ORDER BY position"):
        orjson.loads(data)
        orjson.loads(metadata)
        count += 1
    conn.close()
    return time.perf_counter() - started, count


def rebuild(path: Path, out: Path, *options: str) -> tuple[float, int]:
    """Wall seconds and peak RSS (KB, summed over the command's processes)."""
    command = [AGENTLEDGER, "--store", str(path), "report", "rebuild", EXPERIMENT, *options]
    return run_command_tree([*command, "--output-dir", str(out)], path.parent)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--traces", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(machine())
    base = work_dir("projections")
    path = base / f"ledger-{args.traces}.db"
    if not path.exists():
        started = time.perf_counter()
        events = build(path, args.traces)
        print(f"built {events:,} events in {time.perf_counter() - started:.1f} s ({path})")
    # Each round writes a fresh folder, and earlier outputs are deleted only after the last
    # round: on ext4, creating files just after deleting tens of thousands costs several
    # times the kernel time (the inode allocator skips recently deleted inodes), so deleting
    # the previous round's 20,000 transcripts first would time that cleanup, not the rebuild.
    trash = base / "trash"
    trash.mkdir(exist_ok=True)
    for old in base.glob("out*"):
        old.rename(trash / f"{old.name}-{time.time_ns()}")
    raws, rebuilds, peaks, singles = [], [], [], []
    for number in range(1, args.rounds + 1):
        raw, count = raw_read(path)
        seconds, peak = rebuild(path, base / f"out-{number}")
        single, single_peak = rebuild(path, base / f"out-{number}-jobs1", "--jobs", "1")
        raws.append(raw)
        rebuilds.append(seconds)
        peaks.append(peak)
        singles.append(single)
        print(
            f"  round {number}: raw read of {count:,} events {raw:.2f} s, rebuild {seconds:.2f} s"
            f" ({seconds / raw:.1f}x raw), peak RSS {peak / 1024:.0f} MB; with --jobs 1 "
            f"{single:.2f} s, {single_peak / 1024:.0f} MB",
            flush=True,
        )
    seconds, peak = median(rebuilds), max(peaks) / 1024
    verdict = "meets" if seconds <= 15 and peak <= 150 else "misses"
    files = sorted(p.name for p in (base / "out-1").iterdir())
    print(
        f"  median rebuild {seconds:.2f} s ({len(os.sched_getaffinity(0))} processes) vs raw "
        f"read {median(raws):.2f} s and --jobs 1 {median(singles):.2f} s; peak RSS {peak:.0f} MB "
        f"summed over processes ({verdict} the 15 s / 150 MB target); files: {', '.join(files)}"
    )
    shutil.rmtree(trash, ignore_errors=True)  # the previous run's outputs, after timing


if __name__ == "__main__":
    main()
