"""The evaluation section of an experiment's report folder.

When an experiment has evaluations, its folder holds, beside the report, the latest
evaluation of each evaluation folder (``evaluation/``, ``evaluation-<name>/``): the
``summary.json`` and ``scores.jsonl`` that ``evaluate`` wrote there, written again from
the log with the same bytes (``summary.write_evaluation``); and the report's
``summary.json`` carries a short ``evaluation`` entry for the latest evaluation of all
(``summary_entry``). ``report_evaluations`` finds them by stream prefix (see
``catalog``): a report of an experiment without evaluations reads no more of the log.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import orjson

from agentledger.evaluation.catalog import EvaluationRef, latest_per_folder, list_evaluations
from agentledger.eventstore.envelope import FoldableEvent
from agentledger.eventstore.store import EventStore

JsonDict = dict[str, Any]
ENTRY = "evaluation"
"""The key of the report summary's evaluation entry."""
_FILES = ("scores.jsonl", "summary.json")


@dataclass(frozen=True)
class EvaluationPart:
    """An evaluation a report includes: which, where, and its events (read when written)."""

    ref: EvaluationRef
    events: Callable[[], Iterable[FoldableEvent]]
    latest: bool
    """The latest evaluation of the experiment: the one the summary's entry names."""


def report_evaluations(
    store: EventStore, experiment_id: str, until: int | None = None
) -> list[EvaluationPart]:
    """The evaluations an experiment's report includes as of position ``until``: the latest
    of each folder (none: an empty list, after one index seek)."""
    refs = list_evaluations(store, experiment_id, until)
    if not refs:
        return []
    from agentledger.evaluation.scoring import read_evaluation  # the judges' stack: only now

    newest = refs[-1].evaluation_id
    return [
        EvaluationPart(
            ref,
            partial(read_evaluation, store, ref.evaluation_id, until),
            ref.evaluation_id == newest,
        )
        for ref in latest_per_folder(refs)
    ]


def summary_entry(summary: JsonDict, folder: str) -> JsonDict:
    """The report summary's entry for an evaluation, from its ``summary.json``."""
    completed = summary["status"] == "completed"
    passed = summary["success_criteria"]["passed"]
    return {
        "evaluation_id": summary["evaluation_id"],
        "name": summary["name"],
        "verdict": ("passed" if passed else "failed") if completed else "running",
        "pass_rate": summary["aggregate"]["pass_rate"],
        "traces_scored": summary["traces"]["scored"],
        "folder": folder,
    }


def write_evaluations(
    parts: Sequence[EvaluationPart], folder: Path, experiment_id: str
) -> JsonDict | None:
    """Write each part's files into its folder under ``folder``, remove the files of this
    experiment's evaluations that the report no longer includes (a rebuild as of an
    earlier point); the summary entry of the latest, or None."""
    from agentledger.evaluation.summary import write_evaluation

    entry = None
    for part in parts:
        fold = write_evaluation(part.events(), folder / part.ref.folder)
        if part.latest:
            entry = summary_entry(fold.summary(), part.ref.folder)
    _remove_stale(folder, experiment_id, {p.ref.folder for p in parts})
    return entry


def latest_entry(parts: Sequence[EvaluationPart]) -> JsonDict | None:
    """The summary entry of the latest evaluation, folded from its events (no file)."""
    from agentledger.evaluation.summary import fold_evaluation

    for part in parts:
        if part.latest:
            return summary_entry(fold_evaluation(part.events()).summary(), part.ref.folder)
    return None


def remove_stale(folder: Path, experiment_id: str, kept: set[str]) -> None:
    """Remove the files of this experiment's evaluation folders not in ``kept`` (and the
    folders when nothing else is in them); other folders are left alone."""
    _remove_stale(folder, experiment_id, kept)


def _remove_stale(folder: Path, experiment_id: str, kept: set[str]) -> None:
    for path in folder.glob("evaluation*"):
        if path.name in kept or not (path.name == "evaluation" or path.name[10:11] == "-"):
            continue
        try:
            owner = orjson.loads((path / "summary.json").read_bytes()).get("experiment_id")
        except (OSError, orjson.JSONDecodeError, AttributeError):
            continue  # not an evaluation folder of ours: left alone
        if owner != experiment_id:
            continue
        for name in _FILES:
            (path / name).unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            path.rmdir()  # only when nothing else is in it


def set_summary_entry(report_folder: Path, experiment_id: str, entry: JsonDict) -> bool:
    """Put ``entry`` into the report's ``summary.json`` (last, as a rebuild places it),
    leaving every other byte as it is; False when there is no report of this experiment
    there to update."""
    from agentledger.projections.writers import SUMMARY, atomic_file

    path = report_folder / SUMMARY
    try:
        document = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return False
    if not isinstance(document, dict) or document.get("experiment_id") != experiment_id:
        return False
    document.pop(ENTRY, None)
    document[ENTRY] = entry
    with atomic_file(path) as handle:
        handle.write(orjson.dumps(document, option=orjson.OPT_INDENT_2) + b"\n")
    return True
