"""Supervisors of multi-turn conversations: who writes the user's next message, and when
the conversation stops.

After each agent turn the supervisor reads the conversation and decides: ``continue`` with
the next user message, or ``stop`` with a reason and, optionally, a closing user message
(the agent is not called for it). ``ScriptedSupervisor`` (provider ``mock``) plays
``scripted_questions`` in order after the first input, then stops with ``mock_reason``
(default ``script_complete``) and ``mock_closing``, as FluxLoop's mock supervisor does.
``ModelSupervisor`` asks a model through the recorded gateway for a structured decision,
so its calls are recorded with the trace and replayed like the agent's own.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import orjson

from agentledger.errors import RunnerError
from agentledger.experiments.config import SupervisorSettings
from agentledger.experiments.context import RunContext
from agentledger.models.gateway import ModelGateway

JsonDict = dict[str, Any]

DEFAULT_SYSTEM_PROMPT = (
    "You simulate the user of an AI assistant to test it. Stay in the persona below. Read "
    "the conversation so far and decide: continue with the user's next message, or stop "
    "when the user's goal is met, the assistant is stuck, or the conversation has run its "
    "course. Answer with JSON only."
)

DECISION_SCHEMA: JsonDict = {
    "type": "object",
    "properties": {
        "decision": {"type": "string", "enum": ["continue", "stop"]},
        "reason": {"type": "string"},
        "next_message": {"type": "string"},
        "closing_message": {"type": "string"},
    },
    "required": ["decision", "reason", "next_message", "closing_message"],
    "additionalProperties": False,
}


class SupervisorError(RunnerError):
    """The supervisor could not decide (its model failed or answered nonsense)."""


@dataclass(frozen=True)
class Decision:
    """What the supervisor decided after a turn."""

    decision: Literal["continue", "stop"]
    reason: str = ""
    next_message: str | None = None
    closing_message: str | None = None
    termination: str = "supervisor_stop"
    """The conversation's termination reason when it stops."""


class Supervisor(Protocol):
    def decide(
        self, ctx: RunContext, conversation: Sequence[JsonDict], turns_done: int
    ) -> Decision: ...


class ScriptedSupervisor:
    """Plays the scripted questions in order, then stops (FluxLoop's mock supervisor)."""

    def __init__(self, settings: SupervisorSettings) -> None:
        self._settings = settings

    def decide(
        self, ctx: RunContext, conversation: Sequence[JsonDict], turns_done: int
    ) -> Decision:
        questions = self._settings.scripted_questions
        if turns_done - 1 < len(questions):
            return Decision("continue", "scripted question", questions[turns_done - 1])
        return Decision(
            "stop",
            self._settings.mock_reason,
            closing_message=self._settings.mock_closing,
            termination=self._settings.mock_reason,
        )


class ModelSupervisor:
    """Asks a model for a structured decision; its calls are recorded in the trace."""

    def __init__(
        self,
        settings: SupervisorSettings,
        gateway: ModelGateway,
        *,
        personas: Mapping[str, JsonDict],
        persona_override: str | None,
        service_context: str | None,
    ) -> None:
        self._settings = settings
        self._gateway = gateway
        self._personas = personas
        self._persona_override = persona_override
        self._service_context = service_context

    @property
    def gateway(self) -> ModelGateway:
        return self._gateway

    def _system(self, persona_name: str | None) -> str:
        parts = [self._settings.system_prompt or DEFAULT_SYSTEM_PROMPT]
        name = self._persona_override or persona_name
        persona = self._personas.get(name) if name else None
        if persona:
            parts.append("Persona: " + orjson.dumps(persona, option=orjson.OPT_SORT_KEYS).decode())
        elif name:
            parts.append(f"Persona: {name}")
        if self._service_context:
            parts.append(f"Service: {self._service_context}")
        return "\n\n".join(parts)

    def decide(
        self, ctx: RunContext, conversation: Sequence[JsonDict], turns_done: int
    ) -> Decision:
        transcript = "\n".join(f"{m['role']}: {m['content']}" for m in conversation)
        request = self._gateway.chat_request(
            f"Conversation so far ({turns_done} turns):\n{transcript}\n\nDecide the next step.",
            self._system(ctx.persona),
            {
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"name": "decision", "schema": DECISION_SCHEMA, "strict": True},
                }
            },
        )
        try:
            response = self._gateway.client().chat.completions.create(**request)
        except Exception as exc:
            raise SupervisorError(f"supervisor model call failed: {exc}") from exc
        content = response.choices[0].message.content or ""
        try:
            answer = orjson.loads(content)
        except orjson.JSONDecodeError:
            raise SupervisorError(
                f"supervisor answered no JSON decision: {content[:200]!r}"
            ) from None
        if not isinstance(answer, dict) or answer.get("decision") not in ("continue", "stop"):
            raise SupervisorError(f"supervisor decision is not continue/stop: {content[:200]!r}")
        if answer["decision"] == "continue":
            message = str(answer.get("next_message") or "").strip()
            if not message:
                raise SupervisorError("supervisor chose to continue without a next message")
            return Decision("continue", str(answer.get("reason", "")), message)
        closing = str(answer.get("closing_message") or "").strip() or None
        return Decision(
            "stop", str(answer.get("reason") or "supervisor_stop"), closing_message=closing
        )
