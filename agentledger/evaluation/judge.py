"""LLM judges: the prompt, the reply they must give, and reading it back.

A judge call is a chat completion through the model gateway, made inside a run context of
its own (``<trace id>:judge``) whose events go to the evaluation's stream: the call is
recorded exactly like an agent's (``ModelCallStarted`` / ``Completed`` / ``Failed``) and a
replay answers it from the log. The request asks for a JSON object (``response_format``
``json_schema``) with, per metric, a ``label`` from the judge's labels or a ``score`` on
its scale, and a ``reason``. A reply that is not such an object (not JSON, a metric
missing, a label off the list, a number off the scale) is a failed attempt: the judge is
asked again up to ``retries`` times, then the metric is recorded unscored with the reason.
``samples`` > 1 asks that many times and combines the valid answers (majority of labels,
ties to the lower score; mean of numbers).
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx2
import orjson

from agentledger.evaluation.config import (
    PROMPT_FIELDS,
    EvaluationSettings,
    JudgeEvaluator,
    JudgeMetric,
)
from agentledger.evaluation.traces import MISSING, TraceView, as_text
from agentledger.events.evaluation import MetricScore
from agentledger.experiments.context import RunContext, TraceRecorder

if TYPE_CHECKING:
    from agentledger.evaluation.config import CostRates
    from agentledger.models.gateway import ModelGateway
    from agentledger.replay.book import ReplayState

JsonDict = dict[str, Any]
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
ASK_JSON = "Reply with only the JSON object described above."
ASK_SCORE = "Reply with only the score."
REASON_LIMIT = 500
"""Characters of a judge's reason kept in a score."""


def _scale_text(metric: JudgeMetric) -> str:
    if metric.labels is not None:
        return "label: one of " + ", ".join(metric.labels)
    return f"score: a number from {metric.low:g} to {metric.high:g} ({metric.high:g} best)"


def metrics_text(judge: JudgeEvaluator) -> str:
    """The metric list as the prompt shows it."""
    lines = []
    for metric in judge.metrics:
        about = f" ({metric.description})" if metric.description else ""
        lines.append(f"- {metric.key}{about}: {_scale_text(metric)}")
    return "\n".join(lines)


def render_prompt(judge: JudgeEvaluator, trace: TraceView, goal: str) -> str:
    """The judge's prompt for ``trace``: its template filled in, then what to reply."""
    expected = trace.value("expected")
    error = trace.trace.error or {}
    values = {
        "input": trace.trace.input,
        "output": as_text(trace.trace.output),
        "persona": trace.trace.persona or "(none)",
        "expected": "(none)" if expected is MISSING else as_text(expected),
        "conversation": trace.conversation(),
        "goal": f"Evaluation goal: {goal}" if goal else "",
        "metrics": metrics_text(judge),
        "success": "yes" if trace.trace.success else "no",
        "error": f"{error.get('type')}: {error.get('message')}" if error else "(none)",
        "trace_id": trace.trace_id,
    }
    assert set(values) == set(PROMPT_FIELDS)
    prompt = _PLACEHOLDER.sub(lambda m: str(values.get(m.group(1), m.group(0))), judge.prompt)
    if judge.parser == "first_number":
        metric = judge.metrics[0]
        return f"{prompt}\n\nReply with the score, a number from {metric.low:g} to {metric.high:g}."
    shape = ", ".join(
        f'"{m.key}": {{"{"label" if m.labels is not None else "score"}": ..., "reason": "..."}}'
        for m in judge.metrics
    )
    return f"{prompt}\n\nReply with only a JSON object: {{{shape}}}"


