"""Event store throughput against raw sqlite3 on the same schema and payloads.

Prints, per round and as medians: SQLite append (10 events per transaction, and one bulk
transaction), read-all, and PostgreSQL append with the ordering guarantee on (advisory
lock, durable server settings). Targets: append >= 0.7x raw at both batch sizes,
read-all >= 0.8x raw with flat memory, PostgreSQL >= 6,000 events/s (10 events/txn).

    python benchmarks/bench_eventstore.py [--rounds 5] [--events 20000] [--no-postgres]
"""

from __future__ import annotations

import argparse
import shutil
import sqlite3
import tracemalloc
import uuid
from pathlib import Path

from benchlib import repo_first

repo_first()

import orjson  # noqa: E402
from benchlib import machine, median, timed, work_dir  # noqa: E402

from agentledger.events.payloads import ObservationRecorded  # noqa: E402
from agentledger.eventstore import EventStore  # noqa: E402
from agentledger.eventstore.envelope import utc_now  # noqa: E402

BATCH = 10


def payloads(count: int) -> list[ObservationRecorded]:
    return [
        ObservationRecorded(
            observation_id=f"obs-{n}",
            kind="event",
            name="model_call",
            timestamp="2026-11-21T10:00:00.000000Z",
            data={"tokens": n % 500, "model": "mock:echo", "text": "lorem ipsum " * 8},
        )
        for n in range(count)
    ]


def fresh_store(path: Path) -> EventStore:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    return EventStore.open(str(path))


def raw_connection(path: Path) -> sqlite3.Connection:
    """Same file layout as the store (created by the migrations), same pragmas."""
    fresh_store(path).close()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    return conn


RAW_INSERT = (
    "INSERT INTO events (position, event_id, stream_id, stream_version, type, schema_version, "
    "correlation_id, data, metadata, recorded_at, hash) VALUES (?,?,?,?,?,?,?,?,?,?,?)"
)


def raw_append(conn: sqlite3.Connection, items: list[ObservationRecorded], batch: int) -> None:
    """What a hand-written writer does: encode, number, executemany, commit per batch."""
    meta = orjson.dumps({"correlation_id": "exp-bench"}).decode()
    position = 0
    for start in range(0, len(items), batch):
        chunk = items[start : start + batch]
        now = utc_now()
        rows = []
        for item in chunk:
            position += 1
            rows.append(
                (
                    position,
                    str(uuid.uuid4()),
                    "trace-bench",
                    position,
                    "ObservationRecorded",
                    1,
                    "exp-bench",
                    orjson.dumps(item.model_dump()).decode(),
                    meta,
                    now,
                    "",
                )
            )
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(RAW_INSERT, rows)
        conn.execute("COMMIT")


def store_append(store: EventStore, items: list[ObservationRecorded], batch: int) -> None:
    meta = {"correlation_id": "exp-bench"}
    for start in range(0, len(items), batch):
        store.append("trace-bench", items[start : start + batch], metadata=meta)


def raw_read(path: Path, page: int = 2000) -> int:
    conn = sqlite3.connect(path)
    after, count = 0, 0
    while True:
        rows = conn.execute(
            "SELECT position, event_id, stream_id, stream_version, type, schema_version, data, "
            "metadata, recorded_at, hash FROM events WHERE position > ? ORDER BY position "
            "LIMIT ?",
            (after, page),
        ).fetchall()
        for row in rows:
            orjson.loads(row[6])
            orjson.loads(row[7])
            count += 1
        if len(rows) < page:
            conn.close()
            return count
        after = rows[-1][0]


def store_read(store: EventStore) -> int:
    return sum(1 for _ in store.read_all())


def peak_read_memory(store: EventStore, limit: int) -> int:
    tracemalloc.start()
    for count, _ in enumerate(store.read_all(), start=1):
        if count >= limit:
            break
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


