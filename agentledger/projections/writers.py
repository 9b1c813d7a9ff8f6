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

import contextlib
import copy
import multiprocessing
import os
import re
import shutil
import signal
import traceback
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import IO, Any

import orjson
import yaml

from agentledger.errors import AgentLedgerError
from agentledger.eventstore.envelope import dumps_storable
from agentledger.projections.errors import ProjectionError
from agentledger.projections.folds import ExperimentFold, TraceFold
from agentledger.projections.report import ExperimentReport, TraceSource
from agentledger.projections.rows import (
    SummaryAccumulator,
    conversation,
    observation_rows,
    summary_document,
    trace_dict,
    trace_summary_dict,
)
from agentledger.projections.transcripts import trace_transcript

SUMMARY = "summary.json"
CONFIG = "config.yaml"
TRANSCRIPTS = "transcripts"
REPORT_HTML = "report.html"
_STOP_WAIT_S = 10.0
"""How long a writer process gets to stop after an interrupt before it is killed."""
ERRORS = "errors.json"
_MULTI_TURN_ONLY = ("conversation_state", "conversation_status", "termination_reason", "turn_count")


_TEMPORARY = re.compile(r"^\..+\.(?:tmp|part\d+)-(\d+)$")
"""Names of a writer's temporaries: ``.NAME.tmp-PID`` (files, the transcripts folder) and
``.NAME.partN-PID`` (fragments of a parallel rebuild)."""


def remove_stale_temporaries(folder: Path) -> int:
    """Remove the temporaries that writers which are no longer running left in ``folder``
    and its transcripts folder (killed mid-write); a live process's are left alone.
    Returns how many were removed."""
    removed = 0
    for where in (folder, folder / TRANSCRIPTS):
        try:
            entries = list(os.scandir(where))
        except OSError:
            continue
        for entry in entries:
            match = _TEMPORARY.match(entry.name)
            if match is None or _alive(int(match.group(1))):
                continue
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)
            removed += 1
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, owned by someone else
    return True


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
    """A row file in ``jsonl`` (one object per line) or ``json`` (one array) format.

    A ``fragment`` holds rows only (no brackets): another process's run of rows, which
    ``join`` appends to the whole file so that the bytes are those of one writer.
    """

    def __init__(self, handle: IO[bytes], fmt: str, *, fragment: bool = False) -> None:
        self._handle = handle
        self._json = fmt == "json"
        self._fragment = fragment
        self._first = True
        if self._json and not fragment:
            handle.write(b"[")

    def write(self, row: Any) -> None:
        data = dumps_storable(row)
        if self._json:
            self._handle.write(b"\n" + data if self._first else b",\n" + data)
        else:
            self._handle.write(data + b"\n")
        self._first = False

    def write_many(self, rows: list[Any]) -> None:
        """``write`` for each of ``rows``, in one call (a trace's observations)."""
        if not rows:
            return
        encoded = list(map(dumps_storable, rows))
        if self._json:
            self._handle.write((b"\n" if self._first else b",\n") + b",\n".join(encoded))
        else:
            encoded.append(b"")
            self._handle.write(b"\n".join(encoded))
        self._first = False

    def join(self, fragment: Path) -> None:
        """Append the rows of ``fragment`` (written by a ``fragment`` _RowFile)."""
        if fragment.stat().st_size == 0:
            return
        if self._json and not self._first:
            self._handle.write(b",")
        with open(fragment, "rb") as source:
            shutil.copyfileobj(source, self._handle, 1 << 20)
        self._first = False

    def close(self) -> None:
        if self._json and not self._fragment:
            self._handle.write(b"]\n" if self._first else b"\n]\n")


@dataclass
class WrittenReport:
    """What ``write_report`` produced."""

    folder: Path
    files: list[str] = field(default_factory=list)
    traces: int = 0
    processes: int = 1
    """How many processes wrote it (one per part of a cut report)."""


