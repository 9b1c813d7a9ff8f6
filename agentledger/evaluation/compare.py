"""Comparing the evaluations of two experiments: score changes per metric and per trace.

Traces are aligned as ``diff`` aligns runs: by slot (input index, iteration, persona).
A regression is a metric whose mean fell by more than ``threshold`` (0..1) or that B no
longer scores at all, or a trace that had PASS in A and has another verdict (or is
missing) in B, whatever the threshold (as a run that lost its success is for ``diff``).
A metric that only one side's config scores is listed, not a regression. Pure over the
log: nothing printed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from agentledger.evaluation.scoring import read_evaluation
from agentledger.evaluation.summary import EvaluationFold
from agentledger.eventstore.store import EventStore

JsonDict = dict[str, Any]
SlotKey = tuple[int, int, str | None]


@dataclass(frozen=True)
class MetricChange:
    metric: str
    mean_a: float | None
    mean_b: float | None
    pass_rate_a: float | None
    pass_rate_b: float | None
    scored_a: int | None = None
    """Traces this metric scored in A (None: A's config has no such metric)."""
    scored_b: int | None = None

    @property
    def delta(self) -> float | None:
        if self.mean_a is None or self.mean_b is None:
            return None
        return round(self.mean_b - self.mean_a, 6)

    def regressed(self, threshold: float) -> bool:
        """Its mean fell by more than ``threshold``, or B scored it nowhere."""
        if self.mean_a is None or self.scored_b is None:
            return False
        delta = self.delta
        return delta is None or delta < -threshold


@dataclass(frozen=True)
class TraceChange:
    slot: SlotKey
    trace_a: str | None
    trace_b: str | None
    verdict_a: str | None
    verdict_b: str | None
    aggregate_a: float | None
    aggregate_b: float | None
    scores_a: dict[str, float | None]
    scores_b: dict[str, float | None]

    @property
    def regressed(self) -> bool:
        return self.verdict_a == "PASS" and self.verdict_b != "PASS"


@dataclass
class EvaluationDiff:
    evaluation_a: str
    evaluation_b: str
    threshold: float
    metrics: list[MetricChange] = field(default_factory=list)
    traces: list[TraceChange] = field(default_factory=list)
    """Traces whose verdict, aggregate or any score changed, in slot order."""
    pass_rate_a: float = 0.0
    pass_rate_b: float = 0.0
    mean_aggregate_a: float | None = None
    mean_aggregate_b: float | None = None
    config_changed: bool = False
    """The two evaluations ran with different evaluation configs."""

    @property
    def pass_rate_delta(self) -> float:
        return round(self.pass_rate_b - self.pass_rate_a, 6)

    @property
    def regressions(self) -> list[str]:
        """What regressed, one line each (metric means first, then traces)."""
        found = [
            f"{m.metric}: mean {m.mean_a} -> {m.mean_b}"
            + (f" ({m.delta:+.3f})" if m.delta is not None else " (no trace scored)")
            for m in self.metrics
            if m.regressed(self.threshold)
        ]
        found += [
            f"trace {t.trace_b or t.trace_a} (input {t.slot[0]}, iteration {t.slot[1]}): "
            f"{t.verdict_a} -> {t.verdict_b or 'missing'}"
            for t in self.traces
            if t.regressed
        ]
        return found

    def as_dict(self) -> JsonDict:
        return {
            "evaluation_a": self.evaluation_a,
            "evaluation_b": self.evaluation_b,
            "threshold": self.threshold,
            "config_changed": self.config_changed,
            "pass_rate_a": self.pass_rate_a,
            "pass_rate_b": self.pass_rate_b,
            "pass_rate_delta": self.pass_rate_delta,
            "mean_aggregate_a": self.mean_aggregate_a,
            "mean_aggregate_b": self.mean_aggregate_b,
            "metrics": [
                {**m.__dict__, "delta": m.delta, "regressed": m.regressed(self.threshold)}
                for m in self.metrics
            ],
            "traces": [{**t.__dict__, "regressed": t.regressed} for t in self.traces],
            "regressions": self.regressions,
        }


def _side(store: EventStore, evaluation_id: str) -> tuple[EvaluationFold, dict[SlotKey, JsonDict]]:
    fold = EvaluationFold()
    rows: dict[SlotKey, JsonDict] = {}
    for ev in read_evaluation(store, evaluation_id):
        line = fold.apply(ev)
        if line is not None:
            rows[(line["input_index"], line["iteration"], line.get("persona"))] = line
    return fold, rows


def _scores(row: JsonDict | None) -> dict[str, float | None]:
    return {s["metric"]: s["score"] for s in (row or {}).get("scores", [])}


def compare_evaluations(
    store: EventStore, evaluation_a: str, evaluation_b: str, *, threshold: float = 0.05
) -> EvaluationDiff:
    """The score changes from evaluation A to evaluation B (ids)."""
    fold_a, rows_a = _side(store, evaluation_a)
    fold_b, rows_b = _side(store, evaluation_b)
    whole_a, whole_b = fold_a.summary(), fold_b.summary()
    diff = EvaluationDiff(
        evaluation_a,
        evaluation_b,
        threshold,
        pass_rate_a=whole_a["aggregate"]["pass_rate"],
        pass_rate_b=whole_b["aggregate"]["pass_rate"],
        mean_aggregate_a=whole_a["aggregate"]["mean"],
        mean_aggregate_b=whole_b["aggregate"]["mean"],
        config_changed=(fold_a.started or {}).get("config") != (fold_b.started or {}).get("config"),
    )
    summary_a, summary_b = whole_a["metrics"], whole_b["metrics"]
    for metric in [*summary_a, *(m for m in summary_b if m not in summary_a)]:
        a, b = summary_a.get(metric) or {}, summary_b.get(metric) or {}
        diff.metrics.append(
            MetricChange(
                metric,
                a.get("mean"),
                b.get("mean"),
                a.get("pass_rate"),
                b.get("pass_rate"),
                a.get("scored"),
                b.get("scored"),
            )
        )
    for slot in sorted(rows_a.keys() | rows_b.keys(), key=lambda k: (k[0], k[1], k[2] or "")):
        a_row, b_row = rows_a.get(slot), rows_b.get(slot)
        change = TraceChange(
            slot,
            a_row["trace_id"] if a_row else None,
            b_row["trace_id"] if b_row else None,
            a_row["verdict"] if a_row else None,
            b_row["verdict"] if b_row else None,
            a_row["aggregate"] if a_row else None,
            b_row["aggregate"] if b_row else None,
            _scores(a_row),
            _scores(b_row),
        )
        if (
            change.verdict_a != change.verdict_b
            or change.aggregate_a != change.aggregate_b
            or change.scores_a != change.scores_b
        ):
            diff.traces.append(change)
    return diff
