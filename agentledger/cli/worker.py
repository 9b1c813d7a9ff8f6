"""``agentledger worker``: join an experiment whose slots are shared, from any machine."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from agentledger.cli.errors import EXIT_INTERRUPTED
from agentledger.cli.options import AppState, pass_state
from agentledger.cli.progress import ProgressDisplay


@click.command()
@click.argument("experiment")
@click.option(
    "--parallel",
    type=click.IntRange(min=1, max=4096),
    help="Runs this worker keeps in flight [default: the experiment's parallel].",
)
@click.option(
    "--project",
    "project",
    type=click.Path(exists=True, file_okay=False),
    metavar="DIR",
    help="Where the experiment's project is on this machine [default: where it was "
    "started, if that exists here].",
)
@click.option(
    "--supervisor-api-key",
    metavar="KEY",
    help="API key of an LLM supervisor's provider (used, never stored).",
)
@pass_state
def worker(
    state: AppState,
    experiment: str,
    parallel: int | None,
    project: str | None,
    supervisor_api_key: str | None,
) -> None:
    """Claim and run slots of EXPERIMENT (id or name) until none is left.

    The experiment must have been started with `run experiment --workers N` against the same
    store (--store or AGENTLEDGER_STORE: a PostgreSQL every machine reaches). Each slot is
    claimed under a lease the worker renews while it runs; if the worker dies, another
    takes the slot over once the lease runs out. Progress shows every worker's runs. Exit 0
    when no slot is left, 2 on bad input, 130 when interrupted.
    """
    from agentledger.api import join_experiment
    from agentledger.cli.run import hard_exit

    display = ProgressDisplay(interactive=sys.stderr.isatty())
    try:
        outcome = join_experiment(
            experiment,
            project,
            store=state.store_location(Path(project).resolve() if project else None),
            parallel=parallel,
            supervisor_api_key=supervisor_api_key,
            listener=display,
            handle_signals=True,
            on_second_interrupt=hard_exit,
        )
    finally:
        display.close()
    taken = f", {outcome.taken_over} taken over" if outcome.taken_over else ""
    refused = f", {outcome.rejected} refused (slot taken over)" if outcome.rejected else ""
    click.echo(
        f"Worker {outcome.owner}: {outcome.ran} runs (ok {outcome.successful}, "
        f"failed {outcome.failed}){taken}{refused}"
    )
    if outcome.interrupted:
        click.echo("Interrupted: its unfinished slots are free for other workers.", err=True)
        click.get_current_context().exit(EXIT_INTERRUPTED)
    status = "complete" if outcome.completed else "still running on other workers"
    click.echo(f"Experiment {outcome.experiment_id}: {status}")
