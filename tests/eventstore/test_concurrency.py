"""Gap-free global order under concurrent writer processes, and survival of SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agentledger.eventstore import EventStore
from agentledger.eventstore.integrity import verify

WRITER = str(Path(__file__).parent.parent / "support" / "writer_proc.py")
pytestmark = pytest.mark.slow


def spawn_writer(url: str, stream: str, batches: int, size: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, WRITER, url, stream, str(batches), str(size)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )


def test_tailing_reader_sees_every_event_once_in_order_with_four_writers(
    store: EventStore, store_url: str
) -> None:
    writers, batches, size = 4, 60, 5
    expected = writers * batches * size
    procs = [spawn_writer(store_url, f"trace-w{n}", batches, size) for n in range(writers)]
    seen: list[tuple[int, str, int]] = []
    deadline = time.monotonic() + 120
    # The reader tails with the plain position cursor, exactly like a projection would.
    for event in store.subscribe(0, poll_interval=0.001, idle_timeout=30):
        seen.append((event.position, event.stream_id, event.stream_version))
        if len(seen) == expected or time.monotonic() > deadline:
            break
    for proc in procs:
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
    assert len(seen) == expected, "the tailing reader missed events"
    positions = [p for p, _, _ in seen]
    assert positions == sorted(set(positions)), "events seen twice or out of order"
    for n in range(writers):
        versions = [v for _, s, v in seen if s == f"trace-w{n}"]
        assert versions == list(range(1, batches * size + 1))
    assert [e.position for e in store.read_all()] == positions


def test_sigkill_during_appends_loses_no_committed_event_and_verifies(
    store: EventStore, store_url: str
) -> None:
    proc = spawn_writer(store_url, "trace-crash", 0, 20)
    assert proc.stdout is not None
    committed: list[int] = []
    while len(committed) < 30:
        line = proc.stdout.readline()
        assert line, proc.stderr.read() if proc.stderr else "writer died"
        committed.append(int(line))
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    reopened = EventStore.open(store_url)
    try:
        last = reopened.last_position()
        assert last >= committed[-1], "a committed append was lost"
        assert last % 20 == 0, "a half-written append is visible"
        report = verify(reopened)
        assert report.ok, [p.describe() for p in report.problems]
    finally:
        reopened.close()
