"""Evaluation events: the scores of an experiment's traces, and the verdict on them.

An evaluation of experiment ``X`` writes one stream, ``evaluation-X-eNNN`` (``NNN`` its
number among the evaluations of ``X``, from 001), every event correlated to ``X``:

- ``EvaluationStarted`` (version 1): which config, which judges, which traces;
- the judge calls, as the same ``ModelCallStarted`` / ``ModelCallCompleted`` /
  ``ModelCallFailed`` events an agent's calls are (call ids ``<trace id>:judge:model:N``),
  so a replay answers them from the log;
- one ``TraceScored`` per evaluated trace, in plan order of completion, holding a
  ``MetricScore`` per evaluator (per metric for judges that score several);
- ``EvaluationCompleted``: the aggregate and whether ``success_criteria`` held.

Scores are normalised to 0..1 (1 best). A score that could not be taken (a judge reply
that stayed invalid after its retries, a limit reached) is ``score: null`` with the reason
in ``reason``; the trace's verdict is then ``REVIEW``. Nothing is dropped: traces left out
by ``sample_rate`` or ``max_traces`` are counted in ``EvaluationCompleted.skipped``.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from agentledger.events.payloads import Payload, register

JsonDict = dict[str, Any]

EVALUATION_PREFIX = "evaluation-"
Verdict = Literal["PASS", "PARTIAL", "FAIL", "REVIEW"]
VERDICTS: tuple[str, ...] = ("PASS", "PARTIAL", "FAIL", "REVIEW")


def evaluation_stream(evaluation_id: str) -> str:
    """The stream of one evaluation (``evaluation-<experiment id>-eNNN``)."""
    return f"{EVALUATION_PREFIX}{evaluation_id}"


def experiment_evaluations_prefix(experiment_id: str) -> str:
    """The stream-id prefix shared by every evaluation stream of ``experiment_id``."""
    return f"{EVALUATION_PREFIX}{experiment_id}-e"


def evaluation_id_for(experiment_id: str, number: int) -> str:
    """The id of the ``number``-th evaluation of an experiment (``<id>-e001``)."""
    return f"{experiment_id}-e{number:03d}"


class _Part(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RuleOutcome(_Part):
    """One rule of a rule-based evaluator, applied to one trace."""

    check: str
    """The rule's ``check`` (``contains``, ``latency_under``, ...)."""
    passed: bool
    score: float
    """1.0 or 0.0, or the measured ratio for ``similarity``."""
    detail: str = ""
    """What was found: the missing keyword, the measured latency, the first schema error."""


class MetricScore(_Part):
    """One evaluator's (or one judge metric's) score of one trace."""

    evaluator: str
    """The evaluator's ``name`` in evaluation.yaml."""
    metric: str
    """The metric scored: the evaluator's name, or ``<evaluator>.<metric>`` for a judge
    that scores several metrics."""
    kind: Literal["rule_based", "llm_judge"]
    score: float | None
    """0..1, 1 best; None when it could not be scored (``reason`` says why)."""
    label: str | None = None
    """The judge's label (labelled scales), or the rating good / fair / poor."""
    value: float | None = None
    """The judge's raw number on its scale (numeric scales), mean over samples."""
    passed: bool | None = None
    """Rule evaluators: every rule passed; judges: the score reached the metric's ``good``
    threshold (else ``aggregate.threshold``)."""
    rating: Literal["good", "fair", "poor"] | None = None
    """Against ``metrics.<metric>.thresholds`` (defaults good 0.8, fair 0.5)."""
    weight: float
    """The weight this score carries in the aggregate."""
    reason: str = ""
    """The judge's reason, the failed rules, or why there is no score."""
    rules: list[RuleOutcome] = Field(default_factory=list)
    """Rule evaluators: the rules that failed or scored between 0 and 1 (``similarity``),
    with what was found; a rule not listed passed."""
    judge_calls: list[str] = Field(default_factory=list)
    """Call ids of the judge calls behind this score (every sample and retry), in order."""
    samples: list[float | str] = Field(default_factory=list)
    """Each valid sample's label or value, when the judge took several."""


@register
class EvaluationStarted(Payload):
    """An evaluation of an experiment began."""

    evaluation_id: str
    experiment_id: str
    number: int
    """1 for the experiment's first evaluation, then 2, 3, ..."""
    name: str | None = None
    """``--name``, when given."""
    config_file: str | None = None
    config: JsonDict
    """The evaluation config as resolved (judge keys masked)."""
    evaluators: list[str]
    """Enabled evaluators, in config order."""
    metrics: list[str]
    """Every metric scored, in order (evaluator names and ``<judge>.<metric>``)."""
    judge_models: dict[str, str] = Field(default_factory=dict)
    """Judge evaluator -> ``provider:model``."""
    record_mode: str = "live"
    replay_of: str | None = None
    """The evaluation whose judge calls answer this one (replay modes, cache)."""
    as_of_position: int
    """Traces are read as the log stood at this position."""
    planned_runs: int
    """Runs the experiment planned."""
    parallel: int = 1
    """Judge calls in flight at once."""
    output_dir: str | None = None


@register
class TraceScored(Payload):
    """Every score of one trace, its aggregate and its verdict."""

    evaluation_id: str
    trace_id: str
    slot: int
    input_index: int
    iteration: int
    persona: str | None = None
    success: bool
    """Whether the run itself succeeded."""
    scores: list[MetricScore]
    aggregate: float | None
    """``aggregate.method`` over the scored metrics (None: nothing could be scored)."""
    verdict: Verdict
    """PASS: aggregate >= threshold; PARTIAL: below, but some metric rated good; FAIL;
    REVIEW: some metric could not be scored."""
    unscored: list[str] = Field(default_factory=list)
    """Metrics without a score."""
    latency_ms: float = 0.0
    output_tokens: int = 0
    conversation_depth: int = 1
    """The efficiency measures (outliers are found over all traces in the summary)."""
    tool_calls: int = 0
    failed_tool_calls: int = 0
    """Tool calls of the run that failed or were rejected."""


class CriterionResult(_Part):
    """One success criterion checked against the evaluation."""

    name: str
    """``performance.error_rate``, ``quality.pass_rate``, ``quality.min_scores.<metric>``..."""
    expected: str
    """The bar, e.g. ``>= 0.8``."""
    actual: float | None
    passed: bool


@register
class EvaluationCompleted(Payload):
    """The evaluation ended: totals, aggregate, and whether it passed its criteria."""

    evaluation_id: str
    experiment_id: str
    traces_available: int
    """Finished traces of the experiment at ``as_of_position``."""
    not_finished: int = 0
    """Planned runs without a finished trace then (not evaluated, counted here)."""
    traces_scored: int
    """Traces with a TraceScored event."""
    unscored: int
    """Of those, traces with at least one metric not scored (verdict REVIEW)."""
    skipped: dict[str, int] = Field(default_factory=dict)
    """Traces not evaluated, by reason: ``sample_rate``, ``max_traces``."""
    verdicts: dict[str, int]
    pass_rate: float
    """PASS / traces scored."""
    mean_aggregate: float | None
    judge_calls: int = 0
    judge_tokens: int = 0
    judge_cost: float | None = None
    """Estimated, when ``limits.cost_per_1k_tokens`` is set."""
    criteria: list[CriterionResult] = Field(default_factory=list)
    passed: bool
    """Every success criterion held (True when there are none)."""
