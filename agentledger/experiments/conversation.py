"""One multi-turn conversation: agent turns, each followed by the supervisor's decision.

Turn 0's user message is the input. After each agent turn the conversation stops at
``max_turns`` (the supervisor is not asked), or asks the supervisor: ``continue`` gives the
next user message, ``stop`` ends it (a closing user message, if any, is recorded without
calling the agent). Every turn is recorded (``TurnStarted``/``TurnCompleted``) with each
decision (``SupervisorDecided``). The agent sees the conversation through the parameters
``messages`` (every message so far, the current one last), ``history`` (the messages
before it) and ``conversation_state``.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from agentledger.events.payloads import SupervisorDecided, TurnCompleted, TurnStarted
from agentledger.experiments.config import MultiTurnSettings
from agentledger.experiments.context import RunContext, jsonable
from agentledger.experiments.supervisor import Decision, Supervisor

JsonDict = dict[str, Any]
Invoke = Callable[[dict[str, Any]], Awaitable[Any]]
Decide = Callable[[list[JsonDict], int], Awaitable[Decision]]


def _text(output: Any) -> str:
    return output if isinstance(output, str) else str(jsonable(output))


def conversation_values(
    messages: list[JsonDict], turn_index: int, persona: str | None, max_turns: int
) -> dict[str, Any]:
    """The conversation parameters of one turn (``messages`` ends with the user's message)."""
    return {
        "messages": [dict(m) for m in messages],
        "history": [dict(m) for m in messages[:-1]],
        "conversation_state": {
            "turn_index": turn_index,
            "max_turns": max_turns,
            "persona": persona,
            "messages": [dict(m) for m in messages],
        },
    }


@dataclass
class Conversation:
    """The state of one slot's conversation while it runs (read after a failure too)."""

    settings: MultiTurnSettings
    ctx: RunContext
    messages: list[JsonDict] = field(default_factory=list)
    turns_done: int = 0
    output: Any = None

    async def run(self, first_message: str, invoke: Invoke, decide: Decide) -> str:
        """Run turns until the conversation ends; returns the termination reason."""
        user_message, source = first_message, "input"
        persona = self.settings.persona_override or self.ctx.persona
        for turn_index in range(self.settings.max_turns):
            self.ctx.turn_index = turn_index
            self.ctx.record_event(
                TurnStarted(turn_index=turn_index, user_message=user_message, source=source)  # type: ignore[arg-type]
            )
            self.messages.append({"role": "user", "content": user_message})
            values = conversation_values(
                self.messages, turn_index, persona, self.settings.max_turns
            )
            values["input"] = user_message
            started = time.perf_counter()
            self.output = jsonable(await invoke(values))
            self.ctx.record_event(
                TurnCompleted(
                    turn_index=turn_index,
                    agent_output=self.output,
                    duration_ms=round((time.perf_counter() - started) * 1000, 3),
                )
            )
            self.messages.append({"role": "assistant", "content": _text(self.output)})
            self.turns_done = turn_index + 1
            if self.turns_done >= self.settings.max_turns:
                return "max_turns"
            decision = await decide(self.messages, self.turns_done)
            self.ctx.record_event(
                SupervisorDecided(
                    turn_index=turn_index,
                    decision=decision.decision,
                    reason=decision.reason,
                    next_message=decision.next_message or decision.closing_message,
                )
            )
            if decision.decision == "stop":
                if decision.closing_message:
                    self.ctx.record_event(
                        TurnStarted(
                            turn_index=turn_index + 1,
                            user_message=decision.closing_message,
                            source="supervisor",
                        )
                    )
                    self.messages.append({"role": "user", "content": decision.closing_message})
                return decision.termination
            user_message, source = decision.next_message or "", "supervisor"
        return "max_turns"


def blocking_decider(
    supervisor: Supervisor,
    ctx: RunContext,
    run_blocking: Callable[[Callable[[], Decision]], Awaitable[Decision]],
) -> Decide:
    """A ``Decide`` that runs a (blocking) supervisor off the event loop."""

    async def decide(messages: list[JsonDict], turns_done: int) -> Decision:
        snapshot = [dict(m) for m in messages]
        return await run_blocking(lambda: supervisor.decide(ctx, snapshot, turns_done))

    return decide
