"""Running one agent once, recorded as a session (``run agent``).

The run is a session stream ``session-<id>``: ``SessionStarted``, one turn
(``TurnStarted`` with the user's message, the model and tool calls, ``TurnCompleted``),
``SessionEnded``. A YAML AI agent sends its rendered instructions and the user's message
to its model (with ``response_format`` json_schema when it has an output schema, the
answer then parsed and checked), running its skills in a tool-call loop of at most
``max_iterations`` model calls. A Python agent is called like an experiment target.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from agentledger.agents.catalog import TURN_FAILED, reading_event
from agentledger.agents.inputs import in_order, key_order
from agentledger.agents.project import Agent, AgentProject, load_skill, render, tool_schema
from agentledger.agents.rendering import js_json
from agentledger.errors import AgentLedgerError, ConfigError, RunnerError
from agentledger.events.payloads import SessionEnded, SessionStarted, TurnCompleted, TurnStarted
from agentledger.events.streams import session_stream
from agentledger.eventstore.envelope import StoredEvent
from agentledger.eventstore.store import EventStore
from agentledger.experiments.context import RunContext, TraceRecorder, jsonable
from agentledger.experiments.targets import load_target
from agentledger.experiments.writer import BatchWriter
from agentledger.models.client_hook import record_default_clients
from agentledger.models.gateway import ModelGateway
from agentledger.models.specs import ModelSpec, resolve_endpoint
from agentledger.replay.book import Divergence, RecordMode, ReplayState

JsonDict = dict[str, Any]
CLEARED = "chat.cleared"
"""The observation a chat's ``/clear`` records."""
log = logging.getLogger("agentledger.agents")


class AgentRunError(RunnerError):
    """The agent failed: its model, a tool, or an answer that breaks its output schema."""


@dataclass(frozen=True)
class AgentResult:
    session_id: str
    result: Any
    """The agent's result: ``{output_key: text}`` or the object its output schema asks for."""


def user_message(agent: Agent, values: JsonDict) -> str:
    """The user's message: the ``input_key`` field, else ``message``, else the input as
    JSON written as AIGNE's JavaScript writes it (``JSON.stringify``: keys in the order
    given, ``2`` not ``2.0``)."""
    for key in (agent.input_key, "message"):
        if key and isinstance(values.get(key), str):
            return str(values[key])
    return js_json(values) if values else ""


def select_output(agent: Agent, result: Any, key: str | None) -> Any:
    """The part of ``result`` to output: the field ``key`` (an error naming the fields the
    result has when it lacks it); without a key, the agent's ``output_key`` field if the
    result has one, else the whole result."""
    if key is None:
        key = agent.output_key
        return result[key] if isinstance(result, dict) and key in result else result
    if isinstance(result, dict):
        if key in result:
            return result[key]
        keys = ", ".join(repr(k) for k in result) or "none"
        raise ConfigError(
            f"--output-key {key!r} is not in the result of agent {agent.name}; its keys: {keys}"
        )
    kind = "text" if isinstance(result, str) else f"a JSON {type(result).__name__}"
    raise ConfigError(
        f"--output-key {key!r}: the result of agent {agent.name} is {kind}, not an object "
        "with keys; drop --output-key"
    )


def _check_output(agent: Agent, text: str) -> Any:
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise AgentRunError(
            f"agent {agent.name}: the model's answer is not the JSON its output_schema asks "
            f"for: {text[:200]!r}"
        ) from None
    required = (agent.output_schema or {}).get("required") or []
    missing = [k for k in required if not isinstance(value, dict) or k not in value]
    if missing:
        raise AgentRunError(
            f"agent {agent.name}: the model's answer lacks required field(s) "
            f"{', '.join(missing)} of its output_schema"
        )
    return value


