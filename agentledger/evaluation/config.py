"""``configs/evaluation.yaml``: FluxLoop 0.3.2's layout read strictly, every key honoured.

Top-level sections: ``evaluation_goal.text``, ``evaluators`` (``rule_based`` with
``rules: [{check, ...params}]``, ``llm_judge`` with a rubric ``prompt_template``, a metric
list, labels or a numeric scale, ``model``, ``temperature``, ``samples``), ``aggregate``,
``limits``, ``success_criteria``, ``metrics.<name>.thresholds`` and ``efficiency``. An
unknown or misspelled key is an error naming the nearest valid one (the same mechanism as
simulation.yaml's). Without ``evaluators`` the FluxLoop judge is used: one call per trace
scoring its seven fixed metrics.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agentledger.evaluation.checks import (
    _Rule,
    near,
    parse_rule,
)
from agentledger.evaluation.errors import EvaluationConfigError
from agentledger.eventstore.redaction import MASK
from agentledger.experiments.config import load_yaml, validate_file
from agentledger.models.specs import ModelSpec, check_sampling, default_model, parse_model

EVALUATION_FILE = Path("configs") / "evaluation.yaml"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


# --- the file ----------------------------------------------------------------------------


class ScaleConfig(_Strict):
    min: float = 0.0
    max: float


class EvaluatorConfig(_Strict):
    name: str = Field(min_length=1)
    type: Literal["rule_based", "llm_judge"]
    enabled: bool = True
    weight: float = Field(default=1.0, ge=0)
    description: str | None = None
    rules: list[dict[str, Any]] = Field(default_factory=list)
    model: str | dict[str, Any] | None = None
    prompt_template: str | None = None
    max_score: float | None = Field(default=None, gt=0)
    parser: str | None = None
    """``json`` (default): the reply is a JSON object; ``first_number`` (FluxLoop's
    ``first_number_1_10`` too): the first number in the reply, single-metric judges only."""
    model_parameters: dict[str, Any] = Field(default_factory=dict)
    metrics: list[str] | dict[str, str] | None = None
    """Judge metrics (names, or name -> what it means); default: one, the evaluator."""
    labels: list[str] | dict[str, float] | None = None
    """A labelled scale, best first (scores 1..0 evenly), or label -> score."""
    scale: ScaleConfig | None = None
    temperature: float | None = None
    samples: int = Field(default=1, ge=1, le=25)
    sample_aggregation: Literal["majority", "mean"] | None = None
    """How samples combine: ``majority`` (labels' default) or ``mean`` (numbers')."""
    retries: int = Field(default=2, ge=0, le=10)
    """Further judge calls after a reply that is not valid JSON or not on the scale."""
    response_format: Literal["json_schema", "json_object", "none"] = "json_schema"
    """How the reply's JSON shape is asked for: a strict schema (default), JSON mode, or
    only in the prompt (for endpoints without structured output)."""


class AggregateConfig(_Strict):
    method: Literal["weighted_sum", "average"] = "weighted_sum"
    threshold: float = Field(default=0.5, ge=0, le=1)
    by_persona: bool = False


class CostRates(_Strict):
    prompt: float = Field(ge=0)
    completion: float = Field(ge=0)


class LimitsConfig(_Strict):
    sample_rate: float = Field(default=1.0, gt=0, le=1)
    max_traces: int | None = Field(default=None, ge=1)
    max_llm_calls: int | None = Field(default=None, ge=0)
    timeout_seconds: float | None = Field(default=None, gt=0)
    cache: bool | str = False
    max_cost: float | None = Field(default=None, ge=0)
    cost_per_1k_tokens: CostRates | None = None


class ThresholdMs(_Strict):
    enabled: bool = True
    threshold_ms: float = Field(gt=0)


class ThresholdPercent(_Strict):
    enabled: bool = True
    threshold_percent: float = Field(ge=0, le=100)


class PerformanceCriteria(_Strict):
    all_traces_successful: bool = False
    success_rate: float | None = Field(default=None, ge=0, le=1)
    avg_response_time: ThresholdMs | None = None
    max_response_time: ThresholdMs | None = None
    error_rate: ThresholdPercent | None = None


class QualityCriteria(_Strict):
    pass_rate: float | None = Field(default=None, ge=0, le=1)
    mean_score: float | None = Field(default=None, ge=0, le=1)
    min_scores: dict[str, float] = Field(default_factory=dict)
    """Metric -> the least mean score it may have."""
    max_unscored: int | None = Field(default=None, ge=0)


class FunctionalityCriteria(_Strict):
    all_tool_calls_successful: bool = False
    max_failed_tool_calls: int | None = Field(default=None, ge=0)


class SuccessCriteria(_Strict):
    performance: PerformanceCriteria = Field(default_factory=PerformanceCriteria)
    quality: QualityCriteria = Field(default_factory=QualityCriteria)
    functionality: FunctionalityCriteria = Field(default_factory=FunctionalityCriteria)


class Thresholds(_Strict):
    good: float = Field(default=0.8, ge=0, le=1)
    fair: float = Field(default=0.5, ge=0, le=1)


class MetricConfig(_Strict):
    thresholds: Thresholds = Field(default_factory=Thresholds)
    description: str | None = None


class OutlierConfig(_Strict):
    enabled: bool = True
    outlier_mode: Literal["std", "absolute", "both"] = "std"
    std_multiplier: float = Field(default=2.0, gt=0)
    absolute_threshold: float | None = Field(default=None, ge=0)


class EfficiencyConfig(_Strict):
    output_tokens: OutlierConfig | None = None
    conversation_depth: OutlierConfig | None = None
    latency: OutlierConfig | None = None


class GoalConfig(_Strict):
    text: str = ""


class EvaluationConfig(_Strict):
    """``configs/evaluation.yaml``."""

    evaluation_goal: GoalConfig = Field(default_factory=GoalConfig)
    evaluators: list[EvaluatorConfig] = Field(default_factory=list)
    aggregate: AggregateConfig = Field(default_factory=AggregateConfig)
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    success_criteria: SuccessCriteria = Field(default_factory=SuccessCriteria)
    metrics: dict[str, MetricConfig] = Field(default_factory=dict)
    efficiency: EfficiencyConfig = Field(default_factory=EfficiencyConfig)


# --- resolved ----------------------------------------------------------------------------

_DEFAULT_THRESHOLDS = Thresholds()


@dataclass(frozen=True)
class JudgeMetric:
    """One metric a judge scores, and its scale."""

    name: str
    """As reported: the evaluator's name, or ``<evaluator>.<metric>``."""
    key: str
    """As the judge sees it in its reply."""
    description: str
    labels: dict[str, float] | None
    """Label -> score 0..1, best first; None for a numeric scale."""
    low: float = 0.0
    high: float = 1.0

    def normalise(self, value: float) -> float:
        return round((value - self.low) / (self.high - self.low), 6)


