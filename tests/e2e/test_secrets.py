"""Secrets planted under every name and in every place never reach the database file, the
report, an export, or the console."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from agentledger.cli.main import cli
from tests.support.modelserver import ModelServer
from tests.support.projects import (
    agentledger,
    experiment_id,
    make_project,
    output_folder,
    read_jsonl,
)

pytestmark = pytest.mark.slow

SECRET_NAMES = [
    "ticket_token",
    "github_token",
    "hf_token",
    "api_token",
    "secret_key",
    "aws_secret_access_key",
    "db_password",
    "session_token",
    "credentials",
    "x-api-key",
    "cookie",
    "private_key",
]
PLANTED = {name: f"PLANT{n:02d}value" for n, name in enumerate(SECRET_NAMES)}
PROVIDER_KEY = "sk-test"
"""A provider key shorter than eight characters."""
OWN_KEY = "sk-own-PLANTED-client-key"
"""A key the agent gives its own openai client; agentledger is never told it."""

AGENT = f"""
import os
import openai

def run(input_text, metadata, ctx):
    own = openai.OpenAI(api_key={OWN_KEY!r}, base_url=os.environ["OPENAI_BASE_URL"])
    reflected = own.chat.completions.create(
        model="m", messages=[{{"role": "user", "content": "hi"}}]
    ).choices[0].message.content
    ctx.log("seen", **metadata)
    return reflected + " | " + ctx.chat("hello")
"""


def everything_written(*folders: Path) -> bytes:
    return b"\\n".join(
        p.read_bytes() for folder in folders for p in sorted(folder.rglob("*")) if p.is_file()
    )


def test_no_planted_secret_reaches_the_store_the_reports_exports_or_the_console(
    tmp_path: Path, model_server: ModelServer
) -> None:
    model_server.reflect_auth = True
    project = make_project(
        tmp_path / "proj",
        agent=AGENT,
        inputs=[{"input": "q", "metadata": PLANTED}],
        iterations=1,
        simulation={
            "model": {"provider": "openai", "name": "m", "base_url": model_server.base_url}
        },
    )
    env = {"OPENAI_API_KEY": PROVIDER_KEY, "OPENAI_BASE_URL": model_server.base_url}
    result = agentledger("run", "experiment", "--yes", cwd=project, env=env)
    assert result.returncode == 0, result.stderr
    # The server did see the keys (so they were really in play), and reflected them.
    sent = {r.headers.get("authorization") for r in model_server.requests}
    assert f"Bearer {OWN_KEY}" in sent and f"Bearer {PROVIDER_KEY}" in sent
    exported = tmp_path / "export.jsonl"
    export = agentledger("export", "-o", str(exported), cwd=project)
    assert export.returncode == 0, export.stderr
    shown = agentledger("traces", "show", f"{experiment_id(result)}-000000", cwd=project)
    events = agentledger("events", "list", "--json", cwd=project)
    haystack = b"\\n".join(
        [
            everything_written(project / ".agentledger", output_folder(result)),
            exported.read_bytes(),
            *((r.stdout + r.stderr).encode() for r in (result, export, shown, events)),
        ]
    )
    for secret in [*PLANTED.values(), OWN_KEY, PROVIDER_KEY]:
        assert secret.encode() not in haystack, f"{secret} leaked"
    assert b"you sent ***" in haystack  # the reflection was recorded, masked


def test_a_password_in_a_store_url_query_is_never_printed(tmp_path: Path) -> None:
    runner = CliRunner()
    url = "postgresql://ci@127.0.0.1:1/ledger?password=PLANTEDpw&connect_timeout=1"
    result = runner.invoke(cli, ["--store", url, "verify"])
    assert result.exit_code == 2
    assert "PLANTEDpw" not in result.output
    assert "password=***" in result.output


SEES_SECRET = """
def run(input_text, metadata):
    token = metadata.get("api_token")
    return "real" if token == "PLANTEDtoken123" else f"got {token}"
"""


@pytest.mark.parametrize("how", ["workers", "replay"])
def test_an_agent_sees_the_real_secret_when_it_runs_from_the_log(tmp_path: Path, how: str) -> None:
    inputs = [{"input": "q", "metadata": {"api_token": "PLANTEDtoken123"}}]
    project = make_project(tmp_path / "proj", agent=SEES_SECRET, inputs=inputs, iterations=2)
    flags = ["--workers", "2"] if how == "workers" else []
    first = agentledger("run", "experiment", "--yes", *flags, cwd=project)
    assert first.returncode == 0, first.stderr
    rows = [r["output"] for r in read_jsonl(output_folder(first) / "trace_summary.jsonl")]
    assert rows == ["real", "real"]
    if how == "replay":
        replayed = agentledger("replay", experiment_id(first), cwd=project)
        assert replayed.returncode == 0, replayed.stdout + replayed.stderr
        assert "2 identical" in replayed.stdout
    assert b"PLANTEDtoken123" not in (project / ".agentledger" / "ledger.db").read_bytes()
    # The inputs file is what the secret comes back from: without it, refused by name.
    (project / "inputs" / "generated.yaml").write_text("inputs:\n  - input: other\n")
    again = agentledger("replay", experiment_id(first), cwd=project)
    assert again.returncode == 2
    assert "input #0 ('q') had secrets masked in the log" in again.stderr
