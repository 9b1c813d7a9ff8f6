"""Printing recorded text: what an agent or a user recorded never drives the terminal.

Names, inputs, outputs and observations are shown with control characters escaped: ANSI
escape sequences, carriage returns, backspaces, NUL, DEL, C1 controls, bidirectional
overrides and lone surrogates become ``\\x1b`` / ``\\u009b`` text; newlines and tabs
are kept. JSON lines stay valid JSON (raw C0 controls never occur in them; the rest use
JSON's own escape).
"""

from __future__ import annotations

import re
from typing import Any

import click

_UNSAFE = re.compile(
    "[\\x00-\\x08\\x0b-\\x1f\\x7f-\\x9f\\u202a-\\u202e\\u2066-\\u2069\\ud800-\\udfff]"
)
"""C0 and C1 controls (but newline and tab), DEL, bidirectional overrides (which can make
a listing read other than it is), lone surrogates."""


def escaped(text: str) -> str:
    """``text`` with every character that could drive a terminal written as an escape."""
    return _UNSAFE.sub(_escape, text)


def _escape(match: re.Match[str]) -> str:
    # C0 controls as \x1b (JSON output never holds them raw); DEL, C1 controls and lone
    # surrogates as \u009b, which is also a valid escape inside JSON strings.
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x20 else f"\\u{code:04x}"


def echo(message: Any = "", *, err: bool = False, nl: bool = True) -> None:
    """``click.echo`` of recorded text, escaped."""
    click.echo(escaped(str(message)), err=err, nl=nl)
