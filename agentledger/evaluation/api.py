"""The evaluation library API: what ``agentledger evaluate``, ``run experiment --evaluate``
and tests call.

- ``evaluate(experiment, project_dir, ...)`` scores an experiment (id, unique name or
  output folder) with ``configs/evaluation.yaml`` and writes its files; returns an
  ``EvaluationOutcome`` with assertions for tests.
- ``rebuild_evaluation(experiment, ...)`` writes an evaluation's files again from the log
  (as of a position or time), byte-identical to what the evaluation wrote.

Nothing here prints or exits.
"""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agentledger.evaluation.errors import EvaluationConfigError

if TYPE_CHECKING:
    from agentledger.eventstore.store import EventStore
    from agentledger.projections.folds import ExperimentFold

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@dataclass(frozen=True)
class EvaluationOutcome:
    """How an evaluation went: its ids, where its files are, and its summary."""

    evaluation_id: str
    experiment_id: str
    output_dir: Path
    summary: dict[str, Any]
    diverged: int = 0
    integrity_warning: str | None = None
    """Set when the experiment was scored with ``ignore_integrity`` over a log that fails
    verify."""

    @property
    def passed(self) -> bool:
        """Every success criterion held."""
        return bool(self.summary["success_criteria"]["passed"])

    @property
    def pass_rate(self) -> float:
        return float(self.summary["aggregate"]["pass_rate"])

    def failed_criteria(self) -> list[dict[str, Any]]:
        return [c for c in self.summary["success_criteria"]["criteria"] if not c["passed"]]

    def assert_passed(self) -> None:
        """Fail the test when a success criterion does not hold."""
        failed = self.failed_criteria()
        if failed:
            first = failed[0]
            raise AssertionError(
                f"evaluation {self.evaluation_id}: {len(failed)} success criteria failed; "
                f"first: {first['name']} is {first['actual']}, needs {first['expected']}"
            )

    def assert_pass_rate(self, minimum: float) -> None:
        """Fail the test when fewer than ``minimum`` (0..1) of the traces got PASS."""
        if self.pass_rate < minimum:
            raise AssertionError(
                f"evaluation {self.evaluation_id}: pass rate {self.pass_rate:.1%} is below "
                f"{minimum:.1%} (verdicts {self.summary['verdicts']})"
            )

    def assert_metric(self, metric: str, minimum: float) -> None:
        """Fail the test when ``metric``'s mean score is below ``minimum``."""
        metrics = self.summary["metrics"]
        if metric not in metrics:
            raise AssertionError(f"evaluation {self.evaluation_id} has no metric {metric!r}")
        mean = metrics[metric]["mean"]
        if mean is None or mean < minimum:
            raise AssertionError(
                f"evaluation {self.evaluation_id}: {metric} mean {mean} is below {minimum}"
            )


def evaluation_folder(experiment: ExperimentFold, project_dir: Path, name: str | None) -> Path:
    """``<experiment folder>/evaluation`` (``evaluation-<name>`` for a named evaluation)."""
    from agentledger.projections.writers import recorded_folder

    leaf = "evaluation" if name is None else f"evaluation-{name}"
    return recorded_folder(experiment, project_dir) / leaf


def check_name(name: str | None) -> None:
    if name is not None and not _NAME.match(name):
        raise EvaluationConfigError(
            f"--name {name!r}: use 1-64 letters, digits, '_', '-' or '.', starting with a "
            "letter or digit"
        )


def _experiment(store: EventStore, ref: str) -> ExperimentFold:
    from agentledger.events.streams import experiment_stream
    from agentledger.projections.catalog import resolve_experiment
    from agentledger.projections.report import fold_experiment

    experiment_id = resolve_experiment(store, ref).experiment_id
    return fold_experiment(store.read_stream(experiment_stream(experiment_id)))


def evaluate(
    experiment: str,
    project_dir: Path | str = ".",
    *,
    store: EventStore | str | os.PathLike[str] | None = None,
    config: str | None = None,
    name: str | None = None,
    record_mode: str = "live",
    parallel: int = 4,
    judge_model: str | None = None,
    output_dir: Path | None = None,
    ignore_integrity: bool = False,
) -> EvaluationOutcome:
    """Score ``experiment`` (see the module docstring). ``config`` is the evaluation
    config (default ``configs/evaluation.yaml`` of ``project_dir``; without one, the
    FluxLoop judge); ``judge_model`` replaces every judge's model. Scores are only as
    good as the log: an experiment whose streams fail verify is refused
    (``ProjectionError``, checked beside the scoring: see ``evaluation.checking``) unless
    ``ignore_integrity``, and then the outcome says so."""
    from agentledger.evaluation.config import load_settings
    from agentledger.evaluation.scoring import evaluate_experiment
    from agentledger.replay.book import RecordMode
    from agentledger.workspace import Workspace

    check_name(name)
    mode = RecordMode.parse(record_mode)
    project = Path(project_dir).resolve()
    with Workspace(project, store, live_refresh=None, create=False) as workspace:
        settings = load_settings(project, config, workspace.env, judge_model=judge_model)
        fold = _experiment(workspace.store, experiment)
        folder = output_dir or evaluation_folder(fold, project, name)
        from agentledger.evaluation.checking import IntegrityCheck

        with IntegrityCheck(workspace.store, fold, ignore=ignore_integrity) as check:
            result = evaluate_experiment(
                workspace.store,
                fold.experiment_id,
                settings,
                workspace.env,
                name=name,
                record_mode=mode.value,
                parallel=parallel,
                output_dir=folder,
                checked=check.result,
            )
        warning = result.integrity_warning
    outcome = dataclasses.replace(
        _outcome(result.evaluation_id, result.experiment_id, folder, result.diverged),
        integrity_warning=warning,
    )
    if output_dir is None:
        # The files went into the experiment's folder: its summary names them, as a
        # report rebuild would.
        from agentledger.evaluation.section import set_summary_entry, summary_entry

        set_summary_entry(
            folder.parent, fold.experiment_id, summary_entry(outcome.summary, folder.name)
        )
    return outcome