def _ai_agent(
    agent: Agent,
    ctx: RunContext,
    gateway: ModelGateway,
    values: JsonDict,
    project_dir: Path,
    history: list[JsonDict] | None = None,
) -> Any:
    skills = {s.rsplit(":", 1)[1]: load_skill(s, project_dir) for s in agent.skills}
    messages: list[JsonDict] = []
    system = render(agent.instructions, values)
    if system:
        messages.append({"role": "system", "content": system})
    messages += history or []
    messages.append({"role": "user", "content": user_message(agent, values)})
    params: JsonDict = {}
    if skills:
        params["tools"] = [tool_schema(t) for t in skills.values()]
    if agent.output_schema is not None:
        params["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": "output", "schema": agent.output_schema},
        }
    client = gateway.client()
    for _ in range(agent.max_iterations):
        request = gateway.chat_request(messages, None, params)
        reply = client.chat.completions.create(**request).choices[0].message
        if not reply.tool_calls:
            text = reply.content or ""
            if agent.output_schema is not None:
                return _check_output(agent, text)
            return {agent.output_key: text}
        messages.append(reply.model_dump(exclude_none=True))
        for call in reply.tool_calls:
            function = call.function
            skill = skills.get(function.name)
            if skill is None:
                result: Any = f"error: no tool named {function.name}"
            else:
                try:
                    arguments = orjson.loads(function.arguments or "{}")
                except orjson.JSONDecodeError:
                    arguments = {}
                try:
                    result = ctx.tool(function.name, skill.fn, arguments, call_id=call.id)
                except Exception as exc:
                    result = f"error: {type(exc).__name__}: {exc}"
            content = result if isinstance(result, str) else js_json(jsonable(result))
            messages.append({"role": "tool", "tool_call_id": call.id, "content": content})
    raise AgentRunError(
        f"agent {agent.name}: still calling tools after {agent.max_iterations} model calls "
        "(max_iterations)"
    )


def _python_agent(agent: Agent, ctx: RunContext, values: JsonDict, project_dir: Path) -> Any:
    assert agent.target is not None
    target = load_target(agent.target, [str(project_dir)])
    text = user_message(agent, values)
    args, kwargs = target.arguments(
        {
            "input": text,
            "persona": None,
            "iteration": 0,
            "metadata": dict(values),
            "ctx": ctx,
            "messages": [{"role": "user", "content": text}],
            "history": [],
            "conversation_state": {"turn_index": 0, "messages": []},
        }
    )
    result = target.fn(*args, **kwargs)
    if inspect.isawaitable(result):
        result = asyncio.run(_await(result))
    elif inspect.isgenerator(result):
        result = "".join(str(chunk) for chunk in result)
    return jsonable(result)


async def _await(awaitable: Any) -> Any:
    return await awaitable


