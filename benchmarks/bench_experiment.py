"""Experiment runner figures, side by side in one run (issue 3 targets).

1. 1,000 no-op runs, wall clock of the whole command: agentledger vs FluxLoop 0.3.2
   (installed into a throwaway venv here; target: agentledger at least 20x faster).
2. Runs/s at 100,000 no-op runs vs at 1,000 (target: at least 0.9x), with peak RSS.
3. 1,000 runs of an agent sleeping 200 ms at --parallel 64 (target: within 5 s).

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
    """A FluxLoop 0.3.x project: one input, ``runs`` iterations."""
    discard(root)
    (root / "configs").mkdir(parents=True)
    (root / "inputs").mkdir()
    (root / "configs" / "project.yaml").write_text("name: bench\n")
    (root / "configs" / "input.yaml").write_text(
        "personas: []\ninputs_file: inputs/generated.yaml\n"
    )
    (root / "configs" / "simulation.yaml").write_text(
        f"name: bench\niterations: {runs}\nparallel_runs: {parallel}\n"
        "runner:\n  module_path: agent\n  function_name: run\n  target: agent:run\n"
        "  working_directory: .\n  timeout_seconds: 60\n  max_retries: 0\n"
        "output_directory: experiments\n"
    )
    (root / "inputs" / "generated.yaml").write_text("inputs:\n  - input: hello\n")
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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--big", type=int, default=100_000)
    parser.add_argument("--skip-fluxloop", action="store_true")
    args = parser.parse_args()
    base = work_dir("experiment")
    print(f"machine: {machine()}")

    small = project(base / "noop1k", 1000, NOOP)
    ours = [agentledger_run(small)[0] for _ in range(args.rounds)]
    print(f"agentledger, 1,000 no-op runs: median {median(ours):.2f} s")
    if not args.skip_fluxloop:
        binary = fluxloop_bin(base)
        if binary is not None:
            theirs = []
            for _ in range(args.rounds):
                discard(small / "experiments")
                theirs.append(run_command([binary, "run", "experiment", "--yes"], small)[0])
            ratio = median(theirs) / median(ours)
            print(
                f"fluxloop 0.3.2, 1,000 no-op runs: median {median(theirs):.2f} s -> "
                f"agentledger is {ratio:.1f}x faster (target >= 20x)"
            )

    big = project(base / "noopbig", args.big, NOOP, parallel=1)
    big_time, big_rss = agentledger_run(big)
    small_time, small_rss = agentledger_run(small)
    rate_small, rate_big = 1000 / small_time, args.big / big_time
    print(
        f"runs/s: {rate_small:,.0f} at 1,000 ({small_rss / 1024:.0f} MB peak), "
        f"{rate_big:,.0f} at {args.big:,} ({big_rss / 1024:.0f} MB peak) -> "
        f"{rate_big / rate_small:.2f}x (target >= 0.9x)"
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
