"""``agentledger run experiment``: FluxLoop-compatible simulation experiments."""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from agentledger.cli.errors import EXIT_FAILED_BAR, EXIT_INTERRUPTED, UserError
from agentledger.cli.lazy import LazyGroup
from agentledger.cli.options import PROJECT_OPTIONS, AppState, pass_state
from agentledger.cli.output import echo
from agentledger.cli.progress import ProgressDisplay

if TYPE_CHECKING:
    from agentledger.experiments.prepare import PreparedExperiment
    from agentledger.experiments.runner import ExperimentResult
    from agentledger.replay.book import RecordMode, ReplaySource


@click.group(cls=LazyGroup, lazy={"agent": "agentledger.cli.agent:agent"})
def run() -> None:
    """Run experiments or agents, recording every event."""


@run.command("experiment")
@click.option(
    "-c",
    "--config",
    "config_file",
    metavar="FILE",
    help="Simulation config, relative to the project [default: configs/simulation.yaml].",
)
@PROJECT_OPTIONS
@click.option("--inputs", "inputs_file", metavar="FILE", help="Inputs file to use instead.")
@click.option(
    "-i", "--iterations", type=click.IntRange(min=1), help="Runs per input [default: config]."
)
@click.option("-p", "--personas", metavar="A,B", help="Only inputs of these personas.")
@click.option("--output-dir", metavar="DIR", help="Where experiment folders go [experiments].")
@click.option(
    "--experiment-name", "--name", "experiment_name", metavar="NAME", help="Experiment name."
)
@click.option(
    "--parallel",
    type=click.IntRange(min=1, max=4096),
    help="Runs in flight at once [default: parallel_runs, else 1].",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    metavar="SECONDS",
    help="Per-run timeout [default: runner.timeout_seconds, else none].",
)
@click.option(
    "--resume",
    metavar="EXPERIMENT",
    help="Finish an interrupted experiment: run only its slots without a finished trace.",
)
@click.option(
    "--max-failures",
    metavar="N|P%",
    help="Failed runs tolerated before exit status 1 [default: 0].",
)
@click.option(
    "--multi-turn/--no-multi-turn",
    "multi_turn",
    default=None,
    help="Continue each run as a conversation driven by the supervisor [default: config].",
)
@click.option("--max-turns", type=click.IntRange(1, 1000), help="Turns per conversation at most.")
@click.option(
    "--auto-approve-tools/--manual-approve-tools",
    "auto_approve_tools",
    default=None,
    help="Approve ctx.tool calls automatically, or ask on the terminal [default: config].",
)
@click.option("--persona-override", metavar="NAME", help="Persona the supervisor plays.")
@click.option(
    "--supervisor-provider",
    type=click.Choice(["openai", "anthropic", "mock"]),
    help="mock plays metadata.scripted_questions; openai/anthropic ask a model.",
)
@click.option("--supervisor-model", metavar="MODEL", help="Model of the LLM supervisor.")
@click.option(
    "--supervisor-temperature",
    type=float,
    metavar="T",
    help="Sampling temperature of the supervisor (0-2).",
)
@click.option(
    "--supervisor-api-key",
    metavar="KEY",
    help="API key of the supervisor's provider (used, never stored).",
)
@click.option(
    "--record-mode",
    default="live",
    show_default=True,
    metavar="live|replay|replay-or-live",
    help="live: call models; replay: answer every call from the last run of this "
    "experiment's name (a miss fails the run); replay-or-live: call live on a miss.",
)
@click.option(
    "--workers",
    type=click.IntRange(1, 256),
    help="Run the slots in N worker processes that claim them from the store; "
    "`agentledger worker EXPERIMENT` on other machines can join [default: this process].",
)
@click.option(
    "--lease-seconds",
    type=click.FloatRange(1, 3600),
    metavar="SECONDS",
    help="With --workers: how long a worker's claim on a slot holds if it stops "
    "renewing it (dies); then another worker takes the slot over [default: 30].",
)
@click.option(
    "--evaluate",
    "evaluate_after",
    is_flag=True,
    help="When it ends, score it with configs/evaluation.yaml as `agentledger evaluate` "
    "does; exit 1 when its success_criteria fail.",
)
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation (CI).")
@pass_state
def experiment(
    state: AppState,
    config_file: str | None,
    project: str | None,
    root: str | None,
    inputs_file: str | None,
    iterations: int | None,
    personas: str | None,
    output_dir: str | None,
    experiment_name: str | None,
    parallel: int | None,
    timeout: float | None,
    resume: str | None,
    max_failures: str | None,
    multi_turn: bool | None,
    max_turns: int | None,
    auto_approve_tools: bool | None,
    persona_override: str | None,
    supervisor_provider: str | None,
    supervisor_model: str | None,
    supervisor_temperature: float | None,
    supervisor_api_key: str | None,
    record_mode: str,
    workers: int | None,
    lease_seconds: float | None,
    evaluate_after: bool,
    yes: bool,
) -> None:
    """Run every input x iteration of a simulation experiment against the target.

    Reads configs/simulation.yaml (either FluxLoop layout) and the inputs file, records
    each run as a trace in the store, and writes the report folder
    experiments/<name>_<YYYYMMDD_HHMMSS>/. Exit 0 when every run succeeded, 1 when
    failed runs exceed --max-failures, 2 on bad input, 130 when interrupted.

    With --workers N, N worker processes claim the slots from the store under a lease
    (any `agentledger worker EXPERIMENT` sharing the store joins in); progress counts every
    worker's runs, from the log.
    """
    from agentledger.api import resume_experiment, run_experiment
    from agentledger.experiments.config import Overrides, find_project_dir, parse_max_failures
    from agentledger.replay.book import RecordMode

    if resume:
        given = {
            "--config": config_file,
            "--inputs": inputs_file,
            "--iterations": iterations,
            "--personas": personas,
            "--output-dir": output_dir,
            "--experiment-name": experiment_name,
            "--timeout": timeout,
            "--multi-turn": multi_turn,
            "--max-turns": max_turns,
            "--persona-override": persona_override,
            "--supervisor-provider": supervisor_provider,
            "--supervisor-model": supervisor_model,
            "--supervisor-temperature": supervisor_temperature,
            "--lease-seconds": lease_seconds,
        }
        clash = [flag for flag, value in given.items() if value is not None]
        if clash:
            raise UserError(f"--resume runs the plan recorded with the experiment; drop {clash[0]}")
    allowed = parse_max_failures(max_failures or "0")
    mode = RecordMode.parse(record_mode)
    if resume and mode is not RecordMode.LIVE:
        raise UserError(
            "--resume continues with the experiment's own record mode; drop --record-mode"
        )
    if lease_seconds is not None and workers is None:
        raise UserError("--lease-seconds is the lease of worker processes; add --workers N")
    project_dir = find_project_dir(project, root, Path.cwd())
    store = state.store_location(project_dir)
    evaluation = None
    if evaluate_after:
        from agentledger.cli.evaluate import PlannedEvaluation

        # A bad config fails before any run.
        evaluation = PlannedEvaluation(project_dir, store, mode.value)
    display = ProgressDisplay(interactive=sys.stderr.isatty())
    try:
        if resume:
            result = resume_experiment(
                resume,
                project_dir,
                store=store,
                parallel=parallel,
                workers=workers,
                listener=display,
                handle_signals=True,
                on_second_interrupt=hard_exit,
            )
        else:
            overrides = Overrides(
                iterations=iterations,
                parallel=parallel,
                timeout_seconds=timeout,
                inputs_file=inputs_file,
                personas=_split(personas),
                output_dir=output_dir,
                experiment_name=experiment_name,
                max_failures=allowed,
                multi_turn=multi_turn,
                max_turns=max_turns,
                auto_approve_tools=auto_approve_tools,
                persona_override=persona_override,
                supervisor_provider=supervisor_provider,
                supervisor_model=supervisor_model,
                supervisor_temperature=supervisor_temperature,
            )
            result = run_experiment(
                project_dir,
                store=store,
                config=config_file,
                overrides=overrides,
                record_mode=mode.value,
                workers=workers,
                lease_seconds=lease_seconds,
                listener=display,
                approver=TerminalApprover() if sys.stdin.isatty() else None,
                supervisor_api_key=supervisor_api_key,
                on_plan=lambda prepared, source: _show_plan(prepared, source, mode, yes, workers),
                handle_signals=True,
                on_second_interrupt=hard_exit,
            )
    finally:
        display.close()
    print_result(result)
    passed = evaluation.run(result.experiment_id) if evaluation is not None else True
    _check_failures(result, allowed)
    if not passed:
        click.get_current_context().exit(EXIT_FAILED_BAR)


