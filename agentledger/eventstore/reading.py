"""Reading the log: ordered reads, stream reads, heads, and following new events.

``StoreReader`` is the read half of ``EventStore``. Every paged read goes through one
keyset pager (``pager.keyset_pages``), each page in its own short read transaction, so
memory stays flat and no transaction is held open while the caller works. Positions are
assigned in commit order (see ``store.py``), so reading by position never skips an event
that commits later.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any

import orjson
from sqlalchemy import and_, func, select
from sqlalchemy.engine import Connection, Engine

from agentledger.eventstore.appending import DriverSQL
from agentledger.eventstore.engine import (
    DAMAGED_ADVICE,
    StoreURL,
    is_decode_error,
    translate_error,
)
from agentledger.eventstore.envelope import GENESIS_HASH, FoldEvent, StoredEvent
from agentledger.eventstore.errors import EventValidationError, StoreDamagedError
from agentledger.eventstore.pager import keyset_pages
from agentledger.eventstore.rows import (
    COLUMN_LIST,
    COLUMNS,
    FOLD_COLUMN_LIST,
    RawEvent,
    decode_row,
    fold_row,
    raw_row,
)
from agentledger.eventstore.schema import events

Row = Sequence[Any]


def decode_page(page: Sequence[Row]) -> Iterator[StoredEvent]:
    """``StoredEvent``s of a page; a row whose JSON does not parse is a one-line error."""
    try:
        yield from map(decode_row, page)
    except orjson.JSONDecodeError:
        raise _undecodable(page, decode_row, stream_at=2) from None


def _undecodable(page: Sequence[Row], decode: Any, *, stream_at: int) -> EventValidationError:
    for row in page:
        try:
            decode(row)
        except orjson.JSONDecodeError:
            return EventValidationError(
                f"event at position {row[0]} ({row[stream_at]} v{row[stream_at + 1]}) holds "
                "data that is not valid JSON; the log is damaged: run `agentledger verify`"
            )
    return EventValidationError("an event holds data that is not valid JSON; run verify")


def _is_utf8(value: Any) -> bool:
    """False for bytes that do not decode as UTF-8 (anything else is fine)."""
    if not isinstance(value, bytes):
        return True
    try:
        value.decode()
    except UnicodeDecodeError:
        return False
    return True


def prefix_upper(prefix: str) -> str:
    """The smallest string above every string that starts with ``prefix``."""
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)


class StoreReader:
    """The read operations of an ``EventStore`` (which provides the engine and ``_read``)."""

    _engine: Engine
    _sql: DriverSQL
    location: StoreURL

    @property
    def backend(self) -> str:
        raise NotImplementedError

    def _read(self) -> AbstractContextManager[Connection]:
        raise NotImplementedError

    def _driver_rows(self, sql: str, params: Sequence[Any]) -> list[Row]:
        """Rows of one driver statement in a short read transaction (no SQLAlchemy
        compilation or result wrapping: the hot read paths)."""
        with self._read() as conn:
            cursor = conn.connection.cursor()
            try:
                cursor.execute(sql, params)
                return list(cursor.fetchall())
            except self._engine.dialect.dbapi.Error as exc:  # type: ignore[union-attr]
                if is_decode_error(exc):
                    raise self._undecodable_text(conn, sql, params) from None
                raise translate_error(exc, self.location, "read") from exc
            finally:
                cursor.close()

    def _core_rows(self, stmt: Any) -> list[Row]:
        try:
            with self._read() as conn:
                return list(conn.execute(stmt).all())
        except StoreDamagedError as exc:
            if not is_decode_error(exc.__cause__ or exc):
                raise
        with self._read() as conn:
            compiled = stmt.compile(conn, compile_kwargs={"render_postcompile": True})
            params = [compiled.params[name] for name in compiled.positiontup or []]
            raise self._undecodable_text(conn, str(compiled), params)

    def _undecodable_text(self, conn: Connection, sql: str, params: Sequence[Any]) -> Exception:
        """A read failed on text that is not UTF-8 (a damaged SQLite page): read the same
        rows again with text as bytes and name the first event that holds such text."""
        try:
            return self._locate_undecodable(conn, sql, params)
        except Exception:  # the page is damaged beyond reading: say so without a position
            return StoreDamagedError(
                f"store {self.location.display()} is damaged (a stored text is not valid UTF-8)",
                DAMAGED_ADVICE,
            )

    def _locate_undecodable(self, conn: Connection, sql: str, params: Sequence[Any]) -> Exception:
        driver: Any = conn.connection.driver_connection
        driver.text_factory = bytes
        found: tuple[int, str] | None = None  # (row index, column)
        try:
            cursor = driver.execute(sql, params)
            names = [column[0] for column in cursor.description]
            read = 0
            try:
                for row in cursor:
                    bad = [n for n, v in zip(names, row, strict=True) if not _is_utf8(v)]
                    if bad:
                        found = (read, bad[0])
                        break
                    read += 1
            except driver.DatabaseError:
                # The row is too damaged to read even as bytes (a broken overflow page):
                # it is the one after the last row read.
                found = (read, "")
        finally:
            driver.text_factory = str
        where = "a stored text is not valid UTF-8"
        if found is None or "position" not in names:
            return StoreDamagedError(
                f"store {self.location.display()} is damaged ({where})", DAMAGED_ADVICE
            )
        number, column = found
        m = self._sql.marker
        # Only the position and stream columns are read: the damaged text is not touched.
        position = driver.execute(
            f"SELECT position FROM ({sql}) LIMIT 1 OFFSET {int(number)}", params
        ).fetchone()[0]
        stream, version = driver.execute(
            f"SELECT CAST(stream_id AS BLOB), stream_version FROM events WHERE position = {m}",
            (position,),
        ).fetchone()
        what = f"its {column} is not valid UTF-8 text" if column else "its row cannot be read"
        return StoreDamagedError(
            f"the log is damaged at position {position} "
            f"({bytes(stream).decode(errors='backslashreplace')} v{version}): {what}",
            DAMAGED_ADVICE,
        )

    def _head(self, conn: Connection, stream_id: str) -> tuple[int, str]:
        row = conn.exec_driver_sql(self._sql.head, (stream_id,)).first()
        return (row[0], row[1]) if row else (0, GENESIS_HASH)

    def _max_position(self, conn: Connection) -> int:
        return int(conn.exec_driver_sql(self._sql.max_position).scalar_one())

    # --- in position order ----------------------------------------------------------------

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
        """Events with ``after < position <= until`` in position order, in keyset pages."""
        for page in self._position_pages(after, until, stream_id, types, correlation_id, page_size):
            yield from decode_page(page)

    def read_raw(
        self, after: int = 0, *, until: int | None = None, page_size: int = 2000
    ) -> Iterator[RawEvent]:
        """Like ``read_all`` but with JSON left as stored text (export, hashing)."""
        for page in self._position_pages(after, until, None, None, None, page_size):
            yield from map(raw_row, page)

    def _position_pages(
        self,
        after: int,
        until: int | None,
        stream_id: str | None,
        types: Sequence[str] | None,
        correlation_id: str | None,
        page_size: int,
    ) -> Iterator[Sequence[Row]]:
        if until is None and stream_id is None and not types and correlation_id is None:
            # Unfiltered: the hot path, one prepared driver statement.
            return keyset_pages(
                lambda last, n: self._driver_rows(self._sql.page, (last, n)),
                lambda row: row[0],
                after,
                page_size,
            )
        conditions = []
        if until is not None:
            conditions.append(events.c.position <= until)
        if stream_id is not None:
            conditions.append(events.c.stream_id == stream_id)
        if types:
            conditions.append(events.c.type.in_(list(types)))
        if correlation_id is not None:
            conditions.append(events.c.correlation_id == correlation_id)

        def fetch(last: int, n: int) -> list[Row]:
            return self._core_rows(
                select(*COLUMNS)
                .where(events.c.position > last, *conditions)
                .order_by(events.c.position)
                .limit(n)
            )

        return keyset_pages(fetch, lambda row: row[0], after, page_size)

    def count(self, *, correlation_id: str, types: Sequence[str]) -> int:
        """How many events of these types the experiment or session has."""
        stmt = select(func.count()).where(
            events.c.correlation_id == correlation_id, events.c.type.in_(list(types))
        )
        with self._read() as conn:
            return int(conn.execute(stmt).scalar_one())

    # --- in stream order ------------------------------------------------------------------

    def read_prefix(
        self, prefix: str, *, until: int | None = None, page_size: int = 2000
    ) -> Iterator[StoredEvent]:
        """Events of every stream whose id starts with ``prefix``, ordered by (stream id,
        version): each stream whole, streams in id order, in keyset pages over the stream
        index."""
        pages = self._prefix_pages(prefix, until, page_size, COLUMN_LIST, 2, (None, None))
        for page in pages:
            yield from decode_page(page)

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
        pages = self._prefix_pages(prefix, until, page_size, FOLD_COLUMN_LIST, 1, streams)
        for page in pages:
            try:
                yield from map(fold_row, page)
            except orjson.JSONDecodeError:
                raise _undecodable(page, fold_row, stream_at=1) from None

    def split_prefix(self, prefix: str, parts: int, *, min_events: int = 1) -> list[str]:
        """Stream ids that cut the streams under ``prefix`` into up to ``parts`` ranges of
        about as many events each (at least ``min_events``), never inside a stream: each
        range but the first starts at one of them. Fewer when there are too few streams."""
        if not prefix:
            raise ValueError("split_prefix needs a non-empty prefix")
        m = self._sql.marker
        where = f"stream_id >= {m} AND stream_id < {m}"
        bounds = (prefix, prefix_upper(prefix))
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
    ) -> Iterator[Sequence[Row]]:
        """Keyset pages of ``columns`` (``stream_id`` at index ``key``, then
        ``stream_version``) for the streams under ``prefix`` (within ``streams``), in
        stream order."""
        if not prefix:
            raise ValueError("read_prefix needs a non-empty prefix")
        m = self._sql.marker
        lower = max(prefix, streams[0] or prefix)
        upper = prefix_upper(prefix)
        if streams[1] is not None:
            upper = min(upper, streams[1])
        bound = f" AND position <= {m}" if until is not None else ""
        sql = (
            f"SELECT {columns} FROM events WHERE stream_id >= {m} AND stream_id < {m} "
            f"AND (stream_id, stream_version) > ({m}, {m}){bound} "
            f"ORDER BY stream_id, stream_version LIMIT {m}"
        )

        def fetch(last: tuple[str, int], n: int) -> list[Row]:
            # The range starts at the last stream read, not the prefix: SQLite seeks the
            # index by the range only (not the row value), so this keeps each page O(page).
            params: tuple[Any, ...] = (max(lower, last[0]), upper, *last)
            params += (until, n) if until is not None else (n,)
            return self._driver_rows(sql, params)

        return keyset_pages(fetch, lambda row: (row[key], row[key + 1]), ("", 0), page_size)

    def read_stream(self, stream_id: str) -> list[StoredEvent]:
        """Every event of one stream, in version order."""
        rows = self._core_rows(
            select(*COLUMNS)
            .where(events.c.stream_id == stream_id)
            .order_by(events.c.stream_version)
        )
        return list(decode_page(rows))

    def read_streams_raw(
        self, correlation_id: str | None = None, page_size: int = 5000
    ) -> Iterator[RawEvent]:
        """Every event ordered by (stream, version): the order chain verification walks.
        Driver-level keyset pages over the stream index (the range bound lets SQLite seek
        it; the correlation filter is applied to the rows the index yields)."""
        m = self._sql.marker
        # SQLite would pick the correlation index and sort the whole experiment for every
        # page; the unary + keeps it on the stream index, filtering rows as they come.
        column = "+correlation_id" if self.backend == "sqlite" else "correlation_id"
        where = f" AND {column} = {m}" if correlation_id is not None else ""
        sql = (
            f"SELECT {COLUMN_LIST} FROM events WHERE stream_id >= {m} "
            f"AND (stream_id, stream_version) > ({m}, {m}){where} "
            f"ORDER BY stream_id, stream_version LIMIT {m}"
        )

        def fetch(last: tuple[str, int], n: int) -> list[Row]:
            params: tuple[Any, ...] = (last[0], *last)
            if correlation_id is not None:
                params += (correlation_id,)
            return self._driver_rows(sql, (*params, n))

        for page in keyset_pages(fetch, lambda row: (row[2], row[3]), ("", 0), page_size):
            yield from map(raw_row, page)

    # --- heads ----------------------------------------------------------------------------

    def stream_head(self, stream_id: str) -> tuple[int, str]:
        """(version, hash) of the last event of a stream; (0, genesis) when it does not
        exist."""
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
        upper = prefix_upper(prefix)

        def fetch(after: str, n: int) -> list[Row]:
            latest = (
                select(events.c.stream_id, func.max(events.c.stream_version).label("version"))
                .where(events.c.stream_id >= max(prefix, after), events.c.stream_id < upper)
                .group_by(events.c.stream_id)
                .order_by(events.c.stream_id)
                .limit(n)
            )
            if after:
                latest = latest.where(events.c.stream_id > after)
            if correlation_id is not None:
                latest = latest.where(events.c.correlation_id == correlation_id)
            sub = latest.subquery()
            return self._core_rows(
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

        for page in keyset_pages(fetch, lambda row: row[0], "", page_size):
            for row in page:
                yield (row[0], row[1], row[2])

    def last_position(self) -> int:
        """The highest position in the store (0 when empty)."""
        with self._read() as conn:
            return self._max_position(conn)

    def streams(self, prefix: str = "") -> list[str]:
        """Ids of every stream starting with ``prefix``, sorted."""
        rows = self._core_rows(
            select(events.c.stream_id)
            .where(events.c.stream_id.startswith(prefix))
            .distinct()
            .order_by(events.c.stream_id)
        )
        return [r[0] for r in rows]

    def position_at(self, timestamp: str) -> int:
        """The last position recorded at or before ``timestamp`` (stored format)."""
        with self._read() as conn:
            value = conn.execute(
                select(func.max(events.c.position)).where(events.c.recorded_at <= timestamp)
            ).scalar_one()
        return int(value or 0)

    # --- the database itself --------------------------------------------------------------

    def log_entries(self, page_size: int = 5000) -> Iterator[tuple[int, str, int, str | None, str]]:
        """(position, stream id, version, correlation id, hash) of every event in position
        order: what a log checkpoint's root is chained over."""
        columns = "position, stream_id, stream_version, correlation_id, hash"
        for row in self._rows_by_position(columns, page_size):
            yield (row[0], row[1], row[2], row[3], row[4])

    def correlation_rows(self, page_size: int = 5000) -> Iterator[tuple[int, str, str | None, str]]:
        """(position, stream id, correlation id column, metadata JSON) of every event: the
        column is an index of what the hashed metadata says, and must agree with it."""
        for row in self._rows_by_position(
            "position, stream_id, correlation_id, metadata", page_size
        ):
            yield (row[0], row[1], row[2], row[3])

    def _rows_by_position(self, columns: str, page_size: int) -> Iterator[Row]:
        """``columns`` (``position`` first) of every event in position order, in pages."""
        m = self._sql.marker
        sql = f"SELECT {columns} FROM events WHERE position > {m} ORDER BY position LIMIT {m}"
        pages = keyset_pages(
            lambda last, n: self._driver_rows(sql, (last, n)), lambda row: row[0], 0, page_size
        )
        for page in pages:
            yield from page

    def engine_check(self, limit: int = 10) -> list[str]:
        """What the database engine's own integrity check finds (SQLite ``PRAGMA
        integrity_check``: damaged pages, index rows missing or extra); empty when sound.
        PostgreSQL checks its pages itself as it reads them, so there is nothing to run."""
        if self.backend != "sqlite":
            return []
        found: list[str] = []
        try:
            with self._read() as conn:
                for row in conn.exec_driver_sql(f"PRAGMA integrity_check({int(limit)})"):
                    found += str(row[0]).splitlines()
        except StoreDamagedError as exc:  # a page so damaged that the check itself stops
            found.append(f"the check stopped: {exc.finding}")
        # "*** in database main ***" heads the findings; it names nothing.
        return [] if found == ["ok"] else [x for x in found if x.strip() and x[:3] != "***"]

    def scan_count(self, correlation_id: str | None = None) -> int:
        """Events counted by a full scan of the table, not through any index: what a damaged
        index would hide from every other read."""
        scan = " NOT INDEXED" if self.backend == "sqlite" else ""
        m = self._sql.marker
        where = f" WHERE correlation_id = {m}" if correlation_id is not None else ""
        params = (correlation_id,) if correlation_id is not None else ()
        with self._read() as conn:
            return int(
                conn.exec_driver_sql(
                    f"SELECT count(*) FROM events{scan}{where}", params
                ).scalar_one()
            )

    def position_gaps(self, limit: int = 5) -> tuple[int, list[int]]:
        """(how many positions are missing, the first of them): positions are numbered
        1, 2, 3, ... with no gap at append time, so a gap is a deleted event."""
        with self._read() as conn:
            count, top = conn.exec_driver_sql(
                "SELECT count(*), coalesce(max(position), 0) FROM events"
            ).one()
            if count == top:
                return 0, []
            first = conn.exec_driver_sql(
                "SELECT e.position + 1 FROM events e WHERE e.position + 1 < "
                "(SELECT max(position) FROM events) AND NOT EXISTS (SELECT 1 FROM events f "
                "WHERE f.position = e.position + 1) ORDER BY e.position LIMIT "
                f"{int(limit)}"
            ).all()
            starts = (
                [1]
                if conn.exec_driver_sql("SELECT min(position) FROM events").scalar_one() != 1
                else []
            )
        return int(top) - int(count), (starts + [int(r[0]) for r in first])[:limit]

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
        from agentledger.eventstore.postgres import listen

        waiter = listen(self._engine) if self.backend == "postgresql" else None
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
