"""Shared CLI state and option helpers: the store every command opens, log levels."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from agentledger.eventstore import EventStore

LOG_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "error": logging.ERROR,
    "silent": logging.CRITICAL + 10,
}


@dataclass
class AppState:
    """What the top-level group parsed; handed to every command through the click context."""

    store_url: str | None
    log_level: str

    def store_location(self, project_dir: Path | None = None) -> str:
        """``--store``, else ``AGENTLEDGER_STORE``, else ``.agentledger/ledger.db``
        in the project directory."""
        from agentledger.api import store_location

        return store_location(self.store_url, project_dir)

    def open_store(
        self,
        project_dir: Path | None = None,
        *,
        create: bool = True,
        schema: str = "upgrade",
        readonly: bool = False,
    ) -> EventStore:
        """Open the configured store; errors surface as one-line ``UserError`` via main."""
        from agentledger.api import open_store

        return open_store(
            self.store_url,
            project_dir=project_dir,
            create=create,
            schema=schema,
            readonly=readonly,
        )

    def read_store(self, project_dir: Path | None = None) -> EventStore:
        """Open the configured store for reading only: it must exist at the current schema,
        and nothing is created, migrated or written (a read-only file or mount works)."""
        return self.open_store(project_dir, create=False, schema="require", readonly=True)


pass_state = click.make_pass_decorator(AppState)


class _ScrubbingFormatter(logging.Formatter):
    """Log lines with every known secret masked (the same policy as the store's)."""

    def format(self, record: logging.LogRecord) -> str:
        from agentledger.eventstore.redaction import scrub_known

        return scrub_known(super().format(record))


def configure_logging(level: str) -> None:
    """Route the library's ``agentledger`` loggers to stderr at ``level``."""
    logger = logging.getLogger("agentledger")
    logger.setLevel(LOG_LEVELS[level])
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(_ScrubbingFormatter("[%(levelname)s] %(message)s"))
        logger.addHandler(handler)
    logger.propagate = False


def env_default(name: str) -> str | None:
    """An ``AGENTLEDGER_<NAME>`` environment default, treating empty as unset."""
    value = os.environ.get(f"AGENTLEDGER_{name}")
    return value or None


def PROJECT_OPTIONS(command: Callable[..., Any]) -> Callable[..., Any]:
    """FluxLoop's ``--project NAME`` / ``--root DIR``, shared by every project command."""
    command = click.option(
        "--root",
        metavar="DIR",
        help="Folder holding projects [default: ./fluxloop with --project].",
    )(command)
    return click.option("--project", metavar="NAME", help="Project folder under --root.")(command)
