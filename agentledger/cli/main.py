"""The ``agentledger`` command: assembles the command groups and the global options."""

from __future__ import annotations

from typing import Any

import click

from agentledger.cli import (
    agent,
    db,
    events,
    experiments,
    init,
    parse,
    replay,
    report,
    run,
    transfer,
    verify,
    worker,
)
from agentledger.cli.errors import EXIT_INTERRUPTED, UserError
from agentledger.cli.options import LOG_LEVELS, AppState, configure_logging
from agentledger.errors import AgentLedgerError


class LedgerGroup(click.Group):
    """Turns project errors into one-line messages with exit 2, and Ctrl-C into exit 130."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except AgentLedgerError as exc:
            raise UserError(str(exc)) from exc
        except KeyboardInterrupt:
            click.echo("Interrupted.", err=True)
            ctx.exit(EXIT_INTERRUPTED)


@click.group(
    cls=LedgerGroup,
    context_settings={"help_option_names": ["-h", "--help"], "auto_envvar_prefix": "AGENTLEDGER"},
)
@click.option(
    "--store",
    "store_url",
    envvar="AGENTLEDGER_STORE",
    metavar="URL",
    help="Event store: a SQLite file path, sqlite:///PATH or postgresql://USER@HOST/DB "
    "[env AGENTLEDGER_STORE; default .agentledger/ledger.db in the project].",
)
@click.option(
    "--log-level",
    envvar="AGENTLEDGER_LOG_LEVEL",
    type=click.Choice(list(LOG_LEVELS), case_sensitive=False),
    default="info",
    show_default=True,
    help="How much the library logs to stderr.",
)
@click.version_option(package_name="agentledger", prog_name="agentledger")
@click.pass_context
def cli(ctx: click.Context, store_url: str | None, log_level: str) -> None:
    """Run, record, audit and replay AI agents on an immutable event log."""
    configure_logging(log_level.lower())
    ctx.obj = AppState(store_url=store_url, log_level=log_level.lower())


cli.add_command(init.init)
run.run.add_command(agent.agent)
cli.add_command(run.run)
cli.add_command(worker.worker)
cli.add_command(replay.replay)
cli.add_command(replay.diff)
cli.add_command(report.report)
cli.add_command(experiments.experiments)
cli.add_command(experiments.traces)
cli.add_command(experiments.transcript)
cli.add_command(parse.parse)
cli.add_command(events.events)
cli.add_command(verify.verify)
cli.add_command(transfer.export)
cli.add_command(transfer.import_)
cli.add_command(db.db)


def main() -> None:
    """Console-script entry point."""
    cli.main(prog_name="agentledger", windows_expand_args=False)


if __name__ == "__main__":
    main()