def says_more(trace: TraceFold) -> bool:
    """Whether a trace's transcript says more than its trace line (turns of a conversation,
    model or tool calls): only those are written as files. Every transcript is a projection
    of the log either way (``agentledger transcript TRACE``); a file per plain single-turn
    trace would cost more than the rest of its report together."""
    return bool(trace.turns or trace.model_calls or trace.tool_calls)


def _summary_line(trace: TraceFold, entries: list[Any]) -> dict[str, Any]:
    row = trace_summary_dict(trace, entries)
    for key in _MULTI_TURN_ONLY:
        if row[key] is None:
            del row[key]
    return row


class _TraceSink:
    """Writes each finished trace's rows and transcript, and keeps the summary totals."""

    def __init__(
        self,
        experiment: ExperimentFold,
        files: list[_RowFile],
        transcripts: _Transcripts,
        html: Any = None,
    ) -> None:
        self._experiment = experiment
        self.files = files
        self.transcripts = transcripts
        self.acc = SummaryAccumulator()
        self.traces = 0
        self.html = html
        """The report.html collector (``output.html: true``), or None."""

    def add(self, trace: TraceFold) -> None:
        self.acc.add(trace)
        if self.html is not None:
            self.html.add(trace)
        entries = conversation(trace)
        self.files[0].write(_summary_line(trace, entries))
        if len(self.files) > 1:  # save_traces
            self.files[1].write(trace_dict(trace, entries))
            self.files[2].write_many(observation_rows(trace))
        if says_more(trace):
            self.transcripts.write(
                f"{trace.trace_id}.md", trace_transcript(self._experiment, trace).encode()
            )
        self.traces += 1


def write_report(report: ExperimentReport, folder: Path) -> WrittenReport:
    """Write every file of ``report`` into ``folder`` (created if missing).

    A report cut into ``parts`` is written by as many processes: this one writes the first
    part, a forked process each other one, and their rows are joined in order, so the
    files are byte for byte those of one process. A file that cannot be written raises
    ``ProjectionError`` naming it.
    """
    try:
        return _write_report(report, folder)
    except OSError as exc:
        raise _cannot_write(folder, exc) from None


def _cannot_write(folder: Path, exc: OSError) -> ProjectionError:
    return ProjectionError(
        f"cannot write the report into {folder}: {exc.strerror or exc} ({exc.filename}); "
        "choose a writable folder (--output-dir) or free some space"
    )


def _write_report(report: ExperimentReport, folder: Path) -> WrittenReport:
    config = report.experiment.config
    fmt = str(config.get("output_format", "jsonl"))
    ext = "json" if fmt == "json" else "jsonl"
    folder.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(folder)
    names = [f"trace_summary.{ext}"]
    if config.get("save_traces", True):
        names += [f"traces.{ext}", f"observations.{ext}"]
    html = _html_report() if config.get("output_html") else None
    with _Transcripts(folder / TRANSCRIPTS) as transcripts, ExitStack() as stack:
        handles = [stack.enter_context(atomic_file(folder / name)) for name in names]
        row_files = [_RowFile(h, fmt) for h in handles]
        sink = _TraceSink(report.experiment, row_files, transcripts, html)
        parallel = (
            html is None  # report.html is collected in this process, from every trace
            and len(report.parts) > 1
            and "fork" in multiprocessing.get_all_start_methods()
        )
        if parallel:
            _write_parts(report, folder, names, fmt, sink)
        else:
            for trace in report.traces:
                sink.add(trace)
        for f in sink.files:
            f.close()
    with atomic_file(folder / CONFIG) as handle:
        handle.write(yaml.safe_dump(config, sort_keys=True, allow_unicode=True).encode())
    evaluation = _write_evaluations(report, folder)
    write_summary(folder, report.experiment, sink.acc, evaluation)
    files = [SUMMARY, *names, CONFIG]
    if (folder / TRANSCRIPTS).is_dir():
        files.append(f"{TRANSCRIPTS}/")
    if sink.acc.errors:
        with atomic_file(folder / ERRORS) as handle:
            handle.write(dumps_storable(sink.acc.errors, orjson.OPT_INDENT_2) + b"\n")
        files.append(ERRORS)
    else:
        (folder / ERRORS).unlink(missing_ok=True)  # from a build before the failures were retried
    if html is not None:
        with atomic_file(folder / REPORT_HTML) as handle:
            handle.write(html.render(report.experiment, sink.acc))
        files.append(REPORT_HTML)
    return WrittenReport(folder, files, sink.traces, len(report.parts) if parallel else 1)


