"""The README's command reference, rendered from the commands' own ``--help``.

``python -m cli.reference README.md`` rewrites the block between the markers; a test fails
when the README and the commands drift apart.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

BEGIN = "<!-- BEGIN COMMAND REFERENCE (python -m cli.reference README.md) -->"
END = "<!-- END COMMAND REFERENCE -->"


def _walk(command: click.Command, path: list[str]) -> list[tuple[list[str], click.Command]]:
    found = [(path, command)]
    if isinstance(command, click.Group):
        for name in sorted(command.commands):
            found += _walk(command.commands[name], [*path, name])
    return found


def render_reference() -> str:
    """Markdown: one section per command with its ``--help`` text."""
    from cli.main import cli

    parts = []
    for path, command in _walk(cli, ["agentledger"]):
        with click.Context(command, info_name=" ".join(path), terminal_width=88) as ctx:
            text = command.get_help(ctx)
        parts.append(f"### `{' '.join(path)}`\n\n```\n{text}\n```\n")
    return "\n".join(parts)


def update_readme(path: Path) -> bool:
    """Rewrite the reference block of ``path``; True when it changed."""
    content = path.read_text()
    start, end = content.index(BEGIN) + len(BEGIN), content.index(END)
    fresh = content[:start] + "\n\n" + render_reference() + "\n" + content[end:]
    if fresh == content:
        return False
    path.write_text(fresh)
    return True


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "README.md")
    print(f"{target}: {'updated' if update_readme(target) else 'already current'}")
