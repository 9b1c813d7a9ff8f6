"""EventStore: append with optimistic concurrency, ordered reads, subscriptions, checkpoints.

Global order: every append runs in a serialised write transaction (``BEGIN IMMEDIATE`` on
SQLite, a transaction-scoped advisory lock on PostgreSQL) and numbers its events
``max(position) + 1 ...`` inside it. Positions therefore become visible in commit order:
a reader that has seen position N can never later meet an event below N.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, NamedTuple

import orjson
from sqlalchemy import and_, func, or_, select
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

import migrations
from eventstore.engine import (
    WRITE_OPTION,
    StoreURL,
    create_store_engine,
    parse_store_url,
    translate_error,
)
from eventstore.envelope import (
    GENESIS_HASH,
    AppendResult,
    FoldEvent,
    StoredEvent,
    chain_hash,
    encode_json,
    new_event_ids,
    utc_now,
)
from eventstore.errors import (
    ConcurrencyError,
    EventValidationError,
    SchemaTooNewError,
    StoreError,
    StoreUnavailableError,
)
from eventstore.payloads import Payload
from eventstore.redaction import Redactor
from eventstore.schema import checkpoints, events

ANY_VERSION = -1
"""``expected_version`` that skips the optimistic-concurrency check."""
NO_STREAM = 0
"""``expected_version`` for a stream that must not exist yet."""

_APPEND_LOCK_KEY = 0x61676C65  # pg advisory lock serialising appends ("agle")
_MIGRATE_LOCK_KEY = 0x61676C6D  # pg advisory lock serialising schema upgrades ("aglm")
NOTIFY_CHANNEL = "agentledger_events"
_TOOL_VERSION = "0.1.0"

_COLUMNS = (
    events.c.position,
    events.c.event_id,
    events.c.stream_id,
    events.c.stream_version,
    events.c.type,
    events.c.schema_version,
    events.c.data,
    events.c.metadata,
    events.c.recorded_at,
    events.c.hash,
)


class AppendRequest(NamedTuple):
    """One stream's share of an ``append_batch``."""

    stream_id: str
    payloads: Sequence[Payload]
    expected_version: int = ANY_VERSION
    metadata: Mapping[str, Any] | None = None


class RawEvent(NamedTuple):
    """A row exactly as stored (JSON still as text); what integrity checks and export read."""

    position: int
    event_id: str
    stream_id: str
    stream_version: int
    type: str
    schema_version: int
    data_json: str
    metadata_json: str
    recorded_at: str
    hash: str

    def expected_hash(self, prev_hash: str) -> str:
        """The hash this event should carry if it follows ``prev_hash``."""
        return chain_hash(
            prev_hash,
            self.event_id,
            self.stream_id,
            self.type,
            self.schema_version,
            self.recorded_at,
            self.data_json,
            self.metadata_json,
        )

    def decode(self) -> StoredEvent:
        return _decode_row(self)


_new_tuple = tuple.__new__
_loads = orjson.loads


def _decode_row(row: Sequence[Any]) -> StoredEvent:
    # tuple.__new__ builds the NamedTuple in C: reading is dominated by the driver, not us.
    return _new_tuple(
        StoredEvent,
        (
            row[0],
            row[1],
            row[2],
            row[3],
            row[4],
            row[5],
            _loads(row[6]),
            _loads(row[7]),
            row[8],
            row[9],
        ),
    )


def _fold_row(row: Sequence[Any]) -> FoldEvent:
    return _new_tuple(FoldEvent, (row[0], row[1], row[2], row[3], row[4], _loads(row[5]), row[6]))


def _raw_row(row: Sequence[Any]) -> RawEvent:
    return _new_tuple(RawEvent, row)


_COLUMN_LIST = (
    "position, event_id, stream_id, stream_version, type, schema_version, data, metadata, "
    "recorded_at, hash"
)


_FOLD_COLUMN_LIST = "position, stream_id, stream_version, type, schema_version, data, recorded_at"


