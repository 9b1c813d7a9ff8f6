"""The RunContext handed to agents, and the recorder that turns what they do into events.

An agent that takes a ``ctx`` parameter gets a ``RunContext``: what it runs (input,
persona, iteration, metadata), a seeded ``random`` generator, and ``observe``/``log``/
``span`` to record observations into its trace. Code deeper down reaches the same context
through ``current_context()`` (a context variable, so it is correct under ``--parallel``).
"""

from __future__ import annotations

import itertools
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

import orjson

from agentledger.errors import ModelConfigError, RunnerError
from agentledger.events.payloads import (
    ObservationRecorded,
    Payload,
    ToolCallApproved,
    ToolCallCompleted,
    ToolCallRejected,
    ToolCallRequested,
    ValueRecorded,
)
from agentledger.eventstore.envelope import utc_now
from agentledger.eventstore.store import AppendRequest
from agentledger.experiments.writer import BatchWriter, Callback
from agentledger.replay.book import Divergence, ReplayState, is_missing

if TYPE_CHECKING:
    from openai import AsyncOpenAI, OpenAI

    from agentledger.models.gateway import Messages, ModelGateway

_current: ContextVar[RunContext | None] = ContextVar("agentledger_run_context", default=None)
_span: ContextVar[str | None] = ContextVar("agentledger_span", default=None)


def current_context() -> RunContext | None:
    """The RunContext of the run executing this code, or None outside a run."""
    return _current.get()


def jsonable(value: Any) -> Any:
    """``value`` made JSON-safe for an event: containers walked, unknown objects as ``str``."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [jsonable(v) for v in value]
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        return jsonable(dump(mode="json"))
    return str(value)


class TraceRecorder:
    """Appends a trace's events to its stream, in order, through the batch writer."""

    def __init__(
        self,
        writer: BatchWriter,
        stream_id: str,
        *,
        version: int,
        metadata: Mapping[str, Any],
    ) -> None:
        self._writer = writer
        self.stream_id = stream_id
        self.version = version
        self._metadata = dict(metadata)
        self._lock = threading.Lock()

    def record(self, *payloads: Payload, callback: Callback | None = None) -> None:
        """Queue ``payloads`` as the next events of the stream."""
        with self._lock:
            request = AppendRequest(self.stream_id, payloads, self.version, self._metadata)
            self.version += len(payloads)
            self._writer.submit(request, callback, owner=self)


class ToolRejected(RunnerError):
    """A tool call was rejected (by the user, under manual approval)."""


class ToolApprover(Protocol):
    """Decides whether a tool call may run: returns (approved, by, reason)."""

    def approve(
        self, trace_id: str, tool: str, arguments: Mapping[str, Any]
    ) -> tuple[bool, str, str]: ...


class AutoApprove:
    """Approves every tool call (``--auto-approve-tools``)."""

    def approve(
        self, trace_id: str, tool: str, arguments: Mapping[str, Any]
    ) -> tuple[bool, str, str]:
        return True, "auto", ""


