"""Rule checks on one trace, and reading judge replies: pure functions, no store."""

from __future__ import annotations

from typing import Any

import pytest

from agentledger.evaluation.checks import parse_rule
from agentledger.evaluation.config import (
    EvaluationConfig,
    EvaluationSettings,
    EvaluatorConfig,
    JudgeEvaluator,
    RuleEvaluator,
    _judge,
)
from agentledger.evaluation.judge import Reading, combine, parse_reply, render_prompt
from agentledger.evaluation.rules import CHECKS, score_rules
from agentledger.evaluation.traces import TraceView
from agentledger.projections.folds import TraceFold

SETTINGS = EvaluationSettings(EvaluationConfig(), None, (), "")


def trace(output: Any = "The notebook is ready.", **changes: Any) -> TraceView:
    fold = TraceFold("exp-000001", input="make a notebook", persona="novice", output=output)
    fold.status = changes.pop("status", "completed")
    fold.duration_ms = changes.pop("duration_ms", 120.0)
    fold.model_calls = {
        "c": {
            "call_index": 0,
            "usage": {"prompt_tokens": 30, "completion_tokens": 12, "total_tokens": 42},
        }
    }
    return TraceView(fold, changes.pop("metadata", {"expected": "The notebook is ready."}))


def check(rule: dict[str, Any], view: TraceView) -> tuple[bool, float, str]:
    parsed = parse_rule(rule, "test")
    outcome = CHECKS[parsed.check](parsed, view)
    return outcome.passed, outcome.score, outcome.detail


@pytest.mark.parametrize(
    ("rule", "passes"),
    [
        ({"check": "output_not_empty"}, True),
        ({"check": "contains", "keywords": ["NOTEBOOK", "ready"]}, True),
        ({"check": "contains", "keywords": ["NOTEBOOK"], "case_sensitive": True}, False),
        ({"check": "contains", "keywords": ["tea", "ready"], "match": "any"}, True),
        ({"check": "contains", "keywords": ["tea", "ready"]}, False),
        ({"check": "not_contains", "keywords": ["sorry"]}, True),
        ({"check": "not_contains", "keywords": ["ready"]}, False),
        ({"check": "matches_regex", "pattern": r"^The \w+"}, True),
        ({"check": "matches_regex", "target": "input", "pattern": "^make"}, True),
        ({"check": "latency_under", "budget_ms": 200}, True),
        ({"check": "latency_under", "budget_ms": 100}, False),
        ({"check": "token_usage_under", "max_total_tokens": 42}, True),
        ({"check": "token_usage_under", "max_completion_tokens": 11}, False),
        ({"check": "success"}, True),
        ({"check": "equals"}, True),
        ({"check": "equals", "expected": "the notebook is ready.", "case_sensitive": False}, True),
        ({"check": "equals", "expected": "other"}, False),
        ({"check": "matches_regex", "target": "usage.total_tokens", "pattern": "^42$"}, True),
        ({"check": "contains", "target": "persona", "keywords": ["novice"]}, True),
    ],
)
def test_rule_checks(rule: dict[str, Any], passes: bool) -> None:
    assert check(rule, trace())[0] is passes


def test_similarity_scores_the_ratio_against_the_expected_field() -> None:
    passed, score, detail = check(
        {"check": "similarity", "threshold": 0.9}, trace("The notebook is rady.")
    )
    assert passed and 0.9 < score < 1 and detail.startswith("similarity 0.9")


def test_a_missing_target_fails_naming_the_path() -> None:
    passed, _, detail = check({"check": "equals", "expected_path": "metadata.answer"}, trace())
    assert (passed, detail) == (False, "metadata.answer: not in the trace")


def test_json_schema_reads_json_text_output() -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    assert check({"check": "json_schema", "schema": schema}, trace('{"n": 3}'))[0]
    passed, _, detail = check({"check": "json_schema", "schema": schema}, trace('{"n": "3"}'))
    assert (passed, detail) == (False, "$.n: expected integer")


