"""``agentledger run agent`` end to end: AIGNE-style projects against the mock provider and
the loopback model server."""

from __future__ import annotations

import os
import shutil
import subprocess
import textwrap
from pathlib import Path

import orjson
import pytest

from tests.support.modelserver import ModelServer
from tests.support.projects import AGENTLEDGER, agentledger

pytestmark = pytest.mark.slow

PROJECT = {
    "aigne.yaml": """
        name: helper
        model: mock:echo
        agents:
          - chat.yaml
          - summary.yaml
          - {name: py, target: "pyagent:run"}
    """,
    "chat.yaml": """
        name: chat
        instructions: "You help {{user}} with {{topic.name}}."
        input_key: message
        skills: ["tools:lookup"]
    """,
    "summary.yaml": """
        name: summary
        instructions: ["Summarise for {{audience}}.", "Use {{count}} points."]
        input_key: text
        input_schema:
          type: object
          properties:
            text: {type: string}
            audience: {type: string}
            count: {type: integer}
            tags: {type: array, items: {type: string}}
            short: {type: boolean}
          required: [text]
        output_schema: schema.json
    """,
    "schema.json": """
        {"type": "object",
         "properties": {"summary": {"type": "string"}, "points": {"type": "integer"}},
         "required": ["summary"]}
    """,
    "tools.py": """
        def lookup(question: str) -> str:
            \"\"\"Find the answer to a question.\"\"\"
            return f"answer to {question}"
    """,
    "pyagent.py": """
        def run(input_text, metadata, ctx):
            return {"message": ctx.chat("py: " + input_text), "seen": sorted(metadata)}
    """,
}


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "helper"
    root.mkdir()
    for name, text in PROJECT.items():
        (root / name).write_text(textwrap.dedent(text).lstrip())
    return root


def run_agent(
    project: Path, *args: str, stdin: str | None = None, **env: str
) -> subprocess.CompletedProcess[str]:
    if stdin is None:
        return agentledger("run", "agent", str(project), *args, cwd=project, env=env)
    base = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "AGENTLEDGER_STORE")}
    return subprocess.run(
        [AGENTLEDGER, "run", "agent", str(project), *args],
        cwd=project,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        env={**base, **env},
    )


def session_of(result: subprocess.CompletedProcess[str]) -> str:
    line = next(line for line in result.stderr.splitlines() if line.startswith("Session: "))
    return line.split()[1]


def test_yaml_agent_renders_its_instructions_and_answers_on_stdout(project: Path) -> None:
    with ModelServer() as server:
        result = run_agent(
            project,
            "chat",
            "--model",
            "openai:gpt-test",
            "--base-url",
            server.base_url,
            "--temperature",
            "0.4",
            "-i",
            '{"user": "Ann", "topic": {"name": "sync"}}',
            "-i",
            "where are my notes?",
        )
        assert result.returncode == 0, result.stderr
        first = server.requests[0].body
    assert first["messages"][0] == {"role": "system", "content": "You help Ann with sync."}
    assert first["messages"][1] == {"role": "user", "content": "where are my notes?"}
    assert first["temperature"] == 0.4 and first["tools"][0]["function"]["name"] == "lookup"
    assert result.stdout == "Tool results: answer to where are my notes?\n"
    transcript = agentledger("transcript", session_of(result), cwd=project)
    assert transcript.returncode == 0, transcript.stderr
    assert "# Session" in transcript.stdout and "- `lookup(" in transcript.stdout
    assert "2 call(s)" in transcript.stdout


def test_output_schema_asks_for_json_and_output_key_selects_a_field(project: Path) -> None:
    with ModelServer() as server:
        result = run_agent(
            project,
            "summary",
            "--model",
            "openai:m",
            "--base-url",
            server.base_url,
            "--text",
            "long story",
            "--audience",
            "kids",
            "--count",
            "3",
            "--tags",
            "a",
            "--tags",
            "b",
            "--short",
        )
        assert result.returncode == 0, result.stderr
        sent = server.requests[0].body
    assert sent["response_format"]["type"] == "json_schema"
    assert sent["response_format"]["json_schema"]["schema"]["required"] == ["summary"]
    assert sent["messages"][0]["content"] == "Summarise for kids.\nUse 3 points."
    assert orjson.loads(result.stdout) == {"summary": "long story", "points": 1}
    only = run_agent(project, "summary", "--text", "short one", "--output-key", "summary")
    assert only.stdout == "short one\n"


