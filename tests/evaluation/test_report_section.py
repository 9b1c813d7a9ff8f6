"""The evaluation section of an experiment's report: written by a rebuild with the bytes
``evaluate`` wrote, as of any point, named in the report's summary."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from agentledger.api import open_store, run_experiment
from agentledger.evaluation import evaluate
from agentledger.evaluation.catalog import list_evaluations
from agentledger.events.evaluation import evaluation_stream
from agentledger.eventstore.store import EventStore
from agentledger.projections.report import load_report
from agentledger.projections.writers import write_report
from tests.support.projects import folder_bytes, make_project

AGENT = """
def run(input_text, persona, ctx):
    return "" if "third" in input_text else f"answer to {input_text}"
"""
RULES: dict[str, Any] = {
    "evaluators": [
        {
            "name": "answered",
            "type": "rule_based",
            "rules": [{"check": "output_not_empty"}, {"check": "contains", "keywords": ["answer"]}],
        }
    ],
    "aggregate": {"threshold": 0.9},
    "success_criteria": {"quality": {"pass_rate": 0.6}},
}


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = make_project(tmp_path / "proj", agent=AGENT, iterations=2)
    run_experiment(root, store=root / "ledger.db")
    (root / "configs" / "evaluation.yaml").write_text(yaml.safe_dump(RULES))
    return root


def experiment_folder(root: Path) -> Path:
    return next((root / "experiments").iterdir())


def rebuild(root: Path, folder: Path, until: int | None = None) -> None:
    with open_store(root / "ledger.db", create=False) as store:
        (experiment_id,) = [s[len("experiment-") :] for s in store.streams("experiment-")]
        write_report(load_report(store, experiment_id, until), folder)


def summary(folder: Path) -> dict[str, Any]:
    return dict(orjson.loads((folder / "summary.json").read_bytes()))


def test_a_rebuild_writes_the_evaluation_with_the_bytes_evaluate_wrote(project: Path) -> None:
    outcome = evaluate("demo", project, store=project / "ledger.db")
    folder = experiment_folder(project)
    written = folder_bytes(folder)
    assert "evaluation/scores.jsonl" in written and "evaluation/summary.json" in written
    # evaluate named the evaluation in the report's summary as a rebuild does: the whole
    # folder is the same bytes after one.
    rebuild(project, folder)
    assert folder_bytes(folder) == written
    elsewhere = project / "elsewhere"
    rebuild(project, elsewhere)
    assert folder_bytes(elsewhere) == written
    assert summary(folder)["evaluation"] == {
        "evaluation_id": outcome.evaluation_id,
        "name": None,
        "verdict": "passed",
        "pass_rate": 0.666667,
        "traces_scored": 6,
        "folder": "evaluation",
    }


@pytest.mark.parametrize("total", [6, 20_001], ids=["every file", "summary only"])
def test_a_live_refresh_keeps_the_evaluation_entry_and_files(project: Path, total: int) -> None:
    from agentledger.projections.live import LiveReport

    evaluate("demo", project, store=project / "ledger.db")
    folder = experiment_folder(project)
    written = folder_bytes(folder)
    with open_store(project / "ledger.db", create=False) as store:
        (experiment_id,) = [s[len("experiment-") :] for s in store.streams("experiment-")]
        # A refresh while the experiment runs (resumed, or scored as it goes).
        assert LiveReport(store, experiment_id, folder, total).refresh() > 0
    assert summary(folder)["evaluation"] == orjson.loads(written["summary.json"])["evaluation"]
    assert list(summary(folder))[-1] == "evaluation"
    assert {k: v for k, v in folder_bytes(folder).items() if "evaluation" in k} == {
        k: v for k, v in written.items() if "evaluation" in k
    }


def test_the_entry_is_the_last_key_of_the_summary(project: Path) -> None:
    evaluate("demo", project, store=project / "ledger.db")
    assert list(summary(experiment_folder(project)))[-1] == "evaluation"


def test_without_an_evaluation_the_summary_has_no_entry(project: Path) -> None:
    folder = project / "plain"
    rebuild(project, folder)
    assert "evaluation" not in summary(folder)
    assert not [p for p in folder.iterdir() if p.name.startswith("evaluation")]


def test_each_folder_gets_its_latest_evaluation_and_the_entry_the_latest_of_all(
    project: Path,
) -> None:
    evaluate("demo", project, store=project / "ledger.db")
    strict = evaluate("demo", project, store=project / "ledger.db", name="strict")
    again = evaluate("demo", project, store=project / "ledger.db")
    folder = project / "rebuilt"
    rebuild(project, folder)
    assert folder_bytes(folder / "evaluation") == folder_bytes(again.output_dir)
    assert folder_bytes(folder / "evaluation-strict") == folder_bytes(strict.output_dir)
    assert summary(folder)["evaluation"]["evaluation_id"] == again.evaluation_id


def events_of(root: Path, evaluation_id: str) -> list[Any]:
    with open_store(root / "ledger.db", create=False) as store:
        return store.read_stream(evaluation_stream(evaluation_id))


def test_as_of_gives_the_evaluation_as_the_log_stood(project: Path) -> None:
    first = evaluate("demo", project, store=project / "ledger.db")
    events = events_of(project, first.evaluation_id)
    written = folder_bytes(first.output_dir)
    second = evaluate("demo", project, store=project / "ledger.db")
    folder = project / "as-of"
    rebuild(project, folder, events[3].position)
    entry = summary(folder)["evaluation"]
    assert (entry["evaluation_id"], entry["verdict"], entry["traces_scored"]) == (
        first.evaluation_id,
        "running",
        3,
    )
    assert summary(folder / "evaluation")["status"] == "running"
    rebuild(project, folder, events[-1].position)
    assert folder_bytes(folder / "evaluation") == written
    rebuild(project, folder)
    assert summary(folder)["evaluation"]["evaluation_id"] == second.evaluation_id


def test_a_rebuild_before_any_evaluation_removes_this_experiments_evaluation_files(
    project: Path,
) -> None:
    outcome = evaluate("demo", project, store=project / "ledger.db")
    folder = experiment_folder(project)
    foreign = folder / "evaluation-notes"
    foreign.mkdir()
    (foreign / "mine.txt").write_text("kept")
    start = events_of(project, outcome.evaluation_id)[0].position
    rebuild(project, folder, start - 1)
    assert not (folder / "evaluation").exists()
    assert "evaluation" not in summary(folder)
    assert (foreign / "mine.txt").read_text() == "kept"


class CountingStore:
    """Counts the store's reads of events (not of stream heads)."""

    def __init__(self, store: EventStore) -> None:
        self._store = store
        self.reads: list[str] = []

    def read_prefix_folds(self, prefix: str, **kwargs: Any) -> Any:
        self.reads.append(prefix)
        return self._store.read_prefix_folds(prefix, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


def test_finding_no_evaluation_reads_no_event(project: Path) -> None:
    with open_store(project / "ledger.db", create=False) as store:
        (experiment_id,) = [s[len("experiment-") :] for s in store.streams("experiment-")]
        counting = CountingStore(store)
        assert list_evaluations(counting, experiment_id) == []  # type: ignore[arg-type]
        assert counting.reads == []
        evaluate("demo", project, store=store)
        (found,) = list_evaluations(counting, experiment_id)  # type: ignore[arg-type]
        assert counting.reads == [evaluation_stream(found.evaluation_id)]


def test_the_section_is_rebuilt_on_each_backend(tmp_path: Path, store_url: str) -> None:
    root = make_project(tmp_path / "proj", agent=AGENT, iterations=2)
    run_experiment(root, store=store_url)
    (root / "configs" / "evaluation.yaml").write_text(yaml.safe_dump(RULES))
    outcome = evaluate("demo", root, store=store_url, name="nightly")
    folder = tmp_path / "rebuilt"
    with open_store(store_url, create=False) as store:
        write_report(load_report(store, outcome.experiment_id), folder)
    assert folder_bytes(folder / "evaluation-nightly") == folder_bytes(outcome.output_dir)
    assert summary(folder)["evaluation"]["folder"] == "evaluation-nightly"
