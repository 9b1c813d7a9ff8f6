"""``agentledger export`` / ``import``: move the log between stores as JSON lines."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import click

from agentledger.cli.errors import UserError
from agentledger.cli.options import AppState, pass_state


@click.command()
@click.argument("experiment", required=False)
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="File to write."
)
@pass_state
def export(state: AppState, experiment: str | None, output: Path | None) -> None:
    """Write the log (or one EXPERIMENT) as JSON lines to stdout or --output."""
    from agentledger.eventstore.transfer import export_events
    from agentledger.projections.catalog import resolve_experiment

    with state.read_store() as store:
        correlation = resolve_experiment(store, experiment).experiment_id if experiment else None
        if output is None:
            export_events(store, sys.stdout.buffer, correlation)
            return
        directory = output.parent if str(output.parent) else Path(".")
        if not directory.is_dir():
            raise UserError(f"--output {output}: folder {directory} does not exist")
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{output.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as handle:
                count = export_events(store, handle, correlation)
            os.replace(tmp, output)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    click.echo(f"exported {count} events to {output}", err=True)


@click.command("import")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@pass_state
def import_(state: AppState, file: Path) -> None:
    """Import an export FILE into the store: all events or none."""
    from agentledger.eventstore.transfer import import_events

    if not file.is_file():
        raise UserError(f"import file {file} does not exist")
    with state.open_store() as store:
        count = import_events(store, file)
    click.echo(f"imported {count} events into {store.location.display()}")
