"""The integrity check of an evaluated experiment, run beside its scoring.

Scores are only as good as the log, so ``evaluate`` refuses an experiment whose streams
fail verify. Checking first and scoring after takes the sum of both; here the check runs
in a forked process (as ``report rebuild``'s does) while the traces are scored, and the
scoring waits for its verdict before anything is recorded as the evaluation's result:
``EvaluationCompleted``, ``scores.jsonl``, ``summary.json`` and the report's entry. A
refused log leaves the scores appended so far without a completion (as an interrupted
evaluation does) and no file. Without ``fork`` the check runs first, in this process.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING

from agentledger.projections.errors import ProjectionError

if TYPE_CHECKING:
    from multiprocessing.process import BaseProcess

    from agentledger.eventstore.store import EventStore
    from agentledger.projections.folds import ExperimentFold

_STOP_WAIT_S = 10.0


class IntegrityCheck:
    """verify over ``experiment``'s streams, started now, its verdict taken by ``result``.
    Use as a context manager: leaving it stops a check still running."""

    def __init__(self, store: EventStore, experiment: ExperimentFold, *, ignore: bool) -> None:
        self._experiment = experiment
        self._ignore = ignore
        self._outcome: tuple[bool, str | None] | None = None
        self._checker: BaseProcess | None = None
        self._receiver: Connection | None = None
        if "fork" not in multiprocessing.get_all_start_methods():
            self._outcome = _checked(store, experiment, ignore)
            self.result()  # refused before anything is appended
            return
        context = multiprocessing.get_context("fork")
        receiver, sender = context.Pipe(duplex=False)
        self._checker = context.Process(
            target=_check, args=(store, experiment, ignore, sender), daemon=True
        )
        self._checker.start()
        sender.close()
        self._receiver = receiver

    def result(self) -> str | None:
        """Wait for the verdict: ``ProjectionError`` when the log fails verify (unless
        ignored); else None, or the warning when it fails and ``ignore`` was given (set on
        the experiment, as ``check_integrity`` does)."""
        if self._outcome is None:
            assert self._receiver is not None and self._checker is not None
            try:
                self._outcome = self._receiver.recv()
            except EOFError:
                self._checker.join()
                raise ProjectionError(
                    f"the integrity check process ended with exit status "
                    f"{self._checker.exitcode} before saying whether the log is intact; "
                    "rerun the command"
                ) from None
        passed, message = self._outcome
        if not passed:
            raise ProjectionError(message)
        if message is not None:
            self._experiment.integrity_warning = message
        return message

    def __enter__(self) -> IntegrityCheck:
        return self

    def __exit__(self, *exc: object) -> None:
        checker = self._checker
        if checker is not None:
            if checker.is_alive():  # the scoring failed or was interrupted
                with contextlib.suppress(ProcessLookupError):
                    os.kill(checker.pid or 0, signal.SIGINT)
                checker.join(_STOP_WAIT_S)
                if checker.is_alive():
                    checker.terminate()
            checker.join()
        if self._receiver is not None:
            self._receiver.close()


def _checked(
    store: EventStore, experiment: ExperimentFold, ignore: bool
) -> tuple[bool, str | None]:
    from agentledger.projections.report import check_integrity

    try:
        return True, check_integrity(store, experiment, ignore=ignore)
    except ProjectionError as exc:
        return False, str(exc)


def _check(store: EventStore, experiment: ExperimentFold, ignore: bool, sender: Connection) -> None:
    """The forked checker: sends ``(passed, message)``."""
    outcome: tuple[bool, str | None]
    try:
        outcome = _checked(store, experiment, ignore)
    except KeyboardInterrupt:
        outcome = (False, "interrupted")
    except BaseException as exc:  # the store's own one-line errors included
        outcome = (False, f"the integrity check failed: {type(exc).__name__}: {exc}")
    try:
        sender.send(outcome)
    except BaseException:
        pass  # the parent stopped listening: it failed or was interrupted
    finally:
        sender.close()
