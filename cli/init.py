"""``agentledger init``: create a runnable project."""

from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.argument("directory", default=".", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--template",
    type=click.Choice(["experiment"]),
    default="experiment",
    show_default=True,
    help="Project kind: a FluxLoop-style simulation experiment.",
)
@click.option("--force", is_flag=True, help="Overwrite files that already exist.")
def init(directory: Path, template: str, force: bool) -> None:
    """Create a project in DIRECTORY that runs offline, with no API key."""
    from runner.errors import ConfigError
    from runner.scaffold import init_project

    try:
        written = init_project(directory, template, force=force)
    except OSError as exc:
        raise ConfigError(f"cannot write into {directory}: {exc.strerror}") from None
    click.echo(f"Created a {template} project in {directory} ({len(written)} files).")
    click.echo(f"Run it: cd {directory} && agentledger run experiment --yes")
