"""The ``agentledger`` command: assembles the command groups and the global options."""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import Any

import click

from agentledger import heap
from agentledger.cli.errors import EXIT_INTERRUPTED, UserError
from agentledger.cli.lazy import LazyGroup
from agentledger.cli.options import LOG_LEVELS, AppState, configure_logging
from agentledger.errors import AgentLedgerError


class LedgerGroup(LazyGroup):
    """Turns project errors into one-line messages with exit 2, and Ctrl-C into exit 130."""

    def invoke(self, ctx: click.Context) -> Any:
        if not _runs_experiment(ctx):
            heap.settle()  # an experiment settles once its agent is loaded, before any run
        try:
            return super().invoke(ctx)
        except AgentLedgerError as exc:
            from agentledger.cli.output import escaped
            from agentledger.eventstore.redaction import scrub_known

            raise UserError(escaped(scrub_known(str(exc)))) from exc
        except KeyboardInterrupt:
            click.echo("Interrupted.", err=True)
            ctx.exit(EXIT_INTERRUPTED)


COMMANDS = {
    name: f"agentledger.cli.{where}"
    for name, where in {
        "init": "init:init",
        "run": "run:run",
        "worker": "worker:worker",
        "replay": "replay:replay",
        "diff": "replay:diff",
        "evaluate": "evaluate:evaluate",
        "report": "report:report",
        "experiments": "experiments:experiments",
        "traces": "experiments:traces",
        "transcript": "experiments:transcript",
        "sessions": "sessions:sessions",
        "parse": "parse:parse",
        "generate": "generate:generate",
        "events": "events:events",
        "verify": "verify:verify",
        "checkpoint": "verify:checkpoint",
        "export": "transfer:export",
        "import": "transfer:import_",
        "db": "db:db",
        "view": "view:view",
    }.items()
}
"""Where each command is defined: imported only when it is run (or listed by --help)."""


def _runs_experiment(ctx: click.Context) -> bool:
    """Whether this is ``run experiment`` (which settles the heap itself; see ``heap``)."""
    # The subcommand's name: ``_protected_args`` from click 8.2, ``protected_args`` before.
    state = vars(ctx)
    words = [*state.get("_protected_args", state.get("protected_args", [])), *ctx.args]
    return words[:1] == ["run"] and "experiment" in words[1:2]


@click.group(
    cls=LedgerGroup,
    lazy=COMMANDS,
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


STUCK_THREAD_GRACE_SECONDS = 1.0
"""How long the command waits at its end for threads still running agent code."""


def main() -> None:
    """Console-script entry point. The command never waits on a stuck agent: a sync target
    that timed out cannot be stopped, and its thread would hold the interpreter open (a
    thread pool's threads are joined at exit). After a short grace the process leaves
    with its exit status; such a thread is abandoned, and anything it would still record
    is not (the run was already recorded as timed out). Async runs that ignore their
    cancellation are abandoned the same way."""
    heap.defer()
    _no_closed_stdin()
    try:
        cli.main(prog_name="agentledger", windows_expand_args=False)
    except SystemExit as exc:
        _leave(exc.code)
        raise
    _leave(0)


def _no_closed_stdin() -> None:
    """Started with standard input closed (``<&-``), Python has no ``sys.stdin``: read it
    as empty, like ``</dev/null``, so that no command trips over it (or waits)."""
    if sys.stdin is None:
        sys.stdin = open(os.devnull, encoding="utf-8")  # noqa: SIM115 (lives as long as we do)


def _leave(code: int | str | None) -> None:
    attempt = sys.modules.get("agentledger.experiments.attempt")
    if attempt is not None and attempt.ABANDONED:
        # Async runs that would not end when cancelled: finalizing them at interpreter
        # exit would run their code again (a loop that swallows GeneratorExit never ends).
        _exit_now(code)
    deadline = time.monotonic() + STUCK_THREAD_GRACE_SECONDS
    for thread in threading.enumerate():
        if thread is threading.current_thread() or thread.daemon:
            continue
        thread.join(max(0.0, deadline - time.monotonic()))
        if thread.is_alive():
            _exit_now(code)


def _exit_now(code: int | str | None) -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code if isinstance(code, int) else (0 if code is None else 1))


if __name__ == "__main__":
    main()
