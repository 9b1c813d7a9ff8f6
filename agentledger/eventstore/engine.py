"""Store URLs and engines: which backend a URL names, and how its connections behave.

SQLite: WAL (readers never block the writer), a busy timeout, and ``BEGIN IMMEDIATE`` for
write transactions so the single writer lock is taken up front. PostgreSQL goes through
psycopg 3 (``postgresql+psycopg``) with a connect timeout, so a dead host fails fast.
"""

from __future__ import annotations

import importlib.util
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sqlalchemy import create_engine, event
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError
from sqlalchemy.pool import NullPool

from agentledger.eventstore.errors import (
    StoreDamagedError,
    StoreError,
    StoreUnavailableError,
    StoreURLError,
)

WRITE_OPTION = "agentledger_write"
"""Connection execution option marking a write transaction (``BEGIN IMMEDIATE`` on SQLite)."""
SQLITE_BUSY_TIMEOUT_MS = 30_000
PG_CONNECT_TIMEOUT_S = 5
DAMAGED_ADVICE = "run `agentledger verify`, and restore the store from a copy or an export"
"""What to do about a damaged database: what every command that meets one says."""
SUPPORTED = "a file path, sqlite:///PATH or postgresql://USER@HOST/DB"


@dataclass(frozen=True)
class StoreURL:
    """A parsed store location."""

    url: URL
    backend: str  # "sqlite" | "postgresql"
    path: Path | None = None
    """The database file, for SQLite."""

    def display(self) -> str:
        """The URL with any password hidden (in the user part or as a query parameter such
        as ``?password=``), for messages."""
        if self.path is not None:
            return str(self.path)
        url = self.url.set(drivername=self.backend)
        hidden = {
            key: "***" if _is_secret_parameter(key) else value for key, value in url.query.items()
        }
        return url.set(query=hidden).render_as_string(hide_password=True)


def _is_secret_parameter(name: str) -> bool:
    lowered = name.lower()
    return any(word in lowered for word in ("pass", "secret", "token", "key", "cred"))


def parse_store_url(value: str, base_dir: Path | None = None) -> StoreURL:
    """Parse ``--store``: a plain path (SQLite file) or a SQLAlchemy-style URL."""
    text = value.strip()
    if not text:
        raise StoreURLError(f"empty store URL; use {SUPPORTED}")
    if "://" not in text:
        path = Path(text).expanduser()
        if not path.is_absolute():
            path = (base_dir or Path.cwd()) / path
        return StoreURL(make_url(f"sqlite+pysqlite:///{path}"), "sqlite", path)
    try:
        url = make_url(text)
    except ArgumentError:
        raise StoreURLError(f"malformed store URL {text!r}; use {SUPPORTED}") from None
    backend = url.get_backend_name()
    if backend == "sqlite":
        if not url.database or url.database == ":memory:":
            raise StoreURLError(
                f"store URL {text!r} names an in-memory SQLite database, which no other "
                "process can read; give a file, e.g. sqlite:///ledger.db"
            )
        path = Path(url.database).expanduser()
        if not path.is_absolute():
            path = (base_dir or Path.cwd()) / path
        return StoreURL(url.set(drivername="sqlite+pysqlite", database=str(path)), "sqlite", path)
    if backend in ("postgresql", "postgres"):
        if not url.database:
            raise StoreURLError(
                f"store URL {url.render_as_string(hide_password=True)!r} names no database; "
                "add one, e.g. postgresql://user@host/agentledger"
            )
        return StoreURL(url.set(drivername="postgresql+psycopg"), "postgresql")
    raise StoreURLError(
        f"unsupported store backend {backend!r} in {url.render_as_string(hide_password=True)!r}; "
        f"use {SUPPORTED}"
    )