def bench_sqlite(rounds: int, count: int) -> dict[str, float]:
    work = work_dir("eventstore")
    items = payloads(count)
    results: dict[str, list[float]] = {}

    def add(key: str, value: float) -> None:
        results.setdefault(key, []).append(value)

    for r in range(rounds):
        for batch, label in ((BATCH, "append10"), (count, "bulk")):
            conn = raw_connection(work / "raw.db")
            raw_s = timed(lambda conn=conn, batch=batch: raw_append(conn, items, batch))
            conn.close()
            store = fresh_store(work / "store.db")
            ours_s = timed(lambda store=store, batch=batch: store_append(store, items, batch))
            store.close()
            add(f"{label}_raw", count / raw_s)
            add(f"{label}_ours", count / ours_s)
            add(f"{label}_ratio", raw_s / ours_s)
        store = EventStore.open(str(work / "store.db"))
        raw_s = timed(lambda: raw_read(work / "store.db"))
        ours_s = timed(lambda store=store: store_read(store))
        add("read_raw", count / raw_s)
        add("read_ours", count / ours_s)
        add("read_ratio", raw_s / ours_s)
        store.close()
        print(
            f"round {r + 1}: append10 {results['append10_ratio'][-1]:.2f}x  "
            f"bulk {results['bulk_ratio'][-1]:.2f}x  read {results['read_ratio'][-1]:.2f}x",
            flush=True,
        )
    # Flat memory: peak while reading 1/4 of the log vs the whole log.
    store = EventStore.open(str(work / "store.db"))
    quarter, whole = peak_read_memory(store, count // 4), peak_read_memory(store, count)
    store.close()
    out = {k: median(v) for k, v in results.items()}
    out["mem_quarter_kb"] = quarter / 1024
    out["mem_whole_kb"] = whole / 1024
    shutil.rmtree(work, ignore_errors=True)
    return out


def bench_postgres(rounds: int, count: int) -> float | None:
    from tests.support.pgserver import PostgresCluster, find_bindir

    bindir = find_bindir()
    if bindir is None:
        print("PostgreSQL binaries not found: skipping the PostgreSQL figure")
        return None
    cluster = PostgresCluster(bindir, durable=True).start()
    items = payloads(count)
    rates = []
    try:
        for _ in range(rounds):
            store = EventStore.open(cluster.create_database("bench"))
            seconds = timed(lambda store=store: store_append(store, items, BATCH))
            store.close()
            rates.append(count / seconds)
            print(f"PostgreSQL round {len(rates)}: {rates[-1]:,.0f} ev/s", flush=True)
    finally:
        cluster.stop()
    return median(rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args()
    print(f"machine: {machine()}")
    print(f"{args.events} events per measurement, {args.rounds} rounds, medians below")
    s = bench_sqlite(args.rounds, args.events)
    print(
        f"SQLite append, 10/txn : {s['append10_ours']:>9,.0f} ev/s vs raw "
        f"{s['append10_raw']:>9,.0f} ev/s = {s['append10_ratio']:.2f}x (target >= 0.70x)"
    )
    print(
        f"SQLite append, bulk   : {s['bulk_ours']:>9,.0f} ev/s vs raw "
        f"{s['bulk_raw']:>9,.0f} ev/s = {s['bulk_ratio']:.2f}x (target >= 0.70x)"
    )
    print(
        f"SQLite read-all       : {s['read_ours']:>9,.0f} ev/s vs raw "
        f"{s['read_raw']:>9,.0f} ev/s = {s['read_ratio']:.2f}x (target >= 0.80x)"
    )
    print(
        f"read-all peak memory  : {s['mem_quarter_kb']:,.0f} KiB for 1/4 of the log, "
        f"{s['mem_whole_kb']:,.0f} KiB for all of it (flat = about equal)"
    )
    if not args.no_postgres:
        rate = bench_postgres(args.rounds, args.events)
        if rate is not None:
            print(
                f"PostgreSQL append 10/txn, gap-free, durable: {rate:,.0f} ev/s (target >= 6,000)"
            )


if __name__ == "__main__":
    main()
