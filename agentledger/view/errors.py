"""Errors the viewer raises (each a one-line message, shown as a page or by the CLI).

AgentLedgerError (agentledger.errors)
└── ViewError                a page or the viewer cannot be served as asked
    ├── NotFoundError        no experiment, trace or session matches the reference
    └── BadRequestError      a query parameter or --as-of point is not valid
"""

from __future__ import annotations

from agentledger.errors import AgentLedgerError


class ViewError(AgentLedgerError):
    """A page or the viewer cannot be served as asked."""


class NotFoundError(ViewError):
    """No experiment, trace or session matches the reference."""


class BadRequestError(ViewError):
    """A query parameter or ``--as-of`` point is not valid."""
