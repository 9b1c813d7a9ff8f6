"""An experiment held in memory for the viewer: its summary and one small row per trace.

Protocol. ``ExperimentIndex.build`` reads the log up to a position ``P`` fixed before the
first read (the experiment stream, then every trace stream whole, in plan order), folds
each trace with the report folds (``TraceFold``), adds the finished ones to the same
``SummaryAccumulator`` that writes summary.json, and keeps of each trace only a
``MatrixRow``: a few numbers and short strings, so 100,000 traces stay in tens of MB.
``catch_up`` applies what was committed after ``P``: experiment events to the experiment
fold, and each touched trace folded again from its whole stream (as of the new position).
A trace that had already been counted and changes again (run again after ``--resume``)
makes the index rebuild itself, so the figures are always those of a full fold. An index
with a fixed ``until`` (``--as-of``) never changes.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from itertools import groupby
from operator import attrgetter
from typing import Any

from agentledger.events.streams import (
    TRACE_PREFIX,
    experiment_stream,
    experiment_traces_prefix,
    trace_stream,
)
from agentledger.eventstore.envelope import FoldableEvent
from agentledger.eventstore.store import EventStore
from agentledger.projections.folds import ExperimentFold, JsonDict, TraceFold
from agentledger.projections.rows import SummaryAccumulator, summary_document, trace_usage
from agentledger.view.errors import NotFoundError

MESSAGE_CHARS = 300
"""How much of a failure's message a matrix row keeps (the trace page shows it whole)."""


@dataclass(frozen=True, slots=True)
class MatrixRow:
    """One trace as the trace matrix shows it."""

    trace_id: str
    slot: int
    input_index: int
    iteration: int
    persona: str | None
    status: str
    """running, completed, failed or interrupted."""
    duration_ms: float
    attempts: int
    error_type: str | None
    error_message: str
    model_calls: int
    total_tokens: int
    tool_calls: int

    @property
    def success(self) -> bool:
        return self.status == "completed"


def matrix_row(trace: TraceFold) -> MatrixRow:
    usage = trace_usage(trace)
    error = trace.error or {}
    return MatrixRow(
        trace_id=trace.trace_id,
        slot=trace.slot,
        input_index=trace.input_index,
        iteration=trace.iteration,
        persona=trace.persona,
        status=trace.status,
        duration_ms=trace.duration_ms,
        attempts=trace.attempt_count,
        error_type=error.get("type"),
        error_message=str(error.get("message", ""))[:MESSAGE_CHARS],
        model_calls=usage["model_calls"],
        total_tokens=usage["total_tokens"],
        tool_calls=usage["tool_calls"],
    )


def fold_streams(events: Iterable[FoldableEvent]) -> Iterator[TraceFold]:
    """Every trace (finished or not) among events grouped by stream."""
    for stream_id, group in groupby(events, key=attrgetter("stream_id")):
        fold = TraceFold(stream_id[len(TRACE_PREFIX) :])
        for ev in group:
            fold.apply(ev)
        if fold.started_at is not None:
            yield fold


