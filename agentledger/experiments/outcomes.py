"""How traces and experiments end in the log: final outcomes, and the completion seal."""

from __future__ import annotations

from agentledger.events.payloads import ExperimentCompleted, final_outcome
from agentledger.events.streams import TRACE_PREFIX, experiment_traces_prefix
from agentledger.eventstore.checkpoint import key_id, seal_message, sign, signing_key
from agentledger.eventstore.integrity import seal_digest
from agentledger.eventstore.store import EventStore


def completed_event(
    store: EventStore, experiment_id: str, total: int, successful: int, failed: int
) -> ExperimentCompleted:
    """``ExperimentCompleted`` sealing the heads of the experiment's trace streams (a
    digest, read in pages: flat memory at any size)."""
    count, digest = seal_digest(store.iter_stream_heads(experiment_traces_prefix(experiment_id)))
    key = signing_key()
    return ExperimentCompleted(
        experiment_id=experiment_id,
        total_traces=total,
        successful=successful,
        failed=failed,
        sealed_traces=count,
        seal=digest,
        seal_signature=sign(key, seal_message(experiment_id, count, digest)) if key else None,
        key_id=key_id(key) if key else None,
    )


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
