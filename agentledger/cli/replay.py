"""``agentledger replay`` and ``agentledger diff``: re-running from the log, comparing runs."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click
import orjson

from agentledger.cli.errors import EXIT_FAILED_BAR, UserError
from agentledger.cli.options import AppState, pass_state
from agentledger.cli.progress import ProgressDisplay
from agentledger.cli.run import hard_exit, print_result

if TYPE_CHECKING:
    from agentledger.agents.session import SessionReplay
    from agentledger.evaluation.compare import EvaluationDiff
    from agentledger.eventstore.store import EventStore
    from agentledger.experiments.prepare import PreparedExperiment
    from agentledger.projections.compare import ExperimentDiff, ReplayRow


@click.command("replay")
@click.argument("target", metavar="EXPERIMENT|TRACE|SESSION")
@click.option(
    "--mode",
    default="replay",
    show_default=True,
    metavar="replay|replay-or-live",
    help="replay: answer every model call from the log, a miss fails the run; "
    "replay-or-live: call the live model on a miss and record it.",
)
@click.option(
    "--project",
    "project",
    metavar="DIR",
    help="Where the project is now, if it moved since it was recorded [default: recorded].",
)
@click.option("--parallel", type=click.IntRange(min=1, max=4096), help="Runs in flight at once.")
@click.option("--json", "as_json", is_flag=True, help="Print the verdicts as JSON lines.")
@pass_state
def replay(
    state: AppState,
    target: str,
    mode: str,
    project: str | None,
    parallel: int | None,
    as_json: bool,
) -> None:
    """Re-run a recorded experiment (or one trace) with its recorded inputs, seeds and
    model answers, as a new experiment linked by replay_of, and report per run whether it
    came out identical, changed its output, or diverged from the recording.

    Exit 0 only when every run is identical; 1 otherwise; 2 on bad input.
    """
    from agentledger.api import replay_agent_session, replay_experiment
    from agentledger.cli.sessions import WHERE_SESSIONS_ARE, missing_store
    from agentledger.eventstore.errors import StoreUnavailableError
    from agentledger.projections.compare import count_verdicts
    from agentledger.projections.errors import UnknownExperimentError
    from agentledger.replay.book import RecordMode

    record_mode = RecordMode.parse(mode, "--mode")
    if record_mode is RecordMode.LIVE:
        raise UserError("--mode live is not a replay; use replay or replay-or-live")
    moved_to = Path(project).resolve() if project else None
    if moved_to is not None and not moved_to.is_dir():
        raise UserError(f"--project {project}: not a directory")
    store_url = state.store_location(Path.cwd())
    try:
        session = replay_agent_session(
            target, Path.cwd(), store=store_url, mode=record_mode.value, project_dir=moved_to
        )
    except StoreUnavailableError as exc:
        raise UserError(missing_store(exc, experiments=True)) from None
    if session is not None:
        _print_session_replay(session)
        return

    def announce(prepared: PreparedExperiment, experiment_id: str, slot: int | None) -> None:
        what = f"run {slot} of " if slot is not None else ""
        click.echo(
            f"Replaying {what}experiment {experiment_id} ({prepared.plan.total_runs} runs, "
            f"mode {record_mode.value}, project {prepared.settings.project_dir})"
        )

    display = ProgressDisplay(interactive=sys.stderr.isatty())
    try:
        replayed = replay_experiment(
            target,
            Path.cwd(),
            store=store_url,
            mode=record_mode.value,
            project_dir=moved_to,
            parallel=parallel,
            listener=display,
            on_plan=announce,
            handle_signals=True,
            on_second_interrupt=hard_exit,
        )
    except UnknownExperimentError as exc:
        # Not a session either (looked for first): say where sessions are kept.
        raise UserError(f"{exc}; nor is there an agent session: {WHERE_SESSIONS_ARE}") from None
    finally:
        display.close()
    print_result(replayed.result)
    rows = replayed.rows
    _print_verdicts(rows, as_json)
    counts = count_verdicts(rows)
    click.echo(
        f"Replay: {counts.identical} identical, {counts.changed} output changed, "
        f"{counts.diverged} diverged" + (f", {counts.missing} missing" if counts.missing else "")
    )
    if not counts.all_identical:
        click.get_current_context().exit(EXIT_FAILED_BAR)


def _print_session_replay(outcome: SessionReplay) -> None:
    """Say whether the replayed agent session came out identical; exit 1 if not."""
    click.echo(f"Session: {outcome.session_id} (replay of {outcome.source_id})")
    if outcome.divergence is not None:
        click.echo(outcome.divergence.message())
        verdict = "diverged"
    elif outcome.changed_turns:
        for index in outcome.changed_turns:
            line = _turn_change(outcome, index)
            if line:
                click.echo(line)
        verdict = f"output changed (turns {', '.join(str(t + 1) for t in outcome.changed_turns)})"
    else:
        verdict = "identical"
    failed = [
        f"turn {index + 1} failed as recorded: {turn.error}"
        for index, turn in enumerate(outcome.replayed)
        if turn.error and index not in outcome.changed_turns
    ]
    note = f" ({'; '.join(failed)})" if failed else ""
    click.echo(f"Replay: {verdict}, {outcome.turns} turn(s){note}")
    if not outcome.identical:
        click.get_current_context().exit(EXIT_FAILED_BAR)


def _turn_change(outcome: SessionReplay, index: int) -> str | None:
    """A line on a turn whose outcome changed kind (failed / answered), or None."""
    recorded = outcome.recorded[index] if index < len(outcome.recorded) else None
    replayed = outcome.replayed[index] if index < len(outcome.replayed) else None
    if recorded is None or replayed is None:
        return f"turn {index + 1}: {'not replayed' if replayed is None else 'not recorded'}"
    if recorded.error and not replayed.error:
        return f"turn {index + 1}: answered where the recording failed ({recorded.error})"
    if replayed.error and not recorded.error:
        return f"turn {index + 1}: failed ({replayed.error}) where the recording answered"
    if recorded.error != replayed.error:
        return f"turn {index + 1}: failed with {replayed.error}, recorded {recorded.error}"
    return None


def _print_verdicts(rows: list[ReplayRow], as_json: bool) -> None:
    if as_json:
        for row in rows:
            click.echo(orjson.dumps(row.model_dump(mode="json")).decode())
        return
    width = max([len(r.trace_id) for r in rows] + [5])
    click.echo(f"{'trace':<{width}}  {'verdict':<14}  detail")
    for row in rows:
        click.echo(f"{row.trace_id:<{width}}  {row.verdict:<14}  {row.detail}".rstrip())


DEFAULT_MAX_REGRESSION = 0.05
"""How far a metric's mean score (0..1) may fall from A to B before ``diff`` fails."""