def _write_evaluations(report: ExperimentReport, folder: Path) -> dict[str, Any] | None:
    """The evaluations' files beside the report (and stale ones of an earlier rebuild
    removed); the summary's entry for the latest, or None. A report without evaluations
    whose folder has no evaluation folder imports nothing more."""
    parts = report.evaluations
    if parts is None or (not parts and not any(folder.glob("evaluation*"))):
        return None
    from agentledger.evaluation.section import write_evaluations

    return write_evaluations(parts, folder, report.experiment.experiment_id)


def _html_report() -> Any:
    """report.html's collector (the viewer's templates; imported only when asked for)."""
    from agentledger.view.report import HtmlReport

    return HtmlReport()


def _write_parts(
    report: ExperimentReport, folder: Path, names: list[str], fmt: str, sink: _TraceSink
) -> None:
    """The first part into ``sink``; each other part by a forked process into fragments
    beside the files (transcripts straight into their folder), joined here in order."""
    context = multiprocessing.get_context("fork")
    workers: list[tuple[Any, Any, list[Path]]] = []
    try:
        for number, part in enumerate(report.parts[1:], start=1):
            fragments = [folder / f".{name}.part{number}-{os.getpid()}" for name in names]
            receiver, sender = context.Pipe(duplex=False)
            job = (report.experiment, part, fragments, fmt, sink.transcripts, sender)
            process = context.Process(target=_write_part, args=job, daemon=True)
            workers.append((process, receiver, fragments))
            process.start()
            sender.close()
        for trace in report.parts[0]():
            sink.add(trace)
        for process, receiver, fragments in workers:
            try:
                outcome = receiver.recv()
            except EOFError:
                process.join()
                raise ProjectionError(
                    f"a report writer process ended with exit status {process.exitcode} "
                    "before finishing its part; rerun the command"
                ) from None
            process.join()
            if isinstance(outcome, BaseException):
                raise outcome
            acc, count, transcript_names = outcome
            for file, fragment in zip(sink.files, fragments, strict=True):
                file.join(fragment)
            sink.acc.merge(acc)
            sink.traces += count
            sink.transcripts.record(transcript_names)
    finally:
        for process, receiver, fragments in workers:
            if process.is_alive():  # this process failed: stop the others the way Ctrl-C
                os.kill(process.pid, signal.SIGINT)  # does, so they remove their temp files
                process.join(_STOP_WAIT_S)
            if process.is_alive():
                process.terminate()
            process.join()
            receiver.close()
            for fragment in fragments:
                fragment.unlink(missing_ok=True)


def _write_part(
    experiment: ExperimentFold,
    part: TraceSource,
    fragments: list[Path],
    fmt: str,
    transcripts: _Transcripts,
    sender: Connection,
) -> None:
    """A forked writer process: one part's rows into fragments, its transcripts into the
    shared folder; sends back the totals, the trace count and the transcript names, or
    the error (an agentledger error as the same one-line message)."""
    outcome: Any
    try:
        with ExitStack() as stack:
            handles = [stack.enter_context(open(f, "wb", buffering=1 << 20)) for f in fragments]
            files = [_RowFile(h, fmt, fragment=True) for h in handles]
            own = transcripts.for_part()
            sink = _TraceSink(experiment, files, own)
            for trace in part():
                sink.add(trace)
        outcome = (sink.acc, sink.traces, own.names)
    except KeyboardInterrupt:
        outcome = KeyboardInterrupt()
    except AgentLedgerError as exc:
        outcome = ProjectionError(str(exc))
    except OSError as exc:
        outcome = _cannot_write(fragments[0].parent, exc)
    except BaseException as exc:  # a bug: its traceback, as the parent cannot show ours
        outcome = RuntimeError("".join(traceback.format_exception(exc)))
    try:
        sender.send(outcome)
    except BaseException:
        pass  # the parent stopped reading: it failed or was interrupted
    finally:
        sender.close()


