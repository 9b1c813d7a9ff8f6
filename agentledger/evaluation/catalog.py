"""Finding an experiment's evaluations in the log, cheaply.

An evaluation of experiment ``X`` is the stream ``evaluation-X-eNNN``. Listing them is one
range read over the stream index (``evaluation-X-e`` .. its upper bound), so an experiment
without evaluations costs one index seek, never a scan of its events. Each evaluation's
number, name and start come from its first event alone (``EvaluationStarted``), read as
a page of one row: a 100,000-trace evaluation is not read to learn its name.
"""

from __future__ import annotations

from dataclasses import dataclass

from agentledger.events.evaluation import (
    evaluation_id_for,
    evaluation_stream,
    experiment_evaluations_prefix,
)
from agentledger.eventstore.store import EventStore


@dataclass(frozen=True)
class EvaluationRef:
    """One evaluation of an experiment, as its ``EvaluationStarted`` names it."""

    evaluation_id: str
    number: int
    name: str | None
    position: int
    """Where it began in the log (its ``EvaluationStarted``)."""

    @property
    def folder(self) -> str:
        """Its folder in the experiment's folder: ``evaluation`` or ``evaluation-<name>``."""
        return "evaluation" if self.name is None else f"evaluation-{self.name}"


def evaluation_numbers(store: EventStore, experiment_id: str) -> list[int]:
    """The numbers of the experiment's evaluation streams so far, ascending."""
    prefix = experiment_evaluations_prefix(experiment_id)
    numbers = []
    for stream, _, _ in store.iter_stream_heads(prefix):
        tail = stream[len(prefix) :]
        if tail.isdigit():
            numbers.append(int(tail))
    return sorted(numbers)


def started_ref(store: EventStore, evaluation_id: str) -> EvaluationRef | None:
    """An evaluation's reference from its first event alone; None when it has none."""
    stream = evaluation_stream(evaluation_id)
    first = next(iter(store.read_prefix_folds(stream, page_size=1)), None)
    if first is None or first.stream_id != stream or first.type != "EvaluationStarted":
        return None
    data = first.data
    return EvaluationRef(evaluation_id, int(data["number"]), data.get("name"), first.position)


def list_evaluations(
    store: EventStore, experiment_id: str, until: int | None = None
) -> list[EvaluationRef]:
    """The experiment's evaluations that had begun by position ``until`` (all: None), in
    number order."""
    found = []
    for number in evaluation_numbers(store, experiment_id):
        ref = started_ref(store, evaluation_id_for(experiment_id, number))
        if ref is not None and (until is None or ref.position <= until):
            found.append(ref)
    return found


def latest_of(refs: list[EvaluationRef], name: str | None = None) -> EvaluationRef | None:
    """The most recent of ``refs`` (named ``name``, when given)."""
    for ref in reversed(refs):
        if name is None or ref.name == name:
            return ref
    return None


def latest_per_folder(refs: list[EvaluationRef]) -> list[EvaluationRef]:
    """The most recent evaluation of each folder (what ``evaluate`` last wrote there), in
    folder order."""
    latest: dict[str, EvaluationRef] = {}
    for ref in refs:
        latest[ref.folder] = ref
    return [latest[folder] for folder in sorted(latest)]