@dataclass
class ExperimentIndex:
    """An experiment's folded state as of ``position``, with one row per trace."""

    experiment_id: str
    until: int | None = None
    """The ``--as-of`` position, or None to follow the log."""
    experiment: ExperimentFold = field(default_factory=ExperimentFold)
    position: int = 0
    acc: SummaryAccumulator = field(default_factory=SummaryAccumulator)
    rows: dict[str, MatrixRow] = field(default_factory=dict)
    """Finished traces by id."""
    running: dict[str, MatrixRow] = field(default_factory=dict)
    """Traces started and not finished, by id."""
    _ordered: list[MatrixRow] | None = None
    _memo: dict[str, Any] = field(default_factory=dict)

    def build(self, store: EventStore) -> ExperimentIndex:
        """Fold the experiment from the log (as of ``until``, or the log's end now)."""
        top = store.last_position() if self.until is None else self.until
        events = [
            ev
            for ev in store.read_stream(experiment_stream(self.experiment_id))
            if ev.position <= top
        ]
        if not events:
            raise NotFoundError(f"no experiment {self.experiment_id} in the log")
        self.experiment = ExperimentFold()
        for ev in events:
            self.experiment.apply(ev)
        self.acc = SummaryAccumulator()
        self.rows, self.running, self._ordered = {}, {}, None
        self._memo = {}
        prefix = experiment_traces_prefix(self.experiment_id)
        for fold in fold_streams(store.read_prefix_folds(prefix, until=top)):
            self._take(fold)
        self.position = top
        return self

    def _take(self, fold: TraceFold) -> None:
        row = matrix_row(fold)
        if fold.finished:
            self.acc.add(fold)
            self.rows[fold.trace_id] = row
        else:
            self.running[fold.trace_id] = row

    def catch_up(self, store: EventStore) -> bool:
        """Apply the experiment's events committed since ``position``; True when any."""
        if self.until is not None:
            return False
        top = store.last_position()
        if top <= self.position:
            return False
        touched: set[str] = set()
        stream = experiment_stream(self.experiment_id)
        changed = False
        for ev in store.read_all(self.position, until=top, correlation_id=self.experiment_id):
            changed = True
            if ev.stream_id == stream:
                self.experiment.apply(ev)
            elif ev.stream_id.startswith(TRACE_PREFIX):
                touched.add(ev.stream_id[len(TRACE_PREFIX) :])
        if touched & self.rows.keys():
            self.build(store)  # a counted trace ran again: count everything afresh
            return True
        for trace_id in sorted(touched):
            events = [ev for ev in store.read_stream(trace_stream(trace_id)) if ev.position <= top]
            self.running.pop(trace_id, None)
            for fold in fold_streams(events):
                self._take(fold)
        self.position = top
        if changed:
            self._ordered = None
            self._memo = {}
        return changed

    # --- what the pages read ---------------------------------------------------------------

    def summary(self) -> JsonDict:
        """summary.json of the experiment as of ``position`` (the report's own function)."""
        return summary_document(self.experiment, self.acc)

    def memo(self, name: str, compute: Callable[[], Any]) -> Any:
        """``compute()``, kept until the index changes (what pages derive from it)."""
        if name not in self._memo:
            self._memo[name] = compute()
        return self._memo[name]

    def ordered(self) -> list[MatrixRow]:
        """Every trace (finished and running) in plan order."""
        if self._ordered is None:
            rows = [*self.rows.values(), *self.running.values()]
            rows.sort(key=attrgetter("slot"))
            self._ordered = rows
        return self._ordered

    def personas(self) -> list[str]:
        return sorted({r.persona for r in self.ordered() if r.persona is not None})

    def input_text(self, index: int) -> str:
        """The planned input at ``index`` (from the plan the experiment recorded)."""
        for item in self.experiment.plan.get("inputs", []):
            if item.get("index") == index:
                return str(item.get("input", ""))
        return ""

    def filter(self, *, status: str = "", persona: str = "", text: str = "") -> list[MatrixRow]:
        """The matrix rows matching a status, a persona and a text (in the trace id, the
        persona, the planned input or the failure), case-insensitive."""
        rows: Iterable[MatrixRow] = self.ordered()
        if status:
            rows = [r for r in rows if r.status == status]
        if persona:
            rows = [r for r in rows if r.persona == persona]
        if text:
            needle = text.casefold()
            inputs = {
                int(item.get("index", -1))
                for item in self.experiment.plan.get("inputs", [])
                if needle in str(item.get("input", "")).casefold()
            }
            rows = [
                r
                for r in rows
                if r.input_index in inputs
                or needle in r.trace_id.casefold()
                or needle in (r.persona or "").casefold()
                or needle in (r.error_type or "").casefold()
                or needle in r.error_message.casefold()
            ]
        return list(rows)


class IndexCache:
    """Experiment indexes kept between requests (the ``limit`` most recently used), each
    built once and caught up on later requests; one lock per experiment."""

    def __init__(self, store: EventStore, until: int | None, limit: int = 6) -> None:
        self._store = store
        self._until = until
        self._limit = limit
        self._indexes: OrderedDict[str, ExperimentIndex] = OrderedDict()
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def get(self, experiment_id: str) -> ExperimentIndex:
        with self._guard:
            lock = self._locks.setdefault(experiment_id, threading.Lock())
        with lock:
            with self._guard:
                index = self._indexes.get(experiment_id)
            if index is None:
                index = ExperimentIndex(experiment_id, self._until).build(self._store)
            else:
                index.catch_up(self._store)
            with self._guard:
                self._indexes[experiment_id] = index
                self._indexes.move_to_end(experiment_id)
                while len(self._indexes) > self._limit:
                    self._indexes.popitem(last=False)
            return index
