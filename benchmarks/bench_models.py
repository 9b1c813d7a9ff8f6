"""Model gateway figures against the loopback OpenAI-compatible server (issue 5 targets).

1. Recording overhead per call: the same chat completion through a plain ``openai``
   client and through the recorded gateway client inside a run (events written to a
   SQLite store), interleaved in blocks; medians compared. Target: <= 0.5 ms per call.
2. 1,000 streamed calls through ``run experiment --parallel 64`` with 200 ms server
   latency, wall clock of the whole command. Target: within 5 s. Next to it, the same 64
   calls in flight spread over worker processes (``--workers 2 --parallel 32``).

    python benchmarks/bench_models.py [--rounds 3] [--calls 400]
"""

from __future__ import annotations

# ruff: noqa: E402  (imports follow the sys.path set-up below)
import argparse
import shutil
import tempfile
import time
from pathlib import Path

from benchlib import repo_first

repo_first()

import openai
from benchlib import AGENTLEDGER, machine, median, run_command
from experiment import project

from agentledger.events.streams import trace_stream
from agentledger.eventstore import EventStore
from agentledger.experiments.context import RunContext, TraceRecorder
from agentledger.experiments.writer import BatchWriter
from agentledger.models.gateway import ModelGateway
from agentledger.models.specs import endpoint, parse_model
from tests.support.modelserver import ModelServer

MESSAGES = [
    {"role": "system", "content": "You are a support bot for a notes app."},
    {"role": "user", "content": "How do I export every notebook as Markdown files?"},
]
STREAMING_AGENT = """
def run(input_text, ctx):
    stream = ctx.openai.chat.completions.create(
        model=ctx.model,
        messages=[{"role": "user", "content": input_text}],
        stream=True,
    )
    return "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
"""


def call_ms(client: openai.OpenAI) -> float:
    started = time.perf_counter()
    client.chat.completions.create(model="bench", messages=MESSAGES)  # type: ignore[arg-type]
    return (time.perf_counter() - started) * 1000


def recording_overhead(calls: int) -> tuple[float, float, int]:
    """Median ms per call (plain client, recorded client in a run) over ``calls`` pairs of
    calls, alternating one plain and one recorded call so drift hits both equally."""
    plain_times: list[float] = []
    recorded_times: list[float] = []
    with ModelServer() as server, tempfile.TemporaryDirectory() as tmp:
        store = EventStore.open(str(Path(tmp) / "ledger.db"))
        plain = openai.OpenAI(base_url=server.base_url, api_key="sk-bench")
        spec = parse_model({"provider": "openai", "name": "bench", "base_url": server.base_url})
        gateway = ModelGateway(spec, endpoint(spec, {"OPENAI_API_KEY": "sk-bench"}), store.redactor)
        writer = BatchWriter(store)
        recorder = TraceRecorder(writer, trace_stream("bench"), version=0, metadata={})
        ctx = RunContext(
            recorder,
            trace_id="bench",
            experiment_id=None,
            input="",
            persona=None,
            iteration=0,
            metadata={},
            seed=0,
            gateway=gateway,
        )
        recorded = gateway.client()
        token = ctx.activate()
        for number in range(calls + 50):  # the first 50 pairs warm up both paths
            ctx.deactivate(token)
            plain_ms = call_ms(plain)
            token = ctx.activate()
            recorded_ms = call_ms(recorded)
            if number >= 50:
                plain_times.append(plain_ms)
                recorded_times.append(recorded_ms)
        ctx.deactivate(token)
        writer.close()
        events = sum(1 for _ in store.read_all())
        store.close()
    if events != 2 * (calls + 50):
        raise RuntimeError(f"expected {2 * (calls + 50)} events, found {events}")
    return median(plain_times), median(recorded_times), events


def parallel_streams(rounds: int, runs: int, workers: int = 0) -> list[float]:
    """Wall clock of each round; with ``workers``, 64 calls in flight spread over that
    many worker processes."""
    flags = ["--workers", str(workers), "--parallel", str(64 // workers)] if workers else []
    seconds = []
    with ModelServer(latency=0.2) as server, tempfile.TemporaryDirectory() as tmp:
        root = project(Path(tmp) / "proj", runs, STREAMING_AGENT, parallel=64)
        config = root / "configs" / "simulation.yaml"
        config.write_text(
            config.read_text()
            + f"model:\n  provider: openai\n  name: bench\n  base_url: {server.base_url}\n"
        )
        for _ in range(rounds):
            shutil.rmtree(root / ".agentledger", ignore_errors=True)
            shutil.rmtree(root / "experiments", ignore_errors=True)
            before = len(server.requests)
            elapsed, _ = run_command([AGENTLEDGER, "run", "experiment", "--yes", *flags], root)
            served = len(server.requests) - before
            if served != runs:
                raise RuntimeError(f"expected {runs} streamed calls, the server saw {served}")
            seconds.append(elapsed)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--calls", type=int, default=1000, help="calls per client (overhead)")
    parser.add_argument("--runs", type=int, default=1000, help="streamed runs (parallel)")
    args = parser.parse_args()
    print(machine())

    print("1. recording overhead per call (loopback server, no latency)")
    overheads = []
    for _ in range(args.rounds):
        plain, recorded, events = recording_overhead(args.calls)
        overheads.append(recorded - plain)
        print(
            f"  plain {plain:.3f} ms, recorded {recorded:.3f} ms per call "
            f"({events} events recorded): overhead {recorded - plain:.3f} ms"
        )
    overhead = median(overheads)
    verdict = "meets" if overhead <= 0.5 else "misses"
    print(f"  median overhead {overhead:.3f} ms per call ({verdict} the 0.5 ms target)")

    print(f"2. {args.runs} streamed calls, --parallel 64, 200 ms server latency")
    seconds = parallel_streams(args.rounds, args.runs)
    best = median(seconds)
    verdict = "meets" if best <= 5.0 else "misses"
    print(
        f"  whole command: median {best:.2f} s over {len(seconds)} rounds "
        f"({', '.join(f'{s:.2f}' for s in seconds)}); floor {args.runs / 64 * 0.2:.2f} s; "
        f"{verdict} the 5 s target"
    )
    spread = parallel_streams(args.rounds, args.runs, workers=2)
    print(
        f"  same calls with --workers 2 --parallel 32: median {median(spread):.2f} s "
        f"({', '.join(f'{s:.2f}' for s in spread)}), {best / median(spread):.2f}x faster"
    )


if __name__ == "__main__":
    main()
