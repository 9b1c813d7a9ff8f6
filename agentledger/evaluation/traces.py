"""The traces an evaluation scores, read from the log, and the values rules point at.

A ``TraceView`` wraps a folded trace (``TraceFold``, the same fold the report is built
from) with its input's metadata (an inputs-file item's ``expected`` lands there).
``value(path)`` reads a rule's ``target``: ``output``, ``input``, ``persona``, ``expected``
and ``metadata`` directly, anything else as a dotted path (list indices allowed:
``turns[0].agent_output``) into the trace as ``traces.jsonl`` shows it.

Rules that read only the first kind (``reads_row`` is false for every target) are scored
from ``read_rule_traces``: the same traces folded for just what rules and ``TraceScored``
read, a third of a full fold's cost (tests/evaluation check both agree).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from agentledger.events.payloads import payload_class, upcast
from agentledger.events.streams import TRACE_PREFIX, experiment_traces_prefix
from agentledger.eventstore.envelope import FoldableEvent
from agentledger.eventstore.store import EventStore
from agentledger.projections.folds import ExperimentFold, TraceFold, malformed
from agentledger.projections.report import load_report
from agentledger.projections.rows import conversation_history, trace_row, trace_usage

JsonDict = dict[str, Any]
MISSING = object()
_TOKEN = re.compile(r"[^.\[\]]+|\[\d+\]")


_DIRECT = frozenset({"output", "input", "persona", "success", "expected", "metadata"})
"""Heads of the paths ``TraceView.value`` reads without building the trace's row."""
READ_PAGE = 5_000
"""Events fetched per read of the traces (large pages: fewer round trips)."""


def split_path(path: str) -> list[str | int]:
    """``a.b[0].c`` as ``["a", "b", 0, "c"]``."""
    return [int(t[1:-1]) if t.startswith("[") else t for t in _TOKEN.findall(path)]


def walk(value: Any, parts: list[str | int]) -> Any:
    """The value at ``parts`` under ``value``, or ``MISSING``."""
    for part in parts:
        if isinstance(part, int):
            if not isinstance(value, list) or part >= len(value):
                return MISSING
            value = value[part]
        elif isinstance(value, Mapping) and part in value:
            value = value[part]
        else:
            return MISSING
    return value


def as_text(value: Any) -> str:
    """A value as the text rules and judges read (JSON for structures)."""
    if value is None or value is MISSING:
        return ""
    if isinstance(value, str):
        return value
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


@dataclass
class TraceView:
    """One finished trace, as evaluators see it."""

    trace: TraceFold
    metadata: JsonDict
    _usage: JsonDict | None = field(default=None, repr=False)
    _row: JsonDict | None = field(default=None, repr=False)

    @property
    def trace_id(self) -> str:
        return self.trace.trace_id

    @property
    def usage(self) -> JsonDict:
        if self._usage is None:
            self._usage = trace_usage(self.trace)
        return self._usage

    @property
    def latency_ms(self) -> float:
        return self.trace.duration_ms

    @property
    def depth(self) -> int:
        return self.trace.turn_count or max(len(self.trace.turns), 1)

    @property
    def failed_tool_calls(self) -> int:
        return sum(
            c.get("status") in ("failed", "rejected") for c in self.trace.tool_calls.values()
        )

    def conversation(self) -> str:
        lines = [f"{m['role']}: {as_text(m['content'])}" for m in conversation_history(self.trace)]
        return "\n".join(lines)

    def value(self, path: str) -> Any:
        """The value a rule's ``target`` (or ``expected_path``) names, or ``MISSING``."""
        if path == "output":
            return self.trace.output
        if path == "input":
            return self.trace.input
        if path == "persona":
            return self.trace.persona
        if path == "success":
            return self.trace.success
        parts = split_path(path)
        if not parts:
            return MISSING
        head = parts[0]
        if head == "expected":
            return walk(self.metadata.get("expected", MISSING), parts[1:])
        if head == "metadata":
            return walk(self.metadata, parts[1:])
        if head == "output":
            return walk(_parsed(self.trace.output), parts[1:])
        if self._row is None:
            self._row = trace_row(self.trace).model_dump(mode="json")
        return walk(self._row, parts)


def reads_row(path: str) -> bool:
    """Whether ``TraceView.value(path)`` needs the whole trace (its ``traces.jsonl`` row)."""
    parts = split_path(path)
    return bool(parts) and parts[0] not in _DIRECT


def _parsed(output: Any) -> Any:
    """An output that is a JSON text is walked as the structure it holds."""
    if isinstance(output, str) and output[:1] in ("{", "["):
        try:
            return orjson.loads(output)
        except orjson.JSONDecodeError:
            return output
    return output


@dataclass
class ExperimentTraces:
    """The experiment an evaluation reads, and its finished traces in plan order."""

    experiment: ExperimentFold
    traces: Iterator[TraceView]


