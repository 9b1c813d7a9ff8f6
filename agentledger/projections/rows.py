"""Report rows: pure functions from folded state to the lines and documents of a report.

Field names follow FluxLoop's output files (``trace_summary.jsonl``, ``traces.jsonl``,
``observations.jsonl``, ``summary.json``); agentledger adds fields, never renames them.
Sums of durations are kept in integer microseconds so a summary does not depend on the
order traces were folded in.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypedDict

from pydantic import BaseModel, ConfigDict

from agentledger.projections.folds import ExperimentFold, JsonDict, TraceFold


class _Row(BaseModel):
    model_config = ConfigDict(frozen=True)


class TraceSummaryRow(_Row):
    """One line of trace_summary.jsonl."""

    trace_id: str
    iteration: int
    persona: str | None
    input: str
    output: Any
    duration_ms: float
    success: bool
    input_index: int
    status: str
    """completed, failed or interrupted."""
    attempts: int
    error: JsonDict | None = None
    """type, message and reason of a failed trace."""
    conversation_state: JsonDict | None = None
    """Multi-turn only: ``{turns: [{role, content, closing?}], metadata, context}``."""
    conversation_status: str | None = None
    """Multi-turn only: how the conversation ended, ``completed`` or ``terminated``."""
    termination_reason: str | None = None
    turn_count: int | None = None
    conversation: list[JsonDict] | None = None
    """``{turn_index, role, content, source, metadata}`` per message, ``turn_index`` from 1
    (a user message and the agent's answer share it); single-turn runs have one exchange."""


class TraceRow(_Row):
    """One line of traces.jsonl: the whole trace."""

    trace_id: str
    slot: int
    input_index: int
    iteration: int
    persona: str | None
    input: str
    call_args: JsonDict | None
    seed: int | None
    status: str
    success: bool
    output: Any
    error: JsonDict | None
    started_at: str | None
    completed_at: str | None
    duration_ms: float
    attempts: list[JsonDict]
    attempt_count: int
    turns: list[JsonDict]
    conversation_history: list[JsonDict]
    model_calls: list[JsonDict]
    tool_calls: list[JsonDict]
    usage: JsonDict
    observation_count: int
    turn_count: int | None = None
    conversation_state: JsonDict | None = None
    conversation_status: str | None = None
    termination_reason: str | None = None
    conversation: list[JsonDict] | None = None


class ObservationRow(TypedDict):
    """One line of observations.jsonl (a TypedDict: up to millions per report)."""

    trace_id: str
    type: str
    timestamp: str
    name: str
    observation_id: str
    parent_id: str | None
    level: str | None
    data: JsonDict


def _error_brief(trace: TraceFold) -> JsonDict | None:
    if trace.error is None:
        return None
    return {k: trace.error[k] for k in ("type", "message", "reason")}


def conversation_history(trace: TraceFold) -> list[JsonDict]:
    """The dialogue as chat messages: from the turns when there are any, else input/output."""
    if not trace.turns:
        history: list[JsonDict] = [{"role": "user", "content": trace.input}]
        if trace.success:
            history.append({"role": "assistant", "content": trace.output})
        return history
    history = []
    for turn in trace.turns:
        history.append({"role": "user", "content": turn["user_message"]})
        if turn.get("agent_output") is not None:
            history.append({"role": "assistant", "content": turn["agent_output"]})
    return history


def _actions(trace: TraceFold) -> dict[int | None, list[str]]:
    """``type:name`` of the SDK observations of each turn (None: a single-turn run), in the
    order they started, each once."""
    found: dict[int | None, list[tuple[str, int, str]]] = {}
    for number, obs in enumerate(trace.observations):
        record = obs.get("observation")
        if record is None:
            continue
        action = f"{record.get('type')}:{record.get('name')}"
        key = str(record.get("start_time") or "")
        found.setdefault(obs.get("turn_index"), []).append((key, number, action))
    return {
        turn: list(dict.fromkeys(action for _, _, action in sorted(entries)))
        for turn, entries in found.items()
    }


def conversation(trace: TraceFold) -> list[JsonDict]:
    """The conversation as FluxLoop writes it: one entry per message, ``turn_index`` from 1
    shared by a user message and the agent's answer; the supervisor's closing message
    carries ``metadata.closing``; the agent's messages carry ``metadata.actions``."""
    actions = _actions(trace)
    if not trace.turns:
        rows: list[JsonDict] = [
            {
                "turn_index": 1,
                "role": "user",
                "content": trace.input,
                "source": "input",
                "metadata": {},
            }
        ]
        if trace.success:
            rows.append(
                {
                    "turn_index": 1,
                    "role": "assistant",
                    "content": trace.output,
                    "source": "agent",
                    "metadata": {
                        "actions": actions.get(None, []),
                        "duration_ms": trace.duration_ms,
                    },
                }
            )
        return rows
    rows = []
    previous: JsonDict | None = None
    for turn in trace.turns:
        index = turn["turn_index"]
        answered = turn.get("agent_output") is not None
        closing = (
            not answered
            and previous is not None
            and (previous.get("supervisor") or {}).get("decision") == "stop"
        )
        rows.append(
            {
                "turn_index": index + 1,
                "role": "user",
                "content": turn["user_message"],
                "source": turn.get("source", "input"),
                "metadata": {"closing": True} if closing else {},
            }
        )
        if answered:
            rows.append(
                {
                    "turn_index": index + 1,
                    "role": "assistant",
                    "content": turn["agent_output"],
                    "source": "agent",
                    "metadata": {
                        "actions": actions.get(index, []),
                        "duration_ms": turn.get("duration_ms"),
                    },
                }
            )
        previous = turn
    return rows


def conversation_state(trace: TraceFold, entries: list[JsonDict]) -> JsonDict | None:
    """Multi-turn traces: the conversation's state object, as FluxLoop writes it."""
    if not trace.turns:
        return None
    turns = []
    for entry in entries:
        turn: JsonDict = {"role": entry["role"], "content": entry["content"]}
        if entry["metadata"].get("closing"):
            turn["closing"] = True
        turns.append(turn)
    return {
        "turns": turns,
        "metadata": {
            "status": trace.conversation_state,
            "termination_reason": trace.termination_reason,
            "turn_count": trace.turn_count,
        },
        "context": {
            "persona": trace.persona,
            "iteration": trace.iteration,
            "input_index": trace.input_index,
        },
    }


# The writers build rows as plain dicts in the models' field order (validating and dumping a
# model per row would cost more than the rest of a report line); ``trace_summary_row`` and
# ``trace_row`` give the same content as models, and a test checks the two agree.


def trace_summary_dict(trace: TraceFold, entries: list[JsonDict] | None = None) -> JsonDict:
    """A trace_summary.jsonl line (``TraceSummaryRow``'s fields, in order)."""
    if entries is None:
        entries = conversation(trace)
    return {
        "trace_id": trace.trace_id,
        "iteration": trace.iteration,
        "persona": trace.persona,
        "input": trace.input,
        "output": trace.output,
        "duration_ms": trace.duration_ms,
        "success": trace.success,
        "input_index": trace.input_index,
        "status": trace.status,
        "attempts": trace.attempt_count,
        "error": _error_brief(trace),
        "conversation_state": conversation_state(trace, entries),
        "conversation_status": trace.conversation_state if trace.turns else None,
        "termination_reason": trace.termination_reason,
        "turn_count": trace.turn_count if trace.turns else None,
        "conversation": entries,
    }


def trace_summary_row(trace: TraceFold) -> TraceSummaryRow:
    return TraceSummaryRow.model_validate(trace_summary_dict(trace))


def trace_usage(trace: TraceFold) -> JsonDict:
    """Model call count and token totals of a trace."""
    prompt = completion = total = failed = 0
    for call in trace.model_calls.values():
        usage = call.get("usage") or {}
        prompt += int(usage.get("prompt_tokens") or 0)
        completion += int(usage.get("completion_tokens") or 0)
        total += int(usage.get("total_tokens") or 0)
        failed += call.get("status") == "failed"
    return {
        "model_calls": len(trace.model_calls),
        "failed_model_calls": failed,
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": total,
        "tool_calls": len(trace.tool_calls),
    }


def trace_dict(trace: TraceFold, entries: list[JsonDict] | None = None) -> JsonDict:
    """A traces.jsonl line (``TraceRow``'s fields, in order)."""
    if entries is None:
        entries = conversation(trace)
    return {
        "trace_id": trace.trace_id,
        "slot": trace.slot,
        "input_index": trace.input_index,
        "iteration": trace.iteration,
        "persona": trace.persona,
        "input": trace.input,
        "call_args": trace.call_args,
        "seed": trace.seed,
        "status": trace.status,
        "success": trace.success,
        "output": trace.output,
        "error": trace.error,
        "started_at": trace.started_at,
        "completed_at": trace.completed_at,
        "duration_ms": trace.duration_ms,
        "attempts": trace.attempts,
        "attempt_count": trace.attempt_count,
        "turns": trace.turns,
        "conversation_history": conversation_history(trace),
        "model_calls": sorted(trace.model_calls.values(), key=lambda c: c.get("call_index", 0)),
        "tool_calls": list(trace.tool_calls.values()),
        "usage": trace_usage(trace),
        "observation_count": len(trace.observations),
        "turn_count": trace.turn_count,
        "conversation_state": conversation_state(trace, entries),
        "conversation_status": trace.conversation_state,
        "termination_reason": trace.termination_reason,
        "conversation": entries,
    }


def trace_row(trace: TraceFold) -> TraceRow:
    return TraceRow.model_validate(trace_dict(trace))


_SDK_EXTRAS = (
    "parent_observation_id",
    "error",
    "status_message",
    "model",
    "llm_parameters",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
)


def _sdk_row(trace_id: str, record: JsonDict) -> JsonDict:
    """An SDK observation as FluxLoop writes it to observations.jsonl (``trace_id`` is the
    trace's), with the SDK's optional fields when it set them."""
    row: JsonDict = {
        "id": record.get("id"),
        "type": record.get("type"),
        "name": record.get("name"),
        "start_time": record.get("start_time"),
        "end_time": record.get("end_time"),
        "input": record.get("input"),
        "output": record.get("output"),
        "level": record.get("level") or "info",
        "metadata": record.get("metadata") or {},
        "trace_id": trace_id,
    }
    for key in _SDK_EXTRAS:
        if record.get(key) is not None:
            row[key] = record[key]
    return row


def observation_rows(trace: TraceFold) -> list[ObservationRow | JsonDict]:
    """The trace's observations in record order (a parent's start precedes its children;
    an SDK observation is recorded when it ends, after its children)."""
    rows: list[ObservationRow | JsonDict] = []
    for obs in trace.observations:
        record = obs.get("observation")
        if record is not None:
            rows.append(_sdk_row(trace.trace_id, record))
            continue
        rows.append(
            {
                "trace_id": trace.trace_id,
                "type": obs["kind"],
                "timestamp": obs["timestamp"],
                "name": obs["name"],
                "observation_id": obs["observation_id"],
                "parent_id": obs.get("parent_id"),
                "level": obs.get("level"),
                "data": obs.get("data", {}),
            }
        )
    return rows


# --- summary -------------------------------------------------------------------------------


@dataclass
class _Group:
    total: int = 0
    successful: int = 0
    duration_us: int = 0

    def add(self, success: bool, duration_us: int) -> None:
        self.total += 1
        self.successful += success
        self.duration_us += duration_us

    def merge(self, other: _Group) -> None:
        self.total += other.total
        self.successful += other.successful
        self.duration_us += other.duration_us

    def row(self) -> JsonDict:
        return {
            "total": self.total,
            "successful": self.successful,
            "failed": self.total - self.successful,
            "success_rate": _rate(self.successful, self.total),
            "avg_duration_ms": _avg_ms(self.duration_us, self.total),
        }


def _rate(part: int, whole: int) -> float:
    return round(part / whole, 4) if whole else 0.0


def _avg_ms(total_us: int, count: int) -> float:
    return round(total_us / count / 1000, 3) if count else 0.0


def _seconds_between(start: str | None, end: str | None) -> float | None:
    """Seconds from one recorded time to another (None until the experiment completes)."""
    if not start or not end:
        return None
    begun = datetime.fromisoformat(start.replace("Z", "+00:00"))
    ended = datetime.fromisoformat(end.replace("Z", "+00:00"))
    return round((ended - begun).total_seconds(), 3)


def _percentile(ordered: list[int], fraction: float) -> float:
    """Nearest-rank percentile of sorted microsecond values, in milliseconds."""
    if not ordered:
        return 0.0
    rank = max(1, math.ceil(fraction * len(ordered)))
    return round(ordered[rank - 1] / 1000, 3)


@dataclass
class SummaryAccumulator:
    """Order-independent totals over finished traces, for summary.json."""

    successful: int = 0
    failed: int = 0
    durations_us: list[int] = field(default_factory=list)
    by_persona: dict[str, _Group] = field(default_factory=dict)
    by_input: dict[int, tuple[str, str | None, _Group]] = field(default_factory=dict)
    error_types: Counter[str] = field(default_factory=Counter)
    reasons: Counter[str] = field(default_factory=Counter)
    usage: Counter[str] = field(default_factory=Counter)
    errors: list[JsonDict] = field(default_factory=list)
    """errors.json: ``{iteration, persona, input, error}`` per failed trace, plan order."""

    def add(self, trace: TraceFold) -> None:
        duration_us = round(trace.duration_ms * 1000)
        ok = trace.success
        self.successful += ok
        self.failed += not ok
        self.durations_us.append(duration_us)
        persona = trace.persona or "(none)"
        self.by_persona.setdefault(persona, _Group()).add(ok, duration_us)
        if trace.input_index not in self.by_input:
            self.by_input[trace.input_index] = (trace.input, trace.persona, _Group())
        self.by_input[trace.input_index][2].add(ok, duration_us)
        if trace.error is not None:
            self.error_types[trace.error["type"]] += 1
            self.reasons[trace.error["reason"]] += 1
            self.errors.append(
                {
                    "iteration": trace.iteration,
                    "persona": trace.persona,
                    "input": trace.input,
                    "error": trace.error["message"],
                }
            )
        self.usage.update(trace_usage(trace))

    def merge(self, later: SummaryAccumulator) -> None:
        """Add the totals of traces that come after these in plan order (a report written
        in parts): the same totals as adding every trace here."""
        self.successful += later.successful
        self.failed += later.failed
        self.durations_us += later.durations_us
        for name, group in later.by_persona.items():
            self.by_persona.setdefault(name, _Group()).merge(group)
        for index, entry in later.by_input.items():
            if index in self.by_input:
                self.by_input[index][2].merge(entry[2])
            else:
                self.by_input[index] = entry
        self.error_types.update(later.error_types)
        self.reasons.update(later.reasons)
        self.usage.update(later.usage)
        self.errors += later.errors


def summary_document(experiment: ExperimentFold, acc: SummaryAccumulator) -> JsonDict:
    """summary.json: FluxLoop's fields first, then agentledger's breakdowns."""
    total = acc.successful + acc.failed
    ordered = sorted(acc.durations_us)
    running = experiment.total_runs - total if experiment.status == "running" else 0
    usage = acc.usage
    config = dict(experiment.config)
    fluxloop_config = config.pop("fluxloop_config", None)
    document = {
        "name": experiment.name,
        "date": experiment.local_time or experiment.started_at,
        "config": fluxloop_config or config,
        "results": {
            "total_runs": total,
            "successful": acc.successful,
            "failed": acc.failed,
            "success_rate": _rate(acc.successful, total),
            "avg_duration_ms": _avg_ms(sum(ordered), total),
            "duration_seconds": _seconds_between(experiment.started_at, experiment.completed_at),
        },
        "experiment_id": experiment.experiment_id,
        "experiment_name": experiment.name,
        "total_traces": total,
        "successful": acc.successful,
        "failed": acc.failed,
        "success_rate": _rate(acc.successful, total),
        "avg_duration_ms": _avg_ms(sum(ordered), total),
        "started_at": experiment.started_at,
        "completed_at": experiment.completed_at,
        "config_snapshot": config,
        "status": experiment.status,
        "planned_runs": experiment.total_runs,
        "pending_runs": running,
        "interrupted": experiment.interrupted,
        "resumed": experiment.resumed,
        "seed": experiment.seed,
        "replay_of": experiment.replay_of,
        "record_mode": experiment.record_mode,
        "duration_ms": {
            "p50": _percentile(ordered, 0.5),
            "p95": _percentile(ordered, 0.95),
            "max": round(ordered[-1] / 1000, 3) if ordered else 0.0,
        },
        "by_persona": {name: acc.by_persona[name].row() for name in sorted(acc.by_persona)},
        "by_input": [
            {"input_index": index, "input": text, "persona": persona, **group.row()}
            for index, (text, persona, group) in sorted(acc.by_input.items())
        ],
        "failures": {
            "by_error_type": dict(sorted(acc.error_types.items())),
            "by_reason": dict(sorted(acc.reasons.items())),
        },
        "model_calls": {
            "total": usage["model_calls"],
            "failed": usage["failed_model_calls"],
            "prompt_tokens": usage["prompt_tokens"],
            "completion_tokens": usage["completion_tokens"],
            "total_tokens": usage["total_tokens"],
        },
        "tool_calls": usage["tool_calls"],
    }
    if experiment.integrity_warning is not None:
        document["integrity_warning"] = experiment.integrity_warning
    return document