@dataclass(frozen=True)
class RuleEvaluator:
    name: str
    weight: float
    rules: tuple[_Rule, ...]

    kind: Literal["rule_based"] = "rule_based"

    @property
    def metric_names(self) -> list[str]:
        return [self.name]


@dataclass(frozen=True)
class JudgeEvaluator:
    name: str
    weight: float
    model: ModelSpec
    prompt: str
    metrics: tuple[JudgeMetric, ...]
    samples: int
    aggregation: Literal["majority", "mean"]
    retries: int
    parser: Literal["json", "first_number"]
    response_format: Literal["json_schema", "json_object", "none"] = "json_schema"

    kind: Literal["llm_judge"] = "llm_judge"

    @property
    def metric_names(self) -> list[str]:
        return [m.name for m in self.metrics]


Evaluator = RuleEvaluator | JudgeEvaluator


@dataclass(frozen=True)
class EvaluationSettings:
    """An evaluation as resolved: evaluators with their models, and every bar."""

    config: EvaluationConfig
    config_file: str | None
    evaluators: tuple[Evaluator, ...]
    goal: str
    thresholds: dict[str, Thresholds] = field(default_factory=dict)

    @property
    def metric_names(self) -> list[str]:
        return [name for e in self.evaluators for name in e.metric_names]

    @property
    def judges(self) -> list[JudgeEvaluator]:
        return [e for e in self.evaluators if isinstance(e, JudgeEvaluator)]

    def thresholds_for(self, metric: str) -> Thresholds:
        return self.thresholds.get(metric) or Thresholds()

    def rating(self, metric: str, score: float) -> Literal["good", "fair", "poor"]:
        """good / fair / poor against ``metrics.<metric>.thresholds`` (0.8 / 0.5)."""
        bars = self.thresholds.get(metric) or _DEFAULT_THRESHOLDS
        return "good" if score >= bars.good else "fair" if score >= bars.fair else "poor"

    def judge_passes(self, metric: str, score: float) -> bool:
        """A judge metric passes at its ``good`` threshold when one is configured, else
        at ``aggregate.threshold``."""
        bars = self.thresholds.get(metric)
        return score >= (bars.good if bars else self.config.aggregate.threshold)

    def snapshot(self) -> dict[str, Any]:
        """The config as recorded: judge ``api_key``s masked."""
        data = self.config.model_dump(mode="json", by_alias=True)
        for evaluator in data.get("evaluators", []):
            model = evaluator.get("model")
            if isinstance(model, dict) and model.get("api_key"):
                model["api_key"] = MASK
        return data


