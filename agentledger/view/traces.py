"""One trace or session as its page shows it: the fold, a timeline, each call in full.

Built from the stream's events in version order (as of a position): the report fold
(``TraceFold``) gives the outcome, turns and conversation; the events themselves give what
the fold does not keep: when each call started and ended (their ``recorded_at``), the
request messages, streamed chunks joined into one message, which turn a call belongs to,
and the raw events with their positions and hashes. Pure: nothing here reads a clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from agentledger.eventstore.envelope import StoredEvent, parse_timestamp
from agentledger.projections.folds import JsonDict, TraceFold, event_data
from agentledger.projections.rows import TraceRow, trace_row


@dataclass
class Bar:
    """One line of the waterfall: a span of time (or an instant when ``end_ms`` is None)."""

    kind: str
    """trace, attempt, turn, span, model, tool, event."""
    label: str
    start_ms: float
    end_ms: float | None
    status: str = ""
    depth: int = 0
    anchor: str = ""
    """The id of the section of the page that shows it in full."""


@dataclass
class ModelCallView:
    """A model call: request messages, the response message, usage, timing."""

    call_id: str
    call_index: int
    provider: str
    model: str | None
    turn_index: int | None
    source: str
    status: str
    request: JsonDict
    messages: list[JsonDict]
    response_message: JsonDict | None
    """The assistant message (content and tool calls), streamed chunks joined."""
    chunks: int | None
    usage: JsonDict | None
    latency_ms: float | None
    attempts: int
    error: JsonDict | None
    position: int

    @property
    def anchor(self) -> str:
        return f"call-{self.call_index}"


@dataclass
class TraceView:
    """Everything a trace or session page shows."""

    stream_id: str
    fold: TraceFold
    row: TraceRow
    events: list[StoredEvent]
    model_calls: list[ModelCallView] = field(default_factory=list)
    tool_turns: dict[str, int | None] = field(default_factory=dict)
    bars: list[Bar] = field(default_factory=list)
    total_ms: float = 0.0
    started: JsonDict = field(default_factory=dict)
    """SessionStarted's data, for a session."""
    ended: JsonDict = field(default_factory=dict)

    def calls_of_turn(self, turn_index: int | None) -> list[ModelCallView]:
        return [c for c in self.model_calls if c.turn_index == turn_index]


def _ms(start: Any, moment: str) -> float:
    return round((parse_timestamp(moment) - start).total_seconds() * 1000, 3)


def joined_chunks(chunks: list[JsonDict]) -> JsonDict:
    """The assistant message a stream of chat-completion chunks adds up to: content
    concatenated, tool calls merged by index (name and arguments concatenated)."""
    content: list[str] = []
    calls: dict[int, JsonDict] = {}
    role = "assistant"
    for chunk in chunks:
        for choice in chunk.get("choices") or []:
            delta = choice.get("delta") or {}
            role = delta.get("role") or role
            if isinstance(delta.get("content"), str):
                content.append(delta["content"])
            for part in delta.get("tool_calls") or []:
                call = calls.setdefault(
                    int(part.get("index", 0)),
                    {"id": "", "type": "function", "function": {"name": "", "arguments": ""}},
                )
                call["id"] = part.get("id") or call["id"]
                function = part.get("function") or {}
                call["function"]["name"] += function.get("name") or ""
                call["function"]["arguments"] += function.get("arguments") or ""
    message: JsonDict = {"role": role, "content": "".join(content)}
    if calls:
        message["tool_calls"] = [calls[i] for i in sorted(calls)]
    return message


def _response_message(data: JsonDict) -> JsonDict | None:
    if data.get("chunks") is not None:
        return joined_chunks(data["chunks"])
    response = data.get("response") or {}
    choices = response.get("choices") or []
    if choices and isinstance(choices[0], dict):
        message = choices[0].get("message")
        return message if isinstance(message, dict) else None
    return None


