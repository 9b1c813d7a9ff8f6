"""The experiment index: the same figures built at once, caught up, or as of a point."""

from __future__ import annotations

from agentledger.events.streams import experiment_stream
from agentledger.eventstore import EventStore
from agentledger.projections.report import load_report
from agentledger.projections.rows import SummaryAccumulator, summary_document
from agentledger.view.index import ExperimentIndex
from agentledger.view.pages import Ledger, list_page
from tests.view.recorded import Recorded


def _first_finish(store: EventStore, experiment_id: str) -> int:
    return next(
        ev.position
        for ev in store.read_all(correlation_id=experiment_id)
        if ev.type in ("TraceCompleted", "TraceFailed")
    )


def test_index_summary_is_the_reports_summary(store: EventStore, recorded: Recorded) -> None:
    report = load_report(store, recorded.a)
    acc = SummaryAccumulator()
    for trace in report.traces:
        acc.add(trace)
    index = ExperimentIndex(recorded.a).build(store)
    assert index.summary() == summary_document(report.experiment, acc)


def test_catching_up_from_a_point_gives_the_index_built_at_once(
    store: EventStore, recorded: Recorded
) -> None:
    early = _first_finish(store, recorded.a)
    index = ExperimentIndex(recorded.a, until=early).build(store)
    assert len(index.rows) == 1 and index.experiment.status == "running"
    index.until = None
    assert index.catch_up(store) is True
    whole = ExperimentIndex(recorded.a).build(store)
    assert index.summary() == whole.summary()
    assert index.ordered() == whole.ordered()
    assert index.catch_up(store) is False


def test_as_of_shows_the_experiment_as_it_stood(store: EventStore, recorded: Recorded) -> None:
    early = _first_finish(store, recorded.a)
    ledger = Ledger(store, until=early)
    index = ledger.indexes.get(recorded.a)
    assert index.summary()["total_traces"] == 1
    assert index.summary()["status"] == "running"
    assert all(row.trace_id.startswith(recorded.a) for row in index.ordered())
    listed = {row["entry"].ref for row in list_page(ledger)["rows"]}
    assert listed == {recorded.a}
    started = store.read_stream(experiment_stream(recorded.b))[0].position
    assert started > early