class RunContext:
    """What an agent sees of its run: the slot it runs, randomness, and observations."""

    def __init__(
        self,
        recorder: TraceRecorder,
        *,
        trace_id: str,
        experiment_id: str | None,
        input: str,
        persona: str | None,
        iteration: int,
        metadata: Mapping[str, Any],
        seed: int,
        gateway: ModelGateway | None = None,
        replay: ReplayState | None = None,
        approver: ToolApprover | None = None,
    ) -> None:
        self.trace_id = trace_id
        self.experiment_id = experiment_id
        self.input = input
        self.persona = persona
        self.iteration = iteration
        self.metadata = dict(metadata)
        self.seed = seed
        self._random: random.Random | None = None
        self._recorder = recorder
        self._ids = itertools.count(1)
        self._calls = itertools.count()
        self._gateway = gateway
        self._replay = replay
        self._approver = approver or AutoApprove()
        self._tools = itertools.count()
        self._tool_calls: dict[str, str] = {}
        """Tool call id -> its state (requested, approved, completed), for deduplication."""
        self.turn_index: int | None = None
        """The conversation turn being run (multi-turn experiments)."""
        self.divergence: Divergence | None = None
        """The first point where a replayed run stopped matching its recording."""

    @property
    def random(self) -> random.Random:
        """A generator seeded per slot: use it instead of the global ``random`` under
        ``--parallel``. Made on first use (most runs never draw from it); it lives for the
        whole slot, so a retry continues its sequence."""
        if self._random is None:
            self._random = random.Random(self.seed)
        return self._random

    # --- models ---------------------------------------------------------------------------

    def _models(self) -> ModelGateway:
        if self._gateway is None:
            raise ModelConfigError("this run has no model configured; set 'model' in the config")
        return self._gateway

    @property
    def model(self) -> str:
        """The configured model's name, for ``model=`` in your own requests."""
        return self._models().model

    @property
    def openai(self) -> OpenAI:
        """A recorded ``openai.OpenAI`` client for the configured model's provider."""
        return self._models().client()

    @property
    def async_openai(self) -> AsyncOpenAI:
        """A recorded ``openai.AsyncOpenAI`` client (use it from async agents)."""
        return self._models().async_client()

    def chat(self, prompt: Messages, *, system: str | None = None, **params: Any) -> str:
        """Ask the configured model (with its sampling settings); returns the reply text.
        ``prompt`` is a user message or a list of chat messages; ``params`` are passed on."""
        gateway = self._models()
        response = gateway.client().chat.completions.create(
            **gateway.chat_request(prompt, system, params)
        )
        return response.choices[0].message.content or ""

    async def achat(self, prompt: Messages, *, system: str | None = None, **params: Any) -> str:
        """``chat`` for async agents."""
        gateway = self._models()
        response = await gateway.async_client().chat.completions.create(
            **gateway.chat_request(prompt, system, params)
        )
        return response.choices[0].message.content or ""

    # --- tools ---------------------------------------------------------------------------

    def tool(
        self,
        name: str,
        fn: Callable[..., Any],
        arguments: Mapping[str, Any] | None = None,
        *,
        call_id: str | None = None,
    ) -> Any:
        """Run a Python tool, recorded: ``ToolCallRequested``, ``Approved`` or ``Rejected``
        (per the approval mode), then ``ToolCallCompleted`` with its result or error.
        Pass ``call_id`` (the model's tool call id) when running a tool the model asked
        for. A rejected call raises ``ToolRejected``."""
        call_id, arguments = self._tool_request(name, arguments, call_id)
        started = time.perf_counter()
        try:
            result = fn(**arguments)
        except Exception as exc:
            self._tool_done(call_id, None, f"{type(exc).__name__}: {exc}", started)
            raise
        self._tool_done(call_id, result, None, started)
        return result

    async def atool(
        self,
        name: str,
        fn: Callable[..., Any],
        arguments: Mapping[str, Any] | None = None,
        *,
        call_id: str | None = None,
    ) -> Any:
        """``tool`` for async tools (``fn`` returns an awaitable)."""
        call_id, arguments = self._tool_request(name, arguments, call_id)
        started = time.perf_counter()
        try:
            result = await fn(**arguments)
        except Exception as exc:
            self._tool_done(call_id, None, f"{type(exc).__name__}: {exc}", started)
            raise
        self._tool_done(call_id, result, None, started)
        return result

    def _tool_request(
        self, name: str, arguments: Mapping[str, Any] | None, call_id: str | None
    ) -> tuple[str, dict[str, Any]]:
        arguments = dict(arguments or {})
        call_id = call_id or f"{self.trace_id}:tool:{next(self._tools)}"
        if call_id not in self._tool_calls:
            self.record_event(
                ToolCallRequested(
                    call_id=call_id,
                    tool_name=name,
                    arguments=jsonable(arguments),
                    turn_index=self.turn_index,
                )
            )
        approved, by, reason = self._approver.approve(self.trace_id, name, arguments)
        if not approved:
            self._tool_calls[call_id] = "rejected"
            self.record_event(ToolCallRejected(call_id=call_id, by=by, reason=reason))  # type: ignore[arg-type]
            raise ToolRejected(f"tool call {name} was rejected{': ' + reason if reason else ''}")
        self._tool_calls[call_id] = "approved"
        self.record_event(ToolCallApproved(call_id=call_id, by=by))  # type: ignore[arg-type]
        return call_id, arguments

    def _tool_done(self, call_id: str, result: Any, error: str | None, started: float) -> None:
        self._tool_calls[call_id] = "completed"
        self.record_event(
            ToolCallCompleted(
                call_id=call_id,
                result=jsonable(result),
                error=error,
                duration_ms=round((time.perf_counter() - started) * 1000, 3),
            )
        )

    def note_model_tool_calls(self, response: Mapping[str, Any] | None) -> None:
        """Record the tool calls a model response asks for (the recording transport's way in)."""
        for choice in (response or {}).get("choices") or []:
            for call in (choice.get("message") or {}).get("tool_calls") or []:
                call_id = call.get("id")
                function = call.get("function") or {}
                if not call_id or call_id in self._tool_calls:
                    continue
                try:
                    arguments = orjson.loads(function.get("arguments") or "{}")
                except orjson.JSONDecodeError:
                    arguments = {"unparsed": function.get("arguments")}
                self._tool_calls[call_id] = "requested"
                self.record_event(
                    ToolCallRequested(
                        call_id=call_id,
                        tool_name=str(function.get("name", "")),
                        arguments=arguments
                        if isinstance(arguments, dict)
                        else {"value": arguments},
                        turn_index=self.turn_index,
                    )
                )

    def note_tool_results(self, request: Mapping[str, Any]) -> None:
        """Record results the agent sends back for model tool calls it ran without
        ``ctx.tool`` (``role: tool`` messages of a later request)."""
        for message in request.get("messages") or []:
            if not isinstance(message, dict) or message.get("role") != "tool":
                continue
            call_id = message.get("tool_call_id")
            if call_id and self._tool_calls.get(call_id) == "requested":
                self._tool_calls[call_id] = "completed"
                self.record_event(ToolCallCompleted(call_id=call_id, result=message.get("content")))

    # --- the outside world, recorded ------------------------------------------------------

    def now(self) -> datetime:
        """The current UTC time, recorded; a replay gets the recorded times in order."""
        text = self._outside("now", utc_now)
        return datetime.fromisoformat(text.replace("Z", "+00:00"))

    def uuid(self) -> str:
        """A fresh UUID (hex string), recorded; a replay gets the recorded ids in order."""
        return self._outside("uuid", lambda: uuid.uuid4().hex)

    def _outside(self, kind: str, read: Callable[[], str]) -> str:
        if self._replay is not None:
            value = self._replay.book.value(kind)
            if not is_missing(value):
                self.record_event(ValueRecorded(kind=kind, value=value))  # type: ignore[arg-type]
                return str(value)
        value = read()
        self.record_event(ValueRecorded(kind=kind, value=value))  # type: ignore[arg-type]
        return value

    # --- the recording transport's side ---------------------------------------------------

    @property
    def replay(self) -> ReplayState | None:
        """The recording this run is answered from, when it is a replay."""
        return self._replay

    def diverge(self, divergence: Divergence) -> None:
        """Note where the replay first stopped matching (later divergences follow from it)."""
        if self.divergence is None:
            self.divergence = divergence

    def next_call_index(self) -> int:
        """Number the next model call of this trace (from 0); used by the recorder."""
        return next(self._calls)

    def record_event(self, *payloads: Payload) -> None:
        """Append events to this run's trace (the recording transport's way in)."""
        self._recorder.record(*payloads)

    def _observation(
        self,
        kind: str,
        name: str,
        data: Mapping[str, Any] | None,
        *,
        level: str | None = None,
        observation_id: str | None = None,
        parent_id: str | None = None,
    ) -> str:
        observation_id = observation_id or f"{self.trace_id}:{next(self._ids)}"
        self._recorder.record(
            ObservationRecorded(
                observation_id=observation_id,
                parent_id=parent_id if parent_id is not None else _span.get(),
                kind=kind,  # type: ignore[arg-type]
                name=name,
                timestamp=utc_now(),
                data=jsonable(dict(data or {})),
                level=level,
            )
        )
        return observation_id

    def observe(self, name: str, data: Mapping[str, Any] | None = None, **fields: Any) -> str:
        """Record a point-in-time observation (``type: event``); returns its id."""
        return self._observation("event", name, {**(data or {}), **fields})

    def log(self, message: str, *, level: str = "info", **fields: Any) -> str:
        """Record a log line in the trace (``type: log``)."""
        return self._observation("log", message, fields, level=level)

    @contextmanager
    def span(self, name: str, **fields: Any) -> Iterator[str]:
        """Record ``span_start``/``span_end`` around a block; spans nest, children point at
        their parent. The end carries the duration and, if the block raised, the error."""
        span_id = self._observation("span_start", name, fields)
        parent = _span.get()
        token = _span.set(span_id)
        started = time.perf_counter()
        error: BaseException | None = None
        try:
            yield span_id
        except BaseException as exc:
            error = exc
            raise
        finally:
            _span.reset(token)
            end: dict[str, Any] = {"duration_ms": round((time.perf_counter() - started) * 1000, 3)}
            if error is not None:
                end["error"] = f"{type(error).__name__}: {error}"
            self._observation(
                "span_end",
                name,
                end,
                observation_id=f"{span_id}:end",
                parent_id=parent,
            )

    def activate(self) -> Any:
        """Make this the current context (returns the token for ``deactivate``)."""
        return _current.set(self)

    @staticmethod
    def deactivate(token: Any) -> None:
        _current.reset(token)
