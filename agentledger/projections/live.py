"""Keeping an experiment folder current while the experiment runs.

A ``LiveReport`` folds the experiment's new events since its last refresh (never the whole
log again) and rewrites the folder, then saves its position as the checkpoint
``report:<experiment id>`` in the store. Up to ``FULL_LIMIT`` planned runs every file is
refreshed; above it only summary.json, so memory stays flat however long the experiment.
The final report is always rebuilt from the log when the run ends.
"""

from __future__ import annotations

import logging
from pathlib import Path

from agentledger.errors import AgentLedgerError
from agentledger.eventstore.store import EventStore
from agentledger.projections.report import ReportState
from agentledger.projections.writers import write_report, write_summary

FULL_LIMIT = 20_000
log = logging.getLogger("agentledger.projections")


def checkpoint_name(experiment_id: str) -> str:
    return f"report:{experiment_id}"


class LiveReport:
    """An incrementally caught-up report of one running experiment."""

    def __init__(self, store: EventStore, experiment_id: str, folder: Path, total: int) -> None:
        self._store = store
        self._folder = folder
        self.state = ReportState(experiment_id, keep_traces=total <= FULL_LIMIT)

    def refresh(self) -> int:
        """Catch up and rewrite the folder; returns the number of new events folded."""
        try:
            count = self.state.catch_up(self._store)
            if count:
                if self.state.keep_traces:
                    write_report(self.state.report(), self._folder)
                else:
                    write_summary(self._folder, self.state.experiment, self.state.summary)
                self._store.save_checkpoint(
                    checkpoint_name(self.state.experiment_id), self.state.position
                )
        except (AgentLedgerError, OSError) as exc:
            # A failed refresh only delays the live view; the final report comes from the log.
            log.warning("live report refresh failed: %s", exc)
            return 0
        return count
