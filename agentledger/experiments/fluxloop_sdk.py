"""Agents written with the FluxLoop SDK: what its decorators observe goes into the log.

FluxLoop's decorators (``@fluxloop.agent``, ``@fluxloop.tool``, ``@fluxloop.prompt``,
``@fluxloop.trace``) record an observation when the decorated call ends, into the
``fluxloop.instrument`` context of the current run, which hands it to the SDK's buffer
(``EventBuffer.get_instance()``, a process-wide singleton that normally sends it to a
collector or to offline files). When the target's project imports the SDK, agentledger
puts its own buffer in that singleton's place and runs every call of the target inside
``fluxloop.instrument``: each observation the SDK hands over is appended to the trace of
the run executing it (found through agentledger's run context variable, so it is right
under ``--parallel``, in workers and in replays) as an ``SdkObservationRecorded`` event,
as the SDK serialises it. No collector, no offline files, nothing re-read after a run.
"""

from __future__ import annotations

import importlib
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from enum import Enum
from typing import Any
from uuid import UUID

import orjson

from agentledger.errors import TargetError
from agentledger.events.payloads import SdkObservationRecorded
from agentledger.experiments.context import current_context, jsonable

SDK = "fluxloop"
EXTRA = "pip install 'agentledger[fluxloop]'"

_installed_lock = threading.Lock()


def missing_sdk(spec: str) -> TargetError:
    """The error for a target whose project imports the SDK when it is not installed."""
    return TargetError(
        f"target {spec} uses the FluxLoop SDK (import fluxloop), which is not installed; "
        f"install it with: {EXTRA}"
    )


def in_use() -> bool:
    """Whether the SDK has been imported in this process (by the target's project)."""
    return SDK in sys.modules


def _plain(value: Any) -> Any:
    """The SDK's serialised values made JSON-safe (enums, ids and times as text): one
    round trip through orjson, which writes those as ``_walk`` does; what it cannot write
    (an integer beyond 64 bits, a lone surrogate) is walked in Python."""
    try:
        return orjson.loads(orjson.dumps(value, default=_other, option=orjson.OPT_NON_STR_KEYS))
    except orjson.JSONEncodeError:
        return _walk(value)


def _other(value: Any) -> Any:
    """What orjson does not write itself (sets, models, any object), as ``jsonable`` has it."""
    return jsonable(value)


def _walk(value: Any) -> Any:
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, (UUID, datetime)):
        return str(value) if isinstance(value, UUID) else value.isoformat()
    if isinstance(value, dict):
        return {str(k): _walk(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_walk(v) for v in value]
    return jsonable(value)


class LedgerBuffer:
    """Stands in for the SDK's ``EventBuffer``: observations go to the current run's trace."""

    def __init__(self, serialize: Any) -> None:
        self._serialize = serialize
        self.dropped = 0
        """Observations made outside any run (nothing to attach them to)."""

    def add_observation(self, trace_id: Any, observation: Any) -> None:
        run = current_context()
        if run is None:
            self.dropped += 1
            return
        record = _plain(self._serialize(observation))
        run.record_event(
            SdkObservationRecorded(sdk=SDK, observation=record, turn_index=run.turn_index)
        )

    def add_trace(self, trace: Any) -> None:
        """The SDK's trace is the run's own trace: nothing more to record."""

    def flush_if_needed(self) -> None:
        """Every observation is recorded as it arrives: nothing buffered."""

    def flush(self) -> None:
        """Every observation is recorded as it arrives: nothing buffered."""

    def shutdown(self) -> None:
        """Nothing to stop: no thread, no collector."""


def install() -> None:
    """Put agentledger's buffer in place of the SDK's (once per process). Raises
    ``TargetError`` if the installed SDK is not one this works with."""
    with _installed_lock:
        try:
            buffer_module = importlib.import_module("fluxloop.buffer")
            serialization = importlib.import_module("fluxloop.serialization")
            event_buffer = buffer_module.EventBuffer
            serialize = serialization.serialize_observation
        except (ImportError, AttributeError) as exc:
            raise TargetError(
                f"the installed FluxLoop SDK is not a supported version ({exc}); "
                f"install the supported one with: {EXTRA}"
            ) from None
        if isinstance(event_buffer._instance, LedgerBuffer):
            return
        previous = event_buffer._instance
        event_buffer._instance = LedgerBuffer(serialize)
        if previous is not None:
            # The project made the SDK's own buffer before any run: stop its flush thread
            # and empty it, so that its exit flush writes no offline files.
            previous.stop_event.set()
            previous.traces.clear()
            previous.observations.clear()


@contextmanager
def instrumented(name: str) -> Iterator[None]:
    """Run a call of the target inside ``fluxloop.instrument(name)``."""
    fluxloop = sys.modules[SDK]
    with fluxloop.instrument(name):
        yield
