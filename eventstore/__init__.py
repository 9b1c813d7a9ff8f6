"""The agentledger event store: typed events in an append-only, hash-chained SQL log.

Names are re-exported lazily so that importing ``eventstore.errors`` (as the CLI does at
start-up) does not pull in SQLAlchemy, alembic or the payload models.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "ANY_VERSION": "eventstore.store",
    "NO_STREAM": "eventstore.store",
    "EventStore": "eventstore.store",
    "AppendRequest": "eventstore.store",
    "AppendResult": "eventstore.envelope",
    "StoredEvent": "eventstore.envelope",
    "Redactor": "eventstore.redaction",
    "AgentLedgerError": "eventstore.errors",
    "ConcurrencyError": "eventstore.errors",
    "EventValidationError": "eventstore.errors",
    "ExportFormatError": "eventstore.errors",
    "SchemaTooNewError": "eventstore.errors",
    "StoreError": "eventstore.errors",
    "StoreURLError": "eventstore.errors",
    "StoreUnavailableError": "eventstore.errors",
    "UnknownEventTypeError": "eventstore.errors",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'eventstore' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
