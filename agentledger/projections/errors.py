"""Errors raised by projections and report lookups.

AgentLedgerError (eventstore.errors)
└── ProjectionError          a report cannot be built as asked
    ├── UnknownExperimentError   no experiment matches an id, name or folder
    └── AsOfError                an --as-of point outside the experiment's life
"""

from __future__ import annotations

from agentledger.errors import AgentLedgerError


class ProjectionError(AgentLedgerError):
    """A report cannot be built as asked."""


class UnknownExperimentError(ProjectionError):
    """No experiment in the store matches the reference."""


class AsOfError(ProjectionError):
    """An ``--as-of`` point before the experiment began or after the log ends."""
