"""How traces and experiments end in the log: final outcomes, and the completion seal."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from eventstore.integrity import seal_digest
from eventstore.payloads import ExperimentCompleted
from eventstore.store import EventStore
from eventstore.streams import TRACE_PREFIX, experiment_traces_prefix


def completed_event(
    store: EventStore, experiment_id: str, total: int, successful: int, failed: int
) -> ExperimentCompleted:
    """``ExperimentCompleted`` sealing the heads of the experiment's trace streams (a
    digest, read in pages: flat memory at any size)."""
    count, digest = seal_digest(store.iter_stream_heads(experiment_traces_prefix(experiment_id)))
    return ExperimentCompleted(
        experiment_id=experiment_id,
        total_traces=total,
        successful=successful,
        failed=failed,
        sealed_traces=count,
        seal=digest,
    )


def final_outcome(event_type: str, data: Mapping[str, Any]) -> bool | None:
    """Whether an event ends its trace for good: True (succeeded), False (failed), or None
    (not final: any other event, or a run cut short by an interrupt, which runs again)."""
    if event_type == "TraceCompleted":
        return True
    if event_type == "TraceFailed" and data.get("reason") != "interrupted":
        return False
    return None


FINAL_TYPES = ["TraceStarted", "TraceCompleted", "TraceFailed"]
"""The event types that say whether a trace is finished."""


def finished_traces(store: EventStore, experiment_id: str) -> dict[str, bool]:
    """Trace id -> succeeded, for every trace of the experiment whose last outcome is
    final."""
    outcome: dict[str, bool] = {}
    for ev in store.read_all(correlation_id=experiment_id, types=FINAL_TYPES):
        trace_id = ev.stream_id[len(TRACE_PREFIX) :]
        final = final_outcome(ev.type, ev.data)
        if ev.type == "TraceStarted":
            outcome.pop(trace_id, None)
        elif final is not None:
            outcome[trace_id] = final
    return outcome
