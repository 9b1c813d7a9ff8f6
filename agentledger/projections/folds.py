"""Folding events into the state reports are made from: one experiment, one trace.

A fold takes events one at a time (``apply``) in stream order and never reads a clock or a
database, so the same events always give the same state. Traces and the experiment are
folded separately; any interleaving of streams that keeps each stream in order gives the
same result, which is what lets a live projector catch up in arbitrary chunks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from agentledger.events.payloads import payload_class, upcast
from agentledger.eventstore.envelope import FoldableEvent
from agentledger.projections.errors import ProjectionError

JsonDict = dict[str, Any]


def event_data(ev: FoldableEvent) -> JsonDict:
    """The event's data at the current schema version (upcast only when older)."""
    if ev.schema_version != payload_class(ev.type).schema_version:
        return upcast(ev.type, ev.schema_version, ev.data)
    return ev.data


def malformed(ev: FoldableEvent, exc: Exception) -> ProjectionError:
    """A one-line error for an event that does not hold what its type says (a damaged or
    tampered log), naming it by position and stream."""
    return ProjectionError(
        f"event at position {ev.position} ({ev.stream_id} v{ev.stream_version}, {ev.type}) "
        f"does not hold what a {ev.type} holds ({type(exc).__name__}: {exc}); the log is "
        "damaged: run `agentledger verify`"
    )


@dataclass
class ExperimentFold:
    """What the experiment stream says: identity, config, plan, lifecycle."""

    experiment_id: str = ""
    name: str = ""
    config: JsonDict = field(default_factory=dict)
    plan: JsonDict = field(default_factory=dict)
    seed: int | None = None
    replay_of: str | None = None
    record_mode: str = "live"
    output_dir: str | None = None
    local_time: str | None = None
    """Local wall-clock time at the start, as recorded (summary.json's ``date``)."""
    started_at: str | None = None
    completed_at: str | None = None
    interrupted_at: str | None = None
    status: str = "running"
    interrupted: bool = False
    resumed: int = 0
    lease_seconds: float | None = None
    """Set when the experiment's slots are shared by workers."""
    refused: int = 0
    """Late results of workers whose slot had been taken over."""
    first_position: int = 0
    last_position: int = 0
    integrity_warning: str | None = None
    """Set (by whoever builds the report, not by an event) when the report was built with
    --ignore-integrity over a log that fails verify; the summary then says so."""

    def apply(self, ev: FoldableEvent) -> None:
        try:
            self._apply(ev)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise malformed(ev, exc) from None

    def _apply(self, ev: FoldableEvent) -> None:
        data = event_data(ev)
        self.last_position = max(self.last_position, ev.position)
        if ev.type == "ExperimentStarted":
            self.experiment_id = data["experiment_id"]
            self.name = data["name"]
            self.config = data["config"]
            self.plan = data["plan"]
            self.seed = data.get("seed")
            self.replay_of = data.get("replay_of")
            self.record_mode = data.get("record_mode", "live")
            self.output_dir = data.get("output_dir")
            self.lease_seconds = data.get("lease_seconds")
            self.local_time = data.get("local_time")
            self.started_at = ev.recorded_at
            self.first_position = ev.position
        elif ev.type == "ExperimentCompleted":
            self.status = "completed"
            self.completed_at = ev.recorded_at
        elif ev.type == "ExperimentInterrupted":
            self.status = "interrupted"
            self.interrupted = True
            self.interrupted_at = ev.recorded_at
        elif ev.type == "ExperimentResumed":
            self.status = "running"
            self.resumed += 1
        elif ev.type == "SlotResultRejected":
            self.refused += 1

    @property
    def total_runs(self) -> int:
        return int(self.plan.get("total_runs", 0))


