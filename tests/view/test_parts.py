"""The viewer's pure parts: joined stream chunks, timeline times, charts, embedded JSON."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from agentledger.eventstore.envelope import StoredEvent
from agentledger.view.charts import duration_histogram, histogram_bins, success_bars
from agentledger.view.report import content_policy, embedded_json
from agentledger.view.traces import build_trace_view, joined_chunks


def chunk(**delta: object) -> dict:
    return {"choices": [{"index": 0, "delta": delta}]}


def test_streamed_chunks_join_into_one_message_with_its_tool_calls() -> None:
    chunks = [
        chunk(role="assistant", content="Hel"),
        chunk(content="lo"),
        chunk(
            tool_calls=[{"index": 0, "id": "c1", "function": {"name": "look", "arguments": '{"q"'}}]
        ),
        chunk(tool_calls=[{"index": 0, "function": {"arguments": ': "x"}'}}]),
        chunk(
            tool_calls=[{"index": 1, "id": "c2", "function": {"name": "other", "arguments": "{}"}}]
        ),
    ]
    assert joined_chunks(chunks) == {
        "role": "assistant",
        "content": "Hello",
        "tool_calls": [
            {
                "id": "c1",
                "type": "function",
                "function": {"name": "look", "arguments": '{"q": "x"}'},
            },
            {"id": "c2", "type": "function", "function": {"name": "other", "arguments": "{}"}},
        ],
    }


def event(position: int, kind: str, data: dict, at: str) -> StoredEvent:
    return StoredEvent(
        position, f"e{position}", "trace-x-000000", position, kind, 1, data, {}, at, "h"
    )


def test_events_appended_together_are_placed_between_the_observations_around_them() -> None:
    events = [
        event(
            1,
            "TraceStarted",
            {"trace_id": "x-000000", "slot": 0, "input_index": 0, "iteration": 0, "input": "q"},
            "2026-01-01T00:00:00.000000Z",
        ),
        event(
            2,
            "ModelCallStarted",
            {
                "call_id": "m",
                "call_index": 0,
                "provider": "mock",
                "request": {"messages": []},
                "fingerprint": "f",
            },
            "2026-01-01T00:00:01.000000Z",
        ),
        event(
            3,
            "ModelCallCompleted",
            {"call_id": "m", "call_index": 0, "latency_ms": 200.0},
            "2026-01-01T00:00:01.000000Z",
        ),
        event(
            4,
            "ObservationRecorded",
            {
                "observation_id": "o",
                "kind": "event",
                "name": "seen",
                "timestamp": "2026-01-01T00:00:00.500000Z",
            },
            "2026-01-01T00:00:01.000000Z",
        ),
        event(
            5,
            "TraceCompleted",
            {"duration_ms": 1000.0, "output": "a"},
            "2026-01-01T00:00:01.000000Z",
        ),
    ]
    view = build_trace_view("trace-x-000000", events)
    model = next(b for b in view.bars if b.kind == "model")
    assert (model.start_ms, model.end_ms) == (500.0, 700.0)  # not after the observation at 500
    seen = next(b for b in view.bars if b.kind == "event")
    assert seen.start_ms == 500.0 and seen.end_ms is None
    assert view.bars[0].kind == "trace" and view.bars[0].end_ms == 1000.0


def test_histogram_counts_every_value_once() -> None:
    values = [0.0, 1.0, 5.0, 9.99, 10.0, 3.3]
    bins = histogram_bins(values, bins=5)
    assert sum(n for _, _, n in bins) == len(values)
    assert bins[-1][1] == 10.0


def test_chart_labels_are_escaped() -> None:
    bars = success_bars(
        {"<b>x</b>": {"total": 2, "successful": 1, "failed": 1, "success_rate": 0.5}}
    )
    assert "<b>" not in bars and "&lt;b&gt;x&lt;/b&gt;" in bars
    assert "<script" not in duration_histogram([1.0, 2.0], {"<script>": 1.0})


TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)))
"""What the store holds: JSON text (no lone surrogates) and 64-bit integers (orjson's)."""
JSON = st.recursive(
    TEXT | st.integers(-(2**63), 2**63 - 1) | st.booleans() | st.none(),
    lambda inner: st.lists(inner) | st.dictionaries(TEXT, inner),
)


@given(JSON)
def test_embedded_json_reads_back_and_cannot_close_its_element(value: object) -> None:
    text = embedded_json(value)
    assert "<" not in text and ">" not in text and "&" not in text
    assert json.loads(text) == value


def test_the_report_policy_names_its_own_style_and_script_only() -> None:
    policy = content_policy("body{}", "run()")
    assert policy.startswith("default-src 'none'; style-src 'sha256-")
    assert "script-src 'sha256-" in policy and "unsafe" not in policy
