"""Comparing two experiments run by run: replay verdicts and ``diff``.

Runs are aligned by slot: (input index, iteration, persona). Pure functions over folded
traces; nothing here reads the store or the clock.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict

from agentledger.projections.folds import TraceFold
from agentledger.projections.rows import trace_usage

SlotKey = tuple[int, int, str | None]
Verdict = Literal["identical", "output changed", "diverged", "missing"]


def slot_of(trace: TraceFold) -> SlotKey:
    return (trace.input_index, trace.iteration, trace.persona)


def _index(traces: Iterable[TraceFold]) -> dict[SlotKey, TraceFold]:
    return {slot_of(t): t for t in traces}


def _slot_order(key: SlotKey) -> tuple[int, int, str]:
    return (key[0], key[1], key[2] or "")


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS | orjson.OPT_INDENT_2).decode()


def same_outcome(before: TraceFold, after: TraceFold) -> bool:
    """Same success, same output, and for failures the same error type."""
    if before.success != after.success or before.output != after.output:
        return False
    error_type = (before.error or {}).get("type")
    return error_type == (after.error or {}).get("type")


class ReplayRow(BaseModel):
    """One line of a replay's verdict table."""

    model_config = ConfigDict(frozen=True)

    trace_id: str
    source_trace_id: str | None
    input_index: int
    iteration: int
    persona: str | None
    verdict: Verdict
    detail: str = ""


def replay_verdicts(source: Iterable[TraceFold], replay: Iterable[TraceFold]) -> list[ReplayRow]:
    """Per replayed run: identical, output changed, or diverged from its recording."""
    recorded = _index(source)
    rows = []
    for trace in sorted(replay, key=lambda t: _slot_order(slot_of(t))):
        before = recorded.get(slot_of(trace))
        error = trace.error or {}
        if error.get("reason") == "divergence":
            verdict: Verdict = "diverged"
            detail = str(error.get("message", "")).splitlines()[0]
        elif before is None:
            verdict, detail = "missing", "no recorded run for this slot"
        elif same_outcome(before, trace):
            verdict, detail = "identical", ""
        else:
            verdict = "output changed"
            if before.success != trace.success:
                detail = f"success {before.success} -> {trace.success}"
            else:
                detail = "output differs"
        rows.append(
            ReplayRow(
                trace_id=trace.trace_id,
                source_trace_id=before.trace_id if before else None,
                input_index=trace.input_index,
                iteration=trace.iteration,
                persona=trace.persona,
                verdict=verdict,
                detail=detail,
            )
        )
    return rows


class ChangedRun(BaseModel):
    """A slot whose success or output differs between the two experiments."""

    model_config = ConfigDict(frozen=True)

    input_index: int
    iteration: int
    persona: str | None
    input: str
    trace_a: str | None
    trace_b: str | None
    success_a: bool | None
    success_b: bool | None
    regression: bool
    """A success in A that is a failure (or missing) in B."""
    output_diff: str
    """Unified diff of the outputs (A -> B)."""


class Side(BaseModel):
    model_config = ConfigDict(frozen=True)

    experiment_id: str
    runs: int
    successful: int
    success_rate: float
    avg_duration_ms: float
    total_tokens: int
    model_calls: int


class ExperimentDiff(BaseModel):
    """``agentledger diff A B``: totals of each side, deltas, and the runs that changed."""

    model_config = ConfigDict(frozen=True)

    a: Side
    b: Side
    success_rate_delta: float
    avg_duration_ms_delta: float
    total_tokens_delta: int
    changed: list[ChangedRun]
    regressions: int


def _side(experiment_id: str, traces: list[TraceFold]) -> Side:
    ok = sum(1 for t in traces if t.success)
    tokens = calls = 0
    for trace in traces:
        usage = trace_usage(trace)
        tokens += usage["total_tokens"]
        calls += usage["model_calls"]
    durations = [t.duration_ms for t in traces]
    return Side(
        experiment_id=experiment_id,
        runs=len(traces),
        successful=ok,
        success_rate=round(ok / len(traces), 4) if traces else 0.0,
        avg_duration_ms=round(sum(durations) / len(durations), 3) if durations else 0.0,
        total_tokens=tokens,
        model_calls=calls,
    )


def _output_diff(a: TraceFold | None, b: TraceFold | None) -> str:
    before = _text(a.output).splitlines() if a else []
    after = _text(b.output).splitlines() if b else []
    lines = difflib.unified_diff(
        before,
        after,
        fromfile=a.trace_id if a else "(absent)",
        tofile=b.trace_id if b else "(absent)",
        lineterm="",
    )
    return "\n".join(lines)


def diff_experiments(
    a_id: str, a_traces: Iterable[TraceFold], b_id: str, b_traces: Iterable[TraceFold]
) -> ExperimentDiff:
    """Compare B against A, run by run (aligned by slot)."""
    a_list, b_list = list(a_traces), list(b_traces)
    a_index, b_index = _index(a_list), _index(b_list)
    changed = []
    for key in sorted(set(a_index) | set(b_index), key=_slot_order):
        before, after = a_index.get(key), b_index.get(key)
        if before is not None and after is not None and same_outcome(before, after):
            continue
        either = before or after
        assert either is not None
        regression = before is not None and before.success and not (after and after.success)
        changed.append(
            ChangedRun(
                input_index=key[0],
                iteration=key[1],
                persona=key[2],
                input=either.input,
                trace_a=before.trace_id if before else None,
                trace_b=after.trace_id if after else None,
                success_a=before.success if before else None,
                success_b=after.success if after else None,
                regression=bool(regression),
                output_diff=_output_diff(before, after),
            )
        )
    side_a, side_b = _side(a_id, a_list), _side(b_id, b_list)
    return ExperimentDiff(
        a=side_a,
        b=side_b,
        success_rate_delta=round(side_b.success_rate - side_a.success_rate, 4),
        avg_duration_ms_delta=round(side_b.avg_duration_ms - side_a.avg_duration_ms, 3),
        total_tokens_delta=side_b.total_tokens - side_a.total_tokens,
        changed=changed,
        regressions=sum(1 for c in changed if c.regression),
    )


@dataclass(frozen=True)
class VerdictCounts:
    identical: int
    changed: int
    diverged: int
    missing: int

    @property
    def all_identical(self) -> bool:
        return self.changed == self.diverged == self.missing == 0


def count_verdicts(rows: Iterable[ReplayRow]) -> VerdictCounts:
    verdicts = [r.verdict for r in rows]
    return VerdictCounts(
        verdicts.count("identical"),
        verdicts.count("output changed"),
        verdicts.count("diverged"),
        verdicts.count("missing"),
    )
