"""PostgreSQL's append protocol: one statement per append, on one kept connection.

Each process appends through one autocommit connection (no pool checkout, no autocommit
switching per append) and remembers the last (version, hash) it appended to each of its
recent streams. ``agentledger_append`` (migration 0003) takes the append lock, checks the
heads the chain was hashed from, numbers and inserts the rows and commits, in one round
trip; a wrong guess is refused with the actual heads, and the append is hashed again from
those. A connection left idle is checked before use; a forked child starts afresh.
"""

from __future__ import annotations

import contextlib
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from sqlalchemy.engine import Engine

from agentledger.eventstore.appending import (
    ANY_VERSION,
    NO_STREAM,
    DriverSQL,
    Prepared,
    chain,
    raise_if_duplicate,
)
from agentledger.eventstore.envelope import GENESIS_HASH, AppendResult
from agentledger.eventstore.errors import ConcurrencyError, StoreError

APPEND_LOCK_KEY = 0x61676C65  # pg advisory lock serialising appends ("agle")
MIGRATE_LOCK_KEY = 0x61676C6D  # pg advisory lock serialising schema upgrades ("aglm")
NOTIFY_CHANNEL = "agentledger_events"
IDLE_CHECK_S = 30.0
"""PostgreSQL: an append connection unused this long is checked before it is used."""

APPEND_ATTEMPTS = 50
"""PostgreSQL: how often an append is hashed again after its streams moved under it."""


def text_array(values: Sequence[str | None]) -> str:
    """A PostgreSQL text[] literal, quoted with C-level string operations: ten times cheaper
    than the driver's own array adaptation, which matters for every append.

    Without NULLs the values are joined on NUL (which PostgreSQL text cannot hold) and the
    whole literal is escaped in three passes; otherwise element by element."""
    if not values:
        return "{}"
    if None not in values:
        joined = "\x00".join(values)  # type: ignore[arg-type]
        if joined.count("\x00") == len(values) - 1:
            escaped = joined.replace("\\", "\\\\").replace('"', '\\"')
            return '{"' + escaped.replace("\x00", '","') + '"}'
    return (
        "{"
        + ",".join(
            "NULL" if v is None else '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
            for v in values
        )
        + "}"
    )


def int_array(values: Iterable[int]) -> str:
    """A PostgreSQL integer[] literal."""
    return "{" + ",".join(map(str, values)) + "}"


class AppendChannel:
    """How this process appends to PostgreSQL: one autocommit connection kept for appends
    (no pool checkout, no autocommit switching per append) and the last (version, hash) it
    appended to each of its most recent streams, hints for the next append that the
    database checks. Both are used under ``lock``; the database's append lock serialises
    appends anyway, across processes."""

    def __init__(self, engine: Engine, size: int = 4096) -> None:
        self._engine = engine
        self._size = size
        self.lock = threading.Lock()
        self._heads: OrderedDict[str, tuple[int, str]] = OrderedDict()
        self._connection: Any = None
        self._cursor: Any = None
        self._used_at = 0.0

    def cursor(self) -> Any:
        """The appends' cursor, connecting first if needed; after ``IDLE_CHECK_S`` unused,
        checked with a round trip first (a server or firewall may have dropped an idle
        connection, and a failure then is safe to retry: nothing was sent). Call with
        ``lock`` held."""
        now = time.monotonic()
        if self._cursor is not None and now - self._used_at > IDLE_CHECK_S:
            try:
                self._cursor.execute("SELECT 1")
                self._cursor.fetchall()
            except Exception:
                self.discard()
        self._used_at = now
        if self._cursor is None:
            connection = self._engine.raw_connection()
            driver = connection.driver_connection
            connection.detach()  # kept for appends, closed by discard(), never pooled
            try:
                driver.autocommit = True  # type: ignore[union-attr]
                self._cursor = connection.cursor()
            except BaseException:
                connection.close()
                raise
            self._connection = connection
        return self._cursor

    def discard(self) -> None:
        """Close the connection (after an error it may be broken); the next append opens
        a new one. Call with ``lock`` held, or when no other thread can append."""
        connection, self._connection, self._cursor = self._connection, None, None
        if connection is not None:
            with contextlib.suppress(Exception):
                connection.close()

    def forget_after_fork(self) -> None:
        """In a forked child: a new lock (a copy may be held), no heads, and the parent's
        connection dropped unclosed (closing it would end the parent's session)."""
        self.lock = threading.Lock()
        self._heads = OrderedDict()
        self._connection = self._cursor = None

    def head(self, stream_id: str) -> tuple[int, str] | None:
        return self._heads.get(stream_id)

    def put_head(self, stream_id: str, head: tuple[int, str]) -> None:
        self._heads[stream_id] = head
        self._heads.move_to_end(stream_id)
        if len(self._heads) > self._size:
            self._heads.popitem(last=False)


