"""Fault injection for tests: hold a process at an exact append.

``AGENTLEDGER_FAULT_HOLD=TYPE:N:PATH`` stops the process that is about to append its N-th
event of type ``TYPE`` (counted in that process) just before that append: it creates
``PATH.held``, waits until ``PATH`` no longer exists (at most ``HOLD_SECONDS``), then
appends as usual. A test uses it to put another process's action (a SIGKILL, a reader
opening and closing the store) at a chosen point of a run, where timing alone would make
a race a matter of luck. Unset, as outside tests, it costs nothing: the variable is read
once, when a store is opened.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from pathlib import Path

from agentledger.eventstore.errors import StoreError

HOLD_VARIABLE = "AGENTLEDGER_FAULT_HOLD"
HOLD_SECONDS = 120.0
"""The longest a held process waits: a test that forgot to release it does not hang."""


class AppendHold:
    """Where one process stops once: before its ``count``-th append of ``event_type``."""

    def __init__(self, event_type: str, count: int, path: Path) -> None:
        self.event_type = event_type
        self.count = count
        self.path = path
        self.seen = 0
        self.done = False

    @classmethod
    def from_environment(cls) -> AppendHold | None:
        value = os.environ.get(HOLD_VARIABLE)
        if not value:
            return None
        event_type, _, rest = value.partition(":")
        count, _, path = rest.partition(":")
        if not event_type or not count.isdigit() or int(count) < 1 or not path:
            raise StoreError(f"{HOLD_VARIABLE}={value!r}: expected TYPE:N:PATH (N >= 1)")
        return cls(event_type, int(count), Path(path))

    def before_append(self, types: Iterable[str]) -> None:
        """Called before every append with its events' types: wait here if it is the one."""
        if self.done:
            return
        self.seen += sum(1 for event_type in types if event_type == self.event_type)
        if self.seen < self.count:
            return
        self.done = True
        self.path.with_name(self.path.name + ".held").touch()
        deadline = time.monotonic() + HOLD_SECONDS
        while self.path.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
