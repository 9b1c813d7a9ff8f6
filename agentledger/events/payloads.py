"""Typed event payloads: the catalog, its registry, and upcasting of old schema versions.

Every event type is a frozen pydantic model registered under its class name. A payload
model's ``schema_version`` is bumped when its shape changes incompatibly; an upcaster
registered for ``(type, old_version)`` turns stored data into the next version on read,
so old events are never rewritten.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agentledger.eventstore.errors import EventValidationError, UnknownEventTypeError

JsonDict = dict[str, Any]


class Payload(BaseModel):
    """Base of every event payload; subclasses are registered with ``@register``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    event_type: ClassVar[str] = ""
    schema_version: ClassVar[int] = 1


P = TypeVar("P", bound=type[Payload])
_REGISTRY: dict[str, type[Payload]] = {}
_UPCASTERS: dict[tuple[str, int], Callable[[JsonDict], JsonDict]] = {}


def register(cls: P) -> P:
    """Register a payload model under its class name (the event ``type``)."""
    cls.event_type = cls.__name__
    if cls.event_type in _REGISTRY:
        raise ValueError(f"payload type {cls.event_type} registered twice")
    _REGISTRY[cls.event_type] = cls
    return cls


def upcaster(
    event_type: str, from_version: int
) -> Callable[[Callable[[JsonDict], JsonDict]], Callable[[JsonDict], JsonDict]]:
    """Register a function turning ``event_type`` data at ``from_version`` into the next version."""

    def decorate(fn: Callable[[JsonDict], JsonDict]) -> Callable[[JsonDict], JsonDict]:
        _UPCASTERS[(event_type, from_version)] = fn
        return fn

    return decorate


_OTHER_MODULES = ("agentledger.events.evaluation", "agentledger.events.generation")
"""Payload modules registered on first need (most commands never meet their types, and
building their models costs start-up time)."""


def _register_all() -> None:
    for name in _OTHER_MODULES:
        importlib.import_module(name)


def payload_class(event_type: str) -> type[Payload]:
    """The registered model for ``event_type``; unknown types raise ``UnknownEventTypeError``."""
    found = _REGISTRY.get(event_type)
    if found is None:
        _register_all()
        found = _REGISTRY.get(event_type)
    if found is None:
        raise UnknownEventTypeError(
            f"unknown event type {event_type!r}; this agentledger knows {len(_REGISTRY)} types"
        )
    return found


def known_types() -> list[str]:
    """Every registered event type, sorted."""
    _register_all()
    return sorted(_REGISTRY)


def upcast(event_type: str, schema_version: int, data: JsonDict) -> JsonDict:
    """Bring stored ``data`` up to the current schema version of ``event_type``."""
    cls = payload_class(event_type)
    if schema_version > cls.schema_version:
        raise EventValidationError(
            f"{event_type} event has schema version {schema_version}, newer than this "
            f"agentledger's {cls.schema_version}; upgrade agentledger"
        )
    version = schema_version
    while version < cls.schema_version:
        step = _UPCASTERS.get((event_type, version))
        if step is None:
            raise EventValidationError(
                f"no upcaster for {event_type} from schema version {version}"
            )
        data = step(data)
        version += 1
    return data


def decode_payload(event_type: str, schema_version: int, data: JsonDict) -> Payload:
    """Validate stored data (after upcasting) into its payload model."""
    cls = payload_class(event_type)
    try:
        return cls.model_validate(upcast(event_type, schema_version, data))
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "(root)"
        raise EventValidationError(f"{event_type}.{where}: {first['msg']}") from exc


# --- experiments -------------------------------------------------------------------------


class PlanInput(BaseModel):
    """One planned input of an experiment; every iteration of it is one slot."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    index: int
    input: str
    persona: str | None = None
    metadata: JsonDict = Field(default_factory=dict)
    call_args: JsonDict | None = None
    """Recorded call arguments fed to the target (argument replay), if any."""


class ExperimentPlan(BaseModel):
    """What an experiment will run: inputs x iterations, in plan order."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    inputs: list[PlanInput]
    iterations: int
    personas: list[str] = Field(default_factory=list)
    total_runs: int
    only_slots: list[int] | None = None
    """Run only these slot numbers (replaying one trace), in plan order."""
    recordings: int | None = None
    """Argument replay: how many recorded calls each input runs with (``inputs`` then
    holds one entry per input and recording)."""


