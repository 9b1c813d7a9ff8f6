"""The ``agentledger`` pytest plugin (registered through the ``pytest11`` entry point)."""

from runner.testing import (
    ExperimentOutcome,
    Ledger,
    ReplayOutcome,
    agentledger,
    pytest_addoption,
)

__all__ = ["ExperimentOutcome", "Ledger", "ReplayOutcome", "agentledger", "pytest_addoption"]