def _metric_schema(metric: JudgeMetric, worst_first: bool = False) -> JsonDict:
    if metric.labels is not None:
        labels = list(metric.labels)
        if worst_first:
            labels = sorted(labels, key=lambda label: (metric.labels or {})[label])
        value: JsonDict = {"type": "string", "enum": labels}
        key = "label"
    else:
        integral = metric.low.is_integer() and metric.high.is_integer()
        if integral and metric.high - metric.low <= 100:
            # Best first: the offline mock judge answers with the first value it is offered.
            numbers = list(range(int(metric.high), int(metric.low) - 1, -1))
            value = {"type": "integer", "enum": numbers[::-1] if worst_first else numbers}
        else:
            value = {"type": "number", "minimum": metric.low, "maximum": metric.high}
        key = "score"
    return {
        "type": "object",
        "properties": {key: value, "reason": {"type": "string"}},
        "required": [key, "reason"],
        "additionalProperties": False,
    }


def response_format(judge: JudgeEvaluator, worst_first: bool = False) -> JsonDict | None:
    """The ``response_format`` of a judge request (None for ``first_number``). The
    offline mock judge answers with the first value offered: ``worst_first`` offers the
    scale worst first (``mock_worst_first``)."""
    if judge.parser == "first_number" or judge.response_format == "none":
        return None
    if judge.response_format == "json_object":
        return {"type": "json_object"}
    return {
        "type": "json_schema",
        "json_schema": {
            "name": "judgement",
            "strict": True,
            "schema": {
                "type": "object",
                "properties": {m.key: _metric_schema(m, worst_first) for m in judge.metrics},
                "required": [m.key for m in judge.metrics],
                "additionalProperties": False,
            },
        },
    }


@dataclass(frozen=True)
class Reading:
    """One metric as one judge reply gave it."""

    value: float | str
    """The label, or the number on the scale."""
    score: float
    reason: str


def parse_reply(judge: JudgeEvaluator, text: str) -> dict[str, Reading] | str:
    """Each metric's reading from a reply, or why the reply is not valid."""
    if judge.parser == "first_number":
        metric = judge.metrics[0]
        found = _NUMBER.search(text)
        if found is None:
            return f"no number in the reply {text[:80]!r}"
        number: Any = float(found.group())
        if not metric.low <= number <= metric.high:
            return f"score {number:g} is off the scale {metric.low:g}..{metric.high:g}"
        return {metric.key: Reading(number, metric.normalise(number), text.strip()[:REASON_LIMIT])}
    try:
        data = orjson.loads(text)
    except orjson.JSONDecodeError:
        return f"the reply is not JSON: {text[:80]!r}"
    if not isinstance(data, dict):
        return "the reply is not a JSON object"
    readings: dict[str, Reading] = {}
    for metric in judge.metrics:
        item = data.get(metric.key)
        if not isinstance(item, dict):
            return f"the reply has no object for metric {metric.key!r}"
        reason = item.get("reason")
        reason = reason[:REASON_LIMIT] if isinstance(reason, str) else ""
        if metric.labels is not None:
            label = item.get("label")
            if label not in metric.labels:
                return f"{metric.key}: label {label!r} is not one of {', '.join(metric.labels)}"
            readings[metric.key] = Reading(label, metric.labels[label], reason)
            continue
        number = item.get("score")
        if isinstance(number, bool) or not isinstance(number, (int, float)):
            return f"{metric.key}: score {number!r} is not a number"
        if not metric.low <= number <= metric.high:
            return (
                f"{metric.key}: score {number:g} is off the scale {metric.low:g}..{metric.high:g}"
            )
        readings[metric.key] = Reading(float(number), metric.normalise(number), reason)
    return readings


def combine(metric: JudgeMetric, readings: list[Reading], how: str) -> Reading:
    """Several samples' readings of one metric as one (majority or mean)."""
    if len(readings) == 1:
        return readings[0]
    if how == "mean":
        score = round(sum(r.score for r in readings) / len(readings), 6)
        numbers = [r.value for r in readings if isinstance(r.value, float)]
        value: float | str = (
            round(sum(numbers) / len(numbers), 6) if len(numbers) == len(readings) else score
        )
        return Reading(value, score, readings[0].reason)
    counts = Counter(r.value for r in readings)
    top = max(counts.values())
    # Ties go to the lower score: a judge that cannot make up its mind does not pass.
    winner = min((r for r in readings if counts[r.value] == top), key=lambda r: r.score)
    return winner


