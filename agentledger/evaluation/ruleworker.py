"""Rule-only scoring in a forked process, beside the appending.

Rules are pure CPU and so is appending their scores (encoding, hashing, SQLite), so one
process does one and a second the other: the worker, forked once the evaluation has
begun, reads the experiment's finished traces (folded for what rules read, or whole when
a rule's target needs it), keeps those ``limits`` select, scores them and sends the
``TraceScored`` data in plan order, ``CHUNK`` traces a message. Last come the counts of
traces available and left out, or the error that stopped the worker, raised again in the
evaluation process. The worker writes nothing. Without ``fork`` the same generator runs
in the evaluation process.

The evaluation process (``score_in_worker``) appends the data as it comes, through
``BuiltPayload`` (the data as the model would dump it, not dumped again), reads each
append back from the log and folds it into ``scores.jsonl`` as the log holds it.
"""

from __future__ import annotations

import contextlib
import gc
import multiprocessing
import os
import pickle
import queue
import signal
import threading
from collections.abc import Callable, Iterator
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agentledger.events.evaluation import TraceScored
from agentledger.events.payloads import Payload
from agentledger.eventstore.appending import BuiltPayload
from agentledger.projections.errors import ProjectionError

if TYPE_CHECKING:
    from multiprocessing.process import BaseProcess

    from agentledger.evaluation.scoring import _Scorer
    from agentledger.evaluation.summary import EvaluationFold, ScoresWriter
    from agentledger.eventstore.store import EventStore
    from agentledger.projections.folds import ExperimentFold

JsonDict = dict[str, Any]
CHUNK = 1000
"""Traces' scores per message."""
QUEUED = 4
"""Chunks received and not yet appended, at most (bounds memory)."""
_STOP_WAIT_S = 10.0
_CHUNK, _DONE, _FAILED = b"C", b"D", b"E"
SCORED = TraceScored.schema_version
APPENDED = 2000
"""A rule worker's scores appended (and read back) per transaction."""


def score_in_worker(
    store: EventStore,
    experiment: ExperimentFold,
    until: int,
    scorer: _Scorer,
    counts: dict[str, int],
    output_dir: Path | None,
    checked: Callable[[], str | None] | None,
) -> tuple[EvaluationFold, str | None]:
    """Rules alone: scored by a ``RuleWorker``, appended here ``APPENDED`` a transaction,
    each append read back from the log and folded into ``scores.jsonl`` as it landed (while
    the worker goes on scoring); the file is put in place once ``checked`` has passed.
    The counts of traces available and left out go into ``counts``."""
    from agentledger.evaluation.rules import reads_whole_trace
    from agentledger.evaluation.scoring import read_evaluation
    from agentledger.evaluation.summary import ScoresWriter

    whole = reads_whole_trace(scorer.rule_evaluators)
    with ScoresWriter(output_dir) as scores:
        scores.add(read_evaluation(store, scorer.evaluation_id))  # EvaluationStarted
        with RuleWorker(store, experiment, until, scorer, whole=whole) as worker:
            pending: list[Payload | BuiltPayload] = []
            for part in worker.chunks():
                pending += [BuiltPayload(TraceScored.event_type, SCORED, doc) for doc in part]
                if len(pending) >= APPENDED:
                    _append_and_fold(store, scorer, pending, scores)
                    pending = []
            if pending:
                _append_and_fold(store, scorer, pending, scores)
            counts.update(worker.counts)
        warning = checked() if checked is not None else None
        scores.commit()
    return scores.fold, warning


def _append_and_fold(
    store: EventStore,
    scorer: _Scorer,
    payloads: list[Payload | BuiltPayload],
    scores: ScoresWriter,
) -> None:
    done = scorer.append(payloads)
    scores.add(
        store.read_all(done.first_position - 1, until=done.last_position, page_size=APPENDED)
    )