def write_summary(
    folder: Path,
    experiment: ExperimentFold,
    acc: SummaryAccumulator,
    evaluation: dict[str, Any] | None = None,
) -> None:
    """Write summary.json alone (what a live refresh of a very large experiment does);
    ``evaluation``, the latest evaluation's entry, goes last."""
    with atomic_file(folder / SUMMARY) as handle:
        document = summary_document(experiment, acc)
        if evaluation is not None:
            document["evaluation"] = evaluation
        handle.write(dumps_storable(document, orjson.OPT_INDENT_2) + b"\n")


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

    def for_part(self) -> _Transcripts:
        """A writer into the same folder for another process's part (not entered: the
        folder is this writer's to rename or clean up)."""
        part = copy.copy(self)
        part._names = set()
        return part

    @property
    def names(self) -> set[str]:
        """Transcripts written or kept by an update in place."""
        return self._names

    def record(self, names: set[str]) -> None:
        """Count another part's transcripts as written (kept by the clean-up)."""
        self._names |= names

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
            with os.scandir(self._dir) as entries:
                empty = next(entries, None) is None
            if empty:
                # No trace had a transcript worth a file (forked parts write into this
                # folder too, before this): no empty folder either.
                self._dir.rmdir()
                return
            try:
                os.replace(self._dir, self._target)
            except OSError:
                if not self._target.is_dir():
                    raise
                # Another writer of the same report (a second resume, a worker) made the
                # folder first: put each file in place atomically, last writer wins.
                with os.scandir(self._dir) as entries:
                    for entry in list(entries):
                        os.replace(entry.path, self._target / entry.name)
                shutil.rmtree(self._dir, ignore_errors=True)
            return
        with os.scandir(self._dir) as entries:
            stale = [e.path for e in entries if e.name not in self._names]
        for path in stale:
            os.unlink(path)


def recorded_folder(experiment: ExperimentFold, project: Path) -> Path:
    """The output folder the experiment was recorded with, taken relative to ``project``
    (where the rebuild runs) when it lay inside the recorded project: a copy of the store
    rebuilds into its own project, never into the original's."""
    if not experiment.output_dir:
        raise ProjectionError(
            f"experiment {experiment.experiment_id} recorded no output folder; pass --output-dir"
        )
    recorded = Path(experiment.output_dir)
    recorded_project = experiment.config.get("project_dir")
    if recorded_project and recorded.is_relative_to(recorded_project):
        return project / recorded.relative_to(recorded_project)
    return recorded


def check_folder(folder: Path, experiment_id: str, *, force: bool) -> None:
    """Refuse to write over another experiment's report or a folder of other files."""
    if force or not folder.is_dir():
        return
    try:
        other = orjson.loads((folder / SUMMARY).read_bytes()).get("experiment_id")
    except FileNotFoundError:
        other = None
    except (OSError, orjson.JSONDecodeError, AttributeError):
        other = "(unreadable)"
    if other == experiment_id:
        return
    if other is None and not [p for p in folder.iterdir() if not p.name.startswith(".")]:
        return  # an empty folder
    what = f"the report of experiment {other}" if other else "files that are not its report"
    raise ProjectionError(
        f"{folder} holds {what}; pass --force to overwrite it, or --output-dir elsewhere"
    )