def after_fork_in_child(
    engine_ref: weakref.ref[Engine], channel_ref: weakref.ref[AppendChannel]
) -> None:
    engine, channel = engine_ref(), channel_ref()
    if engine is not None:
        engine.dispose(close=False)
    if channel is not None:
        channel.forget_after_fork()


def append_on(
    channel: AppendChannel,
    sql: DriverSQL,
    prepared: list[Prepared],
    recorded_at: str,
    driver_errors: type[Exception],
) -> list[AppendResult]:
    """Append ``prepared`` through ``channel``'s connection (call with its lock held)."""
    streams: dict[str, int] = {}
    for item in prepared:
        streams.setdefault(item.request.stream_id, item.request.expected_version)
    heads: dict[str, tuple[int, str]] = {}
    unknown = []
    for stream_id, expected in streams.items():
        head = channel.head(stream_id)
        if head is None and expected in (ANY_VERSION, NO_STREAM):
            head = (0, GENESIS_HASH)
        if head is None or expected not in (ANY_VERSION, head[0]):
            unknown.append(stream_id)
        else:
            heads[stream_id] = head
    verified = not heads
    cursor = channel.cursor()
    for stream_id in unknown:
        cursor.execute(sql.head, (stream_id,))
        heads[stream_id] = cursor.fetchone() or (0, GENESIS_HASH)
    for _attempt in range(APPEND_ATTEMPTS):
        try:
            rows, results = chain(prepared, heads, 1, recorded_at)
        except ConcurrencyError:
            if verified:
                raise
            rows = []  # a guessed head may be stale: ask the server below
        versions, hashes = zip(*heads.values(), strict=True)
        if not rows:  # a head that can never match: the answer is the actual heads
            versions, hashes = (-1,) * len(heads), (None,) * len(heads)
        columns = list(zip(*rows, strict=True)) or [()] * 11
        arguments = (
            APPEND_LOCK_KEY,
            text_array(list(heads)),
            int_array(versions),
            text_array(hashes),
            *(text_array(columns[i]) for i in (1, 2)),
            int_array(columns[3]),
            text_array(columns[4]),
            int_array(columns[5]),
            *(text_array(columns[i]) for i in (6, 7, 8, 10)),
            recorded_at,
        )
        try:
            cursor.execute(sql.append, arguments)
        except driver_errors as exc:
            raise_if_duplicate(exc, rows)
            raise
        answer = cursor.fetchall()
        if rows and answer[0][0] is not None:
            shift = answer[0][0] - 1
            for result in results:
                channel.put_head(result.stream_id, (result.version, result.hash))
            return [
                AppendResult(
                    r.stream_id,
                    r.first_position + shift,
                    r.last_position + shift,
                    r.version,
                    r.hash,
                )
                for r in results
            ]
        heads = {stream_id: (version, hash_) for _, stream_id, version, hash_ in answer}
        verified = True
    raise StoreError(
        f"streams {', '.join(streams)} kept changing under {APPEND_ATTEMPTS} append "
        "attempts; append with an expected version or retry later"
    )


def listen(engine: Engine) -> Callable[[float], None]:
    """A waiter on the store's NOTIFY channel: ``wait(timeout)`` returns when an append
    committed or ``timeout`` passed; ``wait(-1)`` closes it."""
    raw = engine.raw_connection()
    driver: Any = raw.driver_connection
    driver.autocommit = True
    driver.execute(f"LISTEN {NOTIFY_CHANNEL}")

    def wait(timeout: float) -> None:
        if timeout < 0:
            raw.close()
            return
        for _ in driver.notifies(timeout=timeout, stop_after=1):
            pass

    return wait
