"""An experiment's report: its folded state, built in one pass or caught up incrementally.

``stream_report`` folds an experiment whose events arrive stream by stream (the
experiment stream, then each trace stream whole, in slot order): one trace in memory at a
time, which is how a rebuild of millions of events stays in flat memory. ``ReportState``
folds events in any order that keeps each stream in order (for example log position
order, in chunks) and keeps every trace; both give the same ``ExperimentReport``.
``load_report`` is the driver that feeds a store's events to ``stream_report``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from itertools import chain, groupby, pairwise
from operator import attrgetter
from typing import TYPE_CHECKING

from agentledger.events.streams import TRACE_PREFIX, experiment_stream, experiment_traces_prefix
from agentledger.eventstore.envelope import (
    FoldableEvent,
    StoredEvent,
    format_timestamp,
    parse_timestamp,
)
from agentledger.eventstore.store import EventStore
from agentledger.projections.errors import AsOfError, ProjectionError, UnknownExperimentError
from agentledger.projections.folds import ExperimentFold, TraceFold
from agentledger.projections.rows import SummaryAccumulator

if TYPE_CHECKING:
    from agentledger.evaluation.section import EvaluationPart

TraceSource = Callable[[], Iterator[TraceFold]]
"""Reads and folds a run of consecutive traces (in any process: it opens its own reads)."""


@dataclass
class ExperimentReport:
    """The experiment's state and its finished traces in plan order (possibly lazy)."""

    experiment: ExperimentFold
    traces: Iterable[TraceFold]
    parts: Sequence[TraceSource] = ()
    """The same traces cut into consecutive runs that can be folded apart (by other
    processes) and joined in this order; empty when the report is not cut."""
    evaluations: Sequence[EvaluationPart] | None = None
    """The evaluations written beside the report (``evaluation.section``): empty when the
    experiment has none as of the report's point; None when not looked up (a live
    refresh), which leaves the evaluation folders alone."""


def _fold_trace(events: Iterable[FoldableEvent]) -> TraceFold | None:
    fold: TraceFold | None = None
    for ev in events:
        if fold is None:
            fold = TraceFold(ev.stream_id[len(TRACE_PREFIX) :])
        fold.apply(ev)
    return fold


def stream_report(
    experiment_events: Iterable[FoldableEvent], trace_events: Iterable[FoldableEvent]
) -> ExperimentReport:
    """Fold an experiment from its stream and its traces' events grouped by stream.

    ``trace_events`` is consumed lazily while the report's traces are iterated.
    """
    return ExperimentReport(fold_experiment(experiment_events), fold_traces(trace_events))


def fold_experiment(events: Iterable[FoldableEvent]) -> ExperimentFold:
    """The experiment stream's events folded."""
    experiment = ExperimentFold()
    for ev in events:
        experiment.apply(ev)
    return experiment


def fold_traces(trace_events: Iterable[FoldableEvent]) -> Iterator[TraceFold]:
    """The finished traces among events grouped by stream, one trace in memory at a time."""
    for _, events in groupby(trace_events, key=attrgetter("stream_id")):
        fold = _fold_trace(events)
        if fold is not None and fold.finished:
            yield fold


class ReportState:
    """An experiment report folded incrementally; ``position`` is the last event applied."""

    def __init__(self, experiment_id: str, *, keep_traces: bool = True) -> None:
        self.experiment_id = experiment_id
        self.experiment = ExperimentFold()
        self.position = 0
        self.keep_traces = keep_traces
        self.summary = SummaryAccumulator()
        """Finished traces folded into totals (only when ``keep_traces`` is false)."""
        self._traces: dict[str, TraceFold] = {}
        self._stream = experiment_stream(experiment_id)

    def apply(self, ev: StoredEvent) -> None:
        """Fold one event of the experiment (events of other experiments are ignored)."""
        self.position = max(self.position, ev.position)
        if ev.stream_id == self._stream:
            self.experiment.apply(ev)
        elif ev.stream_id.startswith(TRACE_PREFIX) and ev.correlation_id == self.experiment_id:
            trace_id = ev.stream_id[len(TRACE_PREFIX) :]
            fold = self._traces.get(trace_id)
            if fold is None:
                fold = self._traces[trace_id] = TraceFold(trace_id)
            fold.apply(ev)
            if not self.keep_traces and fold.finished:
                # Summary-only mode: fold the trace into the totals and forget it.
                self.summary.add(fold)
                del self._traces[trace_id]

    def apply_all(self, events: Iterable[StoredEvent]) -> None:
        for ev in events:
            self.apply(ev)

    def report(self) -> ExperimentReport:
        finished = [t for t in self._traces.values() if t.finished]
        finished.sort(key=lambda t: t.slot)
        return ExperimentReport(self.experiment, finished)

    def catch_up(self, store: EventStore) -> int:
        """Apply every event of the experiment recorded after ``position``; returns how many."""
        count = 0
        for ev in store.read_all(self.position, correlation_id=self.experiment_id):
            self.apply(ev)
            count += 1
        return count


