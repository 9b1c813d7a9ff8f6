"""Alembic migrations for the agentledger store, run programmatically (no alembic.ini).

``upgrade(connection)`` brings a store to the newest schema on the caller's connection;
``current_revision`` and ``head_revision`` report where a store and this code stand.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection

_HERE = Path(__file__).resolve().parent


def _config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(_HERE))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


@cache
def head_revision() -> str:
    """The newest revision this code knows."""
    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None
    return head


@cache
def known_revisions() -> set[str]:
    """Every revision this code ships."""
    script = ScriptDirectory.from_config(_config())
    return {rev.revision for rev in script.walk_revisions()}


def current_revision(connection: Connection) -> str | None:
    """The revision the database is at, or None for an empty database."""
    return MigrationContext.configure(connection).get_current_revision()


def upgrade(connection: Connection, revision: str = "head") -> None:
    """Upgrade the database on ``connection`` to ``revision`` inside the caller's transaction."""
    command.upgrade(_config(connection), revision)
