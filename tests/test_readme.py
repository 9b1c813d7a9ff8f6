"""The README starts with the two set-up commands and its command reference is current."""

from __future__ import annotations

from pathlib import Path

from cli.reference import BEGIN, END, render_reference

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_command_reference_matches_the_commands_help() -> None:
    content = README.read_text()
    block = content[content.index(BEGIN) + len(BEGIN) : content.index(END)]
    assert block.strip() == render_reference().strip(), (
        "README command reference is stale: run `python -m cli.reference README.md`"
    )


def test_readme_opens_with_the_demo_and_test_commands() -> None:
    first_block = README.read_text().split("```")[1]
    commands = [line for line in first_block.splitlines()[1:] if line.strip()]
    assert [c.split("#")[0].strip() for c in commands] == ["./dev.sh demo", "./dev.sh test"]