PROMPT_FIELDS = (
    "input",
    "output",
    "persona",
    "expected",
    "conversation",
    "goal",
    "metrics",
    "success",
    "error",
    "trace_id",
)
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")

FLUXLOOP_METRICS: tuple[tuple[str, str, list[str] | None], ...] = (
    ("task_completion", "Did the agent complete what the user asked?", ["PASS", "PARTIAL", "FAIL"]),
    ("hallucination", "5: nothing invented; 1: largely invented facts", None),
    ("relevance", "5: fully on the user's request; 1: off topic", None),
    ("tool_usage", "Were tools used when and as they should be?", ["APPROPRIATE", "INAPPROPRIATE"]),
    ("user_satisfaction", "How would the user feel about the answer?", ["GOOD", "FAIR", "BAD"]),
    ("clarity", "5: clear and well organised; 1: confusing", None),
    ("persona_consistency", "5: fits the persona's needs and level; 1: ignores them", None),
)
FLUXLOOP_PROMPT = (
    "You are evaluating one conversation between a user and an AI agent.\n"
    "{goal}\n\nPersona: {persona}\nUser input: {input}\n"
    "Conversation:\n{conversation}\nFinal output: {output}\n\nScore these metrics:\n{metrics}"
)


def _judge_model(config: EvaluatorConfig, where: str, env: Mapping[str, str]) -> ModelSpec:
    if config.model is None:
        spec = default_model(env)
    elif isinstance(config.model, str) and ":" not in config.model:
        # FluxLoop names bare OpenAI models (gpt-4o-mini).
        spec = parse_model(f"openai:{config.model}", f"{where}.model")
    else:
        spec = parse_model(config.model, f"{where}.model")
    params = dict(config.model_parameters)
    allowed = ["temperature", "top_p", "presence_penalty", "frequency_penalty", "max_tokens"]
    for key in params:
        if key not in allowed:
            raise EvaluationConfigError(
                f"{where}.model_parameters: unknown key '{key}'; {near(key, allowed)}"
            )
    if config.temperature is not None:
        params["temperature"] = config.temperature
    params.setdefault("temperature", spec.temperature if spec.temperature is not None else 0.0)
    for name, value in params.items():
        check_sampling(name, value, f"{where}.{name}")
    try:
        return spec.model_copy(update=params)
    except ValidationError as exc:  # pragma: no cover - model_copy does not validate
        raise EvaluationConfigError(f"{where}: {exc.errors()[0]['msg']}") from None


def _labels(labels: list[str] | dict[str, float], where: str) -> dict[str, float]:
    if isinstance(labels, dict):
        for label, score in labels.items():
            if not 0 <= score <= 1:
                raise EvaluationConfigError(f"{where}.labels.{label}: scores are 0..1")
        if not labels:
            raise EvaluationConfigError(f"{where}.labels: give at least two labels")
        return dict(labels)
    if len(labels) < 2 or len(set(labels)) != len(labels):
        raise EvaluationConfigError(f"{where}.labels: give two or more distinct labels, best first")
    step = len(labels) - 1
    return {label: round(1 - i / step, 6) for i, label in enumerate(labels)}


def _scale(config: EvaluatorConfig, where: str) -> tuple[float, float]:
    if config.scale is not None:
        low, high = config.scale.min, config.scale.max
    elif config.max_score is not None:
        high = config.max_score
        low = 1.0 if high > 1 else 0.0
    else:
        low, high = 1.0, 10.0
    if high <= low:
        raise EvaluationConfigError(f"{where}.scale: max must be above min")
    return low, high


