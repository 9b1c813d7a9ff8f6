"""The viewer and the HTML report at scale (issue 22 targets).

An experiment of 100,000 traces (each: TraceStarted, a model call started and completed
with its messages and usage, two observations, and TraceCompleted, one in twenty
TraceFailed) is written to a SQLite store. ``agentledger view --port 0`` serves it; the
experiment page, a filtered trace matrix (status, persona and text) and a trace page are
each requested ``--rounds`` times over loopback after a first (cold) request that builds
the experiment's index; the figures are the median request time, the cold time, and the
viewer's peak RSS (VmHWM). Targets: experiment and filtered matrix <= 300 ms, trace page
<= 100 ms, RSS < 200 MB. Then ``agentledger report html`` of a 10,000-trace experiment:
wall time and file size. Targets: < 5 s, < 20 MB.

    python benchmarks/bench_view.py [--traces 100000] [--report-traces 10000] [--rounds 15]
"""

from __future__ import annotations

# ruff: noqa: E402  (imports follow the sys.path set-up below)
import argparse
import re
import subprocess
import time
import urllib.request
from pathlib import Path

from benchlib import repo_first

repo_first()

from benchlib import AGENTLEDGER, machine, median, run_command, work_dir

from agentledger.events.payloads import (
    ExperimentCompleted,
    ExperimentPlan,
    ExperimentStarted,
    ModelCallCompleted,
    ModelCallStarted,
    ObservationRecorded,
    PlanInput,
    TraceCompleted,
    TraceFailed,
    TraceStarted,
)
from agentledger.events.streams import experiment_stream, trace_stream
from agentledger.eventstore import EventStore
from agentledger.eventstore.envelope import utc_now
from agentledger.eventstore.store import NO_STREAM, AppendRequest

PERSONAS = ["novice", "expert", "admin", "skeptic"]
INPUTS = 50