class JudgeBudget:
    """The judge-call limits of an evaluation: calls, cost and a deadline, shared by every
    judge task."""

    def __init__(
        self,
        max_calls: int | None,
        max_cost: float | None,
        rates: CostRates | None,
        timeout_seconds: float | None,
    ) -> None:
        self._lock = threading.Lock()
        self.max_calls = max_calls
        self.max_cost = max_cost
        self.rates = rates
        self.deadline = time.monotonic() + timeout_seconds if timeout_seconds else None
        self.calls = 0
        self.cost = 0.0
        self.tokens = 0

    def take(self) -> str | None:
        """Count one more call, or say which limit stops it."""
        with self._lock:
            if self.deadline is not None and time.monotonic() >= self.deadline:
                return "limits.timeout_seconds reached"
            if self.max_calls is not None and self.calls >= self.max_calls:
                return f"limits.max_llm_calls ({self.max_calls}) reached"
            if self.max_cost is not None and self.cost >= self.max_cost:
                return f"limits.max_cost ({self.max_cost:g}) reached"
            self.calls += 1
            return None

    def spend(self, usage: JsonDict | None) -> None:
        """Count a reply's tokens (and their cost, when rates are set)."""
        if not isinstance(usage, dict):
            return
        prompt = int(usage.get("prompt_tokens") or 0)
        completion = int(usage.get("completion_tokens") or 0)
        with self._lock:
            self.tokens += prompt + completion
            if self.rates is not None:
                self.cost += (
                    prompt * self.rates.prompt + completion * self.rates.completion
                ) / 1000

    def remaining_seconds(self) -> float | None:
        return None if self.deadline is None else max(self.deadline - time.monotonic(), 0.001)


def _reply(response: httpx2.Response) -> tuple[str | None, JsonDict | None]:
    """The text and usage of a chat completion response (None: it is not one)."""
    try:
        body = orjson.loads(response.content)
        message = body["choices"][0]["message"]
    except (orjson.JSONDecodeError, KeyError, IndexError, TypeError):
        return None, None
    content = message.get("content") if isinstance(message, dict) else None
    return (content if isinstance(content, str) else ""), body.get("usage")


class JudgeContext(RunContext):
    """The run context of one trace's judge calls: ``<trace id>:judge``, recording into the
    evaluation's stream, keeping the id of every call it makes."""

    def __init__(
        self,
        recorder: TraceRecorder,
        trace: TraceView,
        experiment_id: str,
        gateway: ModelGateway | None,
        replay: ReplayState | None,
    ) -> None:
        super().__init__(
            recorder,
            trace_id=f"{trace.trace_id}:judge",
            experiment_id=experiment_id,
            input=trace.trace.input,
            persona=trace.trace.persona,
            iteration=trace.trace.iteration,
            metadata={},
            seed=0,
            gateway=gateway,
            replay=replay,
        )
        self.call_ids: list[str] = []

    def next_call_index(self) -> int:
        index = super().next_call_index()
        self.call_ids.append(f"{self.trace_id}:model:{index}")
        return index


def mock_worst_first(judge: JudgeEvaluator, trace: TraceView) -> bool:
    """Whether a judge request offers its scale worst first: only to the offline mock
    judge, for a run that failed, so that its verdict follows the trace (it passes a
    successful run and fails a failed one); real judges always see the scale best first."""
    return judge.model.provider == "mock" and not trace.trace.success


