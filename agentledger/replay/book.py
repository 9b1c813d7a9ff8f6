"""Replay: answering a run's model calls (and clock / id reads) from a recorded trace.

A ``ReplayBook`` holds what one recorded trace asked and got: its model calls in order
(request fingerprint, canonical request, outcome) and the values ``ctx.now()`` /
``ctx.uuid()`` returned. A replayed run takes from its book:

- a model request is matched by fingerprint to the first unused recording with that
  fingerprint, so identical requests get their recorded answers in sequence;
- a request with no match is a divergence: in ``replay`` mode the call is refused and the
  trace fails with a report naming the call index, the recorded and the actual request
  and the JSON path of the first differing field; in ``replay-or-live`` the live model
  answers and the call is recorded;
- recordings left unused when the run ends are a divergence too (a call went missing).
"""

from __future__ import annotations

import enum
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from agentledger.errors import ConfigError
from agentledger.eventstore.envelope import StoredEvent
from agentledger.models.fingerprint import canonical_request, first_difference

JsonDict = dict[str, Any]


class RecordMode(enum.Enum):
    """How model calls are served: ``live`` (call and record), ``replay`` (only from the
    log, a miss is a divergence), ``replay-or-live`` (from the log, live on a miss)."""

    LIVE = "live"
    REPLAY = "replay"
    REPLAY_OR_LIVE = "replay-or-live"

    @classmethod
    def parse(cls, value: str, where: str = "--record-mode") -> RecordMode:
        """The mode named ``value``; a misspelling is an error listing the valid modes."""
        try:
            return cls(value.strip().lower())
        except ValueError:
            valid = ", ".join(mode.value for mode in cls)
            raise ConfigError(
                f"{where} {value!r} is not a record mode; use one of {valid}"
            ) from None


@dataclass(frozen=True)
class RecordedCall:
    """One recorded model call: what was asked and how it ended."""

    index: int
    fingerprint: str
    endpoint: str
    request: JsonDict
    outcome: str
    """``ModelCallCompleted`` or ``ModelCallFailed`` (``""``: it never ended)."""
    data: JsonDict
    """The outcome event's data."""


@dataclass(frozen=True)
class Divergence:
    """Where a replayed run first stopped matching its recording."""

    trace_id: str
    call_index: int
    reason: str
    recorded: JsonDict | None = None
    actual: JsonDict | None = None
    path: str | None = None

    def message(self) -> str:
        """A one-paragraph report: where, which field, and both requests."""
        head = (
            f"replay diverged in trace {self.trace_id} at model call #{self.call_index}: "
            f"{self.reason}"
        )
        if self.path is not None:
            head += f"; first difference at {self.path}"
            recorded = _at(self.recorded, self.path)
            actual = _at(self.actual, self.path)
            head += f" (recorded {_short(recorded)}, actual {_short(actual)})"
        parts = [head]
        if self.recorded is not None:
            parts.append(f"recorded request: {_short(self.recorded, 2000)}")
        if self.actual is not None:
            parts.append(f"actual request: {_short(self.actual, 2000)}")
        return "\n".join(parts)

    def as_dict(self) -> JsonDict:
        return {
            "trace_id": self.trace_id,
            "call_index": self.call_index,
            "reason": self.reason,
            "path": self.path,
            "recorded": self.recorded,
            "actual": self.actual,
        }


def _short(value: Any, limit: int = 200) -> str:
    text = orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()
    return text if len(text) <= limit else text[: limit - 3] + "..."


_MISSING = object()


def _at(request: Any, path: str) -> Any:
    """The value at a divergence path of a canonical request (``messages[1].content`` in
    its body, or ``endpoint``)."""
    if not isinstance(request, dict):
        return "(absent)"
    if path == "endpoint":
        return request.get("endpoint")
    current = request.get("body")
    for token in path.replace("[", ".[").split("."):
        if not token:
            continue
        if token.startswith("["):
            index = int(token[1:-1])
            if not isinstance(current, list) or index >= len(current):
                return "(absent)"
            current = current[index]
        else:
            if not isinstance(current, dict) or token not in current:
                return "(absent)"
            current = current[token]
    return current


