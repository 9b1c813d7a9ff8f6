"""Building FluxLoop-style experiment projects on disk and running the installed CLI on them."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import orjson
import yaml

AGENTLEDGER = str(Path(sys.executable).parent / "agentledger")

ECHO_AGENT = """
def run(input_text, persona, ctx):
    with ctx.span("answer", persona=persona):
        ctx.observe("length", n=len(input_text))
    return f"echo: {input_text}"
"""

INPUTS = [
    {"input": "first question", "persona": "novice"},
    {"input": "second question", "persona": "expert"},
    {"input": "third question", "persona": "novice", "metadata": {"topic": "sync"}},
]


def make_project(
    root: Path,
    *,
    agent: str = ECHO_AGENT,
    inputs: list[Any] | None = None,
    simulation: dict[str, Any] | None = None,
    iterations: int = 2,
) -> Path:
    """A project with configs/simulation.yaml (0.3.x layout), inputs and agent.py."""
    (root / "configs").mkdir(parents=True, exist_ok=True)
    (root / "inputs").mkdir(exist_ok=True)
    config: dict[str, Any] = {
        "name": "demo",
        "iterations": iterations,
        "parallel_runs": 1,
        "seed": 7,
        "runner": {"target": "agent:run", "timeout_seconds": 30, "retry_backoff_seconds": 0.01},
        "output_directory": "experiments",
    }
    for key, value in (simulation or {}).items():
        if isinstance(value, dict) and isinstance(config.get(key), dict):
            config[key] = {**config[key], **value}
        else:
            config[key] = value
    (root / "configs" / "simulation.yaml").write_text(yaml.safe_dump(config))
    (root / "inputs" / "generated.yaml").write_text(
        yaml.safe_dump({"inputs": INPUTS if inputs is None else inputs})
    )
    (root / "agent.py").write_text(textwrap.dedent(agent))
    return root


def agentledger(
    *args: str,
    cwd: Path,
    store: str | None = None,
    timeout: float = 120,
    env: dict[str, str] | None = None,
    **kwargs: Any,
) -> subprocess.CompletedProcess[str]:
    """Run the installed ``agentledger`` command (stdin closed, no terminal); ``env`` adds
    variables. Provider keys of the calling shell are dropped, so runs stay offline."""
    prefix = ["--store", store] if store else []
    base = {
        k: v
        for k, v in os.environ.items()
        if k not in ("AGENTLEDGER_STORE", "OPENAI_API_KEY", "OPENAI_BASE_URL", "ANTHROPIC_API_KEY")
    }
    env = {**base, "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.run(
        [AGENTLEDGER, *prefix, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=timeout,
        env=env,
        **kwargs,
    )


def output_folder(result: subprocess.CompletedProcess[str]) -> Path:
    line = next(x for x in result.stdout.splitlines() if x.startswith("Output: "))
    return Path(line.removeprefix("Output: "))


def experiment_id(result: subprocess.CompletedProcess[str]) -> str:
    line = next(x for x in result.stdout.splitlines() if x.startswith("Experiment: "))
    return line.removeprefix("Experiment: ")


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def folder_bytes(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (relative path -> bytes)."""
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }
