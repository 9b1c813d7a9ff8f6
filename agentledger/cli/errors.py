"""How the CLI reports failures: one line on stderr and a documented exit status."""

from __future__ import annotations

import click

EXIT_OK = 0
EXIT_FAILED_BAR = 1
"""The work ran but failed its bar (failed runs, divergence, tampering, regressions)."""
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130


class UserError(click.ClickException):
    """A mistake in a flag, file, URL or store state: ``Error: <message>``, exit 2."""

    exit_code = EXIT_BAD_INPUT
