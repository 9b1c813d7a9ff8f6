"""Rebuilding a report with its integrity check running alongside, not before.

A report is only as good as its log: ``report rebuild`` refuses to write over a folder from
a log that fails verify. Checking first and writing after takes the sum of both; here the
check runs in a forked process while the report is written into a staging folder inside
the target (``.rebuild.tmp-PID``, removed by the next writer if this one is killed), and
the staged files are moved into place only once the check has passed. Either way the
folder ends up as ``write_report`` would leave it, or untouched.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import shutil
import signal
from multiprocessing.connection import Connection
from pathlib import Path

from agentledger.eventstore.store import EventStore
from agentledger.projections.errors import ProjectionError
from agentledger.projections.folds import ExperimentFold
from agentledger.projections.report import ExperimentReport, check_integrity
from agentledger.projections.writers import (
    ERRORS,
    TRANSCRIPTS,
    WrittenReport,
    remove_stale_temporaries,
    write_report,
)

_STOP_WAIT_S = 10.0


def rebuild_checked(store: EventStore, report: ExperimentReport, folder: Path) -> WrittenReport:
    """Write ``report`` into ``folder`` while checking its experiment's log; raises
    ``ProjectionError`` (the folder untouched) when the log fails the check, or naming the
    folder when it cannot be written."""
    try:
        return _rebuild_checked(store, report, folder)
    except OSError as exc:
        raise ProjectionError(
            f"cannot write the report into {folder}: {exc.strerror or exc} ({exc.filename}); "
            "choose a writable folder (--output-dir) or free some space"
        ) from None


def _rebuild_checked(store: EventStore, report: ExperimentReport, folder: Path) -> WrittenReport:
    if "fork" not in multiprocessing.get_all_start_methods():
        check_integrity(store, report.experiment, ignore=False)
        return write_report(report, folder)
    context = multiprocessing.get_context("fork")
    receiver, sender = context.Pipe(duplex=False)
    checker = context.Process(target=_check, args=(store, report.experiment, sender), daemon=True)
    folder.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(folder)
    staging = folder / f".rebuild.tmp-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    checker.start()
    sender.close()
    try:
        written = write_report(report, staging)
        _verdict(receiver, checker)
        _move_into(staging, folder, report.experiment.experiment_id)
    finally:
        if checker.is_alive():  # this process failed or was interrupted
            with contextlib.suppress(ProcessLookupError):
                os.kill(checker.pid or 0, signal.SIGINT)
            checker.join(_STOP_WAIT_S)
            if checker.is_alive():
                checker.terminate()
        checker.join()
        receiver.close()
        shutil.rmtree(staging, ignore_errors=True)
    return WrittenReport(folder, written.files, written.traces, written.processes)


def _check(store: EventStore, experiment: ExperimentFold, sender: Connection) -> None:
    """The forked checker: sends None when the log passes, else the one-line refusal."""
    outcome: str | None
    try:
        check_integrity(store, experiment, ignore=False)
        outcome = None
    except ProjectionError as exc:
        outcome = str(exc)
    except KeyboardInterrupt:
        outcome = "interrupted"
    except BaseException as exc:  # the store's own one-line errors included
        outcome = f"the integrity check failed: {type(exc).__name__}: {exc}"
    try:
        sender.send(outcome)
    except BaseException:
        pass  # the parent stopped listening: it failed or was interrupted
    finally:
        sender.close()


def _verdict(receiver: Connection, checker: multiprocessing.process.BaseProcess) -> None:
    try:
        outcome = receiver.recv()
    except EOFError:
        checker.join()
        raise ProjectionError(
            f"the integrity check process ended with exit status {checker.exitcode} before "
            "saying whether the log is intact; rerun the command"
        ) from None
    if outcome is not None:
        raise ProjectionError(outcome)


def _move_into(staging: Path, folder: Path, experiment_id: str) -> None:
    """Every file and folder written into ``staging`` replaces its namesake in ``folder``
    (a folder swapped whole); a report file this build did not write (``errors.json`` when
    no run failed, ``transcripts/`` when no trace has one) is removed."""
    made = {entry.name: entry.is_dir() for entry in os.scandir(staging)}
    for name, is_dir in sorted(made.items()):
        target = folder / name
        if is_dir and target.is_dir():
            aside = folder / f".{name}.tmp-{os.getpid()}"
            shutil.rmtree(aside, ignore_errors=True)
            os.replace(target, aside)
            os.replace(staging / name, target)
            shutil.rmtree(aside, ignore_errors=True)
        else:
            os.replace(staging / name, target)
    if ERRORS not in made:
        (folder / ERRORS).unlink(missing_ok=True)
    if TRANSCRIPTS not in made and (folder / TRANSCRIPTS).is_dir():
        shutil.rmtree(folder / TRANSCRIPTS)  # an older build's: no trace has one now
    if any(folder.glob("evaluation*")):
        # This experiment's evaluation folders this build did not write (evaluations begun
        # after the --as-of point), as write_report treats them: their files only.
        from agentledger.evaluation.section import remove_stale

        remove_stale(folder, experiment_id, set(made))
