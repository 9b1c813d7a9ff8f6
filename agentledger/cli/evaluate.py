"""``agentledger evaluate``: score an experiment's traces, a gate for CI."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from agentledger.cli.errors import EXIT_FAILED_BAR, UserError
from agentledger.cli.options import PROJECT_OPTIONS, AppState, pass_state
from agentledger.cli.output import echo

if TYPE_CHECKING:
    from agentledger.evaluation.api import EvaluationOutcome


@click.command()
@click.argument("experiment")
@click.option(
    "-c",
    "--config",
    "config_file",
    metavar="FILE",
    help="Evaluation config, relative to the project [default: configs/evaluation.yaml; "
    "without one, FluxLoop's seven-metric judge].",
)
@PROJECT_OPTIONS
@click.option(
    "--name",
    metavar="NAME",
    help="Name this evaluation: named evaluations coexist, each in evaluation-NAME/.",
)
@click.option(
    "--judge-model",
    metavar="PROVIDER:MODEL",
    help="Model of every LLM judge, e.g. mock:echo to score offline [default: config].",
)
@click.option(
    "--parallel",
    type=click.IntRange(1, 1024),
    default=4,
    show_default=True,
    help="Traces being judged at once.",
)
@click.option(
    "--record-mode",
    default="live",
    show_default=True,
    metavar="live|replay|replay-or-live",
    help="live: call the judges; replay: answer every judge call from the experiment's "
    "latest evaluation (of --name) and score again offline; replay-or-live: call on a miss.",
)
@click.option(
    "--output-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Write the files here [default: evaluation/ in the experiment's folder].",
)
@click.option(
    "--rebuild",
    is_flag=True,
    help="Score nothing: write an evaluation's files again from the log.",
)
@click.option(
    "--evaluation",
    "which",
    metavar="N|ID|NAME",
    help="With --rebuild: which evaluation [default: the latest].",
)
@click.option(
    "--as-of",
    metavar="POSITION|ISO-TIME",
    help="With --rebuild: the files as the log stood at this position or UTC time.",
)
@click.option(
    "--ignore-integrity",
    is_flag=True,
    help="Score the experiment even though its log fails verify (says so on stderr).",
)
@pass_state
def evaluate(
    state: AppState,
    experiment: str,
    config_file: str | None,
    project: str | None,
    root: str | None,
    name: str | None,
    judge_model: str | None,
    parallel: int,
    record_mode: str,
    output_dir: Path | None,
    rebuild: bool,
    which: str | None,
    as_of: str | None,
    ignore_integrity: bool,
) -> None:
    """Score EXPERIMENT's traces with configs/evaluation.yaml (FluxLoop's layout).

    EXPERIMENT is an experiment id, its unique name or its output folder. Rules, LLM
    judges (every call recorded, so --record-mode replay scores again offline), weights,
    thresholds and success_criteria are applied; the scores are events of the
    evaluation's own stream and evaluation/summary.json and scores.jsonl are written
    from them (into the experiment's folder, whose summary.json then names the
    evaluation, as report rebuild does). Exit 0 when success_criteria hold, 1 when they
    do not (or a replay missed), 2 on bad config or input.
    """
    from agentledger.evaluation.api import evaluate as run_evaluation
    from agentledger.evaluation.api import rebuild_evaluation
    from agentledger.experiments.config import find_project_dir
    from agentledger.replay.book import RecordMode

    if rebuild:
        given = {
            "--config": config_file,
            "--name": name,
            "--judge-model": judge_model,
            "--record-mode": None if record_mode == "live" else record_mode,
            "--parallel": None if parallel == 4 else parallel,
        }
        clash = [flag for flag, value in given.items() if value is not None]
        if clash:
            raise UserError(f"--rebuild scores nothing; drop {clash[0]}")
    else:
        for flag, value in (("--evaluation", which), ("--as-of", as_of)):
            if value is not None:
                raise UserError(f"{flag} picks what --rebuild writes; add --rebuild or drop it")
        RecordMode.parse(record_mode)
    project_dir = find_project_dir(project, root, Path.cwd())
    store = state.store_location(project_dir)
    if rebuild:
        outcome = rebuild_evaluation(
            experiment, project_dir, store=store, which=which, as_of=as_of, output_dir=output_dir
        )
        point = f" as of {as_of}" if as_of else ""
        echo(f"Rebuilt evaluation {outcome.evaluation_id}{point} into {outcome.output_dir}")
        return
    outcome = run_evaluation(
        experiment,
        project_dir,
        store=store,
        config=config_file,
        name=name,
        record_mode=record_mode,
        parallel=parallel,
        judge_model=judge_model,
        output_dir=output_dir,
        ignore_integrity=ignore_integrity,
    )
    if outcome.integrity_warning:
        echo(f"Warning: {outcome.integrity_warning}", err=True)
    print_outcome(outcome)
    if outcome.diverged:
        echo(
            f"{outcome.diverged} trace(s) did not replay: their judge calls matched no "
            "recorded call (see reason in scores.jsonl)",
            err=True,
        )
    if not outcome.passed or outcome.diverged:
        click.get_current_context().exit(EXIT_FAILED_BAR)


def _number(value: Any) -> str:
    return "-" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)


def print_outcome(outcome: EvaluationOutcome) -> None:
    """The evaluation as text: metrics, verdicts, criteria, where the files are."""
    summary = outcome.summary
    traces = summary["traces"]
    skipped = sum(traces["skipped"].values())
    echo(
        f"Traces: {traces['scored']} scored of {traces['available']} finished"
        f"  unscored: {traces['unscored']}  skipped: {skipped}"
        f"  not finished: {traces['not_finished']}"
    )
    metrics = summary["metrics"]
    if metrics:
        width = max(12, *(len(m) for m in metrics))
        echo(f"{'metric':<{width}} {'mean':>7} {'pass':>7} {'scored':>7} {'unscored':>8}")
        for metric, row in metrics.items():
            echo(
                f"{metric:<{width}} {_number(row['mean']):>7} {row['pass_rate']:>7.1%} "
                f"{row['scored']:>7} {row['unscored']:>8}"
            )
    verdicts = "  ".join(f"{k}: {v}" for k, v in summary["verdicts"].items())
    aggregate = summary["aggregate"]
    echo(
        f"Verdicts: {verdicts}  pass rate: {aggregate['pass_rate']:.1%}"
        f"  mean {aggregate['method']}: {_number(aggregate['mean'])}"
    )
    for persona, group in (summary.get("by_persona") or {}).items():
        echo(
            f"  persona {persona}: {group['traces']} traces, pass rate "
            f"{group['pass_rate']:.1%}, mean {_number(group['mean_aggregate'])}"
        )
    judge = summary["judge"]
    if judge["calls"]:
        cost = f", cost {judge['cost']:.4f}" if judge["cost"] is not None else ""
        echo(
            f"Judge: {judge['calls']} calls ({judge['failed_calls']} failed), "
            f"{judge['prompt_tokens'] + judge['completion_tokens']} tokens{cost}"
        )
    for name, found in summary["efficiency"].items():
        if found["outliers"]:
            echo(f"Outliers ({name} > {_number(found['threshold'])}): {found['outliers']}")
    criteria = summary["success_criteria"]["criteria"]
    for criterion in criteria:
        mark = "ok  " if criterion["passed"] else "FAIL"
        echo(
            f"{mark} {criterion['name']}: {_number(criterion['actual'])} "
            f"(needs {criterion['expected']})"
        )
    passed = summary["success_criteria"]["passed"]
    echo(
        f"Success criteria: {'passed' if passed else 'failed'}"
        if criteria
        else "Success criteria: none set"
    )
    echo(f"Output: {outcome.output_dir}")
    echo(f"Evaluation: {outcome.evaluation_id}")


class PlannedEvaluation:
    """``run experiment --evaluate``: the evaluation config is read and checked before the
    experiment starts, and the experiment is scored when it ends."""

    def __init__(self, project_dir: Path, store: str, record_mode: str = "live") -> None:
        from agentledger.evaluation.api import check_settings

        self._project_dir = project_dir
        self._store = store
        check_settings(project_dir, offline_run=record_mode != "live")

    def run(self, experiment_id: str) -> bool:
        """Score the experiment, print the outcome; whether its success criteria held."""
        from agentledger.evaluation.api import evaluate as run_evaluation

        echo("Evaluating...")
        outcome = run_evaluation(experiment_id, self._project_dir, store=self._store)
        print_outcome(outcome)
        return outcome.passed
