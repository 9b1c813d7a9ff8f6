"""Keeping an experiment folder current while the experiment runs.

A ``LiveReport`` folds the experiment's new events since its last refresh (never the whole
log again) and rewrites the folder, then saves its position as the checkpoint
``report:<experiment id>`` in the store. Up to ``FULL_LIMIT`` planned runs every file is
refreshed; above it only summary.json, so memory stays flat however long the experiment.
The final report is always rebuilt from the log when the run ends.

An experiment scored while it runs (``agentledger evaluate`` of its finished traces, or a
resumed experiment evaluated before) keeps its evaluation section: each refresh writes
the evaluation entry into summary.json and the evaluation folders as a rebuild would
(summary.json alone, above ``FULL_LIMIT``, still with the entry). Without evaluations
this costs one index seek a refresh.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agentledger.errors import AgentLedgerError
from agentledger.eventstore.store import EventStore
from agentledger.projections.report import ReportState
from agentledger.projections.writers import write_report, write_summary

if TYPE_CHECKING:
    from agentledger.evaluation.section import EvaluationPart

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
        self._entry_key: tuple[str, int] | None = None
        self._entry_value: dict[str, Any] | None = None

    def refresh(self) -> int:
        """Catch up and rewrite the folder; returns the number of new events folded."""
        try:
            count = self.state.catch_up(self._store)
            if count:
                evaluations = self._evaluations()
                if self.state.keep_traces:
                    report = self.state.report()
                    report.evaluations = evaluations or None
                    write_report(report, self._folder)
                else:
                    write_summary(
                        self._folder,
                        self.state.experiment,
                        self.state.summary,
                        self._entry(evaluations),
                    )
                self._store.save_checkpoint(
                    checkpoint_name(self.state.experiment_id), self.state.position
                )
        except (AgentLedgerError, OSError) as exc:
            # A failed refresh only delays the live view; the final report comes from the log.
            log.warning("live report refresh failed: %s", exc)
            return 0
        return count

    def _evaluations(self) -> list[EvaluationPart]:
        """The experiment's evaluations a report includes (none: after one index seek)."""
        from agentledger.evaluation.section import report_evaluations

        return report_evaluations(self._store, self.state.experiment_id)

    def _entry(self, evaluations: list[EvaluationPart]) -> dict[str, Any] | None:
        """The summary entry of the latest evaluation, folded again only when its stream
        has grown since the last refresh."""
        latest = next((part for part in evaluations if part.latest), None)
        if latest is None:
            return None
        from agentledger.events.evaluation import evaluation_stream

        evaluation_id = latest.ref.evaluation_id
        key = (evaluation_id, self._store.stream_head(evaluation_stream(evaluation_id))[0])
        if key != self._entry_key:
            from agentledger.evaluation.section import latest_entry

            self._entry_key, self._entry_value = key, latest_entry(evaluations)
        return self._entry_value