class AgentSession:
    """A recorded session with one agent: ``turn`` as often as needed, then ``end``.

    With ``memory`` (the agent's setting) each turn sees the conversation so far; ``clear``
    forgets it. Events go to ``session-<id>``; nothing is lost if a turn fails."""

    def __init__(
        self,
        store: EventStore,
        project: AgentProject,
        agent: Agent,
        model: ModelSpec,
        env: Mapping[str, str],
        *,
        chat: bool = False,
        replay: ReplayState | None = None,
        replay_of: str | None = None,
    ) -> None:
        self._store = store
        self._project_dir = Path(project.directory)
        self._agent = agent
        offline = replay is not None and replay.mode is RecordMode.REPLAY
        model_endpoint = resolve_endpoint(model, env, offline=offline)
        self.replay = replay
        self.session_id = uuid.uuid4().hex[:12]
        stream = session_stream(self.session_id)
        metadata = {"correlation_id": self.session_id}
        store.append(
            stream,
            [
                SessionStarted(
                    session_id=self.session_id,
                    project=project.name,
                    agent=agent.name,
                    model=model.label,
                    chat=chat,
                    project_dir=str(self._project_dir),
                    model_spec=model.model_dump(mode="json", exclude_none=True),
                    replay_of=replay_of,
                    record_mode=replay.mode.value if replay else "live",
                )
            ],
            metadata=metadata,
        )
        log.debug(
            "session %s: agent %s of project %s, model %s, store %s",
            self.session_id,
            agent.name,
            self._project_dir,
            model.label,
            store.location.display(),
        )
        self._writer = BatchWriter(store)
        self._gateway = ModelGateway(model, model_endpoint, store.redactor)
        recorder = TraceRecorder(self._writer, stream, version=1, metadata=metadata)
        self._ctx = RunContext(
            recorder,
            trace_id=self.session_id,
            experiment_id=None,
            input="",
            persona=None,
            iteration=0,
            metadata={},
            seed=int(self.session_id[:8], 16) >> 1,
            gateway=self._gateway,
            replay=replay,
        )
        self.turns = 0
        self.failures: list[str] = []
        """The error type of every turn that failed, in order."""
        self.history: list[JsonDict] = []
        """The conversation (user and assistant messages) kept when the agent has memory."""
        self._ended = False

    def turn(self, values: JsonDict) -> Any:
        """One turn: the agent answers ``values``; returns its result."""
        agent, ctx = self._agent, self._ctx
        message = user_message(agent, values)
        index = self.turns
        token = ctx.activate()
        started = time.perf_counter()
        try:
            ctx.turn_index = index
            recorded_input = jsonable(values)
            ctx.record_event(
                TurnStarted(
                    turn_index=index,
                    user_message=message,
                    source="user",
                    input=recorded_input,
                    input_order=key_order(recorded_input),
                )
            )
            log.debug("session %s turn %d: agent %s", self.session_id, index + 1, agent.name)
            try:
                with record_default_clients(self._store.redactor):
                    if agent.target is not None:
                        result = _python_agent(agent, ctx, values, self._project_dir)
                    else:
                        result = _ai_agent(
                            agent, ctx, self._gateway, values, self._project_dir, self.history
                        )
            except AgentLedgerError as exc:
                self._failed(index, exc)
                raise
            except Exception as exc:
                # The model (HTTP errors, timeouts, bad answers) or the agent's own code.
                self._failed(index, exc)
                raise AgentRunError(
                    f"agent {agent.name} failed: {type(exc).__name__}: {exc}"
                ) from exc
            ctx.record_event(
                TurnCompleted(
                    turn_index=index,
                    agent_output=jsonable(result),
                    duration_ms=round((time.perf_counter() - started) * 1000, 3),
                )
            )
        finally:
            ctx.deactivate(token)
        self.turns += 1
        if agent.memory:
            answer = result.get(agent.output_key) if isinstance(result, dict) else result
            self.history += [
                {"role": "user", "content": message},
                {
                    "role": "assistant",
                    "content": answer if isinstance(answer, str) else js_json(jsonable(answer)),
                },
            ]
        return result

    def _failed(self, index: int, exc: BaseException) -> None:
        """Record that turn ``index`` failed, and how (the error's type and message)."""
        self.failures.append(type(exc).__name__)
        log.debug("session %s turn %d failed: %s", self.session_id, index + 1, exc)
        self._ctx.observe(
            TURN_FAILED, turn=index, error_type=type(exc).__name__, message=str(exc)[:500]
        )

    @property
    def divergence(self) -> Divergence | None:
        """Where a replayed session first left its recording (including calls it never
        made), if it did."""
        ctx = self._ctx
        if ctx.divergence is None and self.replay and self.replay.mode is RecordMode.REPLAY:
            missing = self.replay.book.unused()
            if missing is not None:
                ctx.diverge(missing)
        return ctx.divergence

    def clear(self) -> None:
        """Forget the conversation (the recorded turns stay in the log). Recorded as an
        observation, so a replay forgets at the same point."""
        self.history = []
        self._ctx.observe(CLEARED, turns=self.turns)

    def end(self, reason: str = "completed") -> None:
        """Record ``SessionEnded`` and release the clients (once)."""
        if self._ended:
            return
        self._ended = True
        try:
            self._ctx.record_event(
                SessionEnded(session_id=self.session_id, turns=self.turns, reason=reason)
            )
        finally:
            self._gateway.close()
            self._writer.close()


def run_agent(
    store: EventStore,
    project: AgentProject,
    agent: Agent,
    values: JsonDict,
    model: ModelSpec,
    env: Mapping[str, str],
) -> AgentResult:
    """Run ``agent`` once on ``values`` and record it as a session of one turn."""
    session = AgentSession(store, project, agent, model, env)
    try:
        result = session.turn(values)
    except AgentRunError as exc:
        session.end(f"failed: {type(exc.__cause__ or exc).__name__}")
        raise AgentRunError(f"{exc} (recorded as session {session.session_id})") from exc
    except BaseException as exc:
        session.end(f"failed: {type(exc).__name__}")
        raise
    session.end()
    return AgentResult(session.session_id, result)


@dataclass(frozen=True)
class TurnOutcome:
    """How one turn ended: its output, or the type of the error it failed with."""

    output: Any = None
    error: str | None = None
    """The error's type name; ``""`` when the recording says only that the turn failed."""

    def same_as(self, recorded: TurnOutcome) -> bool:
        """Whether this (replayed) outcome is the ``recorded`` one: the same output, or a
        failure of the same type (any failure, when the recording did not say which)."""
        if recorded.error is not None:
            return self.error is not None and recorded.error in ("", self.error)
        return self.error is None and self.output == recorded.output


@dataclass(frozen=True)
class SessionReplay:
    """How a replayed agent session went against its recording."""

    session_id: str
    source_id: str
    turns: int
    changed_turns: list[int]
    divergence: Divergence | None
    recorded: list[TurnOutcome] = field(default_factory=list)
    replayed: list[TurnOutcome] = field(default_factory=list)
    reason: str = "completed"
    """How the replay session ended, as recorded in its ``SessionEnded``."""

    @property
    def identical(self) -> bool:
        return self.divergence is None and not self.changed_turns


