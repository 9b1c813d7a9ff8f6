"""The HTML report: one self-contained file per experiment, a projection like every report.

``HtmlReport`` takes the experiment's finished traces one at a time, in plan order (as
the report writer streams them), and renders one HTML file: stylesheet, script, charts
(inline SVG) and data (inline JSON) all inside it, and a content security policy that
forbids every network request, so it opens anywhere, offline, from ``file://``. The bytes
depend only on the events: no clock, no random ids, keys sorted, the same figures as
summary.json (``summary_document``).

Size: every trace gets a row in the trace matrix; the first ``DETAIL_LIMIT`` traces in
plan order (and failed ones among them) carry their full detail (conversation, model calls
with their messages, tool calls, observations), each text cut at ``TEXT_LIMIT``
characters. A larger experiment's report says how many traces it details; the viewer
(``agentledger view``) shows any trace in full.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import orjson

from agentledger.projections.folds import ExperimentFold, JsonDict, TraceFold
from agentledger.projections.rows import (
    SummaryAccumulator,
    conversation_history,
    summary_document,
    trace_usage,
)
from agentledger.view.charts import duration_histogram, percentile_ms, success_bars
from agentledger.view.evaluation import EvaluationRecord
from agentledger.view.render import render, static_text

DETAIL_LIMIT = 2_000
"""Traces (the first in plan order) whose full detail the report carries."""
TEXT_LIMIT = 20_000
"""Characters of any one text (a message, an output, a traceback) kept in a detail."""
OBSERVATION_LIMIT = 200
"""Observations kept per detailed trace."""
REPORT_FILE = "report.html"


def _clip(value: Any, limit: int = TEXT_LIMIT) -> Any:
    """Strings cut at ``limit`` characters (saying so); other JSON values as they are
    when small, else as their JSON text cut the same way."""
    if isinstance(value, str):
        if len(value) <= limit:
            return value
        return value[:limit] + f"\n[... {len(value) - limit} more characters in the log]"
    if value is None or isinstance(value, bool | int | float):
        return value
    text = orjson.dumps(value, option=orjson.OPT_SORT_KEYS | orjson.OPT_INDENT_2).decode()
    return value if len(text) <= limit else _clip(text, limit)


def _message(message: Any) -> JsonDict:
    if not isinstance(message, dict):
        return {"role": "?", "content": _clip(message)}
    shown: JsonDict = {
        "role": str(message.get("role", "?")),
        "content": _clip(message.get("content")),
    }
    if message.get("tool_calls"):
        shown["tool_calls"] = _clip(message["tool_calls"])
    if message.get("tool_call_id"):
        shown["tool_call_id"] = str(message["tool_call_id"])
    return shown


def _response(call: JsonDict) -> JsonDict | None:
    response = call.get("response") or {}
    choices = response.get("choices") if isinstance(response, dict) else None
    if choices and isinstance(choices[0], dict) and isinstance(choices[0].get("message"), dict):
        return _message(choices[0]["message"])
    if call.get("chunks"):
        return {"role": "assistant", "content": f"(streamed: {call['chunks']} chunks)"}
    return None


def trace_detail(trace: TraceFold) -> JsonDict:
    """What the report shows of one trace beyond its matrix row."""
    calls = sorted(trace.model_calls.values(), key=lambda c: c.get("call_index", 0))
    return {
        "input": _clip(trace.input),
        "output": _clip(trace.output) if trace.success else None,
        "error": {k: _clip(v) for k, v in trace.error.items()} if trace.error else None,
        "attempts": trace.attempts,
        "started_at": trace.started_at,
        "completed_at": trace.completed_at,
        "turns": [
            {
                "turn": turn["turn_index"] + 1,
                "user": _clip(turn["user_message"]),
                "assistant": _clip(turn.get("agent_output")),
                "supervisor": turn.get("supervisor"),
            }
            for turn in trace.turns
        ],
        "conversation": [_message(m) for m in conversation_history(trace)],
        "model_calls": [
            {
                "index": call.get("call_index"),
                "model": f"{call.get('provider', '')}:{call.get('model') or ''}",
                "status": call.get("status"),
                "latency_ms": call.get("latency_ms"),
                "usage": call.get("usage"),
                "attempts": call.get("attempts", 1),
                "source": call.get("source"),
                "messages": [_message(m) for m in (call.get("request") or {}).get("messages", [])],
                "response": _response(call),
                "error": call.get("error"),
            }
            for call in calls
        ],
        "tool_calls": [
            {
                "tool": call.get("tool_name"),
                "arguments": _clip(call.get("arguments", {})),
                "status": call.get("status"),
                "by": call.get("decided_by"),
                "result": _clip(call.get("result")),
                "error": call.get("error"),
                "duration_ms": call.get("duration_ms"),
            }
            for call in trace.tool_calls.values()
        ],
        "observations": [
            {
                "kind": o["kind"],
                "name": o["name"],
                "timestamp": o["timestamp"],
                "data": _clip(o.get("data", {}), 2_000),
            }
            for o in trace.observations[:OBSERVATION_LIMIT]
        ],
        "observation_count": len(trace.observations),
    }


class HtmlReport:
    """Collects an experiment's finished traces (in plan order) and renders report.html."""

    def __init__(self, detail_limit: int = DETAIL_LIMIT) -> None:
        self.detail_limit = detail_limit
        self.rows: list[list[Any]] = []
        self.details: dict[str, JsonDict] = {}

    def add(self, trace: TraceFold) -> None:
        usage = trace_usage(trace)
        error = trace.error or {}
        self.rows.append(
            [
                trace.trace_id,
                trace.input_index,
                trace.iteration,
                trace.persona,
                trace.status,
                trace.duration_ms,
                trace.attempt_count,
                usage["model_calls"],
                usage["total_tokens"],
                error.get("type"),
                str(error.get("message", ""))[:200],
            ]
        )
        if len(self.details) < self.detail_limit:
            self.details[trace.trace_id] = trace_detail(trace)

    def render(
        self,
        experiment: ExperimentFold,
        acc: SummaryAccumulator,
        evaluations: list[EvaluationRecord] | None = None,
        *,
        as_of: int | None = None,
    ) -> bytes:
        """The HTML file (``acc`` holds the same traces' totals, as summary.json does)."""
        summary = summary_document(experiment, acc)
        ordered = sorted(acc.durations_us)
        marks = {
            "p50": percentile_ms(ordered, 0.5),
            "p90": percentile_ms(ordered, 0.9),
            "p95": percentile_ms(ordered, 0.95),
            "p99": percentile_ms(ordered, 0.99),
        }
        records = evaluations or []
        scores = {r.trace_id: r.brief() for r in records if r.trace_id is not None}
        data = {
            "columns": [
                "trace_id",
                "input_index",
                "iteration",
                "persona",
                "status",
                "duration_ms",
                "attempts",
                "model_calls",
                "tokens",
                "error_type",
                "error_message",
            ],
            "rows": self.rows,
            "details": self.details,
            "inputs": {
                str(item.get("index")): _clip(item.get("input", ""), 500)
                for item in experiment.plan.get("inputs", [])
            },
            "scores": scores,
        }
        style = static_text("view.css") + static_text("report.css")
        script = static_text("report.js")
        failures: dict[str, int] = summary["failures"]["by_error_type"]
        body = render(
            "report.html",
            title=f"Experiment {experiment.name}",
            experiment=experiment,
            summary=summary,
            percentiles=marks,
            histogram=duration_histogram([us / 1000 for us in ordered], marks),
            persona_chart=success_bars(summary["by_persona"]) if summary["by_persona"] else "",
            failures=sorted(failures.items(), key=lambda item: (-item[1], item[0])),
            evaluation=records,
            detailed=len(self.details),
            traces=len(self.rows),
            detail_limit=self.detail_limit,
            as_of=as_of,
            style=style,
            script=script,
            data=embedded_json(data),
            csp=content_policy(style, script),
        )
        return body


def embedded_json(value: Any) -> str:
    """JSON safe inside a ``<script type="application/json">`` element: ``<``, ``>`` and
    ``&`` as \\u escapes, so no recorded text can close the element or open a comment."""
    text = orjson.dumps(value, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS).decode()
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _sha256(text: str) -> str:
    return base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()


def content_policy(style: str, script: str) -> str:
    """A policy that lets the file's own style and script run (by their hashes) and
    nothing else: no request leaves the page, not even for an image."""
    return (
        f"default-src 'none'; style-src 'sha256-{_sha256(style)}'; "
        f"script-src 'sha256-{_sha256(script)}'; img-src data:; base-uri 'none'; "
        "form-action 'none'"
    )


def render_report(
    experiment: ExperimentFold,
    traces: Any,
    evaluations: list[EvaluationRecord] | None = None,
    *,
    as_of: int | None = None,
    detail_limit: int = DETAIL_LIMIT,
) -> bytes:
    """report.html of an experiment from its finished traces in plan order."""
    report = HtmlReport(detail_limit)
    acc = SummaryAccumulator()
    for trace in traces:
        acc.add(trace)
        report.add(trace)
    return report.render(experiment, acc, evaluations, as_of=as_of)
