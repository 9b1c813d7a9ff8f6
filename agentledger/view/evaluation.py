"""Evaluation results, when the log holds any: the one place the viewer reads them.

``agentledger evaluate`` records its results as the event types that
``agentledger.events.evaluation`` registers. Until that module exists, or while an
experiment has none of its events, this returns nothing and no page shows a scores
section. Records are shown as recorded: their scalar fields, by trace when they name one.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from agentledger.events.payloads import Payload
from agentledger.eventstore.envelope import StoredEvent
from agentledger.eventstore.store import EventStore

SCALAR_FIELDS = 6
"""How many scalar fields of a record the tables show."""
FIRST = ("verdict", "passed", "aggregate", "score", "pass_rate", "mean_aggregate")
"""Fields shown first when a record has them; the rest follow in recorded order."""
HIDDEN = ("experiment_id", "trace_id", "evaluation_id", "slot", "input_index", "iteration")
"""Identifiers the page shows elsewhere (or that say nothing about the result)."""


@dataclass(frozen=True)
class EvaluationRecord:
    """One recorded evaluation result."""

    position: int
    type: str
    trace_id: str | None
    fields: tuple[tuple[str, str], ...]
    """Its scalar fields (numbers, booleans, short strings) in the recorded key order."""

    def brief(self, limit: int = SCALAR_FIELDS) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.fields[:limit])


def _catalog() -> Any:
    try:
        return importlib.import_module("agentledger.events.evaluation")
    except ImportError:
        return None


def evaluation_types() -> list[str]:
    """The event types ``agentledger.events.evaluation`` registers (none before it exists)."""
    module = _catalog()
    if module is None:
        return []
    return sorted(
        value.event_type
        for value in vars(module).values()
        if isinstance(value, type) and issubclass(value, Payload) and value.event_type
    )


def _scalar(value: Any) -> str | None:
    if isinstance(value, bool | int | float):
        return str(value)
    if isinstance(value, str) and len(value) <= 80:
        return value
    return None


def evaluation_results(
    store: EventStore, correlation_id: str, until: int | None
) -> list[EvaluationRecord]:
    """The evaluation results recorded for an experiment (as of ``until``), oldest first;
    empty when there are none or evaluation does not exist in this agentledger."""
    types = evaluation_types()
    if not types:
        return []
    prefix = getattr(_catalog(), "experiment_evaluations_prefix", None)
    if callable(prefix):
        # The evaluation streams of the experiment, over the stream index: a read by
        # correlation id would filter every event of a large experiment for a few.
        wanted = set(types)
        events: Iterable[StoredEvent] = (
            ev for ev in store.read_prefix(prefix(correlation_id), until=until) if ev.type in wanted
        )
        events = sorted(events, key=lambda ev: ev.position)
    else:
        events = store.read_all(types=types, correlation_id=correlation_id, until=until)
    records = []
    for ev in events:
        fields = []
        for key, value in ev.data.items():
            text = _scalar(value)
            if text is not None and key not in HIDDEN:
                fields.append((str(key), text))
        fields.sort(key=lambda kv: FIRST.index(kv[0]) if kv[0] in FIRST else len(FIRST))
        trace = ev.data.get("trace_id")
        records.append(
            EvaluationRecord(
                ev.position,
                ev.type,
                trace if isinstance(trace, str) else None,
                tuple(fields[:SCALAR_FIELDS]),
            )
        )
    return records
