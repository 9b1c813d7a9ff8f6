"""``agentledger verify``: check the hash chains and seals of the log."""

from __future__ import annotations

import click

from agentledger.cli.errors import EXIT_FAILED_BAR, UserError
from agentledger.cli.options import AppState, pass_state


@click.command()
@click.argument("experiment", required=False)
@click.option(
    "--against",
    "against",
    metavar="CHECKPOINT",
    type=click.Path(dir_okay=False),
    help="Also prove the log is the one a checkpoint file stated, grown or not "
    "(catches events cut from its end and whole rewrites).",
)
@click.option(
    "-v",
    "--verbose",
    is_flag=True,
    help="Under each damage summary, list every finding behind it.",
)
@pass_state
@click.pass_context
def verify(
    ctx: click.Context,
    state: AppState,
    experiment: str | None,
    against: str | None,
    verbose: bool,
) -> None:
    """Check that no event was modified, deleted, inserted or reordered, and that the
    database itself is sound.

    With EXPERIMENT (id, name or output folder) only its streams are checked. Signed
    seals are checked when AGENTLEDGER_SIGNING_KEY is set. Exit 0 when intact, 1 naming
    every broken event and one line per kind of damage to the database (the first one
    first), 2 when there is no store to check.
    """
    from agentledger.eventstore.checkpoint import Checkpoint, compare, signing_key
    from agentledger.eventstore.errors import StoreDamagedError
    from agentledger.eventstore.integrity import RESTORE
    from agentledger.eventstore.integrity import verify as run_verify
    from agentledger.projections.catalog import resolve_experiment

    checkpoint = None
    if against is not None:
        checkpoint = Checkpoint.parse(_read_checkpoint(against), f"--against {against}")
    try:
        with state.read_store() as store:
            correlation = (
                resolve_experiment(store, experiment).experiment_id if experiment else None
            )
            report = run_verify(store, correlation)
            comparison = (
                compare(checkpoint, store.log_entries(), signing_key()) if checkpoint else None
            )
    except StoreDamagedError as exc:
        # Too damaged to open (or to find the experiment in): that is verify's answer.
        click.echo(f"damaged: the store cannot be read ({exc.finding}); {RESTORE}")
        ctx.exit(EXIT_FAILED_BAR)
    if checkpoint is not None and comparison is not None:
        signature = {
            "valid": "signature valid",
            "unsigned": "unsigned",
            "unchecked": "signed, not checked: set AGENTLEDGER_SIGNING_KEY",
            "invalid": "signature INVALID",
        }[comparison.signature]
        if comparison.ok:
            click.echo(
                f"checkpoint at position {checkpoint.position} ({signature}): the log holds "
                "it unchanged"
            )
        else:
            for finding in comparison.findings:
                report.add_damage(f"checkpoint: {finding}")
    if report.unchecked_signatures:
        click.echo(
            f"{report.unchecked_signatures} signed seal(s) not checked: set "
            "AGENTLEDGER_SIGNING_KEY to check them",
            err=True,
        )
    scope = f"experiment {correlation}" if correlation else store.location.display()
    counts = f"{report.streams} streams, {report.events} events, {report.seals} seals"
    if report.ok:
        click.echo(f"{scope}: intact ({counts})")
        return
    for line in report.damage:
        click.echo(f"damaged: {line}")
        details = report.damage_details.get(line, [])
        if verbose:
            for detail in details:
                click.echo(f"  {detail}")
    for problem in report.problems:
        click.echo(problem.describe())
    found = len(report.problems) + len(report.damage)
    more = any(len(d) > 1 for d in report.damage_details.values()) and not verbose
    hint = " (--verbose lists every finding)" if more else ""
    click.echo(f"{scope}: {found} problem(s) in {counts}{hint}")
    ctx.exit(EXIT_FAILED_BAR)


def _read_checkpoint(path: str) -> bytes:
    from agentledger.documents import MAX_DOCUMENT_BYTES

    try:
        with open(path, "rb") as handle:
            return handle.read(MAX_DOCUMENT_BYTES)
    except OSError as exc:
        raise UserError(f"--against {path}: {exc.strerror}; give a checkpoint file") from None


@click.command()
@click.option(
    "-o",
    "--output",
    "output",
    metavar="FILE",
    type=click.Path(dir_okay=False, writable=True),
    help="Also write the checkpoint to FILE (refused if it exists).",
)
@pass_state
def checkpoint(state: AppState, output: str | None) -> None:
    """Print a statement of the log's head: its last position and a root hash over every
    event in position order, signed (HMAC-SHA256) when AGENTLEDGER_SIGNING_KEY is set.

    Keep it where the log's writers cannot change it; `agentledger verify --against FILE`
    then proves the log still holds everything it stated.
    """
    import orjson

    from agentledger.eventstore.checkpoint import take_checkpoint

    with state.read_store() as store:
        taken = take_checkpoint(store)
    text = orjson.dumps(taken.to_dict(), option=orjson.OPT_INDENT_2).decode()
    if output is not None:
        try:
            with open(output, "x", encoding="utf-8") as handle:
                handle.write(text + "\n")
        except FileExistsError:
            raise UserError(f"--output {output} exists; choose a new file") from None
        except OSError as exc:
            raise UserError(f"--output {output}: {exc.strerror}; choose a writable file") from None
    click.echo(text)
