"""Readable chat transcripts (Markdown) of traces: roles, turns, tool and model calls, timings."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson

from agentledger.eventstore.envelope import StoredEvent
from agentledger.projections.folds import ExperimentFold, TraceFold
from agentledger.projections.rows import conversation_history, trace_usage


def _text(value: Any) -> str:
    """A message body: strings as they are, anything else as an indented JSON block."""
    if isinstance(value, str):
        return value if value.strip() else "_(empty)_"
    return "```json\n" + orjson.dumps(value, option=orjson.OPT_INDENT_2).decode() + "\n```"


def _quote(text: str) -> str:
    return "\n".join(f"> {line}" if line else ">" for line in text.splitlines() or [""])


def trace_transcript(experiment: ExperimentFold, trace: TraceFold) -> str:
    """The Markdown transcript of one trace."""
    status = {"completed": "succeeded", "failed": "failed", "interrupted": "interrupted"}.get(
        trace.status, trace.status
    )
    lines = [
        f"# Trace {trace.trace_id}",
        "",
        f"- Experiment: {experiment.name} ({experiment.experiment_id})",
        f"- Slot: input #{trace.input_index}, iteration {trace.iteration}"
        + (f", persona {trace.persona}" if trace.persona else ""),
        f"- Result: {status} in {trace.duration_ms:g} ms, {trace.attempt_count or 1} attempt(s)",
        f"- Started: {trace.started_at}",
    ]
    if trace.completed_at:
        lines.append(f"- Finished: {trace.completed_at}")
    if trace.termination_reason:
        lines.append(
            f"- Conversation: {trace.conversation_state}, ended by {trace.termination_reason}"
            f" after {trace.turn_count} turn(s)"
        )
    return "\n".join([*lines, *_body(trace)]).rstrip() + "\n"


def session_transcript(events: Iterable[StoredEvent]) -> str:
    """The Markdown transcript of an agent session (``run agent``)."""
    started: dict[str, Any] = {}
    ended: dict[str, Any] = {}
    fold: TraceFold | None = None
    first_at = last_at = ""
    for ev in events:
        if fold is None:
            fold = TraceFold(ev.stream_id.removeprefix("session-"))
            first_at = ev.recorded_at
        last_at = ev.recorded_at
        if ev.type == "SessionStarted":
            started = ev.data
        elif ev.type == "SessionEnded":
            ended = ev.data
        fold.apply(ev)
    if fold is None:
        return ""
    lines = [
        f"# Session {fold.trace_id}",
        "",
        f"- Project: {started.get('project', '?')}, agent {started.get('agent', '?')}, "
        f"model {started.get('model') or '?'}" + (" (chat)" if started.get("chat") else ""),
        f"- Started: {first_at}",
    ]
    if ended:
        lines.append(
            f"- Ended: {last_at}, {ended.get('turns', 0)} turn(s), {ended.get('reason', '')}"
        )
    return "\n".join([*lines, *_body(fold)]).rstrip() + "\n"


def _body(trace: TraceFold) -> list[str]:
    """Conversation, tool calls, model calls and error of a trace or session."""
    lines = ["", "## Conversation", ""]
    if trace.turns:
        for turn in trace.turns:
            index = turn["turn_index"] + 1
            lines += [f"### Turn {index}", "", f"**User** ({turn.get('source', 'input')}):", ""]
            lines += [_quote(_text(turn["user_message"])), ""]
            if turn.get("agent_output") is not None:
                lines += [f"**Assistant** ({turn.get('duration_ms', 0):g} ms):", ""]
                lines += [_text(turn["agent_output"]), ""]
            decision = turn.get("supervisor")
            if decision:
                reason = f": {decision['reason']}" if decision.get("reason") else ""
                lines += [f"_Supervisor: {decision['decision']}{reason}_", ""]
    else:
        for message in conversation_history(trace):
            role = "User" if message["role"] == "user" else "Assistant"
            body = _text(message["content"])
            lines += [f"**{role}:**", "", _quote(body) if role == "User" else body, ""]
    if trace.tool_calls:
        lines += ["## Tool calls", ""]
        for call in trace.tool_calls.values():
            arguments = orjson.dumps(call.get("arguments", {})).decode()
            outcome = call.get("status", "requested")
            timing = f", {call['duration_ms']:g} ms" if call.get("duration_ms") else ""
            lines.append(f"- `{call.get('tool_name', '?')}({arguments})`: {outcome}{timing}")
        lines.append("")
    if trace.model_calls:
        usage = trace_usage(trace)
        lines += [
            "## Model calls",
            "",
            f"{usage['model_calls']} call(s), {usage['total_tokens']} tokens",
            "",
            "| # | model | status | latency ms | tokens | source |",
            "|---|---|---|---|---|---|",
        ]
        for call in sorted(trace.model_calls.values(), key=lambda c: c.get("call_index", 0)):
            tokens = (call.get("usage") or {}).get("total_tokens", "")
            lines.append(
                f"| {call.get('call_index', '')} | {call.get('provider', '')}:"
                f"{call.get('model') or ''} | {call.get('status', '')} | "
                f"{call.get('latency_ms', '')} | {tokens} | {call.get('source', '')} |"
            )
        lines.append("")
    if trace.error:
        lines += [
            "## Error",
            "",
            f"{trace.error['type']} ({trace.error['reason']}): {trace.error['message']}",
            "",
        ]
        if trace.error.get("traceback"):
            lines += ["```", trace.error["traceback"].rstrip(), "```", ""]
    return lines
