"""The README and docs/: the two set-up commands first, a current command reference, and
links that stay inside the repository."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from agentledger.cli.reference import BEGIN, END, render_reference

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def test_command_reference_matches_the_commands_help() -> None:
    content = (ROOT / "docs" / "cli.md").read_text()
    block = content[content.index(BEGIN) + len(BEGIN) : content.index(END)]
    assert block.strip() == render_reference().strip(), (
        "docs/cli.md is stale: run `python -m agentledger.cli.reference docs/cli.md`"
    )


def test_readme_opens_with_the_demo_and_test_commands() -> None:
    first_block = README.read_text().split("```")[1]
    commands = [line for line in first_block.splitlines()[1:] if line.strip()]
    assert [c.split("#")[0].strip() for c in commands] == ["./dev.sh demo", "./dev.sh test"]


def test_readme_is_a_page_not_the_manual() -> None:
    assert len(README.read_text().splitlines()) <= 220


@pytest.mark.parametrize("page", [README, *DOCS], ids=lambda p: p.name)
def test_every_link_points_to_a_file_in_the_repository(page: Path) -> None:
    for target in LINK.findall(page.read_text()):
        assert "://" not in target and not target.startswith("/"), (
            f"{page.name}: link {target} leaves the repository"
        )
        path = (page.parent / target.split("#")[0]).resolve()
        assert path.is_relative_to(ROOT), f"{page.name}: link {target} leaves the repository"
        assert path.exists(), f"{page.name}: link {target} points to nothing"


def test_every_docs_page_is_linked_from_the_index() -> None:
    index = (ROOT / "docs" / "index.md").read_text()
    for page in DOCS:
        if page.name != "index.md":
            assert f"({page.name})" in index, f"docs/index.md does not link {page.name}"
