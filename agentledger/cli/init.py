"""``agentledger init``: create a runnable project."""

from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.argument("directory", default=".", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--template",
    type=click.Choice(["experiment", "agent"]),
    default="experiment",
    show_default=True,
    help="experiment: a FluxLoop-style simulation; agent: an AIGNE-style agent project.",
)
@click.option("--force", is_flag=True, help="Overwrite files that already exist.")
def init(directory: Path, template: str, force: bool) -> None:
    """Create a project in DIRECTORY that runs offline, with no API key."""
    from agentledger.errors import ConfigError
    from agentledger.scaffold import init_project

    try:
        written = init_project(directory, template, force=force)
    except OSError as exc:
        raise ConfigError(f"cannot write into {directory}: {exc.strerror}") from None
    article = "an" if template[0] in "aeiou" else "a"
    click.echo(f"Created {article} {template} project in {directory} ({len(written)} files).")
    if template == "agent":
        click.echo(f'Run it: agentledger run agent {directory} -i "How do I export my notes?"')
    else:
        click.echo(f"Run it: cd {directory} && agentledger run experiment --yes")
