"""``agentledger worker``: join an experiment whose slots are shared, from any machine."""

from __future__ import annotations

import sys
import threading
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
    from agentledger.api import load_env
    from agentledger.cli.run import hard_exit
    from agentledger.experiments.runner import ExperimentRunner
    from agentledger.projections.catalog import resolve_experiment
    from agentledger.workers.coordination import LogProgress, prepare_worker, run_worker

    project_dir = Path(project).resolve() if project else None
    env = load_env(project_dir or Path.cwd())
    with state.open_store(project_dir, create=False) as store:
        if supervisor_api_key:
            store.redactor.add_secret(supervisor_api_key)
        experiment_id = resolve_experiment(store, experiment).experiment_id
        started, prepared, replay = prepare_worker(
            store,
            experiment_id,
            env,
            parallel=parallel,
            project_dir=project_dir,
            supervisor_api_key=supervisor_api_key,
        )
        display = ProgressDisplay(interactive=sys.stderr.isatty())
        progress = LogProgress(store, experiment_id, started.plan, display)
        progress.start(Path(started.output_dir or prepared.settings.output_directory))
        stop = threading.Event()
        watcher = threading.Thread(target=progress.follow, args=(stop,), daemon=True)
        watcher.start()
        runner = ExperimentRunner(store, handle_signals=True, on_second_interrupt=hard_exit)
        try:
            outcome = run_worker(runner, store, started, prepared, replay)
        finally:
            stop.set()
            watcher.join()
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
    click.echo(f"Experiment {experiment_id}: {status}")