def test_stdin_and_files_fill_required_fields(project: Path) -> None:
    piped = run_agent(
        project,
        "summary",
        "--format",
        "json",
        "--output-key",
        "summary",
        stdin='{"text": "from stdin"}',
    )
    assert piped.returncode == 0, piped.stderr
    assert piped.stdout == "from stdin\n"
    (project / "input.yaml").write_text("text: from a file\naudience: adults\n")
    filed = run_agent(project, "summary", "-i", "@input.yaml", "--output-key", "summary")
    assert filed.stdout == "from a file\n"
    (project / "note.txt").write_text("plain text file")
    texted = run_agent(project, "summary", "-i", "@note.txt", "--output-key", "summary")
    assert texted.stdout == "plain text file\n"
    missing = run_agent(project, "summary", "--audience", "kids")
    assert missing.returncode == 2
    assert "agent summary needs input field(s) text: pass --text" in missing.stderr


def test_unknown_schema_flag_and_bad_values_are_refused(project: Path) -> None:
    unknown = run_agent(project, "summary", "--txt", "x")
    assert unknown.returncode == 2
    assert (
        "no such option --txt; did you mean --text? the agent summary's input fields are: "
        "--text, --audience" in unknown.stderr
    )
    bad = run_agent(project, "summary", "--text", "x", "--count", "many")
    assert bad.returncode == 2 and "--count 'many': expected an integer" in bad.stderr


def test_output_file_is_written_atomically_and_never_clobbered(project: Path) -> None:
    out = project / "out" / "result.txt"
    refused = run_agent(project, "chat", "-i", "hi", "-o", str(out))
    assert refused.returncode == 2 and "does not exist; pass --force to create it" in refused.stderr
    created = run_agent(project, "chat", "-i", "hi", "-o", str(out), "--force")
    assert created.returncode == 0, created.stderr
    assert out.read_text() == "Tool results: answer to hi\n" and created.stdout == ""
    again = run_agent(project, "chat", "-i", "again", "-o", str(out))
    assert again.returncode == 2 and "exists and is not empty; pass --force" in again.stderr
    assert out.read_text() == "Tool results: answer to hi\n"
    forced = run_agent(project, "chat", "-i", "again", "-o", str(out), "--force")
    assert forced.returncode == 0 and out.read_text() == "Tool results: answer to again\n"


def test_python_agent_gets_the_input_and_a_recorded_model(project: Path) -> None:
    result = run_agent(project, "--entry-agent", "py", "-i", '{"message": "yo", "extra": 1}')
    assert result.returncode == 0, result.stderr
    assert result.stdout == "py: yo\n"
    seen = run_agent(project, "py", "-i", "yo", "--output-key", "seen")
    assert orjson.loads(seen.stdout) == ["message"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nope"], "no agent named 'nope'"),
        (
            ["chat", "--temperature", "3"],
            "--temperature 3 is out of range: temperature must be between 0 and 2",
        ),
        (["chat", "--top-p", "2"], "--top-p 2 is out of range"),
        (
            ["chat", "--model", "openai:gpt-4o"],
            "model openai:gpt-4o needs an API key: set OPENAI_API_KEY",
        ),
        (["chat", "--model", "gpt-4o"], "--model 'gpt-4o' must be provider:model"),
    ],
)
def test_bad_agent_or_model_flags_are_one_line_errors(
    project: Path, args: list[str], message: str
) -> None:
    result = run_agent(project, *args, "-i", "x")
    assert result.returncode == 2
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_javascript_skills_and_non_project_urls_are_refused(project: Path, tmp_path: Path) -> None:
    chat = project / "chat.yaml"
    chat.write_text(chat.read_text().replace('["tools:lookup"]', '["skills/search.js"]'))
    refused = run_agent(project, "chat", "-i", "x")
    assert refused.returncode == 2
    assert (
        "skills/search.js is a JavaScript skill or agent, which agentledger cannot run"
        in refused.stderr
    )
    url = agentledger("run", "agent", "https://example.com/agent", cwd=tmp_path)
    assert url.returncode == 2 and "not a project URL; use a .tar.gz/.tgz archive" in url.stderr
    empty = agentledger("run", "agent", str(tmp_path), cwd=tmp_path)
    assert empty.returncode == 2 and "has no agentledger.yaml or aigne.yaml" in empty.stderr