@register
class ExperimentStarted(Payload):
    experiment_id: str
    name: str
    config: JsonDict
    """Redacted snapshot of the resolved configuration."""
    plan: ExperimentPlan
    seed: int | None = None
    replay_of: str | None = None
    """Experiment id this one replays, if it is a replay."""
    record_mode: str = "live"
    output_dir: str | None = None
    workers: int | None = None
    """Local worker processes it was started with (None: runs in the starting process)."""
    lease_seconds: float | None = None
    """Set when its slots are shared by workers: how long a claim holds without renewal."""
    local_time: str | None = None
    """Local wall-clock time of the start (ISO 8601, no offset, as FluxLoop writes its
    ``date``): taken once here so that reports rebuild to the same bytes anywhere."""
    inputs_generation: str | None = None
    """The generation (``agentledger generate inputs``) its inputs file came from, if any;
    not set on replays (``replay``, ``--record-mode replay``), whose plan may not be the
    file as it is now."""


class TraceSeal(BaseModel):
    """Head of a trace stream at experiment completion (version and hash of its last event)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: int
    hash: str


@register
class ExperimentCompleted(Payload):
    experiment_id: str
    total_traces: int
    successful: int
    failed: int
    sealed_traces: int | None = None
    """How many trace streams ``seal`` covers."""
    seal: str | None = None
    """SHA-256 over the head (stream id, version, hash of its last event) of every trace
    stream of the experiment at completion, in stream order; verify recomputes it."""
    seal_signature: str | None = None
    """HMAC-SHA256 of the seal under ``AGENTLEDGER_SIGNING_KEY``, when one was set: without
    the key a rewritten experiment cannot carry a valid one."""
    key_id: str | None = None
    """Which key signed the seal (a public fingerprint of it)."""
    seals: dict[str, TraceSeal] = Field(default_factory=dict)
    """Trace stream id -> its head: how completions were sealed before ``seal`` (one entry
    per trace made the event, and the memory to build it, grow with the experiment).
    Still verified where present."""


@register
class ExperimentInterrupted(Payload):
    experiment_id: str
    reason: str
    completed: int
    remaining: int


@register
class SlotResultRejected(Payload):
    """A worker's result for a slot it no longer held was refused: its lease ran out and
    another worker started the slot's trace again (the stream version fenced it off)."""

    experiment_id: str
    slot: int
    trace_id: str
    worker: str
    reason: str


@register
class ExperimentResumed(Payload):
    experiment_id: str
    remaining: int


# --- traces ------------------------------------------------------------------------------


@register
class TraceStarted(Payload):
    experiment_id: str | None = None
    trace_id: str
    slot: int
    """Position of the slot in plan order (input index x iterations + iteration)."""
    input_index: int
    iteration: int
    persona: str | None = None
    input: str
    call_args: JsonDict | None = None
    attempt: int = 1
    seed: int | None = None


@register
class TurnStarted(Payload):
    turn_index: int
    user_message: str
    source: Literal["input", "supervisor", "user"] = "input"
    input: JsonDict | None = None
    """Agent sessions: the whole input of the turn (what a replay feeds back)."""
    input_order: list[list[str | int]] | None = None
    """Agent sessions: the path of every object key of ``input`` in its original order (the
    store sorts keys), so a replay feeds back the same bytes."""


@register
class TurnCompleted(Payload):
    turn_index: int
    agent_output: Any = None
    duration_ms: float


@register
class ModelCallStarted(Payload):
    call_id: str
    call_index: int
    """Order of the call within its trace, from 0."""
    provider: str
    model: str | None = None
    request: JsonDict
    """Redacted request body."""
    fingerprint: str
    """Hash of the canonical request, used to match recordings on replay."""
    source: Literal["live", "replay"] = "live"
    stream: bool = False
    endpoint: str = "chat/completions"
    """The API operation called (``chat/completions``, ``embeddings``, ...)."""
    url: str | None = None
    """The URL called, query secrets masked."""
    attempt: int = 1
    """Attempt number of the client's own retries (1 = first try)."""


@register
class ModelCallCompleted(Payload):
    call_id: str
    call_index: int
    status_code: int = 200
    response: JsonDict | None = None
    chunks: list[JsonDict] | None = None
    """Streamed chunks in arrival order, when the call streamed."""
    usage: JsonDict | None = None
    latency_ms: float
    first_chunk_ms: float | None = None
    """Time to the first streamed bytes, when the call streamed."""
    truncated: bool = False
    """The stream was closed before its end (the agent stopped reading)."""
    source: Literal["live", "replay"] = "live"
    attempts: int = 1
    """Attempts the client needed; earlier ones are recorded as failed calls."""


