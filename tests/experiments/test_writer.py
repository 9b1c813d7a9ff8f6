"""The group-commit writer never hangs and never lets a run append after it lost its slot."""

from __future__ import annotations

from typing import Any

import pytest

from agentledger.events.payloads import ObservationRecorded
from agentledger.eventstore import EventStore
from agentledger.eventstore.errors import ConcurrencyError, StoreError
from agentledger.eventstore.store import AppendRequest
from agentledger.experiments.writer import BatchWriter


def obs(n: int) -> ObservationRecorded:
    return ObservationRecorded(
        observation_id=f"o{n}", kind="event", name=f"step {n}", timestamp="2026-01-01T00:00:00Z"
    )


def test_an_append_that_raises_anything_fails_flush_instead_of_hanging(
    store: EventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(requests: Any) -> Any:
        raise TypeError("str is not valid UTF-8: surrogates not allowed")

    monkeypatch.setattr(store, "append_batch", broken)
    writer = BatchWriter(store)
    writer.submit(AppendRequest("trace-a", [obs(1)], 0))
    with pytest.raises(StoreError, match="recording events failed: str is not valid UTF-8"):
        writer.flush()
    with pytest.raises(StoreError):
        writer.submit(AppendRequest("trace-a", [obs(2)], 1))
    with pytest.raises(StoreError):
        writer.close()


def test_after_a_refused_append_the_same_run_appends_nothing_more_to_that_stream(
    store: EventStore,
) -> None:
    # Another process (a second --resume) took the slot: it appended first.
    store.append("trace-s", [obs(1)])
    loser, errors = object(), []
    writer = BatchWriter(store)
    callback = lambda result, error: errors.append(error)  # noqa: E731
    writer.submit(AppendRequest("trace-s", [obs(2)], 0), callback, owner=loser)
    # Its next append would fit the stream's version now, and must still be refused.
    writer.submit(AppendRequest("trace-s", [obs(3)], 1), callback, owner=loser)
    writer.submit(AppendRequest("trace-other", [obs(4)], 0), callback, owner=loser)
    writer.close()
    assert [type(e) for e in errors] == [ConcurrencyError, ConcurrencyError, type(None)]
    assert [e.data["name"] for e in store.read_stream("trace-s")] == ["step 1"]
    assert writer.refused == 1