def resolve_as_of(store: EventStore, experiment_id: str, as_of: str | None, now: str) -> int | None:
    """The log position ``--as-of`` names (a position, or an ISO-8601 time read as UTC when
    it has no zone), checked against the experiment's life: not before it began, not past
    the end of the log, not after ``now``."""
    if as_of is None:
        return None
    started = store.read_stream(experiment_stream(experiment_id))
    if not started:
        raise UnknownExperimentError(f"no experiment {experiment_id} in the store")
    first = started[0]
    text = as_of.strip()
    if text.isdigit():
        position = int(text)
        last = store.last_position()
        if position > last:
            raise AsOfError(
                f"--as-of {position} is beyond the end of the log (last position {last})"
            )
    else:
        try:
            stamp = utc_stamp(text)
        except ValueError:
            raise AsOfError(
                f"--as-of {as_of!r} is neither a log position nor an ISO-8601 time "
                "such as 2026-01-31T12:00:00Z"
            ) from None
        if stamp > now:
            raise AsOfError(f"--as-of {as_of} is in the future (now is {now})")
        position = store.position_at(stamp)
    if position < first.position:
        raise AsOfError(
            f"--as-of {as_of} is before experiment {experiment_id} began "
            f"(position {first.position}, {first.recorded_at})"
        )
    return position


def utc_stamp(text: str) -> str:
    """An ISO-8601 time in the store's timestamp format (UTC, microseconds)."""
    return format_timestamp(parse_timestamp(text))


PART_MIN_EVENTS = 50_000
"""The fewest events worth a writer process of their own (forking and joining its files
costs about what writing a few thousand events does)."""


def load_report(
    store: EventStore,
    experiment_id: str,
    until: int | None = None,
    *,
    parts: int = 1,
    min_part_events: int = PART_MIN_EVENTS,
) -> ExperimentReport:
    """The report of ``experiment_id`` from the store (as of position ``until``), its
    traces cut into up to ``parts`` runs of about as many events (``min_part_events`` at
    least) when ``parts`` > 1."""
    stream = experiment_stream(experiment_id)
    experiment_events = [
        ev for ev in store.read_stream(stream) if until is None or ev.position <= until
    ]
    if not experiment_events:
        raise UnknownExperimentError(f"no experiment {experiment_id} in the store")
    prefix = experiment_traces_prefix(experiment_id)
    cuts = store.split_prefix(prefix, parts, min_events=min_part_events) if parts > 1 else []
    # One index seek when the experiment has no evaluation streams.
    from agentledger.evaluation.section import report_evaluations

    evaluations = report_evaluations(store, experiment_id, until)
    if not cuts:
        loaded = stream_report(experiment_events, store.read_prefix_folds(prefix, until=until))
        loaded.evaluations = evaluations
        return loaded
    bounds: list[str | None] = [None, *cuts, None]
    sources = [partial(_read_traces, store, prefix, until, pair) for pair in pairwise(bounds)]
    traces = chain.from_iterable(source() for source in sources)
    return ExperimentReport(fold_experiment(experiment_events), traces, sources, evaluations)


def _read_traces(
    store: EventStore, prefix: str, until: int | None, streams: tuple[str | None, str | None]
) -> Iterator[TraceFold]:
    return fold_traces(store.read_prefix_folds(prefix, until=until, streams=streams))


def check_integrity(store: EventStore, experiment: ExperimentFold, *, ignore: bool) -> str | None:
    """A report is only as good as its log: refuse one over the experiment's streams when
    they fail verify, unless ``ignore``; then the warning is set on ``experiment`` (the
    summary carries it) and returned."""
    from agentledger.eventstore.integrity import verify

    checked = verify(store, experiment.experiment_id, database=False)
    if checked.ok:
        return None
    found = [p.describe() for p in checked.problems] + checked.damage
    first, count = found[0], len(found)
    if not ignore:
        raise ProjectionError(
            f"experiment {experiment.experiment_id}'s log fails verify ({count} problem(s); "
            f"first: {first}); run `agentledger verify {experiment.experiment_id}`, or pass "
            "--ignore-integrity to build the report anyway"
        )
    experiment.integrity_warning = (
        f"built over a log that fails verify: {count} problem(s); first: {first}"
    )
    return experiment.integrity_warning
