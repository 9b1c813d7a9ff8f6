"""Where a runner's slots come from: the plan in order (one process), or claims on the
board (a worker of a shared experiment, see ``runner.workers``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from agentledger.events.payloads import TraceStarted
from agentledger.events.streams import trace_stream
from agentledger.experiments.plan import Slot
from agentledger.experiments.writer import Callback


@dataclass(frozen=True)
class Assignment:
    """A slot handed to a run, and where in its trace stream the run appends."""

    slot: Slot
    version: int = 0
    """Version of the trace stream the run appends after."""
    fence: Callable[[TraceStarted, Mapping[str, Any]], int | None] | None = None
    """For a slot taken over from another worker: appends ``TraceStarted`` at once against
    the stream's head and returns the version after it, or None when the slot turned out
    finished (or lost again); the run then does not happen."""
    on_final: Callback | None = None
    """Called once the run's final event is committed (or refused)."""


class SlotFeed(Protocol):
    """Hands out the slots to run, one at a time; None when there are no more."""

    async def take(self) -> Assignment | None: ...


class PlannedFeed:
    """Slots of a plan (or the rest of one) handed out in plan order."""

    def __init__(self, slots: Iterator[Slot], heads: Mapping[str, tuple[int, str]]) -> None:
        self._slots = slots
        self._heads = heads

    async def take(self) -> Assignment | None:
        slot = next(self._slots, None)
        if slot is None:
            return None
        return Assignment(slot, self._heads.get(trace_stream(slot.trace_id), (0, ""))[0])