@dataclass
class TraceFold:
    """One trace: its slot, what happened in it, and how it ended."""

    trace_id: str
    slot: int = 0
    input_index: int = 0
    iteration: int = 0
    persona: str | None = None
    input: str = ""
    call_args: JsonDict | None = None
    seed: int | None = None
    started_at: str | None = None
    completed_at: str | None = None
    status: str = "running"
    """running, completed or failed."""
    output: Any = None
    duration_ms: float = 0.0
    error: JsonDict | None = None
    attempts: list[JsonDict] = field(default_factory=list)
    attempt_count: int = 0
    turns: list[JsonDict] = field(default_factory=list)
    model_calls: dict[str, JsonDict] = field(default_factory=dict)
    tool_calls: dict[str, JsonDict] = field(default_factory=dict)
    observations: list[JsonDict] = field(default_factory=list)
    turn_count: int | None = None
    conversation_state: str | None = None
    termination_reason: str | None = None

    @property
    def finished(self) -> bool:
        return self.status != "running"

    @property
    def success(self) -> bool:
        return self.status == "completed"

    def apply(self, ev: FoldableEvent) -> None:
        handler = _TRACE_HANDLERS.get(ev.type)
        if handler is not None:
            try:
                handler(self, ev, event_data(ev))
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                raise malformed(ev, exc) from None

    # -- handlers (one per event type) --

    def _started(self, ev: FoldableEvent, data: JsonDict) -> None:
        if self.started_at is not None and self.status in ("running", "interrupted"):
            # Started again by --resume: the earlier run was killed or interrupted.
            killed = self.status == "running"
            self.attempt_count += 1 if killed else 0
            self.attempts.append(
                {
                    "attempt": self.attempt_count,
                    "error_type": "Killed" if killed else "Interrupted",
                    "reason": "killed" if killed else "interrupted",
                }
            )
        self.slot = data["slot"]
        self.input_index = data["input_index"]
        self.iteration = data["iteration"]
        self.persona = data.get("persona")
        self.input = data["input"]
        self.call_args = data.get("call_args")
        self.seed = data.get("seed")
        self.started_at = ev.recorded_at
        self.completed_at = None
        self.status = "running"
        self.output = None
        self.error = None
        self.turns = []
        self.model_calls = {}
        self.tool_calls = {}
        self.observations = []

    def _observation(self, ev: FoldableEvent, data: JsonDict) -> None:
        self.observations.append(data)

    def _sdk_observation(self, ev: FoldableEvent, data: JsonDict) -> None:
        record = data["observation"]
        if not isinstance(record, dict):
            raise TypeError("observation is not an object")
        kind = f"sdk:{record.get('type')}"
        fields = ("input", "output", "error", "model", "total_tokens", "end_time")
        self.observations.append(
            {
                # The SDK's record (observations.jsonl writes it as FluxLoop does) ...
                "sdk": data.get("sdk", "fluxloop"),
                "observation": record,
                "turn_index": data.get("turn_index"),
                # ... and the keys every observation has, for whatever lists them.
                "kind": kind,
                "name": str(record.get("name") or ""),
                "timestamp": str(record.get("start_time") or ev.recorded_at),
                "observation_id": str(record.get("id") or ""),
                "parent_id": record.get("parent_observation_id"),
                "level": record.get("level") or "info",
                "data": {key: record[key] for key in fields if record.get(key) is not None},
            }
        )
        if record.get("type") == "tool":
            # An SDK tool is a tool call of the trace (summaries, evaluations, viewer).
            call_id = str(record.get("id") or f"{self.trace_id}:sdk-tool:{len(self.tool_calls)}")
            error = record.get("error")
            arguments = record.get("input")
            self.tool_calls[call_id] = {
                "call_id": call_id,
                "tool_name": str(record.get("name") or ""),
                "arguments": arguments if isinstance(arguments, dict) else {},
                "turn_index": data.get("turn_index"),
                "status": "failed" if error else "completed",
                "result": record.get("output"),
                "error": error,
                "source": "sdk",
            }

    def _turn_started(self, ev: FoldableEvent, data: JsonDict) -> None:
        self.turns.append(
            {
                "turn_index": data["turn_index"],
                "user_message": data["user_message"],
                "source": data.get("source", "input"),
                "agent_output": None,
                "duration_ms": None,
            }
        )

    def _turn_completed(self, ev: FoldableEvent, data: JsonDict) -> None:
        for turn in reversed(self.turns):
            if turn["turn_index"] == data["turn_index"]:
                turn["agent_output"] = data.get("agent_output")
                turn["duration_ms"] = data["duration_ms"]
                return

    def _supervisor(self, ev: FoldableEvent, data: JsonDict) -> None:
        for turn in reversed(self.turns):
            if turn["turn_index"] == data["turn_index"]:
                turn["supervisor"] = {
                    "decision": data["decision"],
                    "reason": data.get("reason", ""),
                    "next_message": data.get("next_message"),
                }
                return

    def _model_started(self, ev: FoldableEvent, data: JsonDict) -> None:
        self.model_calls[data["call_id"]] = {
            "call_id": data["call_id"],
            "call_index": data["call_index"],
            "provider": data["provider"],
            "model": data.get("model"),
            "request": data["request"],
            "fingerprint": data["fingerprint"],
            "stream": data.get("stream", False),
            "source": data.get("source", "live"),
            "status": "running",
        }

    def _model_completed(self, ev: FoldableEvent, data: JsonDict) -> None:
        call = self.model_calls.setdefault(data["call_id"], {"call_id": data["call_id"]})
        call.update(
            status="completed",
            status_code=data.get("status_code", 200),
            response=data.get("response"),
            chunks=len(data["chunks"]) if data.get("chunks") is not None else None,
            usage=data.get("usage"),
            latency_ms=data["latency_ms"],
            attempts=data.get("attempts", 1),
        )

    def _model_failed(self, ev: FoldableEvent, data: JsonDict) -> None:
        call = self.model_calls.setdefault(data["call_id"], {"call_id": data["call_id"]})
        call.update(
            status="failed",
            status_code=data.get("status_code"),
            error={"type": data["error_type"], "message": data["error_message"]},
            latency_ms=data["latency_ms"],
        )

    def _tool_requested(self, ev: FoldableEvent, data: JsonDict) -> None:
        self.tool_calls[data["call_id"]] = {
            "call_id": data["call_id"],
            "tool_name": data["tool_name"],
            "arguments": data.get("arguments", {}),
            "turn_index": data.get("turn_index"),
            "status": "requested",
        }

    def _tool_decided(self, ev: FoldableEvent, data: JsonDict) -> None:
        call = self.tool_calls.setdefault(data["call_id"], {"call_id": data["call_id"]})
        call["status"] = "approved" if ev.type == "ToolCallApproved" else "rejected"
        call["decided_by"] = data.get("by")
        if data.get("reason"):
            call["reason"] = data["reason"]

    def _tool_completed(self, ev: FoldableEvent, data: JsonDict) -> None:
        call = self.tool_calls.setdefault(data["call_id"], {"call_id": data["call_id"]})
        call.update(
            status="failed" if data.get("error") else "completed",
            result=data.get("result"),
            error=data.get("error"),
            duration_ms=data.get("duration_ms", 0.0),
        )

    def _attempt_failed(self, ev: FoldableEvent, data: JsonDict) -> None:
        self.attempt_count = data["attempt"]
        self.attempts.append(
            {
                "attempt": data["attempt"],
                "error_type": data["error_type"],
                "error_message": data["error_message"],
                "reason": data.get("reason", "exception"),
                "retry_in_seconds": data["retry_in_seconds"],
            }
        )
        # The retry runs the conversation again from its first turn.
        self.turns = []

    def _finished(self, ev: FoldableEvent, data: JsonDict) -> None:
        self.completed_at = ev.recorded_at
        self.duration_ms = data["duration_ms"]
        self.output = data.get("output")
        self.turn_count = data.get("turn_count")
        self.conversation_state = data.get("conversation_state")
        self.termination_reason = data.get("termination_reason")
        self.attempt_count = data.get("attempts", 1)
        if ev.type == "TraceCompleted":
            self.status = "completed"
            self.error = None
            return
        self.error = {
            "type": data["error_type"],
            "message": data["error_message"],
            "reason": data.get("reason", "exception"),
            "traceback": data.get("traceback"),
        }
        if data.get("divergence"):
            self.error["divergence"] = data["divergence"]
        # An interrupted run is not final: it stays "running" until resumed or rebuilt.
        self.status = "interrupted" if data.get("reason") == "interrupted" else "failed"


_TRACE_HANDLERS = {
    "TraceStarted": TraceFold._started,
    "ObservationRecorded": TraceFold._observation,
    "SdkObservationRecorded": TraceFold._sdk_observation,
    "TurnStarted": TraceFold._turn_started,
    "TurnCompleted": TraceFold._turn_completed,
    "SupervisorDecided": TraceFold._supervisor,
    "ModelCallStarted": TraceFold._model_started,
    "ModelCallCompleted": TraceFold._model_completed,
    "ModelCallFailed": TraceFold._model_failed,
    "ToolCallRequested": TraceFold._tool_requested,
    "ToolCallApproved": TraceFold._tool_decided,
    "ToolCallRejected": TraceFold._tool_decided,
    "ToolCallCompleted": TraceFold._tool_completed,
    "TraceAttemptFailed": TraceFold._attempt_failed,
    "TraceCompleted": TraceFold._finished,
    "TraceFailed": TraceFold._finished,
}
