"""agentledger view on the command line: one-line errors for bad input, exit 2."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

from tests.support.projects import AGENTLEDGER, agentledger
from tests.view.recorded import Recorded


def test_a_port_in_use_is_named_with_the_fix(recorded: Recorded, tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        result = agentledger("view", "--port", str(port), cwd=tmp_path, store=recorded.store)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"Error: --port {port}: the port is in use on 127.0.0.1; pass another --port "
        "(or --port 0 for any free one)"
    )


def test_a_bad_as_of_is_named(recorded: Recorded, tmp_path: Path) -> None:
    result = agentledger("view", "--as-of", "yesterday", cwd=tmp_path, store=recorded.store)
    assert result.returncode == 2
    assert "--as-of 'yesterday' is neither a log position nor an ISO-8601 time" in result.stderr
    beyond = agentledger("view", "--as-of", "999999", cwd=tmp_path, store=recorded.store)
    assert beyond.returncode == 2
    assert "--as-of 999999 is beyond the end of the log" in beyond.stderr


def test_a_missing_store_is_one_line_and_not_created(tmp_path: Path) -> None:
    missing = tmp_path / "none.db"
    result = agentledger("view", "--store", str(missing), cwd=tmp_path)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert not missing.exists()


def test_without_the_web_stack_the_extra_is_named(recorded: Recorded, tmp_path: Path) -> None:
    fake = tmp_path / "shadow" / "uvicorn"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('not here', name='uvicorn')\n")
    result = agentledger(
        "view",
        cwd=tmp_path,
        store=recorded.store,
        env={"PYTHONPATH": str(tmp_path / "shadow")},
    )
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "Error: agentledger view needs the web stack (uvicorn is not installed): "
        "pip install 'agentledger[view]'"
    )


def test_another_interface_gets_a_generated_token_and_says_so(
    recorded: Recorded, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if k != "AGENTLEDGER_VIEW_TOKEN"}
    proc = subprocess.Popen(
        [AGENTLEDGER, "--store", recorded.store, "view", "--host", "0.0.0.0", "--port", "0"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline() for _ in range(4)]
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert "0.0.0.0 is reachable from other machines: every request needs the generated" in lines[1]
    token = lines[2].removeprefix("Token: ").strip()
    assert len(token) >= 24
    assert f"?token={token}" in lines[3]


def test_help_does_not_import_the_web_stack() -> None:
    code = (
        "import sys; from agentledger.cli.main import cli; "
        "print(any(m in sys.modules for m in ('starlette', 'uvicorn', 'jinja2')))"
    )
    out = subprocess.run(
        [str(Path(AGENTLEDGER).parent / "python"), "-c", code],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "False"
