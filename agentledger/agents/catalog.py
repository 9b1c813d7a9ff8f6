"""The agent sessions a store holds (``run agent`` runs, chats and their replays).

A session is the stream ``session-<id>``: ``SessionStarted`` (project, its folder, agent,
model, chat or not, ``replay_of``), its turns, and ``SessionEnded`` (turns, reason) unless
it is still going or its process died. Listing reads only the start and end events;
details read the one stream.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from agentledger.events.streams import session_stream
from agentledger.eventstore.envelope import StoredEvent
from agentledger.eventstore.store import EventStore
from agentledger.projections.folds import malformed

TURN_FAILED = "turn.failed"
"""The observation a failed turn records (its error type and message), so a replay can
compare a failure with a failure."""


@dataclass
class SessionSummary:
    """One session as its start and end events tell it."""

    session_id: str
    project: str
    project_dir: str | None
    agent: str
    model: str | None
    chat: bool
    replay_of: str | None
    record_mode: str
    started_at: str
    ended_at: str | None = None
    reason: str | None = None
    """How it ended (``completed``, ``failed: <error>``, ``interrupted``, ``diverged``);
    None while it runs, or when its process died before ending it."""
    turns: int | None = None

    @property
    def kind(self) -> str:
        return "chat" if self.chat else "run"

    @property
    def status(self) -> str:
        return self.reason or "not ended"


@dataclass
class SessionDetails:
    """One session in full: its summary, what its turns did, and its replays."""

    summary: SessionSummary
    turns_started: int = 0
    turns_completed: int = 0
    turns_failed: int = 0
    model_calls: int = 0
    tool_calls: int = 0
    tokens: int = 0
    replays: list[str] = field(default_factory=list)


def _summary(ev: StoredEvent) -> SessionSummary:
    data = ev.data
    return SessionSummary(
        session_id=str(data["session_id"]),
        project=str(data.get("project") or ""),
        project_dir=data.get("project_dir"),
        agent=str(data.get("agent") or ""),
        model=data.get("model"),
        chat=bool(data.get("chat")),
        replay_of=data.get("replay_of"),
        record_mode=data.get("record_mode") or "live",
        started_at=ev.recorded_at,
    )


def list_sessions(store: EventStore) -> list[SessionSummary]:
    """Every session in the store, in the order they started. An event that does not
    hold what its type says (a damaged log) is an error naming it."""
    sessions: dict[str, SessionSummary] = {}
    for ev in store.read_all(types=["SessionStarted", "SessionEnded"]):
        with reading_event(ev):
            if ev.type == "SessionStarted":
                summary = _summary(ev)
                sessions[summary.session_id] = summary
                continue
            found = sessions.get(str(ev.data["session_id"]))
            if found is not None:
                _ended(found, ev)
    return list(sessions.values())


def _ended(summary: SessionSummary, ev: StoredEvent) -> None:
    summary.ended_at = ev.recorded_at
    summary.reason = str(ev.data.get("reason") or "completed")
    turns = ev.data.get("turns")
    summary.turns = turns if isinstance(turns, int) else None


def session_details(store: EventStore, session_id: str) -> SessionDetails | None:
    """The session ``session_id`` in full, or None when the store has no such session."""
    events = store.read_stream(session_stream(session_id))
    if not events or events[0].type != "SessionStarted":
        return None
    with reading_event(events[0]):
        details = SessionDetails(_summary(events[0]))
    for ev in events[1:]:
        with reading_event(ev):
            _count(details, ev)
    details.replays = [s.session_id for s in list_sessions(store) if s.replay_of == session_id]
    return details


def _count(details: SessionDetails, ev: StoredEvent) -> None:
    """Fold one event of the session's stream into ``details``."""
    if ev.type == "TurnStarted":
        details.turns_started += 1
    elif ev.type == "TurnCompleted":
        details.turns_completed += 1
    elif ev.type == "ObservationRecorded" and ev.data.get("name") == TURN_FAILED:
        details.turns_failed += 1
    elif ev.type == "ModelCallStarted":
        details.model_calls += 1
    elif ev.type == "ModelCallCompleted":
        usage = ev.data.get("usage") or {}
        details.tokens += int(usage.get("total_tokens") or 0)
    elif ev.type == "ToolCallRequested":
        details.tool_calls += 1
    elif ev.type == "SessionEnded":
        _ended(details.summary, ev)


@contextmanager
def reading_event(ev: StoredEvent) -> Iterator[None]:
    """Reading ``ev``: an event that does not hold what its type says (a damaged or
    tampered log) is a one-line error naming it."""
    try:
        yield
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        raise malformed(ev, exc) from None