def test_agent_template_runs_offline(tmp_path: Path) -> None:
    created = agentledger("init", str(tmp_path / "notes"), "--template", "agent", cwd=tmp_path)
    assert created.returncode == 0, created.stderr
    assert "Created an agent project" in created.stdout
    answer = agentledger("run", "agent", "notes", "-i", "How do I export my notes?", cwd=tmp_path)
    assert answer.returncode == 0, answer.stderr
    assert answer.stdout.startswith("Tool results: Run `notes export --all --format md`")
    summary = agentledger(
        "run", "agent", "notes", "summarise", "--text", "Sync is automatic.", cwd=tmp_path
    )
    assert orjson.loads(summary.stdout)["summary"] == "Sync is automatic."


def test_chat_through_a_pipe_is_one_message_per_line_without_prompts(project: Path) -> None:
    chat = project / "chat.yaml"
    chat.write_text(chat.read_text() + "memory: true\n")
    with ModelServer() as server:
        result = run_agent(
            project,
            "chat",
            "--chat",
            "--model",
            "openai:m",
            "--base-url",
            server.base_url,
            stdin="first question\n/history\nsecond question\n/clear\nthird\n/exit\nignored\n",
        )
        assert result.returncode == 0, result.stderr
        asked = [
            r.body["messages"] for r in server.requests if r.body["messages"][-1]["role"] == "user"
        ]
    lines = result.stdout.splitlines()
    assert lines == [
        "Tool results: answer to first question",
        "you: first question",
        "chat: Tool results: answer to first question",
        "Tool results: answer to second question",
        "Tool results: answer to third",
    ]
    assert ">" not in result.stdout
    # memory: the second question carries the first exchange; /clear forgot both
    assert [m["content"] for m in asked[1][1:]] == [
        "first question",
        "Tool results: answer to first question",
        "second question",
    ]
    assert [m["content"] for m in asked[2][1:]] == ["third"]
    session = result.stderr.split("Session: ")[1].split()[0]
    transcript = agentledger("transcript", session, cwd=project).stdout
    assert "(chat)" in transcript and "### Turn 3" in transcript and "3 turn(s)" in transcript


def test_chat_on_a_terminal_prompts_continues_lines_and_ends_on_ctrl_c(project: Path) -> None:
    import pty
    import select
    import signal
    import time

    master, slave = pty.openpty()
    env = {k: v for k, v in os.environ.items() if k not in ("AGENTLEDGER_STORE", "OPENAI_API_KEY")}
    proc = subprocess.Popen(
        [AGENTLEDGER, "run", "agent", str(project), "chat", "--chat"],
        cwd=project,
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env={**env, "TERM": "dumb"},
        close_fds=True,
        start_new_session=True,
    )
    os.close(slave)
    screen = b""

    def read_until(marker: bytes, seconds: float = 30) -> None:
        nonlocal screen
        deadline = time.monotonic() + seconds
        while marker not in screen and time.monotonic() < deadline:
            if select.select([master], [], [], 0.2)[0]:
                try:
                    screen += os.read(master, 4096)
                except OSError:
                    return

    try:
        read_until(b"> ")
        os.write(master, b"line one \\\n")
        read_until(b". ")
        os.write(master, b"line two\n")
        read_until(b"answer to line one")
        read_until(b"> ", 10)
        os.killpg(proc.pid, signal.SIGINT)
        assert proc.wait(timeout=30) == 130
        read_until(b"turns)", 5)
    finally:
        os.close(master)
    text = screen.decode(errors="replace")
    assert "Chatting with chat" in text
    assert "answer to line one \r\nline two" in text or "answer to line one \nline two" in text
    assert "Traceback" not in text and "(1 turns)" in text


