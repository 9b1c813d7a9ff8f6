"""report rebuild with its integrity check alongside: the folder changes only when intact."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from agentledger.eventstore.store import EventStore
from agentledger.experiments.config import Overrides, resolve_settings
from agentledger.experiments.prepare import prepare
from agentledger.experiments.runner import ExperimentRunner
from agentledger.projections.errors import ProjectionError
from agentledger.projections.rebuild import rebuild_checked
from agentledger.projections.report import load_report
from agentledger.projections.writers import write_report
from tests.support.projects import folder_bytes, make_project

FAILING_AGENT = """
def run(input_text, ctx):
    if "second" in input_text:
        raise ValueError("no")
    return ctx.tool("upper", lambda text: text.upper(), {"text": input_text})
"""


def _experiment(tmp_path: Path) -> tuple[EventStore, str]:
    project = make_project(tmp_path / "proj", agent=FAILING_AGENT, iterations=2)
    store = EventStore.open(str(tmp_path / "ledger.db"))
    settings = resolve_settings(project, None, Overrides())
    return store, ExperimentRunner(store).start(prepare(settings, {})).experiment_id


def test_a_checked_rebuild_writes_what_write_report_writes(tmp_path: Path) -> None:
    store, experiment_id = _experiment(tmp_path)
    try:
        write_report(load_report(store, experiment_id), tmp_path / "plain")
        checked = tmp_path / "checked"
        write_report(load_report(store, experiment_id), checked)  # an earlier build there
        (checked / "transcripts" / "stale.md").write_text("from an older build")
        written = rebuild_checked(store, load_report(store, experiment_id, parts=2), checked)
    finally:
        store.close()
    assert written.folder == checked and written.traces == 6
    assert folder_bytes(checked) == folder_bytes(tmp_path / "plain")
    assert (checked / "errors.json").exists()
    assert not [p for p in checked.iterdir() if p.name.startswith(".")]


def test_a_tampered_log_leaves_the_folder_as_it_was(tmp_path: Path) -> None:
    store, experiment_id = _experiment(tmp_path)
    folder = tmp_path / "report"
    try:
        write_report(load_report(store, experiment_id), folder)
        before = folder_bytes(folder)
        with sqlite3.connect(tmp_path / "ledger.db") as db:
            db.execute(
                "UPDATE events SET data = replace(data, 'FIRST', 'FORGED') "
                "WHERE type = 'TraceCompleted' AND data LIKE '%FIRST%'"
            )
        with pytest.raises(ProjectionError, match="fails verify"):
            rebuild_checked(store, load_report(store, experiment_id), folder)
    finally:
        store.close()
    assert folder_bytes(folder) == before
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]


def test_a_folder_that_cannot_be_made_is_one_line_naming_it(tmp_path: Path) -> None:
    store, experiment_id = _experiment(tmp_path)
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    try:
        with pytest.raises(ProjectionError, match=r"cannot write the report into .*a-file/report"):
            rebuild_checked(store, load_report(store, experiment_id), blocker / "report")
    finally:
        store.close()