def build(path: Path, experiment: str, traces: int) -> int:
    """Write the experiment; returns the number of events."""
    store = EventStore.open(str(path))
    inputs = [
        PlanInput(index=i, input=f"question {i} about exporting notebooks", persona=PERSONAS[i % 4])
        for i in range(INPUTS)
    ]
    plan = ExperimentPlan(inputs=inputs, iterations=traces // INPUTS, total_runs=traces)
    meta = {"correlation_id": experiment}
    store.append(
        experiment_stream(experiment),
        [
            ExperimentStarted(
                experiment_id=experiment,
                name="bench_view",
                config={"name": "bench_view"},
                plan=plan,
                seed=1,
            )
        ],
        expected_version=NO_STREAM,
        metadata=meta,
    )
    now = utc_now()
    batch: list[AppendRequest] = []
    count = 2
    for slot in range(traces):
        trace_id = f"{experiment}-{slot:06d}"
        index = slot % INPUTS
        text = inputs[index].input
        messages = [
            {"role": "system", "content": "You are the support bot."},
            {"role": "user", "content": text},
        ]
        failed = slot % 20 == 7
        events = [
            TraceStarted(
                experiment_id=experiment,
                trace_id=trace_id,
                slot=slot,
                input_index=index,
                iteration=slot // INPUTS,
                persona=inputs[index].persona,
                input=text,
                seed=slot,
            ),
            ModelCallStarted(
                call_id=f"{trace_id}:0",
                call_index=0,
                provider="mock",
                model="echo",
                request={"model": "echo", "messages": messages},
                fingerprint=f"{slot:064x}",
            ),
            ModelCallCompleted(
                call_id=f"{trace_id}:0",
                call_index=0,
                response={
                    "choices": [{"message": {"role": "assistant", "content": f"answer {slot}"}}]
                },
                usage={"prompt_tokens": 20, "completion_tokens": 8, "total_tokens": 28},
                latency_ms=3.5,
            ),
            ObservationRecorded(
                observation_id=f"{trace_id}:o1",
                kind="span_start",
                name="answer",
                timestamp=now,
                data={"persona": inputs[index].persona},
            ),
            ObservationRecorded(
                observation_id=f"{trace_id}:o1:end",
                kind="span_end",
                name="answer",
                timestamp=now,
                data={"duration_ms": 4.0},
            ),
            TraceFailed(
                duration_ms=10.0 + slot % 97,
                error_type="TimeoutError" if slot % 40 == 7 else "ValueError",
                error_message=f"gave up on slot {slot}",
                traceback="Traceback (most recent call last):\n  ...\nValueError",
            )
            if failed
            else TraceCompleted(output=f"answer {slot}", duration_ms=10.0 + slot % 97),
        ]
        count += len(events)
        batch.append(AppendRequest(trace_stream(trace_id), tuple(events), NO_STREAM, meta))
        if len(batch) == 200:
            store.append_batch(batch)
            batch = []
    if batch:
        store.append_batch(batch)
    failed_count = sum(1 for slot in range(traces) if slot % 20 == 7)
    store.append(
        experiment_stream(experiment),
        [
            ExperimentCompleted(
                experiment_id=experiment,
                total_traces=traces,
                successful=traces - failed_count,
                failed=failed_count,
            )
        ],
        metadata=meta,
    )
    store.close()
    return count


def fetch(url: str) -> tuple[float, int]:
    """Seconds for one GET (loopback, whole body read) and the body's size."""
    started = time.perf_counter()
    with urllib.request.urlopen(url, timeout=600) as response:
        body = response.read()
        assert response.status == 200, url
    return time.perf_counter() - started, len(body)


def peak_rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def bench_viewer(path: Path, experiment: str, rounds: int) -> None:
    process = subprocess.Popen(
        [AGENTLEDGER, "--store", str(path), "view", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        url = ""
        for _ in range(5):
            found = re.search(r"Open (http://\S+)/", process.stdout.readline())
            if found:
                url = found.group(1)
                break
        assert url, "agentledger view printed no address"
        pages = {
            "experiment page": f"{url}/experiments/{experiment}",
            "filtered matrix": f"{url}/experiments/{experiment}?status=failed&persona=novice"
            "&q=question+4&page=2",
            "trace page": f"{url}/traces/{experiment}-050007",
        }
        for name, address in pages.items():
            cold, size = fetch(address)
            times = [fetch(address)[0] for _ in range(rounds)]
            target = 0.100 if name == "trace page" else 0.300
            verdict = "meets" if median(times) <= target else "misses"
            print(
                f"  {name}: median {median(times) * 1000:.1f} ms over {rounds} requests "
                f"(min {min(times) * 1000:.1f}, max {max(times) * 1000:.1f}; first request "
                f"{cold * 1000:.0f} ms; {size:,} bytes) - {verdict} the "
                f"{target * 1000:.0f} ms target",
                flush=True,
            )
        rss = peak_rss_mb(process.pid)
        print(
            f"  viewer peak RSS {rss:.0f} MB ({'meets' if rss < 200 else 'misses'} the 200 MB "
            "target)"
        )
    finally:
        process.terminate()
        process.wait(timeout=30)


def bench_report(path: Path, experiment: str, out: Path, rounds: int) -> None:
    times, peaks = [], []
    for _ in range(rounds):
        seconds, peak = run_command(
            [
                AGENTLEDGER,
                "--store",
                str(path),
                "report",
                "html",
                experiment,
                "-o",
                str(out),
                "--force",
            ],
            path.parent,
        )
        times.append(seconds)
        peaks.append(peak)
    size = out.stat().st_size / 1e6
    verdict = "meets" if median(times) < 5 and size < 20 else "misses"
    print(
        f"  report html: median {median(times):.2f} s over {rounds} runs, file "
        f"{size:.1f} MB, peak RSS {max(peaks) / 1024:.0f} MB - {verdict} the 5 s / 20 MB target"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--traces", type=int, default=100_000)
    parser.add_argument("--report-traces", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--report-rounds", type=int, default=3)
    args = parser.parse_args()
    print(machine())
    base = work_dir("view")
    big = base / f"ledger-{args.traces}.db"
    if not big.exists():
        started = time.perf_counter()
        events = build(big, "benchview000", args.traces)
        print(f"built {events:,} events in {time.perf_counter() - started:.1f} s ({big})")
    print(f"viewer, experiment of {args.traces:,} traces:")
    bench_viewer(big, "benchview000", args.rounds)
    small = base / f"ledger-{args.report_traces}.db"
    if not small.exists():
        events = build(small, "benchreport0", args.report_traces)
        print(f"built {events:,} events ({small})")
    print(f"report html, experiment of {args.report_traces:,} traces:")
    bench_report(small, "benchreport0", base / "report.html", args.report_rounds)


if __name__ == "__main__":
    main()
