"""The agentledger event store: typed events in an append-only, hash-chained SQL log.

Names are re-exported lazily so that importing ``eventstore.errors`` (as the CLI does at
start-up) does not pull in SQLAlchemy, alembic or the payload models.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "ANY_VERSION": "agentledger.eventstore.store",
    "NO_STREAM": "agentledger.eventstore.store",
    "EventStore": "agentledger.eventstore.store",
    "AppendRequest": "agentledger.eventstore.store",
    "AppendResult": "agentledger.eventstore.envelope",
    "StoredEvent": "agentledger.eventstore.envelope",
    "Redactor": "agentledger.eventstore.redaction",
    "AgentLedgerError": "agentledger.eventstore.errors",
    "ConcurrencyError": "agentledger.eventstore.errors",
    "EventValidationError": "agentledger.eventstore.errors",
    "ExportFormatError": "agentledger.eventstore.errors",
    "SchemaTooNewError": "agentledger.eventstore.errors",
    "StoreError": "agentledger.eventstore.errors",
    "StoreURLError": "agentledger.eventstore.errors",
    "StoreUnavailableError": "agentledger.eventstore.errors",
    "UnknownEventTypeError": "agentledger.eventstore.errors",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'eventstore' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
