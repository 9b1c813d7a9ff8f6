"""Errors raised by the event store.

AgentLedgerError (agentledger.errors)
└── StoreError                   anything the event store refuses or cannot do
    ├── StoreURLError            the store URL is malformed or names an unsupported backend
    ├── StoreUnavailableError    the store cannot be opened, reached or written
    │   └── StoreDamagedError    the database file is damaged (the engine or a decode says so)
    ├── SchemaTooNewError        the database was migrated by a newer agentledger
    ├── ConcurrencyError         an append lost an optimistic-concurrency race
    ├── EventValidationError     an event or payload does not match its model
    │   └── UnknownEventTypeError  no payload model is registered for a type
    └── ExportFormatError        a line of an export file cannot be imported
"""

from __future__ import annotations

from agentledger.errors import AgentLedgerError


class StoreError(AgentLedgerError):
    """The event store refused or could not perform an operation."""


class StoreURLError(StoreError):
    """The store URL is malformed or names a backend agentledger does not support."""


class StoreUnavailableError(StoreError):
    """The store cannot be opened, reached, or written."""


class StoreDamagedError(StoreUnavailableError):
    """The database is damaged: the engine reports a malformed file, or a stored text is
    not valid UTF-8. ``finding`` says what, without the advice the message adds."""

    def __init__(self, finding: str, advice: str) -> None:
        super().__init__(f"{finding}; {advice}")
        self.finding = finding


class SchemaTooNewError(StoreError):
    """The database schema was written by a newer agentledger than this one."""


class ConcurrencyError(StoreError):
    """An append expected a stream version that is no longer current."""

    def __init__(self, stream_id: str, expected: int, actual: int) -> None:
        super().__init__(
            f"stream {stream_id} is at version {actual}, append expected version {expected}"
        )
        self.stream_id = stream_id
        self.expected = expected
        self.actual = actual


class EventValidationError(StoreError):
    """An event or its payload does not match the registered model."""


class UnknownEventTypeError(EventValidationError):
    """No payload model is registered for an event type."""


class ExportFormatError(StoreError):
    """An export file line is not a valid agentledger event."""
