"""The pytest plugin, used the way an agent's repository would use it in CI."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from tests.support.projects import agentledger, experiment_id, make_project

pytestmark = pytest.mark.slow

AGENT = """
def run(input_text, ctx):
    return ctx.chat(f"{PREFIX} {input_text}")

PREFIX = "Q:"
"""

USER_TESTS = """
def test_replays_as_recorded(agentledger):
    outcome = agentledger.replay("demo", store="ledger.db", project="proj")
    outcome.assert_identical()


def test_success_rate(agentledger):
    agentledger.run_experiment("proj", store="scratch.db").assert_success_rate(0.9)
"""


def run_pytest(where: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_agent.py"],
        cwd=where,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=300,
    )


@pytest.fixture
def repository(tmp_path: Path) -> Path:
    """An agent repository: the project, the store recorded from it, and a test file."""
    recorded = make_project(tmp_path / "recorded", agent=AGENT, iterations=1)
    result = agentledger("run", "experiment", "--yes", cwd=recorded)
    assert result.returncode == 0, result.stderr
    assert experiment_id(result)
    # The repository is checked out somewhere else: the project moved.
    repo = tmp_path / "repo"
    shutil.copytree(
        recorded, repo / "proj", ignore=shutil.ignore_patterns(".agentledger", "experiments")
    )
    shutil.copyfile(recorded / ".agentledger" / "ledger.db", repo / "ledger.db")
    (repo / "test_agent.py").write_text(textwrap.dedent(USER_TESTS))
    return repo


def test_plugin_passes_when_the_agent_replays_as_recorded(repository: Path) -> None:
    before = (repository / "ledger.db").read_bytes()
    result = run_pytest(repository)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed" in result.stdout
    assert (repository / "ledger.db").read_bytes() == before  # replayed on a copy


def test_plugin_fails_the_test_on_divergence(repository: Path) -> None:
    agent = repository / "proj" / "agent.py"
    agent.write_text(agent.read_text().replace('PREFIX = "Q:"', 'PREFIX = "Question:"'))
    result = run_pytest(repository)
    assert result.returncode == 1
    assert "1 failed, 1 passed" in result.stdout
    assert "3 of 3 runs differ from the recording" in result.stdout
    assert "first difference at messages[0].content" in result.stdout


def test_plugin_fails_the_test_below_the_success_rate(repository: Path) -> None:
    agent = repository / "proj" / "agent.py"
    agent.write_text("def run(input_text):\n    raise RuntimeError('down')\n")
    result = run_pytest(repository)
    assert result.returncode == 1
    assert "success rate 0.0% is below 90.0%" in result.stdout


EVALUATION = {
    "evaluators": [
        {
            "name": "answered",
            "type": "rule_based",
            "rules": [{"check": "contains", "keywords": ["first", "second"], "match": "any"}],
        },
        {"name": "quality", "type": "llm_judge", "model": "mock:echo", "labels": ["GOOD", "BAD"]},
    ],
    "aggregate": {"method": "average", "threshold": 0.8},
    "success_criteria": {"quality": {"pass_rate": 0.6}},
}

EVALUATION_TESTS = """
def test_scores_hold(agentledger):
    outcome = agentledger.evaluate("demo", store="ledger.db", project="proj", record_mode="replay")
    outcome.assert_passed()
    outcome.assert_pass_rate(0.6)
    outcome.assert_metric("quality", 0.9)


def test_every_answer_names_its_question(agentledger):
    outcome = agentledger.evaluate("demo", store="ledger.db", project="proj")
    outcome.assert_metric("answered", 0.9)
"""


@pytest.fixture
def evaluated(tmp_path: Path) -> Path:
    """An agent repository whose store holds an experiment and its evaluation."""
    recorded = make_project(tmp_path / "recorded", agent=AGENT, iterations=1)
    (recorded / "configs" / "evaluation.yaml").write_text(yaml.safe_dump(EVALUATION))
    assert agentledger("run", "experiment", "--yes", cwd=recorded).returncode == 0
    scored = agentledger("evaluate", "demo", cwd=recorded)
    assert scored.returncode == 0, scored.stdout + scored.stderr
    repo = tmp_path / "repo"
    shutil.copytree(
        recorded, repo / "proj", ignore=shutil.ignore_patterns(".agentledger", "experiments")
    )
    shutil.copyfile(recorded / ".agentledger" / "ledger.db", repo / "ledger.db")
    (repo / "test_agent.py").write_text(textwrap.dedent(EVALUATION_TESTS))
    return repo


def test_plugin_asserts_on_evaluation_results(evaluated: Path) -> None:
    before = (evaluated / "ledger.db").read_bytes()
    result = run_pytest(evaluated)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "1 failed, 1 passed" in result.stdout
    # Two of the three answers name their question: the metric's mean is 2/3.
    assert re.search(
        r"AssertionError: evaluation \w+-e002: answered mean 0\.666667 is below 0\.9",
        result.stdout,
    ), result.stdout
    assert (evaluated / "ledger.db").read_bytes() == before  # scored on a copy