def _judge(
    config: EvaluatorConfig, where: str, env: Mapping[str, str], goal: str
) -> JudgeEvaluator:
    if config.rules:
        raise EvaluationConfigError(f"{where}: 'rules' belong to rule_based evaluators")
    if config.labels is not None and (config.scale is not None or config.max_score is not None):
        raise EvaluationConfigError(
            f"{where}: give either 'labels' or a numeric scale ('scale' / 'max_score'), not both"
        )
    model = _judge_model(config, where, env)
    descriptions = (
        dict(config.metrics)
        if isinstance(config.metrics, dict)
        else dict.fromkeys(config.metrics or [], "")
    )
    labels = _labels(config.labels, where) if config.labels is not None else None
    low, high = _scale(config, where) if labels is None else (0.0, 1.0)
    if descriptions:
        metrics = tuple(
            JudgeMetric(f"{config.name}.{key}", key, text, labels, low, high)
            for key, text in descriptions.items()
        )
    else:
        metrics = (
            JudgeMetric(config.name, config.name, config.description or "", labels, low, high),
        )
    parser = (config.parser or "json").lower()
    if parser.startswith("first_number"):
        parser = "first_number"
        if len(metrics) > 1 or labels is not None:
            raise EvaluationConfigError(
                f"{where}.parser: first_number reads one number; use parser: json for "
                "several metrics or labels"
            )
    elif parser != "json":
        raise EvaluationConfigError(
            f"{where}.parser: unknown parser {config.parser!r}; use json or first_number"
        )
    prompt = config.prompt_template or (
        "Evaluate the agent's answer.\n{goal}\nPersona: {persona}\nInput: {input}\n"
        "Output: {output}\nExpected: {expected}\n\nScore:\n{metrics}"
    )
    for name in _PLACEHOLDER.findall(prompt):
        if name not in PROMPT_FIELDS:
            raise EvaluationConfigError(
                f"{where}.prompt_template: unknown placeholder '{{{name}}}'; "
                f"{near(name, list(PROMPT_FIELDS))}"
            )
    return JudgeEvaluator(
        name=config.name,
        weight=config.weight,
        model=model,
        prompt=prompt,
        metrics=metrics,
        samples=config.samples,
        aggregation=config.sample_aggregation or ("majority" if labels else "mean"),
        retries=config.retries,
        parser=parser,  # type: ignore[arg-type]
        response_format=config.response_format,
    )


def fluxloop_judge(env: Mapping[str, str], model: str | None = None) -> JudgeEvaluator:
    """FluxLoop's judge: one call per trace scoring its seven fixed metrics."""
    spec = parse_model(model, "--judge-model") if model else default_model(env)
    metrics = tuple(
        JudgeMetric(
            name,
            name,
            text,
            _labels(labels, name) if labels else None,
            *((0.0, 1.0) if labels else (1.0, 5.0)),
        )
        for name, text, labels in FLUXLOOP_METRICS
    )
    return JudgeEvaluator(
        name="fluxloop_judge",
        weight=1.0,
        model=spec.with_overrides(temperature=0.0) if spec.temperature is None else spec,
        prompt=FLUXLOOP_PROMPT,
        metrics=metrics,
        samples=1,
        aggregation="majority",
        retries=2,
        parser="json",
    )