def message_text(content: Any) -> str:
    """A chat message's content as text (parts of a multi-part content joined)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, dict) and isinstance(part.get("text"), str):
                parts.append(part["text"])
            else:
                parts.append(repr(part))
        return "\n".join(parts)
    return repr(content)


def build_trace_view(stream_id: str, events: list[StoredEvent]) -> TraceView:
    """The page of one stream (a trace or a session) from its events in version order."""
    name = stream_id.split("-", 1)[1] if "-" in stream_id else stream_id
    fold = TraceFold(name)
    for ev in events:
        fold.apply(ev)
    view = TraceView(stream_id, fold, trace_row(fold), events)
    if not events:
        return view
    origin = parse_timestamp(events[0].recorded_at)
    clock = _event_times(origin, events)
    end = max(clock) if clock else 0.0
    turn: int | None = None
    opened: dict[str, tuple[str, float, int]] = {}
    """Open intervals by key: (label, start, depth)."""
    depth_of: dict[str | None, int] = {None: 1}
    bars: list[Bar] = []
    calls: dict[str, ModelCallView] = {}
    attempt = 1
    for ev, at in zip(events, clock, strict=True):
        data = event_data(ev)
        kind = ev.type
        if kind == "SessionStarted":
            view.started = data
        elif kind == "SessionEnded":
            view.ended = data
        elif kind == "TraceStarted":
            attempt = int(data.get("attempt", 1))
            opened["attempt"] = (f"attempt {attempt}", at, 1)
        elif kind in ("TraceAttemptFailed", "TraceCompleted", "TraceFailed"):
            label, start, _ = opened.pop("attempt", (f"attempt {attempt}", 0.0, 1))
            status = "completed" if kind == "TraceCompleted" else "failed"
            bars.append(Bar("attempt", label, start, at, status, 1, "outcome"))
            if kind == "TraceAttemptFailed":
                attempt = int(data.get("attempt", attempt)) + 1
                opened["attempt"] = (f"attempt {attempt}", at, 1)
        elif kind == "TurnStarted":
            turn = int(data["turn_index"])
            opened[f"turn:{turn}"] = (f"turn {turn + 1}", at, 2)
        elif kind == "TurnCompleted":
            index = int(data["turn_index"])
            label, start, depth = opened.pop(f"turn:{index}", (f"turn {index + 1}", at, 2))
            stop = start + float(data.get("duration_ms") or 0.0) if start < at else at
            bars.append(Bar("turn", label, start, stop, "completed", depth, f"turn-{index}"))
        elif kind == "ModelCallStarted":
            call = ModelCallView(
                call_id=data["call_id"],
                call_index=int(data["call_index"]),
                provider=data["provider"],
                model=data.get("model"),
                turn_index=turn,
                source=data.get("source", "live"),
                status="running",
                request=data["request"],
                messages=[
                    m if isinstance(m, dict) else {"role": "?", "content": m}
                    for m in data["request"].get("messages") or []
                ],
                response_message=None,
                chunks=None,
                usage=None,
                latency_ms=None,
                attempts=1,
                error=None,
                position=ev.position,
            )
            calls[call.call_id] = call
            opened[f"call:{call.call_id}"] = (f"{call.provider}:{call.model or ''}", at, 3)
        elif kind in ("ModelCallCompleted", "ModelCallFailed"):
            call_or_none = calls.get(data["call_id"])
            if call_or_none is not None:
                call = call_or_none
                call.latency_ms = data.get("latency_ms")
                if kind == "ModelCallCompleted":
                    call.status = "completed"
                    call.response_message = _response_message(data)
                    call.chunks = len(data["chunks"]) if data.get("chunks") is not None else None
                    call.usage = data.get("usage")
                    call.attempts = int(data.get("attempts", 1))
                else:
                    call.status = "failed"
                    call.error = {
                        "type": data["error_type"],
                        "message": data["error_message"],
                        "status_code": data.get("status_code"),
                        "body": data.get("body"),
                    }
                label, start, depth = opened.pop(f"call:{call.call_id}", (call.call_id, at, 3))
                stop = start + float(call.latency_ms or 0.0)
                tokens = (call.usage or {}).get("total_tokens")
                suffix = f" ({tokens} tokens)" if tokens is not None else ""
                bars.append(
                    Bar("model", label + suffix, start, stop, call.status, depth, call.anchor)
                )
        elif kind == "ToolCallRequested":
            view.tool_turns[data["call_id"]] = data.get("turn_index", turn)
            opened[f"tool:{data['call_id']}"] = (data["tool_name"], at, 3)
        elif kind in ("ToolCallApproved", "ToolCallRejected"):
            verdict = "approved" if kind == "ToolCallApproved" else "rejected"
            bars.append(Bar("event", f"{verdict} by {data.get('by', '?')}", at, None, verdict, 4))
            if kind == "ToolCallRejected":
                label, start, depth = opened.pop(f"tool:{data['call_id']}", ("tool", at, 3))
                bars.append(Bar("tool", label, start, at, "rejected", depth, "tools"))
        elif kind == "ToolCallCompleted":
            label, start, depth = opened.pop(f"tool:{data['call_id']}", ("tool", at, 3))
            status = "failed" if data.get("error") else "completed"
            stop = start + float(data.get("duration_ms") or 0.0)
            bars.append(Bar("tool", label, start, stop, status, depth, "tools"))
        elif kind == "ObservationRecorded":
            _observation(data, at, opened, depth_of, bars)
    for key, (label, start, depth) in opened.items():
        kind = key.split(":", 1)[0]
        kind = {"call": "model", "attempt": "attempt"}.get(kind, kind)
        bars.append(Bar(kind, label, start, None if end == start else end, "running", depth))
    end = max([end, *(b.end_ms for b in bars if b.end_ms is not None)])
    bars.sort(key=lambda b: (b.start_ms, b.depth))
    status = fold.status if not view.started else ("completed" if view.ended else "running")
    view.bars = [Bar("trace", name, 0.0, end, status, 0, "outcome"), *bars]
    view.total_ms = end
    view.model_calls = sorted(calls.values(), key=lambda c: c.call_index)
    return view


def _own_time(origin: Any, ev: StoredEvent) -> float | None:
    """When an event says it happened (observations carry their own timestamp)."""
    if ev.type != "ObservationRecorded":
        return None
    try:
        return _ms(origin, str(ev.data["timestamp"]))
    except (KeyError, ValueError, TypeError):
        return None


def _event_times(origin: Any, events: list[StoredEvent]) -> list[float]:
    """A time (ms from the stream's first event) for each event, in order.

    A run's events are often appended together when it ends, so their ``recorded_at`` is
    the append, not the moment. Observations carry their own timestamps; every other event
    is placed at its ``recorded_at`` but no later than the next observation and no
    earlier than the event before it (durations then come from the calls' own latency).
    """
    own = [_own_time(origin, ev) for ev in events]
    upper = [0.0] * len(events)
    bound = float("inf")
    for i in range(len(events) - 1, -1, -1):
        stamp = own[i]
        if stamp is not None:
            bound = min(bound, stamp)
        upper[i] = bound
    times = []
    cursor = 0.0
    for ev, mine, limit in zip(events, own, upper, strict=True):
        at = mine if mine is not None else max(cursor, min(_ms(origin, ev.recorded_at), limit))
        cursor = max(cursor, at)
        times.append(at)
    return times


def _observation(
    data: JsonDict,
    at: float,
    opened: dict[str, tuple[str, float, int]],
    depth_of: dict[str | None, int],
    bars: list[Bar],
) -> None:
    # A span's end is recorded as "<id of its start>:end".
    kind = data["kind"]
    key = f"span:{str(data['observation_id']).removesuffix(':end')}"
    depth = depth_of.get(data.get("parent_id"), 1) + 1
    if kind == "span_start":
        depth_of[data["observation_id"]] = depth
        opened[key] = (data["name"], at, depth)
    elif kind == "span_end":
        label, start, span_depth = opened.pop(key, (data["name"], at, depth))
        bars.append(Bar("span", label, start, at, data.get("level") or "", span_depth, "obs"))
    else:
        bars.append(Bar("event", f"{kind}: {data['name']}", at, None, "", depth, "obs"))
