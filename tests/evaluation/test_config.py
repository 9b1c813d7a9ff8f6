"""evaluation.yaml: FluxLoop's layout accepted, every cross-key rule checked, near-miss keys."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from agentledger.errors import ConfigError, RunnerError
from agentledger.evaluation.config import JudgeEvaluator, RuleEvaluator, load_settings

FLUXLOOP = {
    "evaluation_goal": {"text": "Help users finish their task."},
    "evaluators": [
        {
            "name": "completeness",
            "type": "rule_based",
            "enabled": True,
            "weight": 0.3,
            "rules": [
                {"check": "output_not_empty"},
                {"check": "token_usage_under", "max_total_tokens": 4000},
                {"check": "latency_under", "budget_ms": 1200},
                {
                    "check": "contains",
                    "target": "output",
                    "keywords": ["a"],
                    "case_sensitive": False,
                },
                {"check": "not_contains", "target": "output", "keywords": ["sorry"]},
                {"check": "matches_regex", "target": "output", "pattern": "^e"},
                {"check": "similarity", "target": "output", "expected_path": "expected"},
                {"check": "success"},
                {"check": "json_schema", "schema": {"type": "object"}},
                {"check": "equals", "expected_path": "metadata.answer"},
            ],
        },
        {
            "name": "intent",
            "type": "llm_judge",
            "enabled": True,
            "weight": 0.7,
            "model": "gpt-4o-mini",
            "prompt_template": "Input: {input}\nOutput: {output}\nScore 1-10.",
            "max_score": 10,
            "parser": "first_number_1_10",
            "model_parameters": {"temperature": 0.2},
        },
        {"name": "off", "type": "rule_based", "enabled": False, "rules": [{"check": "success"}]},
    ],
    "aggregate": {"method": "weighted_sum", "threshold": 0.5, "by_persona": True},
    "limits": {"sample_rate": 0.5, "max_llm_calls": 10, "timeout_seconds": 60, "cache": False},
    "success_criteria": {
        "performance": {"all_traces_successful": True, "error_rate": {"threshold_percent": 5}},
        "quality": {"pass_rate": 0.8, "min_scores": {"intent": 0.5}},
        "functionality": {"all_tool_calls_successful": True},
    },
    "metrics": {"intent": {"thresholds": {"good": 0.8, "fair": 0.5}}},
    "efficiency": {
        "output_tokens": {"outlier_mode": "std", "std_multiplier": 2.0},
        "conversation_depth": {"outlier_mode": "absolute", "absolute_threshold": 6},
        "latency": {"outlier_mode": "both", "std_multiplier": 3, "absolute_threshold": 5000},
    },
}
ENV = {"OPENAI_API_KEY": "sk-test-not-used"}


def write(tmp_path: Path, config: dict[str, Any]) -> Path:
    (tmp_path / "configs").mkdir(exist_ok=True)
    path = tmp_path / "configs" / "evaluation.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def error_of(tmp_path: Path, config: dict[str, Any], env: dict[str, str] = ENV) -> str:
    write(tmp_path, config)
    with pytest.raises(ConfigError) as raised:
        load_settings(tmp_path, None, env)
    message = str(raised.value)
    assert "\n" not in message
    return message


def test_fluxloop_layout_is_accepted_and_resolved(tmp_path: Path) -> None:
    write(tmp_path, FLUXLOOP)
    settings = load_settings(tmp_path, None, ENV)
    rules, judge = settings.evaluators
    assert isinstance(rules, RuleEvaluator) and len(rules.rules) == 10
    assert isinstance(judge, JudgeEvaluator)
    assert judge.model.label == "openai:gpt-4o-mini" and judge.model.temperature == 0.2
    assert (judge.parser, judge.metrics[0].low, judge.metrics[0].high) == ("first_number", 1, 10)
    assert settings.metric_names == ["completeness", "intent"]
    assert settings.goal == "Help users finish their task."


def test_unknown_top_level_key_names_the_nearest(tmp_path: Path) -> None:
    message = error_of(tmp_path, {**FLUXLOOP, "agregate": {}})
    assert "unknown key 'agregate'; did you mean 'aggregate'?" in message


def test_unknown_evaluator_key_names_the_nearest(tmp_path: Path) -> None:
    config = {"evaluators": [{"name": "j", "type": "llm_judge", "promt_template": "x"}]}
    assert "did you mean 'prompt_template'?" in error_of(tmp_path, config)


def test_unknown_rule_param_names_the_nearest(tmp_path: Path) -> None:
    config = {
        "evaluators": [
            {"name": "r", "type": "rule_based", "rules": [{"check": "contains", "keyword": ["a"]}]}
        ]
    }
    assert "unknown key 'keyword'; did you mean 'keywords'?" in error_of(tmp_path, config)


def test_unknown_check_names_the_nearest(tmp_path: Path) -> None:
    config = {"evaluators": [{"name": "r", "type": "rule_based", "rules": [{"check": "contain"}]}]}
    assert "unknown check 'contain'; did you mean 'contains'?" in error_of(tmp_path, config)


def test_unknown_efficiency_key_names_the_nearest(tmp_path: Path) -> None:
    config = {"efficiency": {"latency": {"std_multiplyer": 2}}}
    assert "did you mean 'std_multiplier'?" in error_of(tmp_path, config)


def test_metric_thresholds_must_name_a_scored_metric(tmp_path: Path) -> None:
    config = {**FLUXLOOP, "metrics": {"intnet": {"thresholds": {"good": 0.9}}}}
    assert "metrics.intnet names no scored metric; did you mean 'intent'?" in error_of(
        tmp_path, config
    )


def test_a_cache_file_is_refused_with_the_fix(tmp_path: Path) -> None:
    config = {**FLUXLOOP, "limits": {"cache": "evaluation_cache.jsonl"}}
    assert "write cache: true" in error_of(tmp_path, config)


def test_max_cost_needs_token_prices(tmp_path: Path) -> None:
    config = {**FLUXLOOP, "limits": {"max_cost": 1.5}}
    assert "limits.max_cost needs limits.cost_per_1k_tokens" in error_of(tmp_path, config)


def test_unknown_prompt_placeholder_is_refused(tmp_path: Path) -> None:
    config = {
        "evaluators": [
            {"name": "j", "type": "llm_judge", "model": "mock:echo", "prompt_template": "{ouput}"}
        ]
    }
    assert "unknown placeholder '{ouput}'; did you mean 'output'?" in error_of(tmp_path, config)


def test_a_judge_without_a_key_is_refused_naming_the_variable(tmp_path: Path) -> None:
    from agentledger.evaluation.api import check_settings

    write(tmp_path, FLUXLOOP)
    with pytest.raises(RunnerError, match="needs an API key: set OPENAI_API_KEY"):
        check_settings(tmp_path)


def test_bad_regex_is_refused_at_load(tmp_path: Path) -> None:
    rule = {"check": "matches_regex", "pattern": "("}
    config = {"evaluators": [{"name": "r", "type": "rule_based", "rules": [rule]}]}
    assert "is not a regular expression" in error_of(tmp_path, config)


def test_unsupported_json_schema_keyword_is_refused(tmp_path: Path) -> None:
    rule = {"check": "json_schema", "schema": {"type": "object", "patternProperties": {}}}
    config = {"evaluators": [{"name": "r", "type": "rule_based", "rules": [rule]}]}
    assert "keyword 'patternProperties' is not supported" in error_of(tmp_path, config)


def test_labels_and_scale_together_are_refused(tmp_path: Path) -> None:
    judge = {
        "name": "j",
        "type": "llm_judge",
        "model": "mock:echo",
        "labels": ["A", "B"],
        "max_score": 5,
    }
    assert "either 'labels' or a numeric scale" in error_of(tmp_path, {"evaluators": [judge]})


def test_without_evaluators_the_fluxloop_judge_scores_seven_metrics(tmp_path: Path) -> None:
    settings = load_settings(tmp_path, None, {})
    (judge,) = settings.judges
    assert judge.model.label == "mock:echo"
    assert [m.name for m in judge.metrics] == [
        "task_completion",
        "hallucination",
        "relevance",
        "tool_usage",
        "user_satisfaction",
        "clarity",
        "persona_consistency",
    ]


def test_a_named_config_that_is_missing_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"evaluation config .*nope\.yaml not found"):
        load_settings(tmp_path, "nope.yaml", {})