@dataclass
class ReplayBook:
    """The recordings of one trace, consumed as the replayed run makes its calls."""

    trace_id: str
    calls: list[RecordedCall] = field(default_factory=list)
    values: dict[str, list[Any]] = field(default_factory=dict)
    _used: set[int] = field(default_factory=set)
    _taken: dict[str, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def take(self, fingerprint: str) -> RecordedCall | None:
        """The first unused recording with ``fingerprint`` (marked used), or None."""
        with self._lock:
            for call in self.calls:
                if call.index not in self._used and call.fingerprint == fingerprint:
                    self._used.add(call.index)
                    return call
        return None

    def nearest(self) -> RecordedCall | None:
        """The first unused recording: what the run should have asked next."""
        with self._lock:
            return next((c for c in self.calls if c.index not in self._used), None)

    def miss(self, call_index: int, endpoint: str, body: Any) -> Divergence:
        """The divergence of a request that matched no recording."""
        actual = canonical_request(endpoint, body)
        nearest = self.nearest()
        if nearest is None:
            return Divergence(
                self.trace_id,
                call_index,
                f"the recording has no call #{call_index} ({len(self.calls)} recorded); "
                "this run made more calls",
                actual=actual,
            )
        recorded = canonical_request(nearest.endpoint, nearest.request)
        # Paths are given inside the body (messages[1].content), the endpoint by name.
        path = (
            "endpoint"
            if recorded["endpoint"] != actual["endpoint"]
            else first_difference(recorded["body"], actual["body"])
        )
        return Divergence(
            self.trace_id,
            call_index,
            f"the request matches no recorded call (nearest: recorded call #{nearest.index})",
            recorded=recorded,
            actual=actual,
            path=path,
        )

    def unused(self) -> Divergence | None:
        """A divergence when recordings were left unused: the run made fewer calls."""
        left = self.nearest()
        if left is None:
            return None
        made = len(self._used)
        return Divergence(
            self.trace_id,
            left.index,
            f"recorded call #{left.index} was never made ({made} of {len(self.calls)} "
            "recorded calls replayed)",
            recorded=canonical_request(left.endpoint, left.request),
        )

    def value(self, kind: str) -> Any:
        """The next recorded ``ctx.now()``/``ctx.uuid()`` value, or ``_MISSING``."""
        with self._lock:
            taken = self._taken.get(kind, 0)
            recorded = self.values.get(kind, [])
            if taken >= len(recorded):
                return _MISSING
            self._taken[kind] = taken + 1
            return recorded[taken]


@dataclass(frozen=True)
class ReplayState:
    """A replayed run's recording and how misses are handled."""

    mode: RecordMode
    book: ReplayBook


SlotKey = tuple[str, str | None, int, str]
"""What a slot runs: (input, persona, iteration, replayed arguments); recordings are
matched on it, so a re-ordered inputs file still finds them."""


@dataclass(frozen=True)
class ReplaySource:
    """The recorded experiment a replay answers from: one book per slot key."""

    experiment_id: str
    mode: RecordMode
    books: dict[SlotKey, ReplayBook]

    def state_for(self, key: SlotKey) -> ReplayState:
        """The replay state of one slot (an empty book if the slot has no recording)."""
        book = self.books.get(key)
        if book is None:
            book = ReplayBook(f"(none: experiment {self.experiment_id} has no run {key!r})")
        return ReplayState(self.mode, book)


def is_missing(value: Any) -> bool:
    return value is _MISSING


def build_books(events: Iterable[StoredEvent], prefix: str) -> dict[str, ReplayBook]:
    """Trace stream id -> its book, from the recorded events of an experiment's traces."""
    books: dict[str, ReplayBook] = {}
    positions: dict[tuple[str, str], int] = {}
    for ev in events:
        book = books.get(ev.stream_id)
        if book is None:
            book = books[ev.stream_id] = ReplayBook(ev.stream_id[len(prefix) :])
        data = ev.data
        if ev.type == "TraceStarted":
            # A resumed run starts over: only its last start's calls are its recording.
            book.calls.clear()
            book.values.clear()
        elif ev.type == "ModelCallStarted":
            positions[(ev.stream_id, data["call_id"])] = len(book.calls)
            book.calls.append(
                RecordedCall(
                    index=len(book.calls),
                    fingerprint=data["fingerprint"],
                    endpoint=data.get("endpoint", "chat/completions"),
                    request=data["request"],
                    outcome="",
                    data={},
                )
            )
        elif ev.type in ("ModelCallCompleted", "ModelCallFailed"):
            position = positions.get((ev.stream_id, data["call_id"]))
            if position is not None:
                call = book.calls[position]
                book.calls[position] = RecordedCall(
                    call.index, call.fingerprint, call.endpoint, call.request, ev.type, data
                )
        elif ev.type == "ValueRecorded":
            book.values.setdefault(data["kind"], []).append(data["value"])
    return books
