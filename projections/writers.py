"""Writing a report to an experiment folder: every file replaced atomically.

Each file is written to a temporary name in the same folder and renamed over the old one,
so a reader never sees a half-written file. A new ``transcripts/`` folder is built beside
and renamed into place; an existing one is brought up to date file by file (a transcript
whose bytes did not change is left alone: a running experiment's folder is refreshed
every few seconds, and creating thousands of files costs more than reading them).

Bytes depend only on the report: rows in plan order, keys in model order, nested
documents as the store keeps them (sorted keys).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import orjson
import yaml

from projections.folds import ExperimentFold, TraceFold
from projections.report import ExperimentReport
from projections.rows import (
    SummaryAccumulator,
    observation_rows,
    summary_document,
    trace_row,
    trace_summary_row,
)
from projections.transcripts import trace_transcript

SUMMARY = "summary.json"
CONFIG = "config.yaml"
TRANSCRIPTS = "transcripts"
_MULTI_TURN_ONLY = ("conversation_state", "termination_reason", "turn_count", "conversation")


@contextmanager
def atomic_file(path: Path, mode: str = "wb") -> Iterator[IO[Any]]:
    """Write ``path`` through a temporary sibling renamed into place on success."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, mode, buffering=1 << 20) as handle:
            yield handle
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


class _RowFile:
    """A row file in ``jsonl`` (one object per line) or ``json`` (one array) format."""

    def __init__(self, handle: IO[bytes], fmt: str) -> None:
        self._handle = handle
        self._json = fmt == "json"
        self._first = True
        if self._json:
            handle.write(b"[")

    def write(self, row: Any) -> None:
        data = orjson.dumps(row)
        if self._json:
            self._handle.write(b"\n" + data if self._first else b",\n" + data)
        else:
            self._handle.write(data + b"\n")
        self._first = False

    def write_many(self, rows: list[Any]) -> None:
        """``write`` for each of ``rows``, in one call (a trace's observations)."""
        if not rows:
            return
        encoded = list(map(orjson.dumps, rows))
        if self._json:
            self._handle.write((b"\n" if self._first else b",\n") + b",\n".join(encoded))
        else:
            encoded.append(b"")
            self._handle.write(b"\n".join(encoded))
        self._first = False

    def close(self) -> None:
        if self._json:
            self._handle.write(b"]\n" if self._first else b"\n]\n")


@dataclass
class WrittenReport:
    """What ``write_report`` produced."""

    folder: Path
    files: list[str] = field(default_factory=list)
    traces: int = 0


def _summary_line(trace: TraceFold) -> dict[str, Any]:
    row = trace_summary_row(trace).model_dump(mode="json")
    for key in _MULTI_TURN_ONLY:
        if row[key] is None:
            del row[key]
    return row


def write_report(report: ExperimentReport, folder: Path) -> WrittenReport:
    """Write every file of ``report`` into ``folder`` (created if missing)."""
    config = report.experiment.config
    fmt = str(config.get("output_format", "jsonl"))
    save_traces = bool(config.get("save_traces", True))
    ext = "json" if fmt == "json" else "jsonl"
    folder.mkdir(parents=True, exist_ok=True)
    written = WrittenReport(folder)
    names = [f"trace_summary.{ext}"]
    if save_traces:
        names += [f"traces.{ext}", f"observations.{ext}"]
    acc = SummaryAccumulator()
    with _Transcripts(folder / TRANSCRIPTS) as transcripts, ExitStack() as stack:
        handles = [stack.enter_context(atomic_file(folder / name)) for name in names]
        files = [_RowFile(h, fmt) for h in handles]
        for trace in report.traces:
            acc.add(trace)
            files[0].write(_summary_line(trace))
            if save_traces:
                files[1].write(trace_row(trace).model_dump(mode="json"))
                files[2].write_many(observation_rows(trace))
            transcripts.write(
                f"{trace.trace_id}.md", trace_transcript(report.experiment, trace).encode()
            )
            written.traces += 1
        for f in files:
            f.close()
    with atomic_file(folder / CONFIG) as handle:
        handle.write(yaml.safe_dump(config, sort_keys=True, allow_unicode=True).encode())
    write_summary(folder, report.experiment, acc)
    written.files = [SUMMARY, *names, CONFIG, f"{TRANSCRIPTS}/"]
    return written


def write_summary(folder: Path, experiment: ExperimentFold, acc: SummaryAccumulator) -> None:
    """Write summary.json alone (what a live refresh of a very large experiment does)."""
    with atomic_file(folder / SUMMARY) as handle:
        document = summary_document(experiment, acc)
        handle.write(orjson.dumps(document, option=orjson.OPT_INDENT_2) + b"\n")


class _Transcripts:
    """Writes the transcripts folder: built aside and renamed into place when it is new;
    updated in place when it exists (changed files replaced atomically, unchanged ones
    left alone, ones no longer in the report removed)."""

    def __init__(self, target: Path) -> None:
        self._target = target
        self._in_place = target.is_dir()
        self._dir = (
            target if self._in_place else target.with_name(f".{target.name}.tmp-{os.getpid()}")
        )
        self._names: set[str] = set()

    def __enter__(self) -> _Transcripts:
        if not self._in_place:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir.mkdir()
        return self

    def write(self, name: str, content: bytes) -> None:
        path = self._dir / name
        if not self._in_place:
            path.write_bytes(content)
            return
        self._names.add(name)  # only an update in place has stale files to find
        try:
            if path.read_bytes() == content:
                return
        except OSError:
            pass  # missing (or unreadable): write it
        with atomic_file(path) as handle:
            handle.write(content)

    def __exit__(self, kind: object, *rest: object) -> None:
        if kind is not None:
            if not self._in_place:
                shutil.rmtree(self._dir, ignore_errors=True)
            return
        if not self._in_place:
            os.replace(self._dir, self._target)
            return
        with os.scandir(self._dir) as entries:
            stale = [e.path for e in entries if e.name not in self._names]
        for path in stale:
            os.unlink(path)