def resolve(
    config: EvaluationConfig,
    config_file: str | None,
    env: Mapping[str, str],
    *,
    judge_model: str | None = None,
) -> EvaluationSettings:
    """Check the cross-key rules of ``config`` and build its evaluators. ``judge_model``
    (``--judge-model``) replaces every judge's model."""
    where = config_file or "evaluation config"
    evaluators: list[Evaluator] = []
    names: set[str] = set()
    for index, raw in enumerate(config.evaluators):
        at = f"{where}: evaluators[{index}] ({raw.name})"
        if raw.name in names:
            raise EvaluationConfigError(f"{at}: two evaluators are named {raw.name!r}; rename one")
        names.add(raw.name)
        if not raw.enabled:
            continue
        if raw.type == "rule_based":
            judge_keys = [
                k
                for k in ("model", "prompt_template", "max_score", "parser", "labels", "scale")
                if getattr(raw, k) is not None
            ]
            judge_keys += ["metrics"] if raw.metrics else []
            judge_keys += [
                key
                for key, default in (
                    ("samples", 1),
                    ("retries", 2),
                    ("response_format", "json_schema"),
                )
                if getattr(raw, key) != default
            ]
            judge_keys += ["temperature"] if raw.temperature is not None else []
            judge_keys += ["model_parameters"] if raw.model_parameters else []
            if judge_keys:
                raise EvaluationConfigError(
                    f"{at}: '{judge_keys[0]}' belongs to llm_judge evaluators"
                )
            if not raw.rules:
                raise EvaluationConfigError(f"{at}: a rule_based evaluator needs 'rules'")
            rules = tuple(parse_rule(r, f"{at}.rules[{i}]") for i, r in enumerate(raw.rules))
            evaluators.append(RuleEvaluator(raw.name, raw.weight, rules))
        else:
            judge = _judge(raw, at, env, config.evaluation_goal.text)
            if judge_model:
                spec = parse_model(judge_model, "--judge-model")
                judge = _replace_model(judge, spec)
            evaluators.append(judge)
    if not config.evaluators:
        evaluators.append(fluxloop_judge(env, judge_model))
    if not evaluators:
        raise EvaluationConfigError(f"{where}: every evaluator is disabled; enable one")
    metric_names = [n for e in evaluators for n in e.metric_names]
    _check_metric_refs(config, metric_names, where)
    limits = config.limits
    if isinstance(limits.cache, str):
        raise EvaluationConfigError(
            f"{where}: limits.cache {limits.cache!r}: agentledger caches judge answers in the "
            "event log, not a file; write cache: true"
        )
    if limits.max_cost is not None and limits.cost_per_1k_tokens is None:
        raise EvaluationConfigError(
            f"{where}: limits.max_cost needs limits.cost_per_1k_tokens {{prompt, completion}} "
            "to price the judge calls"
        )
    if config.aggregate.method == "weighted_sum" and not any(e.weight for e in evaluators):
        raise EvaluationConfigError(f"{where}: every evaluator has weight 0; give one a weight")
    for name, metric in config.metrics.items():
        if metric.thresholds.fair > metric.thresholds.good:
            raise EvaluationConfigError(
                f"{where}: metrics.{name}.thresholds: fair must not be above good"
            )
    return EvaluationSettings(
        config=config,
        config_file=config_file,
        evaluators=tuple(evaluators),
        goal=config.evaluation_goal.text,
        thresholds={name: m.thresholds for name, m in config.metrics.items()},
    )


def _replace_model(judge: JudgeEvaluator, spec: ModelSpec) -> JudgeEvaluator:
    from dataclasses import replace

    temperature = judge.model.temperature if spec.temperature is None else spec.temperature
    return replace(judge, model=spec.model_copy(update={"temperature": temperature}))


def _check_metric_refs(config: EvaluationConfig, metrics: list[str], where: str) -> None:
    for name in config.metrics:
        if name not in metrics:
            raise EvaluationConfigError(
                f"{where}: metrics.{name} names no scored metric; {near(name, metrics)}"
            )
    for name in config.success_criteria.quality.min_scores:
        if name not in metrics:
            raise EvaluationConfigError(
                f"{where}: success_criteria.quality.min_scores.{name} names no scored "
                f"metric; {near(name, metrics)}"
            )


def load_settings(
    project_dir: Path,
    config_file: str | None,
    env: Mapping[str, str],
    *,
    judge_model: str | None = None,
) -> EvaluationSettings:
    """Read ``configs/evaluation.yaml`` (or ``config_file``) and resolve it. Without a
    file the FluxLoop judge scores every trace."""
    path = Path(config_file) if config_file else EVALUATION_FILE
    if not path.is_absolute():
        path = project_dir / path
    if path.exists() and not path.is_file():
        raise EvaluationConfigError(
            f"evaluation config {path} is not a file; remove it or make it a YAML file"
        )
    if not path.is_file():
        if config_file:
            raise EvaluationConfigError(f"evaluation config {path} not found; check -c/--config")
        return resolve(EvaluationConfig(), None, env, judge_model=judge_model)
    config = validate_file(EvaluationConfig, load_yaml(path, "evaluation config"), path)
    return resolve(config, str(path), env, judge_model=judge_model)