class RuleWorker:
    """Scores the traces in a forked process (see the module docstring); ``chunks``
    yields their data, then ``counts`` holds the selection's counts. Use as a context
    manager: leaving it stops a worker still running."""

    def __init__(
        self,
        store: EventStore,
        experiment: ExperimentFold,
        until: int | None,
        scorer: _Scorer,
        *,
        whole: bool,
        chunk: int = CHUNK,
    ) -> None:
        self.counts: dict[str, int] = {}
        self._source = (store, experiment, until, scorer, whole, chunk)
        self._worker: BaseProcess | None = None
        self._receiver: Connection | None = None
        self._reader: threading.Thread | None = None
        self._messages: queue.Queue[bytes | None] = queue.Queue(maxsize=QUEUED)
        if "fork" not in multiprocessing.get_all_start_methods():
            return
        context = multiprocessing.get_context("fork")
        receiver, sender = context.Pipe(duplex=False)
        self._worker = context.Process(target=_work, args=(*self._source, sender), daemon=True)
        self._worker.start()
        sender.close()
        self._receiver = receiver

    def chunks(self) -> Iterator[list[JsonDict]]:
        """The ``TraceScored`` data of the selected traces, in plan order, in chunks."""
        if self._receiver is None:
            yield from _score(*self._source, self.counts)
            return
        # A thread takes the messages off the pipe as they come (waiting and reading
        # without the interpreter lock): a pipe holds 64 KiB, and the worker would wait on
        # each append otherwise.
        messages = self._messages
        self._reader = threading.Thread(
            target=_receive, args=(self._receiver, messages), name="agentledger-scores"
        )
        self._reader.start()
        while True:
            message = messages.get()
            if message is None:
                assert self._worker is not None
                self._worker.join()
                raise ProjectionError(
                    f"the scoring process ended with exit status {self._worker.exitcode} "
                    "before its last score; evaluate again"
                )
            tag, body = message[:1], message[1:]
            if tag == _CHUNK:
                yield pickle.loads(body)
            elif tag == _DONE:
                self.counts.update(pickle.loads(body))
                if self._worker is not None:
                    self._worker.join(_STOP_WAIT_S)  # it ends on its own after its last message
                return
            else:
                raise pickle.loads(body)

    def __enter__(self) -> RuleWorker:
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop_worker()
        reader = self._reader
        while reader is not None and reader.is_alive():  # never left stuck on a full queue
            with contextlib.suppress(queue.Empty):
                self._messages.get(timeout=0.05)
        if self._receiver is not None:
            self._receiver.close()

    def _stop_worker(self) -> None:
        worker = self._worker
        if worker is not None:
            if worker.is_alive():  # the appending failed or was interrupted
                with contextlib.suppress(ProcessLookupError):
                    os.kill(worker.pid or 0, signal.SIGINT)
                worker.join(_STOP_WAIT_S)
                if worker.is_alive():
                    worker.terminate()
            worker.join()


def _receive(receiver: Connection, messages: queue.Queue[bytes | None]) -> None:
    """Move the worker's messages into ``messages`` until its last (None: it ended
    without one)."""
    while True:
        try:
            message = receiver.recv_bytes()
        except (EOFError, OSError):
            messages.put(None)
            return
        messages.put(message)
        if message[:1] != _CHUNK:
            return


def _score(
    store: EventStore,
    experiment: ExperimentFold,
    until: int | None,
    scorer: _Scorer,
    whole: bool,
    size: int,
    counts: dict[str, int],
) -> Iterator[list[JsonDict]]:
    from agentledger.evaluation.scoring import _selected
    from agentledger.evaluation.traces import read_rule_traces, read_traces

    if whole:
        traces = read_traces(store, experiment.experiment_id, until).traces
    else:
        traces = read_rule_traces(store, experiment, until)
    counts.update(available=0, sample_rate=0, max_traces=0)
    chunk: list[JsonDict] = []
    for trace in _selected(traces, scorer.settings, counts):
        scores = scorer.rule_scores(trace)
        chunk.append(scorer.scored(trace, {s["evaluator"]: [s] for s in scores}))
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _work(
    store: EventStore,
    experiment: ExperimentFold,
    until: int | None,
    scorer: _Scorer,
    whole: bool,
    size: int,
    sender: Connection,
) -> None:
    """The forked worker: sends each chunk, then the counts (or the error)."""
    # A short-lived process that keeps no cycles: the collector's passes over the
    # inherited heap would only cost time.
    gc.freeze()
    gc.disable()
    counts: dict[str, int] = {}
    try:
        for chunk in _score(store, experiment, until, scorer, whole, size, counts):
            sender.send_bytes(_CHUNK + pickle.dumps(chunk, pickle.HIGHEST_PROTOCOL))
        sender.send_bytes(_DONE + pickle.dumps(counts))
    except BaseException as exc:
        with contextlib.suppress(BaseException):
            sender.send_bytes(_FAILED + _pickled(exc))
    finally:
        sender.close()


def _pickled(exc: BaseException) -> bytes:
    """The error as the evaluation process raises it again (its type when it pickles)."""
    if isinstance(exc, KeyboardInterrupt):
        exc = ProjectionError("the scoring process was interrupted")
    try:
        data = pickle.dumps(exc)
        pickle.loads(data)
        return data
    except Exception:
        return pickle.dumps(ProjectionError(f"scoring failed: {type(exc).__name__}: {exc}"))