@dataclass
class _Step:
    """One recorded step of a session: a turn (its input and outcome) or a ``/clear``."""

    values: JsonDict | None
    outcome: TurnOutcome | None = None


def _recorded_steps(events: list[StoredEvent]) -> tuple[list[_Step], str]:
    """The session's turns (input in its original key order, outcome) and ``/clear``s in
    order, and how it ended."""
    steps: list[_Step] = []
    ended = "completed"
    current: _Step | None = None
    for ev in events:
        with reading_event(ev):
            data = ev.data
            if ev.type == "TurnStarted":
                values = data.get("input") or {}
                if data.get("input_order"):
                    values = in_order(values, data["input_order"])
                current = _Step(values)
                steps.append(current)
            elif ev.type == "TurnCompleted" and current is not None:
                current.outcome = TurnOutcome(output=data.get("agent_output"))
            elif ev.type == "ObservationRecorded" and data.get("name") == TURN_FAILED:
                if current is not None:
                    current.outcome = TurnOutcome(error=(data.get("data") or {}).get("error_type"))
            elif ev.type == "ObservationRecorded" and data.get("name") == CLEARED:
                steps.append(_Step(None))
            elif ev.type == "SessionEnded":
                ended = data.get("reason") or "completed"
    for step in steps:
        if step.values is not None and step.outcome is None:
            # Recorded before turns recorded their failures: a run's end says how its turn
            # failed; a chat's does not.
            error = ended.removeprefix("failed: ") if ended.startswith("failed: ") else ""
            step.outcome = TurnOutcome(error=error)
    return steps, ended


def replay_session(
    store: EventStore,
    source_id: str,
    env: Mapping[str, str],
    mode: RecordMode,
    project_dir: Path | None = None,
) -> SessionReplay:
    """Run a recorded session's turns again, as a new session answered from its recording
    (each turn fed its recorded input with its keys in their recorded order), and compare
    every turn's outcome with the recorded one: output with output, failure with failure.
    The replay session ends as the run did (``failed: <error>`` when a run's turn failed)."""
    from agentledger.agents.project import load_project
    from agentledger.replay.book import build_books

    events = store.read_stream(session_stream(source_id))
    if not events or events[0].type != "SessionStarted":
        raise AgentRunError(
            f"no agent session {source_id} in store {store.location.display()}; "
            "agentledger sessions list shows the sessions there"
        )
    started = events[0].data
    directory = project_dir or Path(started.get("project_dir") or "")
    if not directory.is_dir():
        raise AgentRunError(
            f"the project of session {source_id} was at {directory}, which does not exist "
            "here; pass --project DIR where it is now"
        )
    project = load_project(directory)
    agent = project.agent(started["agent"])
    if not started.get("model_spec"):
        raise AgentRunError(f"session {source_id} was recorded without its model; run it again")
    model = ModelSpec.model_validate(started["model_spec"])
    steps, _ = _recorded_steps(events)
    book = build_books(events, "session-")[session_stream(source_id)]
    chat = bool(started.get("chat"))
    session = AgentSession(
        store,
        project,
        agent,
        model,
        env,
        chat=chat,
        replay=ReplayState(mode, book),
        replay_of=source_id,
    )
    recorded: list[TurnOutcome] = []
    replayed: list[TurnOutcome] = []
    reason = "completed"
    try:
        for step in steps:
            if step.values is None:
                session.clear()
                continue
            assert step.outcome is not None
            recorded.append(step.outcome)
            try:
                replayed.append(TurnOutcome(output=jsonable(session.turn(step.values))))
            except Exception as exc:
                cause = exc.__cause__ if isinstance(exc, AgentRunError) else None
                error = type(cause or exc).__name__
                replayed.append(TurnOutcome(error=error))
                if session.divergence is not None:
                    break
                if not chat:
                    # A run ends at its failed turn; a chat goes on to the next message.
                    reason = f"failed: {error}"
    except KeyboardInterrupt:
        reason = "interrupted"
        raise
    except BaseException as exc:
        reason = f"failed: {type(exc).__name__}"
        raise
    finally:
        divergence = session.divergence
        if divergence is not None:
            reason = "diverged"
        session.end(reason)
    changed = [
        index
        for index in range(max(len(recorded), len(replayed)))
        if index >= len(recorded)
        or index >= len(replayed)
        or not replayed[index].same_as(recorded[index])
    ]
    return SessionReplay(
        session.session_id,
        source_id,
        len(replayed),
        changed,
        divergence,
        recorded,
        replayed,
        reason,
    )
