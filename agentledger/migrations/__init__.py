"""Alembic migrations for the agentledger store, run programmatically (no alembic.ini).

``upgrade(connection)`` brings a store to the newest schema on the caller's connection;
``current_revision`` and ``head_revision`` report where a store and this code stand.
Alembic itself is imported only when a migration has to run: opening an up-to-date store
reads the version table directly (a test keeps ``HEAD`` equal to alembic's own head).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import inspect, text

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

_HERE = Path(__file__).resolve().parent

HEAD = "0003"
"""The newest revision in versions/ (checked against alembic by the tests)."""
REVISIONS = frozenset({"0001", "0002", "0003"})
"""Every revision this code ships."""


def _config(connection: Connection | None = None) -> Any:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(_HERE))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    """The newest revision this code knows."""
    return HEAD


def known_revisions() -> frozenset[str]:
    """Every revision this code ships."""
    return REVISIONS


def alembic_revisions() -> tuple[str | None, set[str]]:
    """(head, all revisions) as alembic computes them from versions/ (slow: imports alembic)."""
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(_config())
    return script.get_current_head(), {rev.revision for rev in script.walk_revisions()}


def current_revision(connection: Connection) -> str | None:
    """The revision the database is at, or None for an empty database."""
    if not inspect(connection).has_table("alembic_version"):
        return None
    return connection.execute(text("SELECT version_num FROM alembic_version")).scalar()


def create_head_sqlite(connection: Connection) -> None:
    """Create an empty SQLite store's schema at ``HEAD`` in one go, stamped as alembic
    would stamp it, without importing alembic or replaying every revision: every new
    project's first command pays for this. On SQLite the revisions only create the tables
    and indexes of ``eventstore.schema``; a test checks that both ways give the same
    schema. (PostgreSQL stores, with their functions and triggers, always migrate.)"""
    from agentledger.eventstore.schema import metadata

    metadata.create_all(connection)
    connection.execute(
        text(
            "CREATE TABLE alembic_version (\n\tversion_num VARCHAR(32) NOT NULL, "
            "\n\tCONSTRAINT alembic_version_pkc PRIMARY KEY (version_num)\n)"
        )
    )
    connection.execute(text("INSERT INTO alembic_version (version_num) VALUES (:v)"), {"v": HEAD})


def upgrade(connection: Connection, revision: str = "head") -> None:
    """Upgrade the database on ``connection`` to ``revision`` inside the caller's transaction."""
    from alembic import command

    command.upgrade(_config(connection), revision)
