"""Input generation figures against the loopback OpenAI-compatible server (issue 21 targets).

1. ``agentledger generate inputs --parallel 64``: 1,000 planned calls (10 base inputs x
   5 personas x 4 strategies x 5 variations) to the loopback server answering after
   200 ms, wall clock of the whole command (start-up, every call recorded in a SQLite
   store, the file written). Target: within 5 s (the calls alone need 16 rounds of
   200 ms = 3.2 s).
2. ``agentledger generate inputs --replay GENERATION``: the same file written again from
   the log, offline, wall clock of the command; the bytes must equal the first file.
   Target: under 1 s.

Next to 1, in the same rounds: a bare script making the same 1,000 calls, 64 in flight,
with a plain ``openai.AsyncOpenAI`` client (nothing recorded, no store, no file), so the
ratio shows what agentledger adds and the rest is what the client and this machine cost.

    python benchmarks/bench_generate.py [--rounds 3] [--latency 0.2]
"""

from __future__ import annotations

# ruff: noqa: E402  (imports follow the sys.path set-up below)
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchlib import repo_first

repo_first()

import yaml
from benchlib import AGENTLEDGER, machine, median

from tests.support.modelserver import ModelServer

STRATEGIES = ["rephrase", "typo", "verbose", "concise"]


def make_project(root: Path) -> Path:
    """A project planning exactly 1,000 calls."""
    (root / "configs").mkdir(parents=True)
    config = {
        "personas": [
            {"name": f"persona_{n}", "description": f"Persona number {n}"} for n in range(5)
        ],
        "base_inputs": [{"input": f"How do I use feature {n} of the app?"} for n in range(10)],
        "variation_strategies": STRATEGIES,
        "variation_count": 5,
        "input_generation": {"mode": "llm", "llm": {"enabled": True, "provider": "openai"}},
    }
    (root / "configs" / "input.yaml").write_text(yaml.safe_dump(config))
    return root


def timed(command: list[str], cwd: Path) -> tuple[float, float, int]:
    """Wall seconds, CPU seconds (user + system) and peak RSS (KB) of ``command``; the
    CPU time says how much of the wall clock the shared machine's load added."""
    started = time.perf_counter()
    proc = subprocess.run(
        ["/usr/bin/time", "-f", "%U %S %M", *command],
        cwd=cwd,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {proc.stderr[-2000:]}")
    user, system, rss = proc.stderr.strip().splitlines()[-1].split()
    return wall, float(user) + float(system), int(rss)


PLAIN_CLIENT = """
import asyncio, sys
import openai

async def main(url):
    client = openai.AsyncOpenAI(api_key="bench", base_url=url)
    limit = asyncio.Semaphore(64)

    async def one(n):
        async with limit:
            await client.chat.completions.create(
                model="bench", messages=[{"role": "user", "content": f"Vary input {n}"}]
            )

    await asyncio.gather(*(one(n) for n in range(1000)))

asyncio.run(main(sys.argv[1]))
"""


def generation_id(text: str) -> str:
    return str(yaml.safe_load(text)["generation_config"]["generation_id"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--latency", type=float, default=0.2)
    args = parser.parse_args()
    print(machine())
    generate_s, replay_s, plain_s = [], [], []
    with ModelServer(latency=args.latency) as server:
        for number in range(args.rounds):
            work = Path(tempfile.mkdtemp(prefix="bench-generate-"))
            try:
                project = make_project(work / "proj")
                command = [
                    AGENTLEDGER,
                    "generate",
                    "inputs",
                    "--parallel",
                    "64",
                    "--llm-model",
                    "bench",
                    "--base-url",
                    server.base_url,
                ]
                load = os.getloadavg()[0]
                plain, plain_cpu, _ = timed(
                    [sys.executable, "-c", PLAIN_CLIENT, server.base_url], work
                )
                plain_s.append(plain)
                seconds, cpu, rss = timed(command, project)
                written = (project / "inputs" / "generated.yaml").read_bytes()
                entries = yaml.safe_load(written)["inputs"]
                assert len(entries) == 1000, f"expected 1,000 inputs, got {len(entries)}"
                generate_s.append(seconds)
                replay = [
                    AGENTLEDGER,
                    "generate",
                    "inputs",
                    "--replay",
                    generation_id(written.decode()),
                    "-o",
                    "replayed.yaml",
                ]
                again, again_cpu, replay_rss = timed(replay, project)
                assert (project / "replayed.yaml").read_bytes() == written, "replay differs"
                replay_s.append(again)
                print(
                    f"round {number + 1} (load average {load:.1f}): plain client {plain:.2f} s "
                    f"({plain_cpu:.2f} s CPU); generate 1,000 calls "
                    f"{seconds:.2f} s ({cpu:.2f} s CPU, peak RSS {rss // 1024} MB); replay "
                    f"{again:.2f} s ({again_cpu:.2f} s CPU, peak RSS {replay_rss // 1024} MB), "
                    "file identical"
                )
            finally:
                shutil.rmtree(work, ignore_errors=True)
    gen, rep, plain = median(generate_s), median(replay_s), median(plain_s)
    print(
        f"generate 1,000 calls at {args.latency * 1000:.0f} ms, --parallel 64: median "
        f"{gen:.2f} s (target <= 5 s: {'met' if gen <= 5 else 'MISSED'}); the same calls "
        f"from a plain openai client: median {plain:.2f} s ({gen / plain:.2f}x)"
    )
    print(
        f"replay of the same generation: median {rep:.2f} s "
        f"(target < 1 s: {'met' if rep < 1 else 'MISSED'})"
    )


if __name__ == "__main__":
    main()
