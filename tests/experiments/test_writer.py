"""The group-commit writer never hangs and never lets a run append after it lost its slot."""

from __future__ import annotations

import threading
import time
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


def committed(store: EventStore, stream: str) -> list[str]:
    return [e.data["name"] for e in store.read_stream(stream)]


def test_the_submitting_thread_commits_what_is_due_between_its_runs(store: EventStore) -> None:
    writer = BatchWriter(store, max_batch=4)
    writer.commit_here()
    threads: list[str] = []
    callback = lambda result, error: threads.append(threading.current_thread().name)  # noqa: E731
    for n in range(3):
        writer.submit(AppendRequest("trace-c", [obs(n)], n), callback)
    writer.commit_due()  # three fresh requests: not a batch yet, not waited long enough
    assert committed(store, "trace-c") == []
    writer.submit(AppendRequest("trace-c", [obs(3)], 3), callback)
    writer.commit_due()  # a full batch: committed here, now
    assert committed(store, "trace-c") == [f"step {n}" for n in range(4)]
    writer.submit(AppendRequest("trace-c", [obs(4)], 4), callback)
    writer.close()  # what is left is committed by the closing thread
    assert committed(store, "trace-c")[-1] == "step 4"
    assert set(threads) == {threading.main_thread().name}


def test_the_writer_thread_commits_what_a_long_run_leaves_waiting(store: EventStore) -> None:
    writer = BatchWriter(store)
    writer.commit_here()
    writer.submit(AppendRequest("trace-l", [obs(1)], 0))
    # The run goes on without calling commit_due: the writer thread commits it meanwhile.
    deadline = time.monotonic() + 10
    while not committed(store, "trace-l") and time.monotonic() < deadline:
        time.sleep(0.01)
    assert committed(store, "trace-l") == ["step 1"]
    writer.close()


def test_both_committers_keep_each_stream_in_submission_order(store: EventStore) -> None:
    writer = BatchWriter(store, max_batch=7)
    writer.commit_here()
    errors: list[Any] = []
    callback = lambda result, error: errors.append(error)  # noqa: E731
    for n in range(300):
        writer.submit(AppendRequest(f"trace-{n % 3}", [obs(n)], n // 3), callback)
        if n % 5 == 0:
            time.sleep(0.001)  # some requests wait long enough for the writer thread
        writer.commit_due()
    writer.close()
    assert errors == [None] * 300
    for stream in range(3):
        names = committed(store, f"trace-{stream}")
        assert names == [f"step {n}" for n in range(stream, 300, 3)]


def test_what_arrives_after_close_is_dropped_and_never_waits(store: EventStore) -> None:
    writer = BatchWriter(store, max_pending=8)
    writer.submit(AppendRequest("trace-z", [obs(0)], 0))
    writer.close()
    errors: list[Any] = []
    callback = lambda result, error: errors.append(error)  # noqa: E731
    for n in range(1, 50):  # far beyond max_pending: none of it may block
        writer.submit(AppendRequest("trace-z", [obs(n)], n), callback)
    assert committed(store, "trace-z") == ["step 0"]
    assert writer.dropped == 49 and len(errors) == 49
    assert all(isinstance(e, StoreError) and "had ended" in str(e) for e in errors)