def create_store_engine(
    location: StoreURL, *, pooled: bool = True, readonly: bool = False
) -> Engine:
    """An engine configured for the event store's transaction discipline. ``readonly``
    (SQLite): nothing is ever written, not even the WAL switch, and a file (or folder) that
    cannot be written is opened read-only (a read-only mount: immutable)."""
    if location.backend == "sqlite":
        return _sqlite_engine(location, pooled=pooled, readonly=readonly)
    if importlib.util.find_spec("psycopg") is None:
        raise StoreURLError(
            f"store {location.display()} is PostgreSQL, and its driver (psycopg) is not "
            "installed; pip install 'agentledger[postgres]'"
        )
    kwargs: dict[str, Any] = {"connect_args": {"connect_timeout": PG_CONNECT_TIMEOUT_S}}
    if not pooled:
        kwargs["poolclass"] = NullPool
    return create_engine(location.url, **kwargs)


def _sqlite_engine(location: StoreURL, *, pooled: bool, readonly: bool = False) -> Engine:
    kwargs: dict[str, Any] = {"connect_args": {"check_same_thread": False, "timeout": 30}}
    if not pooled:
        kwargs["poolclass"] = NullPool
    url = location.url
    path = location.path
    if readonly and path is not None and not os.access(path, os.W_OK | os.R_OK):
        query = {"mode": "ro", "uri": "true"}
        if not os.access(path.parent, os.W_OK):
            query["immutable"] = "1"  # nobody can be writing it: no lock files needed
        url = url.set(database=f"file:{quote(str(path))}", query=query)
    engine = create_engine(url, **kwargs)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: sqlite3.Connection, _record: Any) -> None:
        # Let SQLAlchemy's begin event decide BEGIN vs BEGIN IMMEDIATE, not pysqlite.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
            if readonly:
                return  # switching to WAL writes the file: a reader changes nothing
            mode = cursor.execute("PRAGMA journal_mode = WAL").fetchone()
            if mode and str(mode[0]).lower() != "wal":
                cursor.execute("PRAGMA journal_mode = WAL")
            # WAL + NORMAL: a killed process loses nothing committed; only power loss may.
            cursor.execute("PRAGMA synchronous = NORMAL")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        if connection.get_execution_options().get(WRITE_OPTION):
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            connection.exec_driver_sql("BEGIN")

    return engine


def is_decode_error(exc: BaseException) -> bool:
    """A SQLite text value the driver could not decode as UTF-8 (a damaged page)."""
    orig = exc.orig if isinstance(exc, DBAPIError) else exc
    return isinstance(orig, sqlite3.OperationalError) and "could not decode" in str(orig).lower()


def translate_error(exc: Exception, location: StoreURL, action: str) -> StoreError:
    """Turn a database (SQLAlchemy or driver) error into a one-line ``StoreError``."""
    where = location.display()
    orig = exc.orig if isinstance(exc, DBAPIError) else None
    text = str(orig if orig is not None else exc).strip().splitlines()
    detail = text[0] if text else type(exc).__name__
    if len(detail) > 160:
        detail = detail[:157] + "..."
    lowered = detail.lower()
    if "file is not a database" in lowered:
        return StoreUnavailableError(
            f"{where} is not an agentledger store (not a valid SQLite database); "
            "pass another --store or move the file away"
        )
    if "malformed" in lowered or "could not decode" in lowered:
        if "could not decode" in lowered:
            # The driver's message quotes the broken text: never echo it (it may hold
            # control characters, or anything); name the column only.
            column = detail.split("column ", 1)[-1].split(" with text", 1)[0]
            detail = f"a stored text in column {column} is not valid UTF-8"
        return StoreDamagedError(f"store {where} is damaged ({detail})", DAMAGED_ADVICE)
    if "readonly" in lowered or "read-only" in lowered or "unable to open" in lowered:
        return StoreUnavailableError(
            f"cannot {action} store {where}: the location is not writable ({detail}); "
            "choose a writable --store path"
        )
    if "database is locked" in lowered:
        return StoreUnavailableError(
            f"store {where} stayed locked by another process for "
            f"{SQLITE_BUSY_TIMEOUT_MS // 1000}s; retry when it finishes"
        )
    if location.backend == "postgresql" and (
        "connection" in lowered or "could not" in lowered or "timeout" in lowered
    ):
        return StoreUnavailableError(
            f"cannot connect to store {where}: {detail}; check that the server is running "
            "and the URL (host, port, user, database)"
        )
    return StoreUnavailableError(f"cannot {action} store {where}: {detail}")
