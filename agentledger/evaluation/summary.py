"""The evaluation report: a pure fold of an evaluation stream into its files.

``EvaluationFold`` takes the events of one evaluation stream in order (``apply``) and
never reads a clock or a database. Its outputs, written into
``<experiment folder>/evaluation/`` (``evaluation-<name>/`` for a named evaluation):

- ``scores.jsonl``: one line per scored trace, in plan order (the ``TraceScored`` data
  without the evaluation id, so a re-scoring that agrees is the same bytes);
- ``summary.json``: per metric pass rate, mean, min, max, distribution of labels and
  ratings; verdict counts; per persona (``aggregate.by_persona``); efficiency outliers;
  judge calls, tokens and cost; and every success criterion with its verdict.

The success criteria are checked here, from the scores: ``EvaluationCompleted`` records
what this fold computed when the evaluation ended, and a rebuild computes it again.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from agentledger.evaluation.config import EvaluationConfig, OutlierConfig
from agentledger.events.evaluation import VERDICTS, CriterionResult
from agentledger.eventstore.envelope import FoldableEvent

JsonDict = dict[str, Any]
SUMMARY_FILE = "summary.json"
_MEASURES = (
    ("output_tokens", "output_tokens"),
    ("conversation_depth", "conversation_depth"),
    ("latency", "latency_ms"),
)
SCORES_FILE = "scores.jsonl"


@dataclass
class _Metric:
    kind: str
    evaluator: str
    total: float = 0.0
    scored: int = 0
    low: float | None = None
    high: float | None = None
    unscored: int = 0
    passed: int = 0
    labels: Counter[str] = field(default_factory=Counter)
    ratings: Counter[str] = field(default_factory=Counter)

    def add(self, score: float) -> None:
        self.total += score
        self.scored += 1
        self.low = score if self.low is None else min(self.low, score)
        self.high = score if self.high is None else max(self.high, score)

    @property
    def mean(self) -> float | None:
        # Folded in stream order (plan order) every time: the same sum, the same bytes.
        return round(self.total / self.scored, 6) if self.scored else None

    def row(self) -> JsonDict:
        scored = self.scored
        return {
            "kind": self.kind,
            "evaluator": self.evaluator,
            "scored": scored,
            "unscored": self.unscored,
            "passed": self.passed,
            "pass_rate": _ratio(self.passed, scored),
            "mean": self.mean,
            "min": self.low,
            "max": self.high,
            "ratings": {k: self.ratings[k] for k in ("good", "fair", "poor")},
            "labels": dict(sorted(self.labels.items())),
        }


@dataclass
class _Group:
    traces: int = 0
    aggregate_total: float = 0.0
    aggregated: int = 0
    verdicts: Counter[str] = field(default_factory=Counter)

    def add(self, data: JsonDict) -> None:
        self.traces += 1
        if data["aggregate"] is not None:
            self.aggregate_total += data["aggregate"]
            self.aggregated += 1
        self.verdicts[data["verdict"]] += 1

    @property
    def mean_aggregate(self) -> float | None:
        if not self.aggregated:
            return None
        return round(self.aggregate_total / self.aggregated, 6)

    def row(self) -> JsonDict:
        return {
            "traces": self.traces,
            "pass_rate": _ratio(self.verdicts["PASS"], self.traces),
            "mean_aggregate": self.mean_aggregate,
            "verdicts": {v: self.verdicts[v] for v in VERDICTS},
        }


def _ratio(part: int, whole: int) -> float:
    return round(part / whole, 6) if whole else 0.0


class EvaluationFold:
    """One evaluation stream folded (see the module docstring)."""

    def __init__(self) -> None:
        self.started: JsonDict | None = None
        self.completed: JsonDict | None = None
        self.started_at: str | None = None
        self.completed_at: str | None = None
        self.config = EvaluationConfig()
        self.metrics: dict[str, _Metric] = {}
        self.overall = _Group()
        self.personas: dict[str, _Group] = {}
        self.success = 0
        self.latency_total = 0.0
        self.latency_max = 0.0
        self.efficiency: dict[str, list[tuple[str, float]]] = {}
        self.tool_calls = 0
        self.failed_tool_calls = 0
        self.judge_calls = 0
        self.judge_failed_calls = 0
        self.prompt_tokens = 0
        self.completion_tokens = 0

    def apply(self, ev: FoldableEvent) -> JsonDict | None:
        """Fold one event; a ``TraceScored`` returns its ``scores.jsonl`` line."""
        data = ev.data
        if ev.type == "TraceScored":
            return self._scored(data)
        if ev.type == "EvaluationStarted":
            self.begin(data)
            self.started_at = ev.recorded_at
        elif ev.type == "EvaluationCompleted":
            self.completed = data
            self.completed_at = ev.recorded_at
        elif ev.type == "ModelCallStarted":
            self.judge_calls += 1
        elif ev.type == "ModelCallFailed":
            self.judge_failed_calls += 1
        elif ev.type == "ModelCallCompleted":
            usage = data.get("usage") or {}
            self.prompt_tokens += int(usage.get("prompt_tokens") or 0)
            self.completion_tokens += int(usage.get("completion_tokens") or 0)
        return None

    def begin(self, data: JsonDict) -> None:
        """Fold ``EvaluationStarted``'s data: the config and the metrics to expect."""
        self.started = data
        self.config = EvaluationConfig.model_validate(data["config"])
        for name, _ in _MEASURES:
            check = getattr(self.config.efficiency, name)
            if check is not None and check.enabled:
                self.efficiency[name] = []
        for name in data["metrics"]:
            self.metrics[name] = _Metric("", "")

    def _scored(self, data: JsonDict) -> JsonDict:
        self.overall.add(data)
        if self.config.aggregate.by_persona:
            persona = data.get("persona") or "(none)"
            group = self.personas.get(persona)
            if group is None:
                group = self.personas[persona] = _Group()
            group.add(data)
        self.success += bool(data["success"])
        latency = data["latency_ms"]
        self.latency_total += latency
        self.latency_max = max(self.latency_max, latency)
        # Kept per trace only for the outlier checks configured (two passes: stats, then
        # the traces beyond them).
        trace_id = data["trace_id"]
        for name, key in _MEASURES:
            values = self.efficiency.get(name)
            if values is not None:
                values.append((trace_id, data[key]))
        self.tool_calls += data.get("tool_calls", 0)
        self.failed_tool_calls += data.get("failed_tool_calls", 0)
        for score in data["scores"]:
            metric = self.metrics.get(score["metric"])
            if metric is None:
                metric = self.metrics[score["metric"]] = _Metric("", "")
            metric.kind, metric.evaluator = score["kind"], score["evaluator"]
            if score["score"] is None:
                metric.unscored += 1
                continue
            metric.add(score["score"])
            metric.passed += bool(score.get("passed"))
            if score.get("label"):
                metric.labels[score["label"]] += 1
            if score.get("rating"):
                metric.ratings[score["rating"]] += 1
        line = dict(data)
        del line["evaluation_id"]
        return line

    # --- results -----------------------------------------------------------------------

    @property
    def scored(self) -> int:
        return self.overall.traces

    @property
    def unscored(self) -> int:
        return self.overall.verdicts["REVIEW"]

    @property
    def pass_rate(self) -> float:
        return _ratio(self.overall.verdicts["PASS"], self.scored)

    def judge_cost(self) -> float | None:
        rates = self.config.limits.cost_per_1k_tokens
        if rates is None:
            return None
        cost = self.prompt_tokens * rates.prompt + self.completion_tokens * rates.completion
        return round(cost / 1000, 6)

    def outliers(self) -> JsonDict:
        """Per configured efficiency measure: mean, standard deviation, the threshold,
        and the traces above it (in plan order)."""
        found: JsonDict = {}
        for name in ("output_tokens", "conversation_depth", "latency"):
            check: OutlierConfig | None = getattr(self.config.efficiency, name)
            if check is None or not check.enabled:
                continue
            values = self.efficiency.get(name, [])
            numbers = [v for _, v in values]
            mean = math.fsum(numbers) / len(numbers) if numbers else 0.0
            var = math.fsum((v - mean) ** 2 for v in numbers) / len(numbers) if numbers else 0.0
            std = math.sqrt(var)
            limits = []
            if check.outlier_mode in ("std", "both"):
                limits.append(mean + check.std_multiplier * std)
            if check.outlier_mode in ("absolute", "both") and check.absolute_threshold is not None:
                limits.append(check.absolute_threshold)
            threshold = min(limits) if limits else None
            flagged = [t for t, v in values if threshold is not None and v > threshold]
            found[name] = {
                "mode": check.outlier_mode,
                "mean": round(mean, 6),
                "std": round(std, 6),
                "threshold": None if threshold is None else round(threshold, 6),
                "outliers": len(flagged),
                "trace_ids": flagged,
            }
        return found

    def criteria(self) -> list[CriterionResult]:
        """Every success criterion configured, checked."""
        results: list[CriterionResult] = []

        def add(name: str, expected: str, actual: float | None, passed: bool) -> None:
            value = None if actual is None else round(actual, 6)
            results.append(
                CriterionResult(name=name, expected=expected, actual=value, passed=passed)
            )

        criteria = self.config.success_criteria
        perf, quality, funcs = criteria.performance, criteria.quality, criteria.functionality
        total = self.scored
        success_rate = _ratio(self.success, total)
        if perf.all_traces_successful:
            add("performance.all_traces_successful", "== 1", success_rate, self.success == total)
        if perf.success_rate is not None:
            add(
                "performance.success_rate",
                f">= {perf.success_rate:g}",
                success_rate,
                success_rate >= perf.success_rate,
            )
        if perf.avg_response_time is not None and perf.avg_response_time.enabled:
            avg = round(self.latency_total / total, 6) if total else 0.0
            bar = perf.avg_response_time.threshold_ms
            add("performance.avg_response_time", f"<= {bar:g} ms", avg, avg <= bar)
        if perf.max_response_time is not None and perf.max_response_time.enabled:
            top = self.latency_max
            bar = perf.max_response_time.threshold_ms
            add("performance.max_response_time", f"<= {bar:g} ms", top, top <= bar)
        if perf.error_rate is not None and perf.error_rate.enabled:
            rate = 100 * (1 - success_rate) if total else 0.0
            bar = perf.error_rate.threshold_percent
            add("performance.error_rate", f"<= {bar:g} %", rate, rate <= bar)
        if quality.pass_rate is not None:
            add(
                "quality.pass_rate",
                f">= {quality.pass_rate:g}",
                self.pass_rate,
                self.pass_rate >= quality.pass_rate,
            )
        if quality.mean_score is not None:
            mean = self.overall.mean_aggregate
            add(
                "quality.mean_score",
                f">= {quality.mean_score:g}",
                mean,
                mean is not None and mean >= quality.mean_score,
            )
        for metric, least in quality.min_scores.items():
            mean = self.metrics[metric].mean if metric in self.metrics else None
            add(
                f"quality.min_scores.{metric}",
                f">= {least:g}",
                mean,
                mean is not None and mean >= least,
            )
        if quality.max_unscored is not None:
            add(
                "quality.max_unscored",
                f"<= {quality.max_unscored}",
                float(self.unscored),
                self.unscored <= quality.max_unscored,
            )
        if funcs.all_tool_calls_successful:
            add(
                "functionality.all_tool_calls_successful",
                "== 0 failed",
                float(self.failed_tool_calls),
                self.failed_tool_calls == 0,
            )
        if funcs.max_failed_tool_calls is not None:
            add(
                "functionality.max_failed_tool_calls",
                f"<= {funcs.max_failed_tool_calls}",
                float(self.failed_tool_calls),
                self.failed_tool_calls <= funcs.max_failed_tool_calls,
            )
        return results

    def summary(self) -> JsonDict:
        """``summary.json``."""
        started = self.started or {}
        completed = self.completed or {}
        criteria = self.criteria()
        aggregate = self.config.aggregate
        document: JsonDict = {
            "evaluation_id": started.get("evaluation_id"),
            "experiment_id": started.get("experiment_id"),
            "number": started.get("number"),
            "name": started.get("name"),
            "status": "completed" if self.completed is not None else "running",
            "config_file": started.get("config_file"),
            "record_mode": started.get("record_mode", "live"),
            "replay_of": started.get("replay_of"),
            "started_at": self.started_at,
            "completed_at": self.completed_at,
            "goal": self.config.evaluation_goal.text,
            "traces": {
                "planned": started.get("planned_runs"),
                "available": completed.get("traces_available"),
                "not_finished": completed.get("not_finished"),
                "skipped": completed.get("skipped", {}),
                "scored": self.scored,
                "unscored": self.unscored,
            },
            "aggregate": {
                "method": aggregate.method,
                "threshold": aggregate.threshold,
                "mean": self.overall.mean_aggregate,
                "pass_rate": self.pass_rate,
            },
            "verdicts": {v: self.overall.verdicts[v] for v in VERDICTS},
            "metrics": {name: m.row() for name, m in self.metrics.items()},
            "efficiency": self.outliers(),
            "judge": {
                "calls": self.judge_calls,
                "failed_calls": self.judge_failed_calls,
                "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens,
                "cost": self.judge_cost(),
            },
            "success_criteria": {
                "passed": all(c.passed for c in criteria),
                "criteria": [c.model_dump(mode="json") for c in criteria],
            },
        }
        if aggregate.by_persona:
            document["by_persona"] = {k: g.row() for k, g in sorted(self.personas.items())}
        return document


