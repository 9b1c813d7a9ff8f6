"""``parse experiment`` on output folders: FluxLoop 0.3.2's files and agentledger's."""

from __future__ import annotations

from pathlib import Path

import orjson

from agentledger.projections.parse import parse_folder

SUMMARY = {
    "trace_id": "9b1f0c3e-0000-4000-8000-000000000001",
    "iteration": 0,
    "persona": "novice",
    "input": "hi",
    "output": '{"answer": "hello"}',
    "duration_ms": 12.5,
    "success": True,
    "conversation": [
        {"turn_index": 1, "role": "user", "content": "hi", "source": "input", "metadata": {}},
        {
            "turn_index": 1,
            "role": "assistant",
            "content": '{"answer": "hello"}',
            "source": "agent",
            "metadata": {"actions": ["agent:Echo"]},
        },
        {
            "turn_index": 2,
            "role": "user",
            "content": "bye",
            "source": "supervisor",
            "metadata": {"closing": True},
        },
    ],
    "conversation_state": {"turns": [], "metadata": {}, "context": {}},
    "termination_reason": "script_complete",
}
# As FluxLoop 0.3.2 writes them: the child ends (and is written) before its parent.
OBSERVATIONS = [
    {
        "id": "b",
        "type": "tool",
        "name": "lookup",
        "start_time": "2025-01-01T00:00:00.004000+00:00",
        "end_time": "2025-01-01T00:00:00.006000+00:00",
        "input": {"q": "hi"},
        "output": "HI",
        "level": "info",
        "metadata": {},
        "trace_id": SUMMARY["trace_id"],
    },
    {
        "id": "a",
        "type": "agent",
        "name": "Echo",
        "start_time": "2025-01-01T00:00:00.001000+00:00",
        "end_time": "2025-01-01T00:00:00.011000+00:00",
        "input": {"input_text": "hi"},
        "output": "hello",
        "level": "info",
        "metadata": {},
        "trace_id": SUMMARY["trace_id"],
    },
]


def _folder(tmp_path: Path) -> Path:
    folder = tmp_path / "exp"
    folder.mkdir()
    (folder / "trace_summary.jsonl").write_bytes(orjson.dumps(SUMMARY) + b"\n")
    (folder / "observations.jsonl").write_bytes(
        b"".join(orjson.dumps(row) + b"\n" for row in OBSERVATIONS)
    )
    return folder


def test_parse_keeps_each_steps_start_end_duration_input_and_output(tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    assert parse_folder(folder, folder / "out") == 1
    record = orjson.loads((folder / "out" / "per_trace.jsonl").read_bytes())
    timeline = record["timeline"]
    assert [step["name"] for step in timeline] == ["Echo", "lookup"]  # in start order
    assert timeline[0]["duration_ms"] == 10.0
    assert timeline[1]["input"] == {"q": "hi"} and timeline[1]["output"] == "HI"
    assert timeline[1]["start_time"] == OBSERVATIONS[0]["start_time"]
    assert timeline[1]["raw"] == OBSERVATIONS[0]
    assert record["final_output"] == SUMMARY["output"]
    assert record["summary"]["raw"] == SUMMARY
    assert record["conversation"][1]["content"] == {"answer": "hello"}  # decoded, as FluxLoop
    assert record["termination_reason"] == "script_complete"
    page = next((folder / "out").glob("00_*.md")).read_text()
    assert "- Start: `2025-01-01T00:00:00.001000+00:00`" in page
    assert "- Duration: `10.00 ms`" in page
    assert "_(source=agent ; actions=Echo)_" not in page
    assert "_(source=agent ; actions=agent:Echo)_" in page
    assert "_(source=supervisor ; closing=true)_" in page
    assert "Time: `N/A`" not in page


def test_parse_shows_ctx_span_rows_with_their_time_and_data(tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    (folder / "observations.jsonl").write_bytes(
        orjson.dumps(
            {
                "trace_id": SUMMARY["trace_id"],
                "type": "span_end",
                "timestamp": "2025-01-01T00:00:00.002000Z",
                "name": "answer",
                "observation_id": "t:1:end",
                "parent_id": None,
                "level": None,
                "data": {"duration_ms": 1.5},
            }
        )
        + b"\n"
    )
    parse_folder(folder, folder / "out")
    step = orjson.loads((folder / "out" / "per_trace.jsonl").read_bytes())["timeline"][0]
    assert (step["start_time"], step["duration_ms"], step["input"]) == (
        "2025-01-01T00:00:00.002000Z",
        1.5,
        {"duration_ms": 1.5},
    )
