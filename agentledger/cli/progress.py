"""Progress of a running experiment: a rich bar on a terminal, plain lines elsewhere."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path
from typing import Any

PLAIN_EVERY_SECONDS = 5.0


class ProgressDisplay:
    """An ``ExperimentListener`` that draws progress on stderr.

    On a terminal: a rich progress bar with ETA and live ok/failed counts. Otherwise a
    plain line every 10% of the runs or every few seconds, whichever comes first.
    """

    def __init__(self, *, interactive: bool) -> None:
        self._interactive = interactive
        self._lock = threading.Lock()
        self._progress: Any = None
        self._task: Any = None
        self.total = 0
        self.done = 0
        self.ok = 0
        self.failed = 0
        self._started = 0.0
        self._last_line = 0.0
        self._next_step = 0

    def started(self, experiment_id: str, output_dir: Path, total: int, done: int) -> None:
        self.total, self.done = total, done
        self._started = self._last_line = time.monotonic()
        self._step = max(1, total // 10)
        self._next_step = done + self._step
        left = total - done
        runs = "run" if left == 1 else "runs"
        print(f"Experiment {experiment_id}: {left:,} {runs} to go", file=sys.stderr)
        if self._interactive:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self._progress = Progress(
                TextColumn("[bold]runs"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("[green]ok {task.fields[ok]}[/] [red]failed {task.fields[failed]}[/]"),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                console=Console(file=sys.stderr),
            )
            self._task = self._progress.add_task(
                "runs", total=total, completed=done, ok=0, failed=0
            )
            self._progress.start()

    def finished_run(self, slot: Any, ok: bool) -> None:
        with self._lock:
            self.done += 1
            self.ok += ok
            self.failed += not ok
            if self._progress is not None:
                self._progress.update(self._task, advance=1, ok=self.ok, failed=self.failed)
                return
            now = time.monotonic()
            if self.done >= self._next_step or now - self._last_line >= PLAIN_EVERY_SECONDS:
                self._next_step = self.done + self._step
                self._last_line = now
                print(self._line(now), file=sys.stderr, flush=True)

    def _line(self, now: float) -> str:
        elapsed = now - self._started
        remaining = self.total - self.done
        rate = (self.ok + self.failed) / elapsed if elapsed > 0 else 0.0
        eta = f"{remaining / rate:.0f}s" if rate > 0 else "?"
        percent = self.done * 100 // self.total if self.total else 100
        return (
            f"[progress] {self.done}/{self.total} ({percent}%) ok {self.ok} "
            f"failed {self.failed} eta {eta}"
        )

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
