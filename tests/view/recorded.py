"""A log recorded by running real experiments and an agent session (mock model, offline),
shared by the viewer's unit tests and the browser tests.

Experiment A runs three inputs x 2 iterations: a plain question, a hostile one (a
``<script>`` that would set ``window.__pwned``, and an ``<img onerror>``), and one its
agent fails on (``boom``). Experiment B runs the same inputs with an agent that fails on
the plain question instead: a regression for ``agentledger diff``. A is then scored by
``agentledger evaluate`` (one rule). A multi-turn experiment records turns, a supervisor
and streamed model calls; another retries a run that failed its first attempt. A
``run agent`` session records a hostile message too.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.support.projects import AGENTLEDGER, agentledger, experiment_id, make_project

HOSTILE = '<script>window.__pwned=1</script><img src=x onerror="window.__pwned=2">'
ESCAPED = "&lt;script&gt;window.__pwned=1&lt;/script&gt;"
INPUTS = [
    {"input": "How do I start a new notebook?", "persona": "novice"},
    {"input": f"Please echo {HOSTILE}", "persona": "expert"},
    {"input": "boom: this one fails", "persona": "novice"},
]

AGENT = """
def run(input_text, persona, ctx):
    with ctx.span("answer", persona=persona):
        reply = ctx.openai.chat.completions.create(
            model=ctx.model, messages=[{"role": "user", "content": input_text}]
        )
        ctx.observe("reply", size=len(reply.choices[0].message.content or ""))
    if "FAIL_ON" in input_text:
        raise ValueError("agent gave up on: " + input_text)
    return reply.choices[0].message.content
"""

CONVERSING = """
def run(input_text, messages, history, conversation_state, ctx):
    stream = ctx.openai.chat.completions.create(
        model=ctx.model, messages=[{"role": "user", "content": input_text}], stream=True
    )
    text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    return f"turn {conversation_state['turn_index']}: " + text
"""


EVALUATION = """
evaluators:
  - name: answered
    type: rule_based
    rules:
      - check: contains
        keywords: [notebook]
aggregate: {method: weighted_sum, threshold: 0.5}
"""


FLAKY = """
from pathlib import Path

def run(input_text):
    marker = Path(__file__).with_name("tried")
    if not marker.exists():
        marker.write_text("once")
        raise ConnectionError("the first attempt loses its connection")
    return "second attempt: " + input_text
"""


@dataclass(frozen=True)
class Recorded:
    """Where the log is and what is in it."""

    root: Path
    store: str
    a: str
    b: str
    multi: str
    session: str
    retried: str
    """An experiment whose one run failed its first attempt and succeeded on retry."""
    a_folder: Path
    b_folder: Path


def _agent(fail_on: str) -> str:
    return AGENT.replace('"FAIL_ON" in input_text', f"{fail_on!r} in input_text")


def _run(project: Path, store: str) -> subprocess.CompletedProcess[str]:
    result = agentledger("run", "experiment", "--yes", cwd=project, store=store)
    assert result.returncode in (0, 1), result.stderr
    return result


def record(root: Path) -> Recorded:
    """Record the log under ``root`` (each experiment in its own project folder)."""
    store = str(root / "ledger.db")
    simulation = {"model": "mock:echo", "output": {"html": True}}
    project_a = make_project(root / "a", agent=_agent("boom"), inputs=INPUTS, simulation=simulation)
    run_a = _run(project_a, store)
    (project_a / "configs" / "evaluation.yaml").write_text(EVALUATION)
    scored = agentledger("evaluate", experiment_id(run_a), cwd=project_a, store=store)
    assert scored.returncode in (0, 1), scored.stderr
    project_b = make_project(
        root / "b", agent=_agent("notebook"), inputs=INPUTS, simulation=simulation
    )
    run_b = _run(project_b, store)
    multi = make_project(
        root / "multi",
        agent=CONVERSING,
        inputs=[{"input": "hello there", "persona": "novice"}],
        iterations=1,
        simulation={
            "model": "mock:echo",
            "multi_turn": {
                "enabled": True,
                "max_turns": 3,
                "supervisor": {
                    "provider": "mock",
                    "metadata": {"scripted_questions": ["and then?"], "mock_closing": "bye"},
                },
            },
        },
    )
    run_multi = _run(multi, store)
    flaky = make_project(
        root / "flaky",
        agent=FLAKY,
        inputs=[{"input": "try me"}],
        iterations=1,
        simulation={"model": "mock:echo", "runner": {"max_retries": 1}},
    )
    run_flaky = _run(flaky, store)
    agent_dir = root / "agent"
    subprocess.run(
        [AGENTLEDGER, "init", str(agent_dir), "--template", "agent"],
        check=True,
        capture_output=True,
        stdin=subprocess.DEVNULL,
    )
    session = agentledger(
        "run", "agent", str(agent_dir), "-i", f"hello {HOSTILE}", cwd=root, store=store
    )
    assert session.returncode == 0, session.stderr
    session_id = next(
        line.removeprefix("Session: ")
        for line in (session.stdout + session.stderr).splitlines()
        if line.startswith("Session: ")
    )
    return Recorded(
        root,
        store,
        experiment_id(run_a),
        experiment_id(run_b),
        experiment_id(run_multi),
        session_id,
        experiment_id(run_flaky),
        next((project_a / "experiments").iterdir()),
        next((project_b / "experiments").iterdir()),
    )


def copy_of(recorded: Recorded, where: Path) -> str:
    """A private copy of the store (for tests that damage it)."""
    where.mkdir(parents=True, exist_ok=True)
    target = where / "ledger.db"
    shutil.copyfile(recorded.store, target)
    return str(target)