def _count(n: int, noun: str, plural: str | None = None) -> str:
    return f"{n:,} {noun}" if n == 1 else f"{n:,} {plural or noun + 's'}"


def _show_plan(
    prepared: PreparedExperiment,
    source: ReplaySource | None,
    mode: RecordMode,
    yes: bool,
    workers: int | None = None,
) -> None:
    """Print the plan; on a terminal, ask before the first run unless --yes."""
    plan = prepared.plan
    persona_note = f" (personas: {', '.join(plan.personas)})" if plan.personas else ""
    replay_note = f", {mode.value} from {source.experiment_id}" if source else ""
    if plan.recordings:
        # Argument replay runs every input once with each recorded call (docs/replay.md).
        shape = (
            f"{_count(len(plan.inputs) // plan.recordings, 'input')} x "
            f"{_count(plan.recordings, 'recorded call')} x {_count(plan.iterations, 'iteration')}"
        )
    else:
        shape = f"{_count(len(plan.inputs), 'input')} x {_count(plan.iterations, 'iteration')}"
    spread = f" in {_count(workers, 'worker process', 'worker processes')}" if workers else ""
    echo(
        f"Plan: {shape}{persona_note} = {_count(plan.total_runs, 'run')}, "
        f"parallel {prepared.settings.parallel}{spread},"
        f" model {prepared.settings.model.label}{replay_note}"
    )
    if not yes and sys.stdin.isatty() and sys.stdout.isatty():
        click.confirm("Start the experiment?", default=True, abort=True)