@register
class ModelCallFailed(Payload):
    call_id: str
    call_index: int
    status_code: int | None = None
    error_type: str
    error_message: str
    body: str | None = None
    chunks: list[JsonDict] | None = None
    """Chunks streamed before the failure, in arrival order."""
    latency_ms: float
    source: Literal["live", "replay"] = "live"
    attempt: int = 1


@register
class ToolCallRequested(Payload):
    call_id: str
    tool_name: str
    arguments: JsonDict = Field(default_factory=dict)
    turn_index: int | None = None


@register
class ToolCallApproved(Payload):
    call_id: str
    by: Literal["auto", "user"] = "auto"


@register
class ToolCallRejected(Payload):
    call_id: str
    by: Literal["auto", "user"] = "user"
    reason: str = ""


@register
class ToolCallCompleted(Payload):
    call_id: str
    result: Any = None
    error: str | None = None
    duration_ms: float = 0.0


@register
class ObservationRecorded(Payload):
    observation_id: str
    parent_id: str | None = None
    kind: Literal["span_start", "span_end", "event", "log"]
    name: str
    timestamp: str
    """UTC ISO-8601 time the observation was made, taken once at record time."""
    data: JsonDict = Field(default_factory=dict)
    level: str | None = None


@register
class SdkObservationRecorded(Payload):
    """An observation an agent-side SDK made (FluxLoop's decorators), as the SDK serialises
    it: ``id``, ``type`` (agent, tool, generation, span, event, chain), ``name``,
    ``start_time``, ``end_time``, ``input``, ``output``, ``error``, ``level``,
    ``metadata``, ``parent_observation_id``, ``trace_id`` (the SDK's), and for generations
    ``model`` and token counts."""

    sdk: str = "fluxloop"
    observation: JsonDict
    turn_index: int | None = None
    """The conversation turn it was made in (multi-turn experiments)."""


@register
class ValueRecorded(Payload):
    """A value a run read from the outside world (``ctx.now()``, ``ctx.uuid()``), kept so
    a replay returns the same."""

    kind: Literal["now", "uuid"]
    value: str


@register
class SupervisorDecided(Payload):
    turn_index: int
    decision: Literal["continue", "stop"]
    reason: str = ""
    next_message: str | None = None


@register
class TraceAttemptFailed(Payload):
    attempt: int
    error_type: str
    error_message: str
    reason: str = "exception"
    retry_in_seconds: float


@register
class TraceCompleted(Payload):
    output: Any = None
    duration_ms: float
    turn_count: int = 1
    conversation_state: str | None = None
    termination_reason: str | None = None
    attempts: int = 1


@register
class TraceFailed(Payload):
    error_type: str
    error_message: str
    traceback: str | None = None
    reason: str = "exception"
    """Why the trace failed: exception, timeout, divergence, interrupted, ..."""
    duration_ms: float
    output: Any = None
    turn_count: int = 0
    conversation_state: str | None = None
    termination_reason: str | None = None
    attempts: int = 1
    divergence: JsonDict | None = None
    """Replay only: where the run first stopped matching its recording."""


def final_outcome(event_type: str, data: Mapping[str, Any]) -> bool | None:
    """Whether an event ends its trace for good: True (succeeded), False (failed), or None
    (not final: any other event, or a run cut short by an interrupt, which runs again)."""
    if event_type == "TraceCompleted":
        return True
    if event_type == "TraceFailed" and data.get("reason") != "interrupted":
        return False
    return None


# --- production capture and chat sessions ------------------------------------------------


@register
class ArgsRecorded(Payload):
    target: str
    """``module:function`` whose call arguments were captured."""
    kwargs: JsonDict
    iteration: int = 0


@register
class SessionStarted(Payload):
    session_id: str
    project: str
    agent: str
    model: str | None = None
    chat: bool = False
    project_dir: str | None = None
    model_spec: JsonDict | None = None
    """The resolved model (its key masked), so a replay asks the same model."""
    replay_of: str | None = None
    record_mode: str = "live"


@register
class SessionEnded(Payload):
    session_id: str
    turns: int
    reason: str = "completed"