def _outcome(
    evaluation_id: str, experiment_id: str, folder: Path, diverged: int
) -> EvaluationOutcome:
    import orjson

    from agentledger.evaluation.summary import SUMMARY_FILE

    summary = orjson.loads((folder / SUMMARY_FILE).read_bytes())
    return EvaluationOutcome(evaluation_id, experiment_id, folder, summary, diverged)


def find_evaluation(store: EventStore, experiment_id: str, which: str | None) -> str:
    """An evaluation of the experiment: its number, its id, its name, or (None) the
    latest."""
    from agentledger.evaluation.catalog import evaluation_numbers
    from agentledger.evaluation.scoring import latest_evaluation
    from agentledger.events.evaluation import evaluation_id_for

    numbers = evaluation_numbers(store, experiment_id)
    if not numbers:
        raise EvaluationConfigError(
            f"experiment {experiment_id} has no evaluation yet; run agentledger evaluate "
            f"{experiment_id}"
        )
    if which is None:
        return evaluation_id_for(experiment_id, numbers[-1])
    ids = {evaluation_id_for(experiment_id, n): n for n in numbers}
    if which in ids:
        return which
    if which.isdigit() and int(which) in numbers:
        return evaluation_id_for(experiment_id, int(which))
    named = latest_evaluation(store, experiment_id, which)
    if named is not None:
        return named
    raise EvaluationConfigError(
        f"--evaluation {which!r}: experiment {experiment_id} has evaluations "
        f"{', '.join(str(n) for n in numbers)} (give a number, an id or a name)"
    )


def rebuild_evaluation(
    experiment: str,
    project_dir: Path | str = ".",
    *,
    store: EventStore | str | os.PathLike[str] | None = None,
    which: str | None = None,
    as_of: str | None = None,
    output_dir: Path | None = None,
) -> EvaluationOutcome:
    """Write an evaluation's files again from the log (``which``: number, id or name;
    default the latest), as of ``as_of`` (a position or an ISO time) when given."""
    from agentledger.evaluation.catalog import started_ref
    from agentledger.evaluation.scoring import read_evaluation
    from agentledger.evaluation.summary import write_evaluation
    from agentledger.eventstore.envelope import utc_now
    from agentledger.eventstore.store import EventStore
    from agentledger.projections.report import resolve_as_of
    from agentledger.workspace import open_store

    project = Path(project_dir).resolve()
    if isinstance(store, EventStore):
        handle, owned = store, False
    else:
        handle = open_store(
            store, project_dir=project, create=False, schema="require", readonly=True
        )
        owned = True
    try:
        fold = _experiment(handle, experiment)
        evaluation_id = find_evaluation(handle, fold.experiment_id, which)
        until = resolve_as_of(handle, fold.experiment_id, as_of, utc_now())
        first = started_ref(handle, evaluation_id)
        if first is None:
            raise EvaluationConfigError(
                f"evaluation {evaluation_id} has no EvaluationStarted; run agentledger verify"
            )
        if until is not None and until < first.position:
            raise EvaluationConfigError(
                f"--as-of {as_of}: evaluation {evaluation_id} began later (position "
                f"{first.position})"
            )
        folder = output_dir or evaluation_folder(fold, project, first.name)
        write_evaluation(read_evaluation(handle, evaluation_id, until), folder)
    finally:
        if owned:
            handle.close()
    return _outcome(evaluation_id, fold.experiment_id, folder, 0)


def check_settings(
    project_dir: Path, config: str | None = None, *, offline_run: bool = False
) -> None:
    """Read and check the evaluation config and its judges' endpoints (keys) now, before
    an experiment whose end it will score. ``offline_run``: the experiment replays, and a
    judge that is not the mock would still be called live, so it is refused."""
    from agentledger.evaluation.config import load_settings
    from agentledger.models.specs import endpoint
    from agentledger.workspace import load_env

    env = load_env(project_dir)
    settings = load_settings(project_dir, config, env)
    for judge in settings.judges:
        if offline_run and judge.model.provider != "mock":
            raise EvaluationConfigError(
                f"--evaluate: judge {judge.name!r} ({judge.model.label}) would be called live "
                "while the experiment replays; drop --evaluate and run `agentledger evaluate "
                "EXPERIMENT --record-mode replay` on a recorded evaluation"
            )
        endpoint(judge.model, env)
