"""``agentledger parse experiment``: FluxLoop's per-trace Markdown from an output folder."""

from __future__ import annotations

import shutil
from pathlib import Path

import click

from agentledger.cli.errors import UserError


@click.group()
def parse() -> None:
    """Turn experiment output files into readable documents."""


@parse.command("experiment")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "-o",
    "--output",
    default="per_trace_analysis",
    show_default=True,
    help="Folder (inside DIRECTORY) for the parsed files.",
)
@click.option(
    "-f",
    "--format",
    "fmt",
    type=click.Choice(["md"]),
    default="md",
    show_default=True,
    help="Output format.",
)
@click.option("--overwrite", is_flag=True, help="Replace the output folder if it exists.")
def parse_experiment(directory: Path, output: str, fmt: str, overwrite: bool) -> None:
    """Write one Markdown file per trace (and per_trace.jsonl) from DIRECTORY's
    trace_summary.jsonl and observations.jsonl, as FluxLoop's parse does."""
    from agentledger.projections.parse import ParseError, parse_folder

    if not directory.is_dir():
        raise UserError(f"experiment folder {directory} not found")
    target = directory / output
    if target.exists():
        if not overwrite:
            raise UserError(f"{target} already exists; pass --overwrite to replace it")
        shutil.rmtree(target)
    try:
        count = parse_folder(directory, target)
    except ParseError as exc:
        raise UserError(str(exc)) from None
    click.echo(f"Wrote {count} trace files and per_trace.jsonl to {target}")