@click.command("diff")
@click.argument("experiment_a", metavar="EXPERIMENT_A")
@click.argument("experiment_b", metavar="EXPERIMENT_B")
@click.option("--json", "as_json", is_flag=True, help="Print the comparison as JSON.")
@click.option(
    "--max-regression",
    "max_regression",
    metavar="DROP",
    help="When both experiments have evaluations: how far a metric's mean score (0..1) may "
    "fall from A to B; a larger fall exits 1, as does a trace that lost its PASS whatever "
    f"DROP is. 0 fails on any fall [default: {DEFAULT_MAX_REGRESSION}].",
)
@click.option(
    "--evaluation",
    "which",
    metavar="NAME",
    help="Compare the latest evaluations named NAME (evaluate --name) [default: the "
    "latest evaluation of each experiment].",
)
@pass_state
def diff(
    state: AppState,
    experiment_a: str,
    experiment_b: str,
    as_json: bool,
    max_regression: str | None,
    which: str | None,
) -> None:
    """Compare experiment B against A run by run (aligned by input, iteration, persona):
    success rate, latency and token deltas, and every run whose success or output changed,
    with a unified diff of the outputs. When both have evaluations, also each metric's
    mean and pass rate and every trace whose scores changed. Exit 1 when a success in A
    failed in B, or a score regressed beyond --max-regression; 2 on bad input.
    """
    from agentledger.projections.catalog import resolve_experiment
    from agentledger.projections.compare import diff_experiments
    from agentledger.projections.report import load_report

    threshold = _max_regression(max_regression)
    store = state.read_store(Path.cwd())
    try:
        a = resolve_experiment(store, experiment_a).experiment_id
        b = resolve_experiment(store, experiment_b).experiment_id
        scores = _compare_scores(store, a, b, which, threshold, explicit=max_regression)
        result = diff_experiments(a, load_report(store, a).traces, b, load_report(store, b).traces)
    finally:
        store.close()
    if as_json:
        document = result.model_dump(mode="json")
        if scores is not None:
            document["evaluation"] = scores.as_dict()
        click.echo(orjson.dumps(document, option=orjson.OPT_INDENT_2))
    else:
        _print_diff(result, a, b)
        if scores is not None:
            _print_score_diff(scores)
    if result.regressions or (scores is not None and scores.regressions):
        click.get_current_context().exit(EXIT_FAILED_BAR)


def _max_regression(text: str | None) -> float:
    if text is None:
        return DEFAULT_MAX_REGRESSION
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 1:
        raise UserError(
            f"--max-regression {text!r}: give the largest tolerated fall of a mean score, "
            "between 0 and 1 (0.05 = five points of a 0..1 score)"
        )
    return value