class TerminalApprover:
    """Asks on the terminal about each tool call: approve, reject, or approve all from now
    on. One question at a time, whatever the parallelism."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._all = False

    def approve(
        self, trace_id: str, tool: str, arguments: Mapping[str, Any]
    ) -> tuple[bool, str, str]:
        import orjson

        with self._lock:
            if self._all:
                return True, "user", ""
            shown = orjson.dumps(dict(arguments)).decode()
            shown = shown if len(shown) <= 300 else shown[:297] + "..."
            answer = click.prompt(
                f"Tool call in {trace_id}: {tool}({shown})\nApprove? [y]es, [n]o, [a]pprove all",
                type=click.Choice(["y", "n", "a"]),
                default="y",
                err=True,
            )
            if answer == "a":
                self._all = True
            if answer == "n":
                return False, "user", "rejected on the terminal"
            return True, "user", ""


def print_result(result: ExperimentResult) -> None:
    """Print how the experiment went and where its report is; exit 130 if it was
    interrupted."""
    finished = result.successful + result.failed
    rate = f"{result.successful / finished:.1%}" if finished else "n/a"
    click.echo(
        f"Runs: {finished}/{result.total}  ok: {result.successful}  failed: {result.failed}"
        f"  success rate: {rate}"
    )
    click.echo(f"Output: {result.output_dir}")
    click.echo(f"Experiment: {result.experiment_id}")
    if result.already_completed:
        click.echo(
            "Already completed: nothing left to run; its report was written again from the log.",
            err=True,
        )
    if result.interrupted:
        click.echo(
            f"Interrupted: resume with agentledger run experiment --resume {result.experiment_id}",
            err=True,
        )
        click.get_current_context().exit(EXIT_INTERRUPTED)


def _split(value: str | None) -> list[str] | None:
    if value is None:
        return None
    names = [v.strip() for v in value.split(",") if v.strip()]
    if not names:
        raise UserError("--personas needs at least one persona name, e.g. -p novice,expert")
    return names


def hard_exit() -> None:
    """Second Ctrl-C: leave at once; every committed event is already safe in the store."""
    sys.stderr.write("\nInterrupted again: exiting now.\n")
    sys.stderr.flush()
    os._exit(EXIT_INTERRUPTED)


def _check_failures(result: ExperimentResult, max_failures: str) -> None:
    """Exit 1 when more runs failed than ``--max-failures`` allows."""
    from agentledger.experiments.config import failures_allowed

    allowed = failures_allowed(max_failures, result.total)
    if result.failed > allowed:
        click.echo(
            f"{result.failed} run(s) failed, more than --max-failures {max_failures} allows",
            err=True,
        )
        click.get_current_context().exit(EXIT_FAILED_BAR)
