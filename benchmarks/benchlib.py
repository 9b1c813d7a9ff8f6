"""Helpers shared by the benchmark scripts: timing rounds, medians, machine description."""

from __future__ import annotations

import functools
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HERE = ROOT / "benchmarks"
AGENTLEDGER = str(Path(sys.executable).parent / "agentledger")


def repo_first() -> None:
    """The repository first on sys.path, so that the benchmarks import this checkout's
    ``agentledger`` and its test support (``tests.support``: the PostgreSQL cluster, the
    model server). Call it before importing them."""
    sys.path[:] = [str(ROOT), *(p for p in sys.path if Path(p or ".").resolve() != ROOT)]


@functools.cache
def command_env() -> dict[str, str]:
    """The environment of measured commands: as a user's after ``pip install``, whose
    modules are compiled to bytecode once. With ``PYTHONDONTWRITEBYTECODE`` set (as in
    some shells and CI images), every start-up would compile the checkout's changed
    modules again: tens of milliseconds no installed copy pays. The checkout is compiled
    here, and commands may write the bytecode of what they import."""
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", str(ROOT / "agentledger")],
        check=True,
        env={k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"},
    )
    return {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def run_command(command: list[str], cwd: Path) -> tuple[float, int]:
    """Wall seconds and peak RSS (KB) of ``command`` (stdin closed); a failure raises."""
    env = command_env()
    started = time.perf_counter()
    proc = subprocess.run(
        ["/usr/bin/time", "-f", "%M", *command],
        cwd=cwd,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        env=env,
    )
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {proc.stderr[-2000:]}")
    return elapsed, int(proc.stderr.strip().splitlines()[-1])


def run_command_tree(command: list[str], cwd: Path) -> tuple[float, int]:
    """Wall seconds and the peak of the summed RSS (KB) of ``command`` and every process it
    starts, sampled every 20 ms (stdin closed); a failure raises. For commands that fork
    workers, where one process's peak would understate the memory used."""
    env = command_env()
    with tempfile.TemporaryFile("w+") as stderr:
        started = time.perf_counter()
        proc = subprocess.Popen(
            command,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            env=env,
        )
        peak = 0
        while proc.poll() is None:
            peak = max(peak, sum(_rss_kb(pid) for pid in _tree(proc.pid)))
            time.sleep(0.02)
        elapsed = time.perf_counter() - started
        if proc.returncode != 0:
            stderr.seek(0)
            raise RuntimeError(f"{' '.join(command)} failed: {stderr.read()[-2000:]}")
    return elapsed, peak


def _tree(pid: int) -> list[int]:
    """``pid`` and its descendants (Linux /proc)."""
    found, queue = [], [pid]
    while queue:
        current = queue.pop()
        found.append(current)
        try:
            with open(f"/proc/{current}/task/{current}/children") as handle:
                queue += [int(child) for child in handle.read().split()]
        except OSError:
            continue
    return found


def _rss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def machine() -> str:
    """One line describing where the figures were taken."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, {platform.system()}"


def timed(fn: Callable[[], object]) -> float:
    """Seconds one call of ``fn`` took."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def median(values: list[float]) -> float:
    return statistics.median(values)


def work_dir(name: str) -> Path:
    path = ROOT / "benchmarks" / ".work" / name
    path.mkdir(parents=True, exist_ok=True)
    return path
