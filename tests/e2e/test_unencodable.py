"""Values JSON can carry but orjson cannot write (integers beyond 64 bits, deep nesting)
are stored in their documented form; no run, and no other run's events, are lost."""

from __future__ import annotations

from pathlib import Path

import orjson

from tests.support.projects import (
    agentledger,
    experiment_id,
    folder_bytes,
    make_project,
    output_folder,
    read_jsonl,
)

AGENT = """
def run(input_text, ctx):
    if input_text == "b":
        ctx.observe("big", n=2**70)
        nested = []
        for _ in range(300):
            nested = [nested]
        return nested
    return "done"
"""


def test_big_integers_and_deep_nesting_are_stored_and_rebuild(tmp_path: Path) -> None:
    project = make_project(
        tmp_path / "proj",
        agent=AGENT,
        inputs=[{"input": "a"}, {"input": "b", "metadata": {"n": 10**23}}],
        iterations=1,
        simulation={"seed": 10**23},
    )
    result = agentledger("run", "experiment", "--yes", cwd=project)
    assert result.returncode == 0, result.stderr
    folder = output_folder(result)
    rows = read_jsonl(folder / "trace_summary.jsonl")
    assert [r["success"] for r in rows] == [True, True]
    big = next(o for o in read_jsonl(folder / "observations.jsonl") if o["name"] == "big")
    assert big["data"] == {"n": str(2**70)}
    output = rows[1]["output"]
    depth = 0
    while isinstance(output, list):
        output, depth = output[0], depth + 1
    assert isinstance(output, str) and orjson.loads(output) is not None  # the deep part, as text
    assert agentledger("verify", cwd=project).returncode == 0
    before = folder_bytes(folder)
    rebuilt = agentledger("report", "rebuild", experiment_id(result), "--force", cwd=project)
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert folder_bytes(folder) == before