def _dump(value: Any) -> bytes:
    return orjson.dumps(value)


def write_evaluation(events: Iterable[FoldableEvent], folder: Path) -> EvaluationFold:
    """Fold an evaluation stream's events into ``folder`` (scores.jsonl streamed, then
    summary.json), each file written atomically."""
    fold = write_scores(events, folder)
    write_summary(fold, folder)
    return fold


def write_scores(events: Iterable[FoldableEvent], folder: Path) -> EvaluationFold:
    """Fold ``events`` writing ``scores.jsonl`` (atomically); the fold, for the summary."""
    from agentledger.projections.writers import atomic_file

    folder.mkdir(parents=True, exist_ok=True)
    fold = EvaluationFold()
    with atomic_file(folder / SCORES_FILE) as handle:
        for line in _lines(fold, events):
            handle.write(_dump(line) + b"\n")
    return fold


class ScoresWriter:
    """``scores.jsonl`` written while the stream is folded a part at a time (the scores
    as each append left them in the log), into a temporary file put in place by
    ``commit``; ``discard`` (or leaving the context without a commit) removes it and a
    folder it made. ``folder`` None folds without writing."""

    def __init__(self, folder: Path | None) -> None:
        self.fold = EvaluationFold()
        self._folder = folder
        self._made = folder is not None and not folder.exists()
        self._handle: Any = None
        if folder is not None:
            folder.mkdir(parents=True, exist_ok=True)
            self._tmp = folder / f".{SCORES_FILE}.tmp-{os.getpid()}"
            self._handle = open(self._tmp, "wb", buffering=1 << 20)  # noqa: SIM115

    def add(self, events: Iterable[FoldableEvent]) -> None:
        """Fold ``events`` (the next of the stream, in order), writing their lines."""
        handle = self._handle
        for line in _lines(self.fold, events):
            if handle is not None:
                handle.write(_dump(line) + b"\n")

    def commit(self) -> None:
        """Put ``scores.jsonl`` in place."""
        if self._handle is not None and self._folder is not None:
            self._handle.close()
            self._handle = None
            os.replace(self._tmp, self._folder / SCORES_FILE)

    def discard(self) -> None:
        if self._handle is not None and self._folder is not None:
            self._handle.close()
            self._handle = None
            self._tmp.unlink(missing_ok=True)
            if self._made:
                with contextlib.suppress(OSError):
                    self._folder.rmdir()  # only when nothing else is in it

    def __enter__(self) -> ScoresWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.discard()


def write_summary(fold: EvaluationFold, folder: Path) -> None:
    """``summary.json`` of a fold (atomically)."""
    from agentledger.projections.writers import atomic_file

    with atomic_file(folder / SUMMARY_FILE) as handle:
        handle.write(orjson.dumps(fold.summary(), option=orjson.OPT_INDENT_2) + b"\n")


def _lines(fold: EvaluationFold, events: Iterable[FoldableEvent]) -> Iterator[JsonDict]:
    for ev in events:
        line = fold.apply(ev)
        if line is not None:
            yield line


def fold_evaluation(events: Iterable[FoldableEvent]) -> EvaluationFold:
    """An evaluation stream folded, without writing anything."""
    fold = EvaluationFold()
    for _ in _lines(fold, events):
        pass
    return fold