def _compare_scores(
    store: EventStore, a: str, b: str, which: str | None, threshold: float, *, explicit: str | None
) -> EvaluationDiff | None:
    """The score changes from A's evaluation to B's, or None when a side has none (said on
    stderr); a flag about scores given for experiments without them is refused."""
    from agentledger.evaluation.catalog import latest_of, list_evaluations
    from agentledger.evaluation.compare import compare_evaluations

    picked = {}
    for label, experiment_id in (("A", a), ("B", b)):
        refs = list_evaluations(store, experiment_id)
        ref = latest_of(refs, which)
        if ref is None and which is not None:
            names = sorted({r.name for r in refs if r.name is not None})
            has = f"its named evaluations are {', '.join(names)}" if names else "none is named"
            raise UserError(
                f"--evaluation {which!r}: experiment {label} ({experiment_id}) has no "
                f"evaluation named so ({has}); run agentledger evaluate {experiment_id} "
                f"--name {which}"
            )
        if ref is None:
            if explicit is not None:
                raise UserError(
                    f"--max-regression: experiment {label} ({experiment_id}) has no "
                    f"evaluation to compare; run agentledger evaluate {experiment_id} first, "
                    "or drop --max-regression"
                )
            if list_evaluations(store, b if label == "A" else a):
                click.echo(
                    f"Scores not compared: experiment {label} ({experiment_id}) has no "
                    f"evaluation (agentledger evaluate {experiment_id})",
                    err=True,
                )
            return None
        picked[label] = ref.evaluation_id
    return compare_evaluations(store, picked["A"], picked["B"], threshold=threshold)


def _print_diff(result: ExperimentDiff, a: str, b: str) -> None:
    sides = (result.a, result.b)
    click.echo(f"{'':<14}{'A ' + a:>22}{'B ' + b:>22}{'delta':>12}")
    click.echo(
        f"{'success rate':<14}"
        + "".join(f"{s.success_rate:>22.1%}" for s in sides)
        + f"{result.success_rate_delta:>+12.1%}"
    )
    click.echo(
        f"{'avg ms':<14}"
        + "".join(f"{s.avg_duration_ms:>22.1f}" for s in sides)
        + f"{result.avg_duration_ms_delta:>+12.1f}"
    )
    click.echo(
        f"{'tokens':<14}"
        + "".join(f"{s.total_tokens:>22}" for s in sides)
        + f"{result.total_tokens_delta:>+12}"
    )
    click.echo(f"Changed runs: {len(result.changed)}, regressions: {result.regressions}")
    for run in result.changed:
        mark = "REGRESSION " if run.regression else ""
        click.echo(
            f"\n{mark}input #{run.input_index} iteration {run.iteration}"
            f"{' persona ' + run.persona if run.persona else ''}: success "
            f"{run.success_a} -> {run.success_b}"
        )
        if run.output_diff:
            click.echo(run.output_diff)


def _score(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _print_score_diff(scores: EvaluationDiff) -> None:
    """The metric table, then each trace whose scores changed."""
    click.echo(
        f"\nScores: evaluation {scores.evaluation_a} -> {scores.evaluation_b} "
        f"(max regression {scores.threshold:g})"
    )
    if scores.config_changed:
        click.echo("Note: the two evaluations ran with different evaluation configs")
    width = max([len(m.metric) for m in scores.metrics] + [12])
    click.echo(
        f"{'metric':<{width}} {'mean A':>8} {'mean B':>8} {'delta':>8} {'pass A':>8} {'pass B':>8}"
    )
    for m in scores.metrics:
        delta = "-" if m.delta is None else f"{m.delta:+.3f}"
        mark = "  REGRESSION" if m.regressed(scores.threshold) else ""
        click.echo(
            f"{m.metric:<{width}} {_score(m.mean_a):>8} {_score(m.mean_b):>8} {delta:>8} "
            f"{_rate(m.pass_rate_a):>8} {_rate(m.pass_rate_b):>8}{mark}"
        )
    click.echo(
        f"{'pass rate':<{width}} {_rate(scores.pass_rate_a):>8} {_rate(scores.pass_rate_b):>8} "
        f"{scores.pass_rate_delta * 100:>+7.1f}pt"
    )
    lost = sum(1 for t in scores.traces if t.regressed)
    click.echo(
        f"Changed scores: {len(scores.traces)} traces, regressions: {len(scores.regressions)}"
        f" ({lost} traces lost PASS)"
    )
    for t in scores.traces:
        mark = "REGRESSION " if t.regressed else ""
        persona = f" persona {t.slot[2]}" if t.slot[2] else ""
        changed = [
            f"{metric} {_score(t.scores_a.get(metric))} -> {_score(t.scores_b.get(metric))}"
            for metric in [*t.scores_a, *(m for m in t.scores_b if m not in t.scores_a)]
            if t.scores_a.get(metric) != t.scores_b.get(metric)
        ]
        click.echo(
            f"{mark}trace {t.trace_b or t.trace_a} (input #{t.slot[0]} iteration {t.slot[1]}"
            f"{persona}): {t.verdict_a or 'missing'} -> {t.verdict_b or 'missing'}, aggregate "
            f"{_score(t.aggregate_a)} -> {_score(t.aggregate_b)}"
            + (f"; {', '.join(changed)}" if changed else "")
        )
