"""The traces an evaluation scores, read from the log, and the values rules point at.

A ``TraceView`` wraps a folded trace (``TraceFold``, the same fold the report is built
from) with its input's metadata (an inputs-file item's ``expected`` lands there).
``value(path)`` reads a rule's ``target``: ``output``, ``input``, ``persona``, ``expected``
and ``metadata`` directly, anything else as a dotted path (list indices allowed:
``turns[0].agent_output``) into the trace as ``traces.jsonl`` shows it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from agentledger.eventstore.store import EventStore
from agentledger.projections.folds import ExperimentFold, TraceFold
from agentledger.projections.report import load_report
from agentledger.projections.rows import conversation_history, trace_row, trace_usage

JsonDict = dict[str, Any]
MISSING = object()
_TOKEN = re.compile(r"[^.\[\]]+|\[\d+\]")


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
