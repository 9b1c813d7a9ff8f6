"""Subprocess used by the concurrency and crash tests: appends batches and reports each commit.

usage: python writer_proc.py STORE_URL STREAM BATCHES BATCH_SIZE
Prints the last position of every committed append, one per line, flushed immediately.
BATCHES of 0 means "until killed".
"""

from __future__ import annotations

import itertools
import sys

from agentledger.events.payloads import ObservationRecorded
from agentledger.eventstore import EventStore


def main() -> None:
    url, stream, batches, size = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    store = EventStore.open(url)
    counter = itertools.count(1) if batches == 0 else range(1, batches + 1)
    for n in counter:
        payloads = [
            ObservationRecorded(
                observation_id=f"{stream}-{n}-{i}",
                kind="event",
                name=f"batch {n} item {i}",
                timestamp="2026-01-01T00:00:00Z",
                data={"padding": "x" * 64},
            )
            for i in range(size)
        ]
        result = store.append(stream, payloads)
        print(result.last_position, flush=True)
    store.close()


if __name__ == "__main__":
    main()