def read_traces(store: EventStore, experiment_id: str, until: int | None) -> ExperimentTraces:
    """The experiment's finished traces as of position ``until``, streamed in plan order
    (one trace folded in memory at a time)."""
    report = load_report(store, experiment_id, until)
    metadata = {
        int(item["index"]): item.get("metadata") or {}
        for item in report.experiment.plan.get("inputs", [])
    }

    def views() -> Iterator[TraceView]:
        for trace in report.traces:
            yield TraceView(trace, metadata.get(trace.input_index, {}))

    return ExperimentTraces(report.experiment, views())


def read_rule_traces(
    store: EventStore, experiment: ExperimentFold, until: int | None
) -> Iterator[TraceView]:
    """``read_traces``' traces folded for rules only (see the module docstring): the same
    finished traces in the same order, with the fields ``TraceView`` reads for the
    direct targets, usage, depth and tool calls; the rest stay at their defaults."""
    metadata = {
        int(item["index"]): item.get("metadata") or {} for item in experiment.plan.get("inputs", [])
    }
    events = store.read_prefix_folds(
        experiment_traces_prefix(experiment.experiment_id), until=until, page_size=READ_PAGE
    )
    # Each type this fold reads -> its current schema version (older data is upcast).
    versions = {kind: payload_class(kind).schema_version for kind in _RULE_FACT_TYPES}
    fold: TraceFold | None = None
    stream = ""
    for ev in events:
        if ev.stream_id != stream:
            if fold is not None and fold.status != "running":
                yield TraceView(fold, metadata.get(fold.input_index, {}))
            stream = ev.stream_id
            fold = TraceFold(stream[len(TRACE_PREFIX) :])
        version = versions.get(ev.type)
        if version is None:
            continue
        data = ev.data
        if ev.schema_version != version:
            data = upcast(ev.type, ev.schema_version, data)
        assert fold is not None
        try:
            _fold_rule_facts(fold, ev, data)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise malformed(ev, exc) from None
    if fold is not None and fold.status != "running":
        yield TraceView(fold, metadata.get(fold.input_index, {}))


_RULE_FACT_TYPES = frozenset(
    {
        "TraceStarted",
        "TurnStarted",
        "ModelCallStarted",
        "ModelCallCompleted",
        "ModelCallFailed",
        "ToolCallRequested",
        "ToolCallApproved",
        "ToolCallRejected",
        "ToolCallCompleted",
        "SdkObservationRecorded",
        "TraceAttemptFailed",
        "TraceCompleted",
        "TraceFailed",
    }
)


def _fold_rule_facts(fold: TraceFold, ev: FoldableEvent, data: JsonDict) -> None:
    """``TraceFold.apply`` for the fields ``read_rule_traces`` fills (same rules)."""
    kind = ev.type
    if kind == "TraceStarted":
        fold.slot = data["slot"]
        fold.input_index = data["input_index"]
        fold.iteration = data["iteration"]
        fold.persona = data.get("persona")
        fold.input = data["input"]
        fold.status = "running"
        fold.output = None
        fold.error = None
        fold.turns = []
        fold.model_calls = {}
        fold.tool_calls = {}
    elif kind == "TurnStarted":
        fold.turns.append({"turn_index": data["turn_index"]})
    elif kind == "ModelCallStarted":
        fold.model_calls[data["call_id"]] = {"status": "running"}
    elif kind == "ModelCallCompleted":
        call = fold.model_calls.setdefault(data["call_id"], {})
        call["status"] = "completed"
        call["usage"] = data.get("usage")
    elif kind == "ModelCallFailed":
        fold.model_calls.setdefault(data["call_id"], {})["status"] = "failed"
    elif kind == "ToolCallRequested":
        fold.tool_calls[data["call_id"]] = {"status": "requested"}
    elif kind in ("ToolCallApproved", "ToolCallRejected"):
        status = "approved" if kind == "ToolCallApproved" else "rejected"
        fold.tool_calls.setdefault(data["call_id"], {})["status"] = status
    elif kind == "ToolCallCompleted":
        status = "failed" if data.get("error") else "completed"
        fold.tool_calls.setdefault(data["call_id"], {})["status"] = status
    elif kind == "SdkObservationRecorded":
        record = data["observation"]
        if not isinstance(record, dict):
            raise TypeError("observation is not an object")
        if record.get("type") == "tool":
            call_id = str(record.get("id") or f"{fold.trace_id}:sdk-tool:{len(fold.tool_calls)}")
            fold.tool_calls[call_id] = {"status": "failed" if record.get("error") else "completed"}
    elif kind == "TraceAttemptFailed":
        fold.turns = []
    elif kind in ("TraceCompleted", "TraceFailed"):
        fold.duration_ms = data["duration_ms"]
        fold.output = data.get("output")
        fold.turn_count = data.get("turn_count")
        if kind == "TraceCompleted":
            fold.status = "completed"
            fold.error = None
        else:
            fold.error = {"type": data["error_type"], "reason": data.get("reason", "exception")}
            fold.status = "interrupted" if data.get("reason") == "interrupted" else "failed"