class _DriverSQL:
    """Hot-path statements as driver SQL, built once per dialect (no per-call compilation)."""

    multi_row = 500
    """Rows per multi-row INSERT on PostgreSQL (11 parameters each, under its 65,535 cap)."""

    append = ""
    """PostgreSQL: the whole append in one statement (migration 0003)."""

    def __init__(self, marker: str) -> None:
        m = self.marker = marker
        self.head = (
            f"SELECT stream_version, hash FROM events WHERE stream_id = {m} "
            "ORDER BY stream_version DESC LIMIT 1"
        )
        self.max_position = "SELECT coalesce(max(position), 0) FROM events"
        self.head_and_max = (
            "SELECT (SELECT coalesce(max(position), 0) FROM events), h.stream_version, h.hash "
            f"FROM (SELECT 1 AS one) AS o LEFT JOIN (SELECT stream_version, hash FROM events "
            f"WHERE stream_id = {m} ORDER BY stream_version DESC LIMIT 1) AS h ON 1 = 1"
        )
        self.insert = (
            "INSERT INTO events (position, event_id, stream_id, stream_version, type, "
            "schema_version, correlation_id, data, metadata, recorded_at, hash) VALUES "
        )
        self.row = f"({', '.join([m] * 11)})"
        if m == "%s":
            # Arrays go as literals built by _text_array / _int_array.
            self.append = (
                "SELECT * FROM agentledger_append(%s, %s::text[], %s::integer[], %s::text[], "
                "%s::text[], %s::text[], %s::integer[], %s::text[], %s::integer[], %s::text[], "
                "%s::text[], %s::text[], %s::text[], %s)"
            )
        self.page = (
            f"SELECT {_COLUMN_LIST} FROM events WHERE position > {m} ORDER BY position LIMIT {m}"
        )


_SQL = {"sqlite": _DriverSQL("?"), "postgresql": _DriverSQL("%s")}

_IDLE_CHECK_S = 30.0
"""PostgreSQL: an append connection unused this long is checked before it is used."""

_APPEND_ATTEMPTS = 50
"""PostgreSQL: how often an append is hashed again after its streams moved under it."""


class _Prepared(NamedTuple):
    """One request of an append, encoded and redacted, waiting for its stream heads."""

    request: AppendRequest
    correlation_id: str | None
    metadata_json: str
    events: list[tuple[str, str, int, str]]
    """(event_id, type, schema_version, data JSON) per event."""


def _chain(
    prepared: Sequence[_Prepared],
    heads: Mapping[str, tuple[int, str]],
    first_position: int,
    recorded_at: str,
) -> tuple[list[tuple[Any, ...]], list[AppendResult]]:
    """Number and hash an append's events from the streams' ``heads`` (version, hash),
    checking each request's expected version. Returns the rows and the results."""
    heads = dict(heads)
    rows: list[tuple[Any, ...]] = []
    results = []
    position = first_position - 1
    for request, correlation_id, metadata_json, events_json in prepared:
        stream_id = request.stream_id
        version, prev_hash = heads[stream_id]
        expected = request.expected_version
        if expected != ANY_VERSION and expected != version:
            raise ConcurrencyError(stream_id, expected, version)
        start = position + 1
        for event_id, event_type, schema_version, data_json in events_json:
            position += 1
            version += 1
            prev_hash = chain_hash(
                prev_hash,
                event_id,
                stream_id,
                event_type,
                schema_version,
                recorded_at,
                data_json,
                metadata_json,
            )
            rows.append(
                (
                    position,
                    event_id,
                    stream_id,
                    version,
                    event_type,
                    schema_version,
                    correlation_id,
                    data_json,
                    metadata_json,
                    recorded_at,
                    prev_hash,
                )
            )
        heads[stream_id] = (version, prev_hash)
        results.append(AppendResult(stream_id, start, position, version, prev_hash))
    return rows, results


def _text_array(values: Sequence[str | None]) -> str:
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


def _int_array(values: Iterable[int]) -> str:
    """A PostgreSQL integer[] literal."""
    return "{" + ",".join(map(str, values)) + "}"


def _prefix_upper(prefix: str) -> str:
    """The smallest string above every string that starts with ``prefix``."""
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)


def _raise_if_duplicate(exc: Exception, rows: Sequence[tuple[Any, ...]]) -> None:
    """Turn a unique violation on insert into the store's own error for it."""
    detail = str(exc).lower()
    if not rows or ("unique" not in detail and "duplicate" not in detail):
        return
    if "event_id" in detail:
        message = "an event with the same event_id is already in the store"
        raise EventValidationError(message) from exc
    stream, version = rows[0][2], rows[0][3]
    raise ConcurrencyError(stream, version - 1, -1) from exc


class _AppendChannel:
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
        """The appends' cursor, connecting first if needed; after ``_IDLE_CHECK_S`` unused,
        checked with a round trip first (a server or firewall may have dropped an idle
        connection, and a failure then is safe to retry: nothing was sent). Call with
        ``lock`` held."""
        now = time.monotonic()
        if self._cursor is not None and now - self._used_at > _IDLE_CHECK_S:
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


def _after_fork_in_child(
    engine_ref: weakref.ref[Engine], channel_ref: weakref.ref[_AppendChannel]
) -> None:
    engine, channel = engine_ref(), channel_ref()
    if engine is not None:
        engine.dispose(close=False)
    if channel is not None:
        channel.forget_after_fork()


