"""What the viewer lists, and the log points it shows: experiments, sessions, ``--as-of``.

Experiments and sessions are found by their lifecycle events (started, completed,
interrupted, resumed; session started and ended), read once per change of the log's last
position. Figures that need every trace (runs ok and failed, tokens, duration) come from
the experiment's ``ExperimentIndex``, built only for the experiments on the page shown.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace

from agentledger.events.streams import SESSION_PREFIX, experiment_stream, session_stream
from agentledger.eventstore.envelope import parse_timestamp
from agentledger.eventstore.store import EventStore
from agentledger.projections.catalog import resolve_experiment
from agentledger.projections.errors import UnknownExperimentError
from agentledger.projections.folds import ExperimentFold, TraceFold
from agentledger.projections.report import utc_stamp
from agentledger.projections.rows import trace_usage
from agentledger.view.errors import BadRequestError, NotFoundError

LIFECYCLE = [
    "ExperimentStarted",
    "ExperimentCompleted",
    "ExperimentInterrupted",
    "ExperimentResumed",
    "SessionStarted",
    "SessionEnded",
]


@dataclass
class Entry:
    """One line of the list: an experiment or an agent session."""

    kind: str
    """experiment or session."""
    ref: str
    """The experiment id or session id."""
    name: str
    status: str
    started_at: str
    ended_at: str | None
    position: int
    planned: int = 0
    """Planned runs (experiments); turns (sessions)."""

    @property
    def duration_s(self) -> float | None:
        if self.ended_at is None:
            return None
        delta = parse_timestamp(self.ended_at) - parse_timestamp(self.started_at)
        return round(delta.total_seconds(), 3)


class Catalog:
    """Every experiment and session in the log as of ``until``, caught up with the
    lifecycle events committed since the last look (the log is never read twice)."""

    def __init__(self, store: EventStore, until: int | None) -> None:
        self._store = store
        self._until = until
        self._seen = 0
        self._experiments: dict[str, ExperimentFold] = {}
        self._sessions: dict[str, Entry] = {}
        self._entries: list[Entry] = []
        self._lock = threading.Lock()

    def entries(self) -> list[Entry]:
        """Newest first."""
        with self._lock:
            top = self._store.last_position() if self._until is None else self._until
            if top != self._seen:
                self._read(top)
                self._seen = top
            return list(self._entries)

    def _read(self, top: int) -> None:
        for ev in self._store.read_all(self._seen, types=LIFECYCLE, until=top):
            if ev.type.startswith("Session"):
                session_id = str(ev.data["session_id"])
                if ev.type == "SessionStarted":
                    name = f"{ev.data.get('project', '?')} / {ev.data.get('agent', '?')}"
                    self._sessions[session_id] = Entry(
                        "session", session_id, name, "running", ev.recorded_at, None, ev.position
                    )
                elif session_id in self._sessions:
                    entry = self._sessions[session_id]
                    entry.status = "completed"
                    entry.ended_at = ev.recorded_at
                    entry.planned = int(ev.data.get("turns", 0))
            else:
                experiment_id = str(ev.data["experiment_id"])
                self._experiments.setdefault(experiment_id, ExperimentFold()).apply(ev)
        entries = [
            Entry(
                "experiment",
                fold.experiment_id,
                fold.name,
                fold.status,
                fold.started_at or "",
                fold.completed_at or fold.interrupted_at,
                fold.first_position,
                fold.total_runs,
            )
            for fold in self._experiments.values()
            if fold.experiment_id
        ]
        entries += [replace(entry) for entry in self._sessions.values()]
        entries.sort(key=lambda e: e.position, reverse=True)
        self._entries = entries

    def experiment_id(self, ref: str) -> str:
        """The id of the experiment ``ref`` names (an id, a unique name or an output
        folder); the id itself is found with one read of its stream."""
        head = self._store.read_stream(experiment_stream(ref))
        if head and (self._until is None or head[0].position <= self._until):
            return ref
        try:
            found = resolve_experiment(self._store, ref).experiment_id
        except UnknownExperimentError as exc:
            raise NotFoundError(str(exc)) from None
        return found


@dataclass
class SessionFigures:
    """A session's totals, from its folded stream."""

    turns: int
    model_calls: int
    total_tokens: int


def session_figures(store: EventStore, session_id: str, until: int | None) -> SessionFigures:
    fold = TraceFold(session_id)
    for ev in store.read_stream(session_stream(session_id)):
        if until is None or ev.position <= until:
            fold.apply(ev)
    usage = trace_usage(fold)
    return SessionFigures(len(fold.turns), usage["model_calls"], usage["total_tokens"])


def is_session(stream_id: str) -> bool:
    return stream_id.startswith(SESSION_PREFIX)


def log_point(store: EventStore, as_of: str, now: str, name: str = "--as-of") -> int:
    """The log position ``--as-of`` (or the parameter ``name``) names: a position (not past
    the log's end) or an ISO-8601 time, read as UTC when it has no zone (not in the
    future)."""
    text = as_of.strip()
    last = store.last_position()
    if text.isdigit():
        position = int(text)
        if position > last:
            raise BadRequestError(
                f"{name} {position} is beyond the end of the log (last position {last}); "
                "give a position up to it or a time"
            )
        if position == 0:
            raise BadRequestError(f"{name} 0 is before the first event; positions start at 1")
        return position
    try:
        stamp = utc_stamp(text)
    except ValueError:
        raise BadRequestError(
            f"{name} {as_of!r} is neither a log position nor an ISO-8601 time such as "
            "2026-01-31T12:00:00Z"
        ) from None
    if stamp > now:
        raise BadRequestError(f"{name} {as_of} is in the future (now is {now})")
    position = store.position_at(stamp)
    if position == 0:
        raise BadRequestError(f"{name} {as_of} is before the first event of the log")
    return position
