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
    from agentledger.experiments.prepare import PreparedExperiment
    from agentledger.projections.compare import ReplayRow


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


@click.command("diff")
@click.argument("experiment_a", metavar="EXPERIMENT_A")
@click.argument("experiment_b", metavar="EXPERIMENT_B")
@click.option("--json", "as_json", is_flag=True, help="Print the comparison as JSON.")
@pass_state
def diff(state: AppState, experiment_a: str, experiment_b: str, as_json: bool) -> None:
    """Compare experiment B against A run by run (aligned by input, iteration, persona):
    success rate, latency and token deltas, and every run whose success or output changed,
    with a unified diff of the outputs. Exit 1 when a success in A failed in B.
    """
    from agentledger.projections.catalog import resolve_experiment
    from agentledger.projections.compare import diff_experiments
    from agentledger.projections.report import load_report

    store = state.read_store(Path.cwd())
    try:
        a = resolve_experiment(store, experiment_a).experiment_id
        b = resolve_experiment(store, experiment_b).experiment_id
        result = diff_experiments(a, load_report(store, a).traces, b, load_report(store, b).traces)
    finally:
        store.close()
    if as_json:
        click.echo(orjson.dumps(result.model_dump(mode="json"), option=orjson.OPT_INDENT_2))
    else:
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
    if result.regressions:
        click.get_current_context().exit(EXIT_FAILED_BAR)