class _Files:
    """A loopback HTTP server for a folder of files, counting the requests it serves."""

    def __init__(self, folder: Path) -> None:
        import functools
        import threading
        from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

        served = self

        class Handler(SimpleHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                served.requests += 1
                super().do_GET()

        self.requests = 0
        self._server = ThreadingHTTPServer(
            ("127.0.0.1", 0), functools.partial(Handler, directory=str(folder))
        )
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _tarball(path: Path, members: dict[str, bytes], links: dict[str, str] | None = None) -> None:
    import io
    import tarfile

    with tarfile.open(path, "w:gz") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            archive.addfile(info)


def test_tarball_project_is_downloaded_cached_and_refreshed(project: Path, tmp_path: Path) -> None:
    served = tmp_path / "served"
    served.mkdir()
    members = {f"helper/{p.name}": p.read_bytes() for p in project.iterdir() if p.is_file()}
    _tarball(served / "helper.tar.gz", members)
    files = _Files(served)
    cache = tmp_path / "cache"
    try:
        url = f"{files.url}/helper.tar.gz"
        args = ("run", "agent", url, "chat", "-i", "hi", "--cache-dir", str(cache))
        first = agentledger(*args, cwd=tmp_path)
        assert first.returncode == 0, first.stderr
        assert first.stdout == "Tool results: answer to hi\n"
        again = agentledger(*args, cwd=tmp_path)
        assert again.returncode == 0 and files.requests == 1  # reused from the cache
        refreshed = agentledger(*args, "--refresh", cwd=tmp_path)
        assert refreshed.returncode == 0 and files.requests == 2
        missing = agentledger("run", "agent", f"{files.url}/nope.tgz", cwd=tmp_path)
        assert missing.returncode == 2 and "HTTP 404" in missing.stderr
    finally:
        files.close()
    assert (tmp_path / ".agentledger" / "ledger.db").is_file()  # sessions kept where it ran


@pytest.mark.parametrize(
    ("members", "links", "message"),
    [
        ({"../evil.txt": b"x"}, None, "archive member '../evil.txt' points outside the project"),
        ({"/tmp/evil.txt": b"x"}, None, "archive member '/tmp/evil.txt' points outside"),
        (
            {"p/aigne.yaml": b"agents: []"},
            {"p/link": "../../etc/passwd"},
            "links to '../../etc/passwd'",
        ),
    ],
)
def test_archives_escaping_their_tree_are_refused(
    tmp_path: Path, members: dict[str, bytes], links: dict[str, str] | None, message: str
) -> None:
    served = tmp_path / "served"
    served.mkdir()
    _tarball(served / "bad.tgz", members, links)
    files = _Files(served)
    try:
        result = agentledger(
            "run", "agent", f"{files.url}/bad.tgz", "--cache-dir", str(tmp_path / "c"), cwd=tmp_path
        )
    finally:
        files.close()
    assert result.returncode == 2
    assert message in result.stderr and "refused" in result.stderr
    assert not (tmp_path / "evil.txt").exists()


def test_git_project_is_cloned_from_a_local_repository(project: Path, tmp_path: Path) -> None:
    repo = tmp_path / "repo.git"
    shutil.copytree(project, repo)
    git = {
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@x",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@x",
    }
    for command in (["init", "-q"], ["add", "."], ["commit", "-q", "-m", "agent"]):
        subprocess.run(["git", *command], cwd=repo, check=True, env={**os.environ, **git})
    result = agentledger(
        "run",
        "agent",
        f"git+file://{repo}",
        "py",
        "-i",
        "cloned",
        "--cache-dir",
        str(tmp_path / "c"),
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "py: cloned\n"


def test_sessions_replay_offline_and_diverge_when_the_agent_changes(project: Path) -> None:
    chat_file = project / "chat.yaml"
    chat_file.write_text(chat_file.read_text() + "memory: true\n")  # /clear must replay too
    with ModelServer() as server:
        single = run_agent(
            project,
            "chat",
            "--model",
            "openai:m",
            "--base-url",
            server.base_url,
            "-i",
            "hi",
            OPENAI_API_KEY="sk-test-session-key",
        )
        chat = run_agent(
            project,
            "chat",
            "--chat",
            "--model",
            "openai:m",
            "--base-url",
            server.base_url,
            stdin="one\ntwo\n/clear\nthree\n",
            OPENAI_API_KEY="sk-test-session-key",
        )
    assert single.returncode == 0 and chat.returncode == 0, single.stderr + chat.stderr
    for recorded, turns in ((session_of(single), 1), (session_of(chat), 3)):
        replay = agentledger("replay", recorded, cwd=project)  # the server is stopped
        assert replay.returncode == 0, replay.stdout + replay.stderr
        assert f"Replay: identical, {turns} turn(s)" in replay.stdout
    chat_file.write_text(chat_file.read_text().replace("You help", "You assist"))
    diverged = agentledger("replay", session_of(single), cwd=project)
    assert diverged.returncode == 1
    assert "first difference at messages[0].content" in diverged.stdout
    assert "Replay: diverged" in diverged.stdout


def test_schema_flags_read_files_and_env_local_is_loaded(project: Path) -> None:
    (project / "story.txt").write_text("a story from a file")
    (project / "tags.json").write_text('["x", "y"]')
    result = run_agent(
        project,
        "summary",
        "--text",
        "@story.txt",
        "--tags",
        "@tags.json",
        "--output-key",
        "summary",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "a story from a file\n"
    (project / ".env.local").write_text("OPENAI_API_KEY=sk-from-env-local\n")
    with ModelServer() as server:
        local = run_agent(
            project,
            "chat",
            "--model",
            "openai:m",
            "-i",
            "hi",
            OPENAI_BASE_URL=server.base_url.replace("127.0.0.1", "localhost"),
        )
        assert local.returncode == 0, local.stderr
        assert server.requests[0].headers["authorization"] == "Bearer sk-from-env-local"


def test_a_failing_model_is_a_one_line_error_and_the_session_is_kept(project: Path) -> None:
    with ModelServer() as server:
        server.fail_next("500", times=3)
        result = run_agent(
            project, "chat", "--model", "openai:m", "--base-url", server.base_url, "-i", "x"
        )
    assert result.returncode == 1
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("Error: agent chat failed: InternalServerError:")
    session = line.rsplit("recorded as session ", 1)[1].rstrip(")")
    transcript = agentledger("transcript", session, cwd=project).stdout
    assert "failed: InternalServerError" in transcript and "| failed |" in transcript


PLAN = """
    name: plan
    instructions: "Plan {{count}} steps for {{tags}} within {{limits}}; short: {{short}}."
    input_schema:
      type: object
      properties:
        text: {type: string}
        count: {type: number}
        tags: {type: array, items: {type: string}}
        limits: {type: object}
        short: {type: boolean}
      required: [text]
"""


def _with_plan(project: Path) -> None:
    """Add the agent ``plan``: no input_key, so its user message is the input as JSON."""
    (project / "plan.yaml").write_text(textwrap.dedent(PLAN).lstrip())
    config = project / "aigne.yaml"
    config.write_text(config.read_text().replace("  - chat.yaml", "  - chat.yaml\n  - plan.yaml"))


def test_structured_input_renders_as_aigne_and_replays_identical(project: Path) -> None:
    _with_plan(project)
    with ModelServer() as server:
        result = run_agent(
            project,
            "plan",
            "--model",
            "openai:m",
            "--base-url",
            server.base_url,
            "-i",
            '{"limits": {"z": 1, "a": 2.5}}',
            "--text",
            "trip",
            "--count",
            "2",
            "--tags",
            "a",
            "--tags",
            "b",
            "--short",
            OPENAI_API_KEY="sk-test-plan-key",
        )
        assert result.returncode == 0, result.stderr
        sent = server.requests[0].body["messages"]
    assert sent[0]["content"] == 'Plan 2 steps for ["a","b"] within {"z":1,"a":2.5}; short: true.'
    assert sent[1]["content"] == (
        '{"limits":{"z":1,"a":2.5},"text":"trip","count":2,"tags":["a","b"],"short":true}'
    )
    replay = agentledger("replay", session_of(result), cwd=project)  # the server is stopped
    assert replay.returncode == 0, replay.stdout + replay.stderr
    assert "Replay: identical, 1 turn(s)" in replay.stdout


def test_a_failed_session_replays_as_failed_and_identical(project: Path) -> None:
    with ModelServer() as server:
        server.fail_next("500", times=3)
        failed = run_agent(
            project, "chat", "--model", "openai:m", "--base-url", server.base_url, "-i", "x"
        )
    assert failed.returncode == 1
    recorded = failed.stderr.rsplit("recorded as session ", 1)[1].split(")")[0]
    replay = agentledger("replay", recorded, cwd=project)
    assert replay.returncode == 0, replay.stdout + replay.stderr
    assert replay.stdout.splitlines()[-1] == (
        "Replay: identical, 1 turn(s) (turn 1 failed as recorded: InternalServerError)"
    )
    replayed = replay.stdout.split("Session: ")[1].split()[0]
    shown = agentledger("sessions", "show", replayed, cwd=project)
    assert "ended       " in shown.stdout
    assert "failed: InternalServerError" in shown.stdout, shown.stdout


def test_schema_flags_follow_the_project_path_alone(project: Path) -> None:
    config = project / "aigne.yaml"
    config.write_text(config.read_text().replace("  - chat.yaml\n", ""))  # summary is first
    result = run_agent(project, "--text", "from flags", "--output-key", "summary")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "from flags\n"


def test_schema_flags_work_with_entry_agent(project: Path) -> None:
    result = run_agent(
        project, "--entry-agent", "summary", "--text=with entry", "--output-key", "summary"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "with entry\n"


def test_unknown_option_is_named_not_taken_for_an_agent(project: Path) -> None:
    result = run_agent(project, "--bogus", "1")
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("Error: no such option --bogus;") and "no agent named" not in line


def test_interactive_is_aigne_s_name_for_chat(project: Path) -> None:
    result = run_agent(project, "chat", "--interactive", stdin="hello\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "Tool results: answer to hello\n"
    assert "(1 turns)" in result.stderr


def test_log_level_debug_logs_the_session_and_the_default_does_not(project: Path) -> None:
    debug = run_agent(project, "chat", "-i", "hi", "--log-level", "debug")
    assert debug.returncode == 0, debug.stderr
    assert "[DEBUG] session " in debug.stderr and "store " in debug.stderr
    quiet = run_agent(project, "chat", "-i", "hi")
    assert "[DEBUG]" not in quiet.stderr


def test_aigne_hub_url_is_refused_naming_the_alternative(project: Path) -> None:
    result = run_agent(project, "chat", "-i", "hi", "--aigne-hub-url", "https://hub.example")
    assert result.returncode == 2
    assert "--aigne-hub-url: agentledger does not use AIGNE Hub" in result.stderr


def test_output_key_the_result_lacks_is_an_error_naming_its_keys(project: Path) -> None:
    result = run_agent(project, "summary", "--text", "t", "--output-key", "nope")
    assert result.returncode == 2 and result.stdout == ""
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(
        "Error: --output-key 'nope' is not in the result of agent summary; its keys: 'summary'"
    )
    session = line.rsplit("recorded as session ", 1)[1].rstrip(")")
    transcript = agentledger("transcript", session, cwd=project)
    assert transcript.returncode == 0 and "### Turn 1" in transcript.stdout


def test_unknown_chat_command_is_answered_locally(project: Path) -> None:
    with ModelServer() as server:
        result = run_agent(
            project,
            "chat",
            "--chat",
            "--model",
            "openai:m",
            "--base-url",
            server.base_url,
            stdin="/bogus now\n//slash sent\n",
            OPENAI_API_KEY="sk-test-chat-key",
        )
        sent = [r.body["messages"][-1]["content"] for r in server.requests]
    assert result.returncode == 0, result.stderr
    assert "unknown command /bogus; /help lists them" in result.stderr
    assert "/slash sent" in sent and not any("bogus" in m for m in sent)


def test_an_input_file_that_is_a_directory_is_a_one_line_error(project: Path) -> None:
    (project / "inputs").mkdir()
    result = run_agent(project, "chat", "-i", "@inputs")
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.endswith("inputs is a directory; name a file")


def test_model_flag_takes_a_provider_alone_as_aigne_does(project: Path) -> None:
    with ModelServer() as server:
        result = run_agent(
            project,
            "chat",
            "--model",
            "openai",
            "--base-url",
            server.base_url,
            "-i",
            "hi",
            OPENAI_API_KEY="sk-test-provider-key",
        )
        assert result.returncode == 0, result.stderr
        assert server.requests[0].body["model"] == "gpt-4o-mini"
    refused = run_agent(project, "chat", "--model", "anthropic", "-i", "hi")
    assert refused.returncode == 2 and "must be provider:model" in refused.stderr
