"""Replay speed against recording (issue 6 target), in one run.

1,000 runs, each making 3 model calls (plain, streamed, plain), recorded with
``agentledger run experiment`` against the loopback server with 50 ms latency, then
replayed with ``agentledger replay`` (server stopped, every answer from the log), both at
the same ``--parallel``. Target: the replay at least 5x faster. Wall clock of the whole
commands; medians over rounds.

    python benchmarks/bench_replay.py [--rounds 3] [--runs 1000] [--parallel 1]
"""

from __future__ import annotations

# ruff: noqa: E402  (imports follow the sys.path set-up below)
import argparse
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from benchlib import repo_first

repo_first()

from benchlib import AGENTLEDGER, machine, median
from experiment import project

from tests.support.modelserver import ModelServer

AGENT = """
def run(input_text, ctx):
    first = ctx.chat(input_text, system="Answer briefly.")
    stream = ctx.openai.chat.completions.create(
        model=ctx.model, messages=[{"role": "user", "content": first}], stream=True
    )
    second = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    return ctx.chat(second + " done")
"""


def timed_command(args: list[str], cwd: Path) -> tuple[float, str]:
    started = time.perf_counter()
    proc = subprocess.run(
        [AGENTLEDGER, *args], cwd=cwd, capture_output=True, text=True, stdin=subprocess.DEVNULL
    )
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"agentledger {' '.join(args)} failed: {proc.stderr[-2000:]}")
    return elapsed, proc.stdout


def one_round(runs: int, parallel: int) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as tmp:
        root = project(Path(tmp) / "proj", runs, AGENT, parallel=parallel)
        shutil.rmtree(root / ".agentledger", ignore_errors=True)
        with ModelServer(latency=0.05) as server:
            config = root / "configs" / "simulation.yaml"
            config.write_text(
                config.read_text()
                + f"model:\n  provider: openai\n  name: bench\n  base_url: {server.base_url}\n"
            )
            recording, out = timed_command(["run", "experiment", "--yes"], root)
            if len(server.requests) != 3 * runs:
                raise RuntimeError(f"expected {3 * runs} calls, served {len(server.requests)}")
        experiment = next(
            line.removeprefix("Experiment: ")
            for line in out.splitlines()
            if line.startswith("Experiment: ")
        )
        replaying, out = timed_command(["replay", experiment, "--parallel", str(parallel)], root)
        if f"Replay: {runs} identical" not in out:
            raise RuntimeError(f"replay was not identical: {out[-500:]}")
    return recording, replaying


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--parallel", type=int, default=1)
    args = parser.parse_args()
    print(machine())
    print(f"{args.runs} runs x 3 model calls, 50 ms server latency, --parallel {args.parallel}")
    ratios = []
    for number in range(1, args.rounds + 1):
        recording, replaying = one_round(args.runs, args.parallel)
        ratios.append(recording / replaying)
        print(
            f"  round {number}: record {recording:.2f} s, replay {replaying:.2f} s "
            f"= {recording / replaying:.1f}x"
        )
    ratio = median(ratios)
    verdict = "meets" if ratio >= 5 else "misses"
    print(f"  median: replay {ratio:.1f}x faster than recording ({verdict} the 5x target)")


if __name__ == "__main__":
    main()
