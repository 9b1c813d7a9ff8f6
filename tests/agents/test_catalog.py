"""Listing agent sessions from their start and end events."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, cast

import pytest

from agentledger.agents.catalog import list_sessions
from agentledger.eventstore.envelope import StoredEvent
from agentledger.eventstore.store import EventStore
from agentledger.projections.errors import ProjectionError


class _Log:
    """Just enough of a store: ``read_all`` over a list."""

    def __init__(self, events: list[StoredEvent]) -> None:
        self._events = events

    def read_all(self, *, types: Sequence[str] = ()) -> Iterator[StoredEvent]:
        return (ev for ev in self._events if ev.type in types)


def _event(number: int, kind: str, data: Any, stream: str = "session-a") -> StoredEvent:
    return StoredEvent(number, f"e{number}", stream, 1, kind, 1, data, {}, f"t{number}", "h")


def _sessions(*events: StoredEvent) -> list[Any]:
    return list_sessions(cast(EventStore, _Log(list(events))))


def test_sessions_are_listed_in_start_order_with_how_they_ended() -> None:
    found = _sessions(
        _event(1, "SessionStarted", {"session_id": "a", "project": "p", "agent": "x"}),
        _event(2, "SessionStarted", {"session_id": "b", "agent": "y", "chat": True}, "session-b"),
        _event(3, "SessionEnded", {"session_id": "a", "turns": 1, "reason": "failed: E"}),
    )
    assert [(s.session_id, s.kind, s.status, s.turns) for s in found] == [
        ("a", "run", "failed: E", 1),
        ("b", "chat", "not ended", None),
    ]


def test_a_start_event_without_its_id_is_a_one_line_error_naming_it() -> None:
    with pytest.raises(ProjectionError) as caught:
        _sessions(_event(7, "SessionStarted", {"agent": "x"}))
    assert str(caught.value).startswith(
        "event at position 7 (session-a v1, SessionStarted) does not hold what a "
        "SessionStarted holds"
    )
