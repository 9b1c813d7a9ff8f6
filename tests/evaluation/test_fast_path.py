"""Rule-only scoring's fast path (traces folded for rules only, ``TraceScored`` data built
without the model) gives the same events and files as the ordinary path (whole traces
folded, every ``TraceScored`` validated and dumped by pydantic)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from agentledger.evaluation.config import load_settings
from agentledger.evaluation.scoring import evaluate_experiment
from agentledger.events.evaluation import evaluation_stream
from agentledger.events.payloads import (
    ExperimentCompleted,
    ExperimentPlan,
    ExperimentStarted,
    ModelCallCompleted,
    ModelCallFailed,
    ModelCallStarted,
    Payload,
    PlanInput,
    SdkObservationRecorded,
    ToolCallCompleted,
    ToolCallRejected,
    ToolCallRequested,
    TraceAttemptFailed,
    TraceCompleted,
    TraceFailed,
    TraceStarted,
    TurnCompleted,
    TurnStarted,
)
from agentledger.events.streams import experiment_stream, trace_stream
from agentledger.eventstore import EventStore
from agentledger.eventstore.store import NO_STREAM

EXPERIMENT = "fastpath0001"
INPUTS = [
    PlanInput(index=0, input="capital of France?", metadata={"expected": "Paris", "tag": "geo"}),
    PlanInput(index=1, input="json please", metadata={"expected": {"ok": True}}),
    PlanInput(index=2, input="no expectation"),
]
RULES: dict[str, Any] = {
    "evaluators": [
        {
            "name": "text",
            "type": "rule_based",
            "weight": 2,
            "rules": [
                {"check": "output_not_empty"},
                {"check": "contains", "keywords": ["Paris", "answer"], "match": "any"},
                {"check": "not_contains", "keywords": ["sorry"], "case_sensitive": True},
                {"check": "matches_regex", "pattern": "^[A-Z]", "target": "input"},
                {"check": "similarity", "threshold": 0.5},
                {"check": "equals", "target": "persona", "expected": "expert"},
            ],
        },
        {
            "name": "run",
            "type": "rule_based",
            "weight": 0.5,
            "rules": [
                {"check": "success"},
                {"check": "latency_under", "budget_ms": 100},
                {"check": "token_usage_under", "max_total_tokens": 20, "max_completion_tokens": 9},
            ],
        },
        {
            "name": "shape",
            "type": "rule_based",
            "rules": [
                {"check": "json_schema", "json_schema": {"type": "object", "required": ["ok"]}},
                {"check": "equals", "target": "output.ok", "expected_path": "expected.ok"},
                {"check": "contains", "target": "metadata.tag", "keywords": ["geo"]},
            ],
        },
    ],
    "aggregate": {"method": "weighted_sum", "threshold": 0.6, "by_persona": True},
    "metrics": {"run": {"thresholds": {"good": 0.9, "fair": 0.4}}},
    "efficiency": {"latency": {"outlier_mode": "std", "std_multiplier": 1.0}},
    "success_criteria": {
        "performance": {"success_rate": 0.5},
        "quality": {"pass_rate": 0.3, "min_scores": {"text": 0.2}},
        "functionality": {"max_failed_tool_calls": 3},
    },
}


def _trace(slot: int) -> list[Payload]:
    """One trace of a varied experiment: outputs, failures, retries, tools, usage."""
    trace_id = f"{EXPERIMENT}-{slot:04d}"
    index = slot % 3
    started = TraceStarted(
        experiment_id=EXPERIMENT,
        trace_id=trace_id,
        slot=slot,
        input_index=index,
        iteration=slot // 3,
        persona=("expert", "novice", None)[slot % 4 % 3],
        input=INPUTS[index].input,
        seed=slot,
    )
    events: list[Payload] = [started]
    if slot % 5 == 1:  # a retried attempt: its turns are dropped
        events += [
            TurnStarted(turn_index=0, user_message="first try"),
            TraceAttemptFailed(
                attempt=1,
                error_type="ValueError",
                error_message="flaky",
                retry_in_seconds=0.0,
            ),
        ]
    for turn in range(1 + slot % 3):
        call = f"{trace_id}:model:{turn}"
        events += [
            TurnStarted(turn_index=turn, user_message=f"turn {turn}"),
            ModelCallStarted(
                call_id=call,
                call_index=turn,
                provider="mock",
                model="echo",
                request={"messages": []},
                fingerprint="f" * 64,
            ),
        ]
        if (slot + turn) % 4 == 3:
            events.append(
                ModelCallFailed(
                    call_id=call,
                    call_index=turn,
                    error_type="Timeout",
                    error_message="slow",
                    latency_ms=2.0,
                )
            )
        else:
            events.append(
                ModelCallCompleted(
                    call_id=call,
                    call_index=turn,
                    response={},
                    usage={
                        "prompt_tokens": 4 + slot,
                        "completion_tokens": 3 + turn,
                        "total_tokens": 7 + slot + turn,
                    },
                    latency_ms=1.5,
                )
            )
        events.append(TurnCompleted(turn_index=turn, agent_output="ok", duration_ms=4.0))
    if slot % 4 == 2:
        tool = f"{trace_id}:tool:0"
        events += [
            ToolCallRequested(call_id=tool, tool_name="search", arguments={"q": "x"}),
            ToolCallCompleted(call_id=tool, error="boom" if slot % 8 == 2 else None),
            ToolCallRequested(call_id=f"{tool}b", tool_name="delete"),
            ToolCallRejected(call_id=f"{tool}b", reason="no"),
        ]
    if slot % 6 == 5:
        events.append(
            SdkObservationRecorded(observation={"type": "tool", "name": "sdk", "error": "x"})
        )
    outputs = ["Paris it is", "", '{"ok": true}', "sorry, no answer", {"ok": False}, "answer"]
    output = outputs[slot % len(outputs)]
    duration = 10.0 + 37 * (slot % 7)
    if slot % 7 == 4:
        events.append(
            TraceFailed(error_type="RuntimeError", error_message="broke", duration_ms=duration)
        )
    else:
        events.append(TraceCompleted(output=output, duration_ms=duration, turn_count=slot % 3))
    return events


@pytest.fixture
def store(tmp_path: Path) -> EventStore:
    handle = EventStore.open(str(tmp_path / "ledger.db"))
    meta = {"correlation_id": EXPERIMENT}
    plan = ExperimentPlan(inputs=INPUTS, iterations=14, total_runs=42)
    handle.append(
        experiment_stream(EXPERIMENT),
        [
            ExperimentStarted(
                experiment_id=EXPERIMENT,
                name="fast",
                config={},
                plan=plan,
                seed=1,
                output_dir=str(tmp_path / "out"),
            )
        ],
        expected_version=NO_STREAM,
        metadata=meta,
    )
    for slot in range(42):
        if slot == 40:
            continue  # never finished: counted, not scored
        events = _trace(slot)
        if slot == 41:
            events = events[:-1]  # still running
        handle.append(
            trace_stream(f"{EXPERIMENT}-{slot:04d}"),
            events,
            expected_version=NO_STREAM,
            metadata=meta,
        )
    handle.append(
        experiment_stream(EXPERIMENT),
        [ExperimentCompleted(experiment_id=EXPERIMENT, total_traces=42, successful=36, failed=6)],
        metadata=meta,
    )
    yield handle
    handle.close()


def _evaluate(
    store: EventStore, root: Path, *, fast_path: bool
) -> tuple[bytes, dict[str, Any], list[dict[str, Any]]]:
    config = root / "evaluation.yaml"
    config.write_text(yaml.safe_dump(RULES))
    settings = load_settings(root, str(config), {})
    out = root / ("fast" if fast_path else "ordinary")
    result = evaluate_experiment(
        store, EXPERIMENT, settings, {}, output_dir=out, fast_path=fast_path
    )
    summary = orjson.loads((out / "summary.json").read_bytes())
    for key in ("evaluation_id", "number", "started_at", "completed_at"):
        summary.pop(key)
    events = [
        {k: v for k, v in ev.data.items() if k != "evaluation_id"}
        for ev in store.read_stream(evaluation_stream(result.evaluation_id))
        if ev.type == "TraceScored"
    ]
    return (out / "scores.jsonl").read_bytes(), summary, events


def test_fast_path_agrees_with_the_ordinary_path(store: EventStore, tmp_path: Path) -> None:
    ordinary = _evaluate(store, tmp_path, fast_path=False)
    fast = _evaluate(store, tmp_path, fast_path=True)
    assert fast[0] == ordinary[0]
    assert fast[1] == ordinary[1]
    assert fast[2] == ordinary[2]
    # The experiment exercises what the fast fold reads: every verdict, failures, tools.
    verdicts = ordinary[1]["verdicts"]
    assert len(ordinary[2]) == 40 and verdicts["PASS"] and verdicts["FAIL"]
    assert any(e["failed_tool_calls"] for e in ordinary[2])
    assert any(not e["success"] for e in ordinary[2])
    assert {e["conversation_depth"] for e in ordinary[2]} >= {1, 2}


def test_leaving_a_rule_worker_early_stops_it(store: EventStore, tmp_path: Path) -> None:
    import threading

    from agentledger.evaluation.ruleworker import QUEUED, RuleWorker
    from agentledger.evaluation.scoring import _Scorer
    from agentledger.projections.report import load_report
    from agentledger.replay.book import RecordMode

    config = tmp_path / "evaluation.yaml"
    config.write_text(yaml.safe_dump(RULES))
    settings = load_settings(tmp_path, str(config), {})
    scorer = _Scorer(
        store,
        settings,
        f"{EXPERIMENT}-e001",
        EXPERIMENT,
        mode=RecordMode.LIVE,
        books=None,
        env={},
        parallel=1,
    )
    experiment = load_report(store, EXPERIMENT).experiment
    # One trace a message: more messages than the queue holds, so the reader is blocked.
    with RuleWorker(store, experiment, None, scorer, whole=False, chunk=1) as worker:
        chunks = worker.chunks()
        first = next(chunks)
        assert [d["slot"] for d in first] == [0]
        assert worker._worker is not None and QUEUED < 40
    assert not worker._worker.is_alive()
    assert not any(t.name == "agentledger-scores" for t in threading.enumerate())
    chunks.close()
