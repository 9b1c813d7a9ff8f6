"""Stream naming: which stream an experiment, trace or chat session writes to.

Trace ids embed their experiment id and a zero-padded slot number, so the trace streams
of one experiment share the prefix ``trace-<experiment id>-`` and sort in plan order.
"""

from __future__ import annotations

EXPERIMENT_PREFIX = "experiment-"
TRACE_PREFIX = "trace-"
SESSION_PREFIX = "session-"


def experiment_stream(experiment_id: str) -> str:
    return f"{EXPERIMENT_PREFIX}{experiment_id}"


def trace_stream(trace_id: str) -> str:
    return f"{TRACE_PREFIX}{trace_id}"


def session_stream(session_id: str) -> str:
    return f"{SESSION_PREFIX}{session_id}"


def experiment_traces_prefix(experiment_id: str) -> str:
    """The stream-id prefix shared by every trace stream of ``experiment_id``."""
    return f"{TRACE_PREFIX}{experiment_id}-"
