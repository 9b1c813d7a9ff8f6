"""``agentledger sessions``: listing and showing agent sessions, and finding them from
another folder."""

from __future__ import annotations

import os
import subprocess
import textwrap
from pathlib import Path

import pytest

from tests.support.projects import AGENTLEDGER, agentledger

pytestmark = pytest.mark.slow


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "helper"
    root.mkdir()
    (root / "aigne.yaml").write_text(
        textwrap.dedent(
            """
            name: "helper\\e[31m"
            model: mock:echo
            agents: [chat.yaml]
            """
        )
    )
    (root / "chat.yaml").write_text("name: chat\ninstructions: Be brief.\n")
    return root


def _chat(project: Path, lines: str) -> subprocess.CompletedProcess[str]:
    """A chat through a pipe (``agentledger`` closes stdin)."""
    env = {k: v for k, v in os.environ.items() if k not in ("AGENTLEDGER_STORE", "OPENAI_API_KEY")}
    return subprocess.run(
        [AGENTLEDGER, "run", "agent", ".", "--chat"],
        cwd=project,
        input=lines,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


def _session(result: object) -> str:
    stderr = getattr(result, "stderr", "")
    return stderr.split("Session: ")[1].split()[0]


def test_sessions_list_shows_runs_chats_and_replays_with_project_and_store(
    project: Path,
) -> None:
    run = agentledger("run", "agent", ".", "-i", "hi", cwd=project)
    chat = _chat(project, "a\nb\n")
    assert run.returncode == 0 and chat.returncode == 0, run.stderr + chat.stderr
    replay = agentledger("replay", _session(run), cwd=project)
    assert replay.returncode == 0, replay.stdout
    listed = agentledger("sessions", "list", cwd=project)
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert lines[0] == f"Sessions in store {project / '.agentledger' / 'ledger.db'}:"
    rows = lines[2:]
    assert len(rows) == 3
    assert rows[0].startswith(f"{_session(run)}  run   completed      1  ")
    assert rows[1].startswith(f"{_session(chat)}  chat  completed      2  ")
    assert rows[2].endswith(f", replay of {_session(run)}")
    # the project's name is recorded text: its escape sequence is shown, never sent
    assert f"chat (helper\\x1b[31m, {project})" in rows[0] and "\x1b" not in listed.stdout


def test_sessions_show_tells_project_store_outcome_and_replays(project: Path) -> None:
    run = agentledger("run", "agent", ".", "-i", "hi", cwd=project)
    replay = agentledger("replay", _session(run), cwd=project)
    replayed = replay.stdout.split("Session: ")[1].split()[0]
    shown = agentledger("sessions", "show", _session(run), cwd=project)
    assert shown.returncode == 0, shown.stderr
    lines = dict(line.split(None, 1) for line in shown.stdout.splitlines() if " " in line)
    assert lines["store"] == str(project / ".agentledger" / "ledger.db")
    assert lines["project"] == f"helper\\x1b[31m, {project}"
    assert lines["agent"] == "chat" and lines["model"] == "mock:echo"
    assert lines["turns"] == "1 completed" and lines["replays"] == replayed
    assert lines["ended"].endswith(", completed")


def test_sessions_show_of_an_unknown_session_names_the_store(project: Path) -> None:
    agentledger("run", "agent", ".", "-i", "hi", cwd=project)
    shown = agentledger("sessions", "show", "nope", cwd=project)
    assert shown.returncode == 2
    (line,) = shown.stderr.strip().splitlines()
    assert line.startswith(
        f"Error: no agent session 'nope' in store {project / '.agentledger' / 'ledger.db'}; "
        "an agent session is recorded in its project folder's store"
    )


def test_transcript_and_replay_from_another_folder_say_where_they_looked(
    project: Path, tmp_path: Path
) -> None:
    run = agentledger("run", "agent", str(project), "-i", "hi", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    for command in ("transcript", "replay"):
        result = agentledger(command, _session(run), cwd=elsewhere)
        assert result.returncode == 2
        (line,) = result.stderr.strip().splitlines()
        assert f"no store at {elsewhere / '.agentledger' / 'ledger.db'}" in line
        assert "recorded in its project folder's store" in line
    found = agentledger(
        "--store",
        str(project / ".agentledger" / "ledger.db"),
        "transcript",
        _session(run),
        cwd=elsewhere,
    )
    assert found.returncode == 0 and "# Session" in found.stdout


def test_transcript_of_an_unknown_id_names_traces_and_sessions(project: Path) -> None:
    agentledger("run", "agent", ".", "-i", "hi", cwd=project)
    result = agentledger("transcript", "nope", cwd=project)
    assert result.returncode == 2
    assert "no trace or agent session 'nope' in store" in result.stderr