class EventStore:
    """An append-only event log in SQLite or PostgreSQL. Thread-safe; share one per process."""

    def __init__(self, engine: Engine, location: StoreURL, redactor: Redactor | None = None):
        self._engine = engine
        self.location = location
        self._sql = _SQL[location.backend]
        self._appends = _AppendChannel(engine)
        # A forked child (a local worker) must not use or close the parent's connections,
        # nor inherit an append lock another thread held at the fork.
        engine_ref, channel_ref = weakref.ref(engine), weakref.ref(self._appends)
        os.register_at_fork(after_in_child=lambda: _after_fork_in_child(engine_ref, channel_ref))
        self.redactor = redactor or Redactor()
        self._base_metadata = {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "tool_version": _TOOL_VERSION,
        }

    # --- opening --------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        url: str,
        *,
        redactor: Redactor | None = None,
        create: bool = True,
        schema: str = "upgrade",
        pooled: bool = True,
    ) -> EventStore:
        """Open (and, if allowed, create and migrate) the store at ``url``.

        ``create=False`` refuses a SQLite file that does not exist yet. ``schema`` says what
        to do with an older schema: ``upgrade`` it, ``require`` the newest (refuse), or
        ``skip`` the check (``db current``). A newer schema is refused unless skipped.
        """
        location = parse_store_url(url)
        if location.path is not None:
            if not location.path.exists():
                if not create:
                    raise StoreUnavailableError(
                        f"no store at {location.path}; run an experiment first or pass --store"
                    )
                try:
                    location.path.parent.mkdir(parents=True, exist_ok=True)
                except OSError as exc:
                    raise StoreUnavailableError(
                        f"cannot create store {location.path}: {exc.strerror}; "
                        "choose a writable --store path"
                    ) from None
            elif location.path.is_dir():
                raise StoreUnavailableError(
                    f"store path {location.path} is a directory; give a database file path"
                )
        store = cls(create_store_engine(location, pooled=pooled), location, redactor)
        try:
            if schema != "skip":
                store._ensure_schema(upgrade=schema == "upgrade")
        except BaseException:
            store.close()
            raise
        return store

    def close(self) -> None:
        """Release every connection."""
        with self._appends.lock:
            self._appends.discard()
        self._engine.dispose()

    @property
    def url(self) -> str:
        """The store's full URL, as ``--store`` takes it (password included: pass it on,
        never print it)."""
        if self.location.path is not None:
            return str(self.location.path)
        return self.location.url.render_as_string(hide_password=False)

    def __enter__(self) -> EventStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def backend(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return self.location.backend

    def schema_revision(self) -> str | None:
        """The alembic revision the database is at."""
        with self._read() as conn:
            return migrations.current_revision(conn)

    def _ensure_schema(self, *, upgrade: bool) -> None:
        head = migrations.head_revision()
        with self._read() as conn:
            current = migrations.current_revision(conn)
        if current == head:
            return
        self._check_not_newer(current)
        if not upgrade:
            raise StoreError(
                f"store {self.location.display()} is at schema {current or 'empty'}, "
                f"this agentledger needs {head}; run `agentledger db upgrade`"
            )
        self.upgrade()

    def _check_not_newer(self, current: str | None) -> None:
        if current is not None and current not in migrations.known_revisions():
            raise SchemaTooNewError(
                f"store {self.location.display()} has schema revision {current}, written by a "
                f"newer agentledger (this one knows up to {migrations.head_revision()}); "
                "upgrade agentledger"
            )

    def upgrade(self) -> str:
        """Migrate the schema to the newest revision; safe with concurrent openers."""
        with self._write(lock_key=_MIGRATE_LOCK_KEY) as conn:
            current = migrations.current_revision(conn)
            self._check_not_newer(current)
            if current is None and self.backend == "sqlite":
                migrations.create_head_sqlite(conn)
            elif current != migrations.head_revision():
                migrations.upgrade(conn)
        return migrations.head_revision()

    # --- transactions ---------------------------------------------------------------------

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        try:
            with self._engine.connect() as conn:
                yield conn
        except SQLAlchemyError as exc:
            raise translate_error(exc, self.location, "read") from exc

    @contextmanager
    def _write(self, lock_key: int | None = _APPEND_LOCK_KEY) -> Iterator[Connection]:
        """A write transaction, committed on success and rolled back on error.

        With ``lock_key`` it is serialised against every other holder of that key (on
        SQLite ``BEGIN IMMEDIATE`` already serialises all writers).
        """
        try:
            with self._engine.connect() as conn:
                conn.execution_options(**{WRITE_OPTION: True})
                with conn.begin():
                    if self.backend == "postgresql" and lock_key is not None:
                        conn.exec_driver_sql("SELECT pg_advisory_xact_lock(%s)", (lock_key,))
                    yield conn
        except SQLAlchemyError as exc:
            raise translate_error(exc, self.location, "write to") from exc

    @contextmanager
    def _raw_write(self) -> Iterator[Any]:
        """A write transaction on a pooled driver connection: SQLite's append path.

        SQLite: ``BEGIN IMMEDIATE`` takes the single writer lock up front. PostgreSQL (import
        only): the caller takes the append advisory lock.
        """
        try:
            raw = self._engine.raw_connection()
        except SQLAlchemyError as exc:
            raise translate_error(exc, self.location, "write to") from exc
        cursor = raw.cursor()
        try:
            if self.backend == "sqlite":
                cursor.execute("BEGIN IMMEDIATE")
            yield cursor
            raw.commit()
        except StoreError:
            raw.rollback()
            raise
        except Exception as exc:
            raw.rollback()
            if isinstance(exc, self._driver_errors):
                raise translate_error(exc, self.location, "write to") from exc
            raise
        finally:
            cursor.close()
            raw.close()

    @property
    def _driver_errors(self) -> type[Exception]:
        return self._engine.dialect.dbapi.Error  # type: ignore[union-attr]

    # --- appending ------------------------------------------------------------------------

    def append(
        self,
        stream_id: str,
        payloads: Sequence[Payload],
        *,
        expected_version: int = ANY_VERSION,
        metadata: Mapping[str, Any] | None = None,
    ) -> AppendResult:
        """Append ``payloads`` to ``stream_id`` atomically.

        ``expected_version`` is the version the stream must be at (``NO_STREAM`` for a new
        stream, ``ANY_VERSION`` to skip the check); a mismatch raises ``ConcurrencyError``
        and writes nothing. Payloads and metadata are redacted before they are encoded.
        """
        request = AppendRequest(stream_id, payloads, expected_version, metadata)
        return self.append_batch([request])[0]

    def append_batch(self, requests: Sequence[AppendRequest]) -> list[AppendResult]:
        """Append to several streams in one transaction: all of them or, on any
        ``ConcurrencyError``, none. One commit for many small appends (group commit)."""
        recorded_at = utc_now()
        prepared = []
        for request in requests:
            if not request.payloads:
                raise EventValidationError(f"append to {request.stream_id} with no events")
            meta = {**self._base_metadata, **(request.metadata or {})}
            events_json = [
                (event_id, p.event_type, p.schema_version, self._encode(p.model_dump(mode="json")))
                for event_id, p in zip(
                    new_event_ids(len(request.payloads)), request.payloads, strict=True
                )
            ]
            prepared.append(
                _Prepared(request, meta.get("correlation_id"), self._encode(meta), events_json)
            )
        if self.backend == "postgresql":
            return self._append_postgres(prepared, recorded_at)
        with self._raw_write() as cursor:
            heads: dict[str, tuple[int, str]] = {}
            max_position = 0
            for item in prepared:
                stream_id = item.request.stream_id
                if stream_id not in heads:
                    cursor.execute(self._sql.head_and_max, (stream_id,))
                    max_position, version, head_hash = cursor.fetchone() or (0, None, None)
                    heads[stream_id] = (version or 0, head_hash or GENESIS_HASH)
            rows, results = _chain(prepared, heads, max_position + 1, recorded_at)
            self._insert(cursor, rows)
        return results

    def _append_postgres(self, prepared: list[_Prepared], recorded_at: str) -> list[AppendResult]:
        """One statement per append: ``agentledger_append`` locks, checks the heads this
        chain was hashed from, numbers and inserts the rows, and commits on its own.

        Heads come from what this process appended last (a bounded cache) or, for a stream
        it has not seen, are assumed new; the function refuses a wrong guess and returns
        the actual heads, and the append is hashed again from those.
        """
        channel = self._appends
        with channel.lock:
            try:
                return self._append_on(channel, prepared, recorded_at)
            except StoreError:
                raise  # refused by the store's rules: the connection is fine
            except BaseException as exc:
                channel.discard()  # an error, or an interrupt mid-statement
                if isinstance(exc, SQLAlchemyError | self._driver_errors):
                    raise translate_error(exc, self.location, "write to") from exc
                raise

    def _append_on(
        self, channel: _AppendChannel, prepared: list[_Prepared], recorded_at: str
    ) -> list[AppendResult]:
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
            cursor.execute(self._sql.head, (stream_id,))
            heads[stream_id] = cursor.fetchone() or (0, GENESIS_HASH)
        for _attempt in range(_APPEND_ATTEMPTS):
            try:
                rows, results = _chain(prepared, heads, 1, recorded_at)
            except ConcurrencyError:
                if verified:
                    raise
                rows = []  # a guessed head may be stale: ask the server below
            versions, hashes = zip(*heads.values(), strict=True)
            if not rows:  # a head that can never match: the answer is the actual heads
                versions, hashes = (-1,) * len(heads), (None,) * len(heads)
            columns = list(zip(*rows, strict=True)) or [()] * 11
            arguments = (
                _APPEND_LOCK_KEY,
                _text_array(list(heads)),
                _int_array(versions),
                _text_array(hashes),
                *(_text_array(columns[i]) for i in (1, 2)),
                _int_array(columns[3]),
                _text_array(columns[4]),
                _int_array(columns[5]),
                *(_text_array(columns[i]) for i in (6, 7, 8, 10)),
                recorded_at,
            )
            try:
                cursor.execute(self._sql.append, arguments)
            except self._driver_errors as exc:
                _raise_if_duplicate(exc, rows)
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
            f"streams {', '.join(streams)} kept changing under {_APPEND_ATTEMPTS} append "
            "attempts; append with an expected version or retry later"
        )

    def _encode(self, document: Any) -> str:
        """Canonical JSON with secrets masked: the single redaction point of every write."""
        encoded = orjson.dumps(document, option=orjson.OPT_SORT_KEYS)
        if self.redactor.needs_scrub(encoded):
            return encode_json(self.redactor.scrub(document))
        return encoded.decode()

    def _insert(self, cursor: Any, rows: list[tuple[Any, ...]]) -> None:
        """Insert prepared rows on the transaction's driver cursor.

        On PostgreSQL a trigger (migration 0002) sends the NOTIFY that wakes subscribers.
        """
        sql = self._sql
        try:
            if self.backend == "postgresql":
                # One multi-row statement per chunk: one round trip, one trigger firing.
                for start in range(0, len(rows), sql.multi_row):
                    chunk = rows[start : start + sql.multi_row]
                    cursor.execute(
                        sql.insert + ", ".join([sql.row] * len(chunk)),
                        [value for row in chunk for value in row],
                    )
            else:
                cursor.executemany(sql.insert + sql.row, rows)
        except Exception as exc:
            _raise_if_duplicate(exc, rows)
            raise

    def _head(self, conn: Connection, stream_id: str) -> tuple[int, str]:
        row = conn.exec_driver_sql(self._sql.head, (stream_id,)).first()
        return (row[0], row[1]) if row else (0, GENESIS_HASH)

    def _max_position(self, conn: Connection) -> int:
        return int(conn.exec_driver_sql(self._sql.max_position).scalar_one())

    def append_raw(self, rows: Iterator[RawEvent], *, verify_chain: bool = True) -> int:
        """Insert already-recorded events (import), renumbering positions in order.

        All or nothing: every event must continue its stream's chain in the target store
        and must come through redaction unchanged. Returns the number of events written.
        """
        heads: dict[str, tuple[int, str]] = {}
        count = 0
        with self._raw_write() as cursor:
            if self.backend == "postgresql":
                cursor.execute("SELECT pg_advisory_xact_lock(%s)", (_APPEND_LOCK_KEY,))
            cursor.execute(self._sql.max_position)
            position = int(cursor.fetchone()[0])
            batch: list[tuple[Any, ...]] = []
            for raw in rows:
                if raw.stream_id not in heads:
                    cursor.execute(self._sql.head, (raw.stream_id,))
                    heads[raw.stream_id] = cursor.fetchone() or (0, GENESIS_HASH)
                version, prev_hash = heads[raw.stream_id]
                if raw.stream_version != version + 1:
                    raise EventValidationError(
                        f"event {raw.event_id} is version {raw.stream_version} of "
                        f"{raw.stream_id}, but the store holds that stream at version {version}"
                    )
                if verify_chain and raw.expected_hash(prev_hash) != raw.hash:
                    raise EventValidationError(
                        f"event {raw.event_id} ({raw.stream_id} v{raw.stream_version}) does not "
                        "match its hash chain; the export was modified"
                    )
                metadata = orjson.loads(raw.metadata_json)
                if (
                    self._encode(orjson.loads(raw.data_json)) != raw.data_json
                    or self._encode(metadata) != raw.metadata_json
                ):
                    raise EventValidationError(
                        f"event {raw.event_id} ({raw.stream_id} v{raw.stream_version}) "
                        "holds an unredacted secret; it cannot be imported"
                    )
                heads[raw.stream_id] = (raw.stream_version, raw.hash)
                position += 1
                correlation = metadata.get("correlation_id")
                batch.append(
                    (
                        position,
                        raw.event_id,
                        raw.stream_id,
                        raw.stream_version,
                        raw.type,
                        raw.schema_version,
                        correlation if isinstance(correlation, str) else None,
                        raw.data_json,
                        raw.metadata_json,
                        raw.recorded_at,
                        raw.hash,
                    )
                )
                count += 1
                if len(batch) >= 1000:
                    self._insert(cursor, batch)
                    batch = []
            if batch:
                self._insert(cursor, batch)
        return count

    # --- reading --------------------------------------------------------------------------

    def read_all(
        self,
        after: int = 0,
        *,
        until: int | None = None,
        stream_id: str | None = None,
        types: Sequence[str] | None = None,
        correlation_id: str | None = None,
        page_size: int = 2000,
    ) -> Iterator[StoredEvent]:
        """Events with ``after < position <= until`` in position order, in keyset pages.

        Each page is read in its own short transaction, so memory stays flat and no
        transaction is held open while the caller works.
        """
        if until is None and stream_id is None and not types and correlation_id is None:
            for page in self._plain_pages(after, page_size):
                yield from map(_decode_row, page)
            return
        for page in self._pages(after, until, stream_id, types, correlation_id, page_size):
            yield from map(_decode_row, page)

    def _plain_pages(self, after: int, page_size: int) -> Iterator[Sequence[Sequence[Any]]]:
        """Unfiltered keyset pages through the driver cursor: the hot read path."""
        while True:
            with self._read() as conn:
                cursor = conn.connection.cursor()
                try:
                    cursor.execute(self._sql.page, (after, page_size))
                    page = cursor.fetchall()
                finally:
                    cursor.close()
            if page:
                yield page
            if len(page) < page_size:
                return
            after = page[-1][0]

    def read_raw(
        self, after: int = 0, *, until: int | None = None, page_size: int = 2000
    ) -> Iterator[RawEvent]:
        """Like ``read_all`` but with JSON left as stored text (export, hashing)."""
        pages: Iterator[Sequence[Sequence[Any]]] = (
            self._plain_pages(after, page_size)
            if until is None
            else self._pages(after, until, None, None, None, page_size)
        )
        for page in pages:
            yield from map(_raw_row, page)

    def _pages(
        self,
        after: int,
        until: int | None,
        stream_id: str | None,
        types: Sequence[str] | None,
        correlation_id: str | None,
        page_size: int,
    ) -> Iterator[Sequence[Sequence[Any]]]:
        conditions = []
        if until is not None:
            conditions.append(events.c.position <= until)
        if stream_id is not None:
            conditions.append(events.c.stream_id == stream_id)
        if types:
            conditions.append(events.c.type.in_(list(types)))
        if correlation_id is not None:
            conditions.append(events.c.correlation_id == correlation_id)
        while True:
            stmt = (
                select(*_COLUMNS)
                .where(events.c.position > after, *conditions)
                .order_by(events.c.position)
                .limit(page_size)
            )
            with self._read() as conn:
                page = conn.execute(stmt).all()
            if page:
                yield page
            if len(page) < page_size:
                return
            after = page[-1][0]

    def count(self, *, correlation_id: str, types: Sequence[str]) -> int:
        """How many events of these types the experiment or session has."""
        stmt = select(func.count()).where(
            events.c.correlation_id == correlation_id, events.c.type.in_(list(types))
        )
        with self._read() as conn:
            return int(conn.execute(stmt).scalar_one())

    def read_prefix(
        self, prefix: str, *, until: int | None = None, page_size: int = 2000
    ) -> Iterator[StoredEvent]:
        """Events of every stream whose id starts with ``prefix``, ordered by (stream id,
        version): each stream whole, streams in id order. Walks the stream index in keyset
        pages, so memory stays flat however many streams match."""
        pages = self._prefix_pages(prefix, until, page_size, _COLUMN_LIST, 2, (None, None))
        for page in pages:
            yield from map(_decode_row, page)

    def read_prefix_folds(
        self,
        prefix: str,
        *,
        until: int | None = None,
        page_size: int = 2000,
        streams: tuple[str | None, str | None] = (None, None),
    ) -> Iterator[FoldEvent]:
        """``read_prefix`` as projections need it: ``FoldEvent``s (no ids, metadata or
        hashes), the hot path of a report rebuild. ``streams`` narrows it to the stream ids
        from its first item (inclusive) to its second (exclusive); None leaves a side open.
        """
        pages = self._prefix_pages(prefix, until, page_size, _FOLD_COLUMN_LIST, 1, streams)
        for page in pages:
            yield from map(_fold_row, page)

    def split_prefix(self, prefix: str, parts: int, *, min_events: int = 1) -> list[str]:
        """Stream ids that cut the streams under ``prefix`` into up to ``parts`` ranges of
        about as many events each (at least ``min_events``), never inside a stream: each
        range but the first starts at one of them. Fewer when there are too few streams."""
        if not prefix:
            raise ValueError("split_prefix needs a non-empty prefix")
        m = self._sql.marker
        where = f"stream_id >= {m} AND stream_id < {m}"
        bounds = (prefix, _prefix_upper(prefix))
        cuts: list[str] = []
        with self._read() as conn:
            count = conn.exec_driver_sql(
                f"SELECT count(*) FROM events WHERE {where}", bounds
            ).scalar_one()
            parts = min(parts, count // max(min_events, 1))
            previous = None
            for part in range(parts):
                row = conn.exec_driver_sql(
                    f"SELECT stream_id FROM events WHERE {where} "
                    f"ORDER BY stream_id, stream_version LIMIT 1 OFFSET {m}",
                    (*bounds, count * part // parts),
                ).first()
                if row is not None and previous is not None and row[0] > previous:
                    cuts.append(row[0])
                previous = row[0] if row is not None else previous
        return cuts

    def _prefix_pages(
        self,
        prefix: str,
        until: int | None,
        page_size: int,
        columns: str,
        key: int,
        streams: tuple[str | None, str | None],
    ) -> Iterator[Sequence[Sequence[Any]]]:
        """Keyset pages of ``columns`` (``stream_id`` at index ``key``, then
        ``stream_version``) for the streams under ``prefix`` (within ``streams``), in
        stream order."""
        if not prefix:
            raise ValueError("read_prefix needs a non-empty prefix")
        m = self._sql.marker
        lower = max(prefix, streams[0] or prefix)
        upper = _prefix_upper(prefix)
        if streams[1] is not None:
            upper = min(upper, streams[1])
        bound = f" AND position <= {m}" if until is not None else ""
        sql = (
            f"SELECT {columns} FROM events WHERE stream_id >= {m} AND stream_id < {m} "
            f"AND (stream_id, stream_version) > ({m}, {m}){bound} "
            f"ORDER BY stream_id, stream_version LIMIT {m}"
        )
        last: tuple[str, int] = ("", 0)
        while True:
            # The range starts at the last stream read, not the prefix: SQLite seeks the
            # index by the range only (not the row value), so this keeps each page O(page).
            params: tuple[Any, ...] = (max(lower, last[0]), upper, *last)
            params += (until, page_size) if until is not None else (page_size,)
            with self._read() as conn:
                cursor = conn.connection.cursor()
                try:
                    cursor.execute(sql, params)
                    page = cursor.fetchall()
                finally:
                    cursor.close()
            yield page
            if len(page) < page_size:
                return
            last = (page[-1][key], page[-1][key + 1])

    def read_stream(self, stream_id: str) -> list[StoredEvent]:
        """Every event of one stream, in version order."""
        with self._read() as conn:
            rows = conn.execute(
                select(*_COLUMNS)
                .where(events.c.stream_id == stream_id)
                .order_by(events.c.stream_version)
            ).all()
        return [_decode_row(r) for r in rows]

    def read_streams_raw(
        self, correlation_id: str | None = None, page_size: int = 2000
    ) -> Iterator[RawEvent]:
        """Every event ordered by (stream, version): the order chain verification walks."""
        last: tuple[str, int] | None = None
        while True:
            stmt = select(*_COLUMNS)
            if correlation_id is not None:
                stmt = stmt.where(events.c.correlation_id == correlation_id)
            if last is not None:
                stmt = stmt.where(
                    or_(
                        events.c.stream_id > last[0],
                        and_(events.c.stream_id == last[0], events.c.stream_version > last[1]),
                    )
                )
            stmt = stmt.order_by(events.c.stream_id, events.c.stream_version).limit(page_size)
            with self._read() as conn:
                page = conn.execute(stmt).all()
            yield from map(_raw_row, page)
            if len(page) < page_size:
                return
            last = (page[-1][2], page[-1][3])

    def stream_head(self, stream_id: str) -> tuple[int, str]:
        """(version, hash) of the last event of a stream; (0, "") when it does not exist."""
        with self._read() as conn:
            return self._head(conn, stream_id)

    def stream_heads(
        self, prefix: str, correlation_id: str | None = None
    ) -> dict[str, tuple[int, str]]:
        """(version, hash) of the last event of every stream starting with ``prefix``
        (and belonging to ``correlation_id``, when given), by stream id."""
        return {s: (v, h) for s, v, h in self.iter_stream_heads(prefix, correlation_id)}

    def iter_stream_heads(
        self, prefix: str, correlation_id: str | None = None, page_size: int = 2000
    ) -> Iterator[tuple[str, int, str]]:
        """(stream id, version, hash) of the last event of every stream starting with
        ``prefix`` (and belonging to ``correlation_id``), in stream id order, in keyset
        pages: flat memory however many streams match."""
        if not prefix:
            raise ValueError("iter_stream_heads needs a non-empty prefix")
        upper = _prefix_upper(prefix)
        after = ""
        while True:
            latest = (
                select(events.c.stream_id, func.max(events.c.stream_version).label("version"))
                .where(events.c.stream_id >= max(prefix, after), events.c.stream_id < upper)
                .group_by(events.c.stream_id)
                .order_by(events.c.stream_id)
                .limit(page_size)
            )
            if after:
                latest = latest.where(events.c.stream_id > after)
            if correlation_id is not None:
                latest = latest.where(events.c.correlation_id == correlation_id)
            sub = latest.subquery()
            stmt = (
                select(events.c.stream_id, events.c.stream_version, events.c.hash)
                .join(
                    sub,
                    and_(
                        events.c.stream_id == sub.c.stream_id,
                        events.c.stream_version == sub.c.version,
                    ),
                )
                .order_by(events.c.stream_id)
            )
            with self._read() as conn:
                page = [(row[0], row[1], row[2]) for row in conn.execute(stmt)]
            yield from page
            if len(page) < page_size:
                return
            after = page[-1][0]

    def last_position(self) -> int:
        """The highest position in the store (0 when empty)."""
        with self._read() as conn:
            return self._max_position(conn)

    def streams(self, prefix: str = "") -> list[str]:
        """Ids of every stream starting with ``prefix``, sorted."""
        with self._read() as conn:
            rows = conn.execute(
                select(events.c.stream_id)
                .where(events.c.stream_id.startswith(prefix))
                .distinct()
                .order_by(events.c.stream_id)
            ).all()
        return [r[0] for r in rows]

    def position_at(self, timestamp: str) -> int:
        """The last position recorded at or before ``timestamp`` (stored format)."""
        with self._read() as conn:
            value = conn.execute(
                select(func.max(events.c.position)).where(events.c.recorded_at <= timestamp)
            ).scalar_one()
        return int(value or 0)

    # --- following ------------------------------------------------------------------------

    def subscribe(
        self,
        after: int = 0,
        *,
        poll_interval: float = 0.1,
        stop: Callable[[], bool] | None = None,
        idle_timeout: float | None = None,
        **filters: Any,
    ) -> Iterator[StoredEvent]:
        """Catch up from ``after``, then follow new events as they commit.

        Ends when ``stop()`` turns true or nothing new arrived for ``idle_timeout`` seconds.
        PostgreSQL wakes on LISTEN/NOTIFY; SQLite polls every ``poll_interval`` seconds.
        """
        waiter = self._pg_waiter() if self.backend == "postgresql" else None
        idle_since = time.monotonic()
        try:
            while True:
                for ev in self.read_all(after, **filters):
                    after = ev.position
                    idle_since = time.monotonic()
                    yield ev
                if stop is not None and stop():
                    return
                if idle_timeout is not None and time.monotonic() - idle_since >= idle_timeout:
                    return
                if waiter is not None:
                    waiter(poll_interval)
                else:
                    time.sleep(poll_interval)
        finally:
            if waiter is not None:
                waiter(-1)

    def _pg_waiter(self) -> Callable[[float], None]:
        raw = self._engine.raw_connection()
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

    # --- checkpoints ----------------------------------------------------------------------

    def load_checkpoint(self, name: str) -> int:
        """The saved position of projection ``name`` (0 when it never saved one)."""
        with self._read() as conn:
            value = conn.execute(
                select(checkpoints.c.position).where(checkpoints.c.name == name)
            ).scalar_one_or_none()
        return int(value or 0)

    def save_checkpoint(self, name: str, position: int) -> int:
        """Move checkpoint ``name`` forward to ``position``; it never moves backwards.

        Returns the checkpoint's position after the call.
        """
        # Imported here: the PostgreSQL dialect alone takes 40 ms to import.
        if self.backend == "postgresql":
            from sqlalchemy.dialects import postgresql as dialect
        else:
            from sqlalchemy.dialects import sqlite as dialect  # type: ignore[no-redef]
        now = utc_now()
        stmt = dialect.insert(checkpoints).values(name=name, position=position, updated_at=now)
        stmt = stmt.on_conflict_do_update(
            index_elements=[checkpoints.c.name],
            set_={"position": stmt.excluded.position, "updated_at": stmt.excluded.updated_at},
            where=checkpoints.c.position < stmt.excluded.position,
        )
        with self._write(lock_key=None) as conn:
            conn.execute(stmt)
        return self.load_checkpoint(name)
