"""Rule-based evaluators: FluxLoop's checks, applied to one trace, deterministic and fast.

Each check returns an ``Outcome`` (passed, a score of 1 or 0, or the measured ratio
for ``similarity``, and what was found). An evaluator's score is the mean of its rules'
scores; it passes when every rule passes. A target that is not in the trace fails the
rule, saying which path was missing.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterable
from functools import lru_cache
from typing import Any, NamedTuple

from agentledger.evaluation.checks import (
    ContainsRule,
    EqualsRule,
    JsonSchemaRule,
    LatencyUnderRule,
    MatchesRegexRule,
    SimilarityRule,
    TokenUsageUnderRule,
    _Rule,
)
from agentledger.evaluation.config import EvaluationSettings, RuleEvaluator
from agentledger.evaluation.jsonschema import first_error
from agentledger.evaluation.traces import (
    MISSING,
    JsonDict,
    TraceView,
    _parsed,
    as_text,
    reads_row,
)
from agentledger.events.evaluation import MetricScore


class Outcome(NamedTuple):
    """One rule applied to one trace (a ``RuleOutcome`` once it is kept in an event)."""

    check: str
    passed: bool
    score: float
    detail: str


def _outcome(rule: _Rule, passed: bool, detail: str = "", score: float | None = None) -> Outcome:
    value = (1.0 if passed else 0.0) if score is None else score
    return Outcome(rule.check, passed, value, detail)


def _target(rule: _Rule, trace: TraceView) -> Any:
    return trace.value(rule.target)


def _missing(rule: _Rule, path: str) -> Outcome:
    return _outcome(rule, False, f"{path}: not in the trace")


def _not_empty(rule: _Rule, trace: TraceView) -> Outcome:
    value = _target(rule, trace)
    if value is MISSING:
        return _missing(rule, rule.target)
    filled = bool(as_text(value).strip())
    return _outcome(rule, filled, "" if filled else "empty")


def _contains(rule: _Rule, trace: TraceView) -> Outcome:
    assert isinstance(rule, ContainsRule)
    value = _target(rule, trace)
    if value is MISSING:
        return _missing(rule, rule.target)
    text = as_text(value)
    if not rule.case_sensitive:
        text = text.casefold()
    found = [k for k in rule.keywords if (k if rule.case_sensitive else k.casefold()) in text]
    if rule.check == "not_contains":
        return _outcome(rule, not found, f"found {found[0]!r}" if found else "")
    missing = [k for k in rule.keywords if k not in found]
    passed = bool(found) if rule.match == "any" else not missing
    return _outcome(rule, passed, "" if passed else f"missing {missing[0]!r}")


@lru_cache(maxsize=256)
def _compiled(pattern: str, case_sensitive: bool) -> re.Pattern[str]:
    return re.compile(pattern, 0 if case_sensitive else re.IGNORECASE)


def _regex(rule: _Rule, trace: TraceView) -> Outcome:
    assert isinstance(rule, MatchesRegexRule)
    value = _target(rule, trace)
    if value is MISSING:
        return _missing(rule, rule.target)
    passed = _compiled(rule.pattern, rule.case_sensitive).search(as_text(value)) is not None
    return _outcome(rule, passed, "" if passed else f"no match for {rule.pattern!r}")


def _latency(rule: _Rule, trace: TraceView) -> Outcome:
    assert isinstance(rule, LatencyUnderRule)
    took = trace.latency_ms
    if took <= rule.budget_ms:
        return _outcome(rule, True)  # a passed rule's detail is not kept (see rule_document)
    return _outcome(rule, False, f"{took:g} ms of {rule.budget_ms:g}")


def _tokens(rule: _Rule, trace: TraceView) -> Outcome:
    assert isinstance(rule, TokenUsageUnderRule)
    usage = trace.usage
    for key, limit in (
        ("total_tokens", rule.max_total_tokens),
        ("prompt_tokens", rule.max_prompt_tokens),
        ("completion_tokens", rule.max_completion_tokens),
    ):
        if limit is not None and usage[key] > limit:
            return _outcome(rule, False, f"{key} {usage[key]} over {limit}")
    return _outcome(rule, True)


def _similarity(rule: _Rule, trace: TraceView) -> Outcome:
    assert isinstance(rule, SimilarityRule)
    value = _target(rule, trace)
    expected = trace.value(rule.expected_path)
    if value is MISSING:
        return _missing(rule, rule.target)
    if expected is MISSING:
        return _missing(rule, rule.expected_path)
    ratio = round(difflib.SequenceMatcher(None, as_text(value), as_text(expected)).ratio(), 6)
    return _outcome(rule, ratio >= rule.threshold, f"similarity {ratio:.3f}", ratio)


def _success(rule: _Rule, trace: TraceView) -> Outcome:
    error = trace.trace.error or {}
    return _outcome(
        rule, trace.trace.success, "" if trace.trace.success else str(error.get("type"))
    )


def _json_schema(rule: _Rule, trace: TraceView) -> Outcome:
    assert isinstance(rule, JsonSchemaRule)
    value = _target(rule, trace)
    if value is MISSING:
        return _missing(rule, rule.target)
    value = _parsed(value)
    problem = first_error(value, rule.json_schema)
    return _outcome(rule, problem is None, problem or "")


def _equals(rule: _Rule, trace: TraceView) -> Outcome:
    assert isinstance(rule, EqualsRule)
    value = _target(rule, trace)
    expected = rule.expected if rule.expected is not None else trace.value(rule.expected_path)
    if value is MISSING:
        return _missing(rule, rule.target)
    if expected is MISSING:
        return _missing(rule, rule.expected_path)
    if isinstance(value, str) or isinstance(expected, str):
        left, right = as_text(value), as_text(expected)
        if rule.strip:
            left, right = left.strip(), right.strip()
        if not rule.case_sensitive:
            left, right = left.casefold(), right.casefold()
        passed = left == right
    else:
        passed = value == expected
    return _outcome(rule, passed, "" if passed else f"expected {as_text(expected)[:80]!r}")


CHECKS: dict[str, Callable[[_Rule, TraceView], Outcome]] = {
    "output_not_empty": _not_empty,
    "contains": _contains,
    "not_contains": _contains,
    "matches_regex": _regex,
    "latency_under": _latency,
    "token_usage_under": _tokens,
    "similarity": _similarity,
    "success": _success,
    "json_schema": _json_schema,
    "equals": _equals,
}


def reads_whole_trace(evaluators: Iterable[RuleEvaluator]) -> bool:
    """Whether a rule reads a path into the whole trace (its ``traces.jsonl`` row), which
    only a full fold gives (see ``traces.read_rule_traces``)."""
    for evaluator in evaluators:
        for rule in evaluator.rules:
            paths = [rule.target]
            if isinstance(rule, SimilarityRule) or (
                isinstance(rule, EqualsRule) and rule.expected is None
            ):
                paths.append(rule.expected_path)
            if any(reads_row(path) for path in paths):
                return True
    return False


def score_rules(
    evaluator: RuleEvaluator, trace: TraceView, settings: EvaluationSettings
) -> MetricScore:
    """Apply every rule of ``evaluator`` to ``trace``."""
    return MetricScore.model_validate(rule_document(evaluator, trace, settings))


def rule_document(
    evaluator: RuleEvaluator, trace: TraceView, settings: EvaluationSettings
) -> JsonDict:
    """``score_rules`` as the data of its ``MetricScore`` (``model_dump(mode="json")``'s
    shape, every field present), built without the model: scoring's hot path."""
    total: float = 0
    failed: list[str] = []
    # Only what says more than the score: the rules that failed or scored in between.
    # (Fewer bytes per event, and a check name like token_usage_under in every event
    # would send each one through the redactor's full scrub.)
    kept: list[JsonDict] = []
    for rule in evaluator.rules:
        check, passed, value, detail = CHECKS[rule.check](rule, trace)
        total += value
        if not passed:
            failed.append(f"{check}: {detail}" if detail else check)
        elif not 0 < value < 1:
            continue
        kept.append({"check": check, "passed": passed, "score": float(value), "detail": detail})
    score = round(total / len(evaluator.rules), 6)
    return {
        "evaluator": evaluator.name,
        "metric": evaluator.name,
        "kind": "rule_based",
        "score": score,
        "label": None,
        "value": None,
        "passed": not failed,
        "rating": settings.rating(evaluator.name, score),
        "weight": float(evaluator.weight),
        "reason": "; ".join(failed),
        "rules": kept,
        "judge_calls": [],
        "samples": [],
    }
