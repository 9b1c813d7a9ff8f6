"""User projects with their own `runner`, `cli`, `migrations`, `eventstore` and
`projections` modules run: agentledger owns exactly one import name, `agentledger`."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from tests.support.projects import agentledger, make_project, read_jsonl

pytestmark = pytest.mark.slow

# Each of the user's modules answers with its own name; the agent imports them at module
# level and again inside the function (a late import must not find ours either).
USER_MODULES = {
    "runner/__init__.py": "from runner.helper import helper\n",
    "runner/helper.py": "def helper():\n    return 'user runner'\n",
    "cli.py": "NAME = 'user cli'\n",
    "migrations/__init__.py": "NAME = 'user migrations'\n",
    "eventstore.py": "NAME = 'user eventstore'\n",
    "projections/__init__.py": "NAME = 'user projections'\n",
}

AGENT = """
import cli
import eventstore
from runner import helper


def run(input_text, ctx=None):
    import migrations
    import projections
    from runner.helper import helper as late

    names = [helper(), cli.NAME, eventstore.NAME, migrations.NAME, projections.NAME, late()]
    return " | ".join(names) + ": " + input_text
"""

EXPECTED = (
    "user runner | user cli | user eventstore | user migrations | user projections | user runner"
)


def _add_user_modules(project: Path) -> None:
    for name, text in USER_MODULES.items():
        path = project / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_an_experiment_runs_a_project_that_has_its_own_runner_cli_and_migrations(
    tmp_path: Path,
) -> None:
    project = make_project(tmp_path / "proj", agent=AGENT, iterations=1)
    _add_user_modules(project)
    result = agentledger("run", "experiment", "--yes", cwd=project)
    assert result.returncode == 0, result.stderr
    [folder] = (project / "experiments").iterdir()
    outputs = [row["output"] for row in read_jsonl(folder / "trace_summary.jsonl")]
    assert outputs == [
        f"{EXPECTED}: {q}" for q in ("first question", "second question", "third question")
    ]


def test_run_agent_runs_a_project_that_has_its_own_runner_cli_and_migrations(
    tmp_path: Path,
) -> None:
    project = tmp_path / "agentproj"
    project.mkdir()
    (project / "agentledger.yaml").write_text(
        textwrap.dedent(
            """
            name: shadow
            agents:
              - {name: py, target: "agent:run"}
            """
        )
    )
    (project / "agent.py").write_text(textwrap.dedent(AGENT))
    _add_user_modules(project)
    result = agentledger("run", "agent", str(project), "py", "-i", "hello", cwd=project)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{EXPECTED}: hello\n"
