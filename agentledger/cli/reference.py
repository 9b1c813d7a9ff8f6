"""The command reference (docs/cli.md), rendered from the commands' own ``--help``.

``python -m agentledger.cli.reference docs/cli.md`` rewrites the block between the
markers; a test fails when the reference and the commands drift apart.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

BEGIN = "<!-- BEGIN COMMAND REFERENCE (python -m agentledger.cli.reference docs/cli.md) -->"
END = "<!-- END COMMAND REFERENCE -->"


def _sections(command: click.Command, ctx: click.Context) -> list[tuple[str, str]]:
    """(command path, help text) for ``command`` and every subcommand, parents first.

    Each subcommand's context has its parent's, as in a real invocation, so inherited
    settings (``-h`` as a help option) show up exactly as users see them.
    """
    found = [(ctx.command_path, command.get_help(ctx))]
    if isinstance(command, click.Group):
        for name in command.list_commands(ctx):
            child = command.get_command(ctx, name)
            assert child is not None, name
            with click.Context(
                child, info_name=name, parent=ctx, **child.context_settings
            ) as child_ctx:
                found += _sections(child, child_ctx)
    return found


def render_reference() -> str:
    """Markdown: one section per command with its ``--help`` text."""
    from agentledger.cli.main import cli

    settings = {**cli.context_settings, "terminal_width": 88, "max_content_width": 88}
    with click.Context(cli, info_name="agentledger", **settings) as ctx:
        sections = _sections(cli, ctx)
    return "\n".join(f"### `{path}`\n\n```\n{text}\n```\n" for path, text in sections)


def update_reference(path: Path) -> bool:
    """Rewrite the reference block of ``path``; True when it changed."""
    content = path.read_text()
    start, end = content.index(BEGIN) + len(BEGIN), content.index(END)
    fresh = content[:start] + "\n\n" + render_reference() + "\n" + content[end:]
    if fresh == content:
        return False
    path.write_text(fresh)
    return True


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/cli.md")
    print(f"{target}: {'updated' if update_reference(target) else 'already current'}")
