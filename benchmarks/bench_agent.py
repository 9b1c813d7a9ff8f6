"""Start-up figures of the command line (issue 8 targets).

1. ``agentledger --help``: wall clock, median of runs. Target: <= 0.25 s.
2. One ``agentledger run agent`` of the agent template's helper (a tool-calling agent on
   the mock model, recorded to SQLite): wall clock and peak RSS, medians. Targets:
   <= 0.5 s and <= 80 MB. For comparison, ``python -c "import openai"`` alone.

    python benchmarks/bench_agent.py [--rounds 7]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys

from benchlib import AGENTLEDGER, machine, median, repo_first, work_dir
from benchlib import run_command as timed

repo_first()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    print(machine())
    base = work_dir("agent")
    project = base / "notes"
    shutil.rmtree(project, ignore_errors=True)
    subprocess.run(
        [AGENTLEDGER, "init", str(project), "--template", "agent"], check=True, capture_output=True
    )
    helps = [timed([AGENTLEDGER, "--help"], base)[0] for _ in range(args.rounds)]
    runs = [
        timed([AGENTLEDGER, "run", "agent", ".", "-i", "How do I export my notes?"], project)
        for _ in range(args.rounds)
    ]
    imports = [timed([sys.executable, "-c", "import openai"], base)[0] for _ in range(args.rounds)]
    help_s = median(helps)
    run_s = median([r[0] for r in runs])
    run_mb = median([r[1] / 1024 for r in runs])
    print(f"  --help: median {help_s:.3f} s ({'meets' if help_s <= 0.25 else 'misses'} 0.25 s)")
    print(
        f"  run agent (mock model, tool call, recorded): median {run_s:.3f} s, peak RSS "
        f"{run_mb:.0f} MB ({'meets' if run_s <= 0.5 else 'misses'} 0.5 s, "
        f"{'meets' if run_mb <= 80 else 'misses'} 80 MB)"
    )
    print(f"  for comparison, python -c 'import openai': median {median(imports):.3f} s")


if __name__ == "__main__":
    main()