async def _ask(
    judge: JudgeEvaluator,
    gateway: ModelGateway,
    prompt: str,
    budget: JudgeBudget,
    key: str,
    worst_first: bool = False,
) -> dict[str, Reading] | str:
    """One sample: a judge call, asked again after an invalid reply up to ``retries``;
    the readings, or why there are none."""
    import openai

    request: JsonDict = {
        "model": gateway.model,
        "messages": [
            {"role": "system", "content": prompt},
            {"role": "user", "content": ASK_SCORE if judge.parser == "first_number" else ASK_JSON},
        ],
        **gateway.sampling(),
    }
    fmt = response_format(judge, worst_first)
    if fmt is not None:
        request["response_format"] = fmt
    client = gateway.async_client()
    problem = "no judge call made"
    attempt = 0
    for _ in range(judge.retries + 1):
        stop = budget.take()
        if stop is not None:
            return stop
        attempt += 1
        # client.post with the request as it is, the reply read as JSON here: the typed
        # create() walks the nested response_format schema through its param transform and
        # builds typed response models on every call (milliseconds a call). The body sent
        # and the retries are the same. A set idempotency key spares a uuid4 per call.
        options: Any = {"idempotency_key": f"{key}:{attempt}"}
        try:
            response = await asyncio.wait_for(
                client.post(
                    "/chat/completions", cast_to=httpx2.Response, body=request, options=options
                ),
                budget.remaining_seconds(),
            )
        except TimeoutError:
            return "limits.timeout_seconds reached"
        except openai.OpenAIError as exc:
            detail = str(exc).splitlines()[0][:200] if str(exc) else ""
            problem = f"judge call failed: {type(exc).__name__}{': ' + detail if detail else ''}"
            continue
        text, usage = _reply(response)
        if text is None:
            problem = "judge call failed: the response is not a chat completion"
            continue
        budget.spend(usage)
        parsed = parse_reply(judge, text)
        if isinstance(parsed, str):
            problem = parsed
            continue
        return parsed
    return problem


async def judge_trace(
    judge: JudgeEvaluator,
    gateway: ModelGateway,
    ctx: JudgeContext,
    trace: TraceView,
    settings: EvaluationSettings,
    budget: JudgeBudget,
) -> list[MetricScore]:
    """Every metric of ``judge`` for one trace; when a sample stays invalid after its
    retries (or a limit stops it), every metric is unscored with the reason."""
    prompt = render_prompt(judge, trace, settings.goal)
    first_call = len(ctx.call_ids)
    readings: list[dict[str, Reading]] = []
    problem = ""
    for _ in range(judge.samples):
        key = f"{ctx.trace_id}:{len(ctx.call_ids)}"
        answer = await _ask(judge, gateway, prompt, budget, key, mock_worst_first(judge, trace))
        if isinstance(answer, str):
            problem = answer
            break
        readings.append(answer)
    calls = ctx.call_ids[first_call:]
    share = round(judge.weight / len(judge.metrics), 6)
    scores = []
    for metric in judge.metrics:
        taken = [r[metric.key] for r in readings]
        if problem:
            done = f"{len(taken)} of {judge.samples} samples; " if judge.samples > 1 else ""
            scores.append(
                MetricScore(
                    evaluator=judge.name,
                    metric=metric.name,
                    kind="llm_judge",
                    score=None,
                    weight=share,
                    reason=f"unscored: {done}{problem}",
                    judge_calls=calls,
                    samples=[r.value for r in taken],
                )
            )
            continue
        final = combine(metric, taken, judge.aggregation)
        scores.append(
            MetricScore(
                evaluator=judge.name,
                metric=metric.name,
                kind="llm_judge",
                score=final.score,
                passed=settings.judge_passes(metric.name, final.score),
                rating=settings.rating(metric.name, final.score),
                label=final.value if isinstance(final.value, str) else None,
                value=final.value if isinstance(final.value, float) else None,
                weight=share,
                reason=final.reason,
                judge_calls=calls,
                samples=[r.value for r in taken] if judge.samples > 1 else [],
            )
        )
    return scores
