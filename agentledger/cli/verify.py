"""``agentledger verify``: check the hash chains and seals of the log."""

from __future__ import annotations

import click

from agentledger.cli.errors import EXIT_FAILED_BAR
from agentledger.cli.options import AppState, pass_state


@click.command()
@click.argument("experiment", required=False)
@pass_state
@click.pass_context
def verify(ctx: click.Context, state: AppState, experiment: str | None) -> None:
    """Check that no event was modified, deleted, inserted or reordered.

    With EXPERIMENT (id, name or output folder) only its streams are checked. Exit 0
    when intact, 1 naming every broken link (the first one first).
    """
    from agentledger.eventstore.integrity import verify as run_verify
    from agentledger.projections.catalog import resolve_experiment

    with state.read_store() as store:
        correlation = resolve_experiment(store, experiment).experiment_id if experiment else None
        report = run_verify(store, correlation)
    scope = f"experiment {correlation}" if correlation else store.location.display()
    counts = f"{report.streams} streams, {report.events} events, {report.seals} seals"
    if report.ok:
        click.echo(f"{scope}: intact ({counts})")
        return
    for line in report.damage:
        click.echo(f"damaged: {line}")
    for problem in report.problems:
        click.echo(problem.describe())
    found = len(report.problems) + len(report.damage)
    click.echo(f"{scope}: {found} problem(s) in {counts}")
    ctx.exit(EXIT_FAILED_BAR)