def test_dotted_target_walks_json_output() -> None:
    assert check({"check": "equals", "target": "output.n", "expected": 3}, trace('{"n": 3}'))[0]


def test_failed_run_fails_successparse_rule() -> None:
    view = trace(status="failed")
    view.trace.error = {"type": "ValueError", "message": "x", "reason": "exception"}
    assert check({"check": "success"}, view) == (False, 0.0, "ValueError")


def test_evaluator_score_is_the_mean_of_its_rules() -> None:
    rules = (
        parse_rule({"check": "success"}, "t"),
        parse_rule({"check": "latency_under", "budget_ms": 1}, "t"),
    )
    score = score_rules(RuleEvaluator("r", 1.0, rules), trace(), SETTINGS)
    assert (score.score, score.passed, score.rating) == (0.5, False, "fair")
    assert score.reason == "latency_under: 120 ms of 1"
    assert [r.check for r in score.rules] == ["latency_under"]  # the passed rule is implied


def judge(**config: Any) -> JudgeEvaluator:
    raw = EvaluatorConfig(name="quality", type="llm_judge", model="mock:echo", **config)
    return _judge(raw, "test", {}, "")


def test_judge_reply_that_is_not_json_is_invalid() -> None:
    assert parse_reply(judge(labels=["GOOD", "BAD"]), "Looks good to me!") == (
        "the reply is not JSON: 'Looks good to me!'"
    )


def test_judge_label_off_the_list_is_invalid() -> None:
    reply = '{"quality": {"label": "GREAT", "reason": "r"}}'
    assert parse_reply(judge(labels=["GOOD", "BAD"]), reply) == (
        "quality: label 'GREAT' is not one of GOOD, BAD"
    )


def test_judge_score_off_the_scale_is_invalid() -> None:
    reply = '{"quality": {"score": 11, "reason": "r"}}'
    assert parse_reply(judge(max_score=10), reply) == "quality: score 11 is off the scale 1..10"


def test_judge_metrics_are_read_and_normalised() -> None:
    reply = '{"a": {"score": 4, "reason": "fine"}, "b": {"score": 1, "reason": "poor"}}'
    readings = parse_reply(judge(metrics=["a", "b"], scale={"min": 1, "max": 5}), reply)
    assert readings == {"a": Reading(4.0, 0.75, "fine"), "b": Reading(1.0, 0.0, "poor")}


def test_first_number_parser_reads_fluxloop_style_replies() -> None:
    readings = parse_reply(judge(max_score=10, parser="first_number_1_10"), "Score: 8/10")
    assert readings == {"quality": Reading(8.0, 0.777778, "Score: 8/10")}


def test_majority_of_samples_ties_go_to_the_lower_score() -> None:
    metric = judge(labels=["GOOD", "FAIR", "BAD"]).metrics[0]
    good, bad = Reading("GOOD", 1.0, "g"), Reading("BAD", 0.0, "b")
    assert combine(metric, [good, bad, good], "majority") == good
    assert combine(metric, [good, bad], "majority") == bad


def test_mean_of_numeric_samples() -> None:
    metric = judge(max_score=5).metrics[0]
    readings = [Reading(5.0, 1.0, "a"), Reading(3.0, 0.5, "b"), Reading(4.0, 0.75, "c")]
    assert combine(metric, readings, "mean") == Reading(4.0, 0.75, "a")


def test_prompt_fills_the_template_and_states_the_reply_shape() -> None:
    prompt = render_prompt(
        judge(labels=["GOOD", "BAD"], prompt_template="Q: {input} A: {output} E: {expected}"),
        trace(),
        "",
    )
    assert prompt.startswith(
        "Q: make a notebook A: The notebook is ready. E: The notebook is ready."
    )
    assert prompt.endswith(
        'Reply with only a JSON object: {"quality": {"label": ..., "reason": "..."}}'
    )
