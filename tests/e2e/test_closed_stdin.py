"""Commands started with standard input closed (``<&-``) read it as empty."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.support.projects import AGENTLEDGER, make_project


def _closed_stdin(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "AGENTLEDGER_STORE")}
    return subprocess.run(
        [AGENTLEDGER, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=env,
        preexec_fn=lambda: os.close(0),  # the point of the test
        timeout=120,
    )


def test_run_experiment_with_stdin_closed_runs(tmp_path: Path) -> None:
    project = make_project(tmp_path / "proj", iterations=1)
    result = _closed_stdin("run", "experiment", "--yes", cwd=project)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert "Plan: 3 inputs x 1 iteration (personas: expert, novice) = 3 runs" in result.stdout


def test_run_agent_with_stdin_closed_reads_no_input(tmp_path: Path) -> None:
    project = tmp_path / "agent"
    project.mkdir()
    (project / "aigne.yaml").write_text("model: mock:echo\nagents:\n  - chat.yaml\n")
    (project / "chat.yaml").write_text("name: chat\ninstructions: Answer briefly.\n")
    result = _closed_stdin("run", "agent", ".", "--chat", cwd=project)
    assert "Traceback" not in result.stderr
    assert result.returncode == 0, result.stderr
