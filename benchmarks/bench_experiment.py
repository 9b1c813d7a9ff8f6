"""Experiment runner figures, side by side in one run (issue 23 targets).

1. 5,000 no-op runs of a plain agent, whole command, reports included: agentledger vs
   FluxLoop 0.3.2 (installed into a throwaway venv here; target: at least 5x faster), and
   with an SDK-decorated agent (target: at least 50x).
2. Marginal cost per no-op run: (time at --big runs - time at 1,000 runs) / (big - 1,000)
   (target: at most 0.1 ms a run), with peak RSS of both (target: within 1.3x).
3. A 1-run experiment, whole command (target: at most 0.4 s); ``--help`` (under 0.15 s).
4. 1,000 runs of an agent sleeping 200 ms at --parallel 64 (target: within 5 s).

    python benchmarks/bench_experiment.py [--rounds 3] [--skip-fluxloop] [--big 100000]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

from benchlib import AGENTLEDGER, machine, median, run_command, work_dir

NOOP = "def run(input_text):\n    return input_text\n"
SDK_NOOP = (
    "import fluxloop\n\n@fluxloop.agent(name='Echo')\ndef run(input_text):\n    return input_text\n"
)
SLEEP = "import time\n\ndef run(input_text):\n    time.sleep(0.2)\n    return input_text\n"


def discard(path: Path) -> None:
    """Move ``path`` out of the way; ``main`` deletes it after the last measurement.

    On ext4, creating files just after deleting thousands costs several times the kernel
    time (the inode allocator skips recently deleted inodes), so deleting the previous
    round's transcripts right before a round would time that cleanup too."""
    if path.exists():
        trash = work_dir("experiment") / "trash"
        trash.mkdir(exist_ok=True)
        path.rename(trash / f"{path.name}-{time.time_ns()}")


def project(root: Path, runs: int, agent: str, parallel: int = 1) -> Path:
    """A FluxLoop 0.3.x project of ``runs`` runs: inputs x iterations, at most 1,000
    iterations (FluxLoop's own limit)."""
    discard(root)
    iterations = min(runs, 1000)
    inputs = max(1, runs // iterations)
    assert inputs * iterations == runs, "runs must be a multiple of 1,000 above 1,000"
    (root / "configs").mkdir(parents=True)
    (root / "inputs").mkdir()
    (root / "configs" / "project.yaml").write_text("name: bench\n")
    (root / "configs" / "input.yaml").write_text(
        "personas: []\ninputs_file: inputs/generated.yaml\n"
    )
    (root / "configs" / "simulation.yaml").write_text(
        f"name: bench\niterations: {iterations}\nparallel_runs: {parallel}\n"
        "runner:\n  module_path: agent\n  function_name: run\n  target: agent:run\n"
        "  working_directory: .\n  timeout_seconds: 60\n  max_retries: 0\n"
        "output_directory: experiments\n"
    )
    lines = "".join(f"  - input: hello {n}\n" for n in range(inputs))
    (root / "inputs" / "generated.yaml").write_text(f"inputs:\n{lines}")
    (root / "agent.py").write_text(agent)
    return root


def agentledger_run(root: Path, extra: list[str] | None = None) -> tuple[float, int]:
    discard(root / ".agentledger")
    discard(root / "experiments")
    return run_command([AGENTLEDGER, "run", "experiment", "--yes", *(extra or [])], root)


def fluxloop_bin(base: Path) -> str | None:
    """``fluxloop`` 0.3.2 in a throwaway venv (installed once, from the package index)."""
    venv = base / "fluxloop-venv"
    binary = venv / "bin" / "fluxloop"
    if binary.exists():
        return str(binary)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    install = subprocess.run(
        [str(venv / "bin" / "pip"), "install", "-q", "fluxloop-cli==0.3.2", "fluxloop"],
        capture_output=True,
        text=True,
    )
    if install.returncode != 0 or not binary.exists():
        print(f"fluxloop install failed: {install.stderr.strip()[-500:]}")
        return None
    return str(binary)


def fluxloop_run(binary: str, root: Path) -> float:
    discard(root / "experiments")
    return run_command([binary, "run", "experiment", "--yes"], root)[0]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--big", type=int, default=100_000)
    parser.add_argument("--skip-fluxloop", action="store_true")
    args = parser.parse_args()
    base = work_dir("experiment")
    print(f"machine: {machine()}")

    binary = None if args.skip_fluxloop else fluxloop_bin(base)
    for label, agent, target in (("plain", NOOP, 5.0), ("SDK-decorated", SDK_NOOP, 50.0)):
        five = project(base / f"noop5k-{label}", 5000, agent)
        ours, theirs = [], []
        for _ in range(args.rounds):  # interleaved, so both see the same machine
            ours.append(agentledger_run(five)[0])
            if binary is not None:
                theirs.append(fluxloop_run(binary, five))
        line = f"5,000 no-op runs, {label} agent: agentledger median {median(ours):.2f} s"
        if theirs:
            ratio = median(theirs) / median(ours)
            line += (
                f", fluxloop 0.3.2 median {median(theirs):.2f} s -> agentledger is "
                f"{ratio:.1f}x faster (target >= {target:g}x)"
            )
        print(line)

    small = project(base / "noop1k", 1000, NOOP)
    big = project(base / "noopbig", args.big, NOOP)
    small_runs = [agentledger_run(small) for _ in range(args.rounds)]
    big_time, big_rss = agentledger_run(big)
    small_time = median([t for t, _ in small_runs])
    small_rss = max(rss for _, rss in small_runs)
    marginal_ms = (big_time - small_time) / (args.big - 1000) * 1000
    print(
        f"marginal cost per no-op run ({args.big:,} runs {big_time:.2f} s - 1,000 runs "
        f"{small_time:.2f} s): {marginal_ms:.3f} ms (target <= 0.1 ms); peak RSS "
        f"{small_rss / 1024:.0f} MB at 1,000, {big_rss / 1024:.0f} MB at {args.big:,} -> "
        f"{big_rss / small_rss:.2f}x (target <= 1.3x)"
    )

    one = project(base / "noop1", 1, NOOP)
    singles = [agentledger_run(one)[0] for _ in range(max(args.rounds, 5))]
    helps = [run_command([AGENTLEDGER, "--help"], base)[0] for _ in range(max(args.rounds, 5))]
    print(
        f"1-run experiment, whole command: median {median(singles):.3f} s (target <= 0.4 s); "
        f"--help: median {median(helps):.3f} s (target < 0.15 s)"
    )

    sleepy = project(base / "sleep", 1000, SLEEP)
    waits = [agentledger_run(sleepy, ["--parallel", "64"])[0] for _ in range(args.rounds)]
    print(
        f"1,000 runs sleeping 200 ms at --parallel 64: median {median(waits):.2f} s "
        f"(ideal {1000 * 0.2 / 64:.2f} s; target <= 5 s)"
    )
    shutil.rmtree(base / "trash", ignore_errors=True)


if __name__ == "__main__":
    main()
