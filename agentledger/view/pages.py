"""What each page of the viewer shows, as template contexts built from the log.

One function per page; each takes the ``Ledger`` (the read-only store, the point in the
log pages are shown as of, and the cached experiment indexes) and the page's parameters,
and returns the dict its template renders. Figures come from the report's own folds and
rows (``summary_document``, ``trace_row``, ``diff_experiments``), never from a second
way of counting.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from agentledger.events.streams import experiment_stream, session_stream, trace_stream
from agentledger.eventstore.store import EventStore
from agentledger.projections.compare import ExperimentDiff, diff_experiments, same_outcome, slot_of
from agentledger.projections.folds import ExperimentFold, TraceFold
from agentledger.projections.report import load_report
from agentledger.view.charts import duration_histogram, percentile_ms, success_bars, waterfall
from agentledger.view.errors import BadRequestError, NotFoundError
from agentledger.view.evaluation import EvaluationRecord, evaluation_results
from agentledger.view.index import ExperimentIndex, IndexCache, MatrixRow
from agentledger.view.listing import Catalog, Entry, session_figures
from agentledger.view.traces import TraceView, build_trace_view

TIMELINE_BARS = 400
"""Bars a timeline draws (a trace with thousands of observations would be unreadable)."""
ROWS_SHOWN = 2_000
"""Observations and raw events a trace page lists (the rest: agentledger events list)."""
LIST_PAGE = 25
MATRIX_PAGE = 100
DIFF_PAGE = 100
STATUSES = ("running", "completed", "failed", "interrupted")


@dataclass
class Ledger:
    """The store as the viewer reads it: read-only, as of ``until`` (None: the log's end)."""

    store: EventStore
    until: int | None = None
    catalog: Catalog = field(init=False)
    indexes: IndexCache = field(init=False)
    _integrity: dict[str, tuple[int, dict[str, Any]]] = field(default_factory=dict)
    _cache_lock: threading.Lock = field(default_factory=threading.Lock)
    """Guards the two caches: integrity results and the list's figures."""
    _figures: dict[tuple[str, str, str | None], dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.catalog = Catalog(self.store, self.until)
        self.indexes = IndexCache(self.store, self.until)

    def top(self) -> int:
        """The position pages are shown as of."""
        return self.until if self.until is not None else self.store.last_position()

    def list_figures(self, entry: Entry) -> dict[str, Any]:
        """An experiment's runs, ok, failed and tokens for the list. A finished experiment's
        are kept for good (keyed by how it ended: a resume and a new end count afresh), so
        a page of many experiments does not fold them all again for every look."""
        key = (entry.ref, entry.status, entry.ended_at)
        with self._cache_lock:
            known = self._figures.get(key)
        if known is not None:
            return known
        index = self.indexes.get(entry.ref)
        summary = index.memo("summary", index.summary)
        figures = {
            "ok": summary["successful"],
            "failed": summary["failed"],
            "tokens": summary["model_calls"]["total_tokens"],
            "runs": summary["planned_runs"],
        }
        if entry.status != "running":
            with self._cache_lock:
                self._figures[key] = figures
        return figures

    def stream(self, stream_id: str) -> list[Any]:
        return [
            ev
            for ev in self.store.read_stream(stream_id)
            if self.until is None or ev.position <= self.until
        ]


def page_number(text: str | None) -> int:
    if not text:
        return 1
    if not text.isdigit() or int(text) < 1:
        raise BadRequestError(f"page {text!r} is not a page number; pages start at 1")
    return int(text)


def _pages(total: int, size: int, page: int) -> dict[str, int]:
    count = max(1, -(-total // size))
    page = min(page, count)
    return {"page": page, "pages": count, "total": total, "start": (page - 1) * size}


def _live(ledger: Ledger, running: bool, **scope: str) -> str:
    """The SSE address that announces new events for this page ('' when nothing can
    change: a fixed --as-of point, or nothing running)."""
    if ledger.until is not None or not running:
        return ""
    query = "&".join(f"{k}={v}" for k, v in scope.items())
    return f"/live?after={ledger.top()}" + (f"&{query}" if query else "")


# --- list ------------------------------------------------------------------------------------


def list_page(
    ledger: Ledger, *, kind: str = "", status: str = "", q: str = "", page: str | None = None
) -> dict[str, Any]:
    """Experiments and sessions, newest first; filter by kind, status and text; paged."""
    if kind not in ("", "experiment", "session"):
        raise BadRequestError(f"kind {kind!r} is not one of experiment, session")
    if status and status not in STATUSES:
        raise BadRequestError(f"status {status!r} is not one of {', '.join(STATUSES)}")
    entries = ledger.catalog.entries()
    if kind:
        entries = [e for e in entries if e.kind == kind]
    if status:
        entries = [e for e in entries if e.status == status]
    if q:
        needle = q.casefold()
        entries = [e for e in entries if needle in e.name.casefold() or needle in e.ref.casefold()]
    paging = _pages(len(entries), LIST_PAGE, page_number(page))
    shown = entries[paging["start"] : paging["start"] + LIST_PAGE]
    return {
        "title": "Experiments and sessions",
        "rows": [_list_row(ledger, e) for e in shown],
        "filters": {"kind": kind, "status": status, "q": q},
        "statuses": STATUSES,
        "paging": paging,
        "live": _live(ledger, True),  # a new experiment or session can start at any time
    }


def _list_row(ledger: Ledger, entry: Entry) -> dict[str, Any]:
    row: dict[str, Any] = {"entry": entry, "evaluation": ""}
    if entry.kind == "session":
        figures = session_figures(ledger.store, entry.ref, ledger.until)
        row.update(ok=None, failed=None, tokens=figures.total_tokens, runs=figures.turns)
        return row
    row.update(ledger.list_figures(entry))
    records = evaluation_results(ledger.store, entry.ref, ledger.until)
    row["evaluation"] = evaluation_verdict(records)
    return row


def evaluation_verdict(records: list[EvaluationRecord]) -> str:
    """A one-line verdict of an experiment's evaluation results ('' when none): the last
    record that names no trace (an experiment-level result), else how many were scored."""
    if not records:
        return ""
    overall = [r for r in records if r.trace_id is None]
    if overall:
        return overall[-1].brief(3)
    return f"{len({r.trace_id for r in records})} trace(s) scored"


# --- experiment ------------------------------------------------------------------------------


def experiment_page(
    ledger: Ledger,
    ref: str,
    *,
    status: str = "",
    persona: str = "",
    q: str = "",
    page: str | None = None,
) -> dict[str, Any]:
    """Summary figures, charts, failures, evaluation, and the filtered trace matrix."""
    if status and status not in STATUSES:
        raise BadRequestError(f"status {status!r} is not one of {', '.join(STATUSES)}")
    experiment_id = ledger.catalog.experiment_id(ref)
    index = ledger.indexes.get(experiment_id)
    summary = index.memo("summary", index.summary)
    marks, histogram = index.memo("durations", lambda: _durations(index))
    rows = index.filter(status=status, persona=persona, text=q)
    paging = _pages(len(rows), MATRIX_PAGE, page_number(page))
    records = evaluation_results(ledger.store, experiment_id, ledger.until)
    fold = index.experiment
    return {
        "title": f"Experiment {fold.name}",
        "experiment": fold,
        "summary": summary,
        "percentiles": marks,
        "histogram": histogram,
        "persona_chart": success_bars(summary["by_persona"]) if summary["by_persona"] else "",
        "failures": index.memo("failures", lambda: failure_groups(index)),
        "finished": len(index.rows),
        "in_flight": len(index.running),
        "matrix": rows[paging["start"] : paging["start"] + MATRIX_PAGE],
        "inputs": {i.get("index"): i.get("input", "") for i in fold.plan.get("inputs", [])},
        "personas": index.memo("personas", index.personas),
        "filters": {"status": status, "persona": persona, "q": q},
        "statuses": STATUSES,
        "paging": paging,
        "evaluation": records,
        "evaluation_verdict": evaluation_verdict(records),
        "position": index.position,
        "live": _live(ledger, fold.status == "running", experiment=experiment_id),
    }


def _durations(index: ExperimentIndex) -> tuple[dict[str, float], Any]:
    """The percentiles of the finished runs' durations and their histogram."""
    ordered = sorted(index.acc.durations_us)
    marks = {
        "p50": percentile_ms(ordered, 0.5),
        "p90": percentile_ms(ordered, 0.9),
        "p95": percentile_ms(ordered, 0.95),
        "p99": percentile_ms(ordered, 0.99),
    }
    return marks, duration_histogram([us / 1000 for us in ordered], marks)


def failure_groups(index: ExperimentIndex) -> list[dict[str, Any]]:
    """Failed runs grouped by error type, largest group first, with an example message and
    the first traces of each group."""
    groups: dict[str, list[MatrixRow]] = {}
    for row in index.ordered():
        if row.error_type is not None and row.status != "running":
            groups.setdefault(row.error_type, []).append(row)
    counted = Counter({name: len(rows) for name, rows in groups.items()})
    return [
        {
            "error_type": name,
            "count": count,
            "message": groups[name][0].error_message,
            "traces": [r.trace_id for r in groups[name][:5]],
        }
        for name, count in sorted(counted.items(), key=lambda item: (-item[1], item[0]))
    ]


def integrity_fragment(ledger: Ledger, experiment_id: str) -> dict[str, Any]:
    """``verify`` of the experiment's streams (the chains, seals and the database's own
    check), kept until the log grows."""
    from agentledger.eventstore.integrity import verify

    ledger.catalog.experiment_id(experiment_id)
    top = ledger.store.last_position()
    with ledger._cache_lock:
        cached = ledger._integrity.get(experiment_id)
    if cached is not None and cached[0] == top:
        return cached[1]
    report = verify(ledger.store, experiment_id)
    result = {
        "ok": report.ok,
        "streams": report.streams,
        "events": report.events,
        "seals": report.seals,
        "findings": [*report.damage, *(p.describe() for p in report.problems)][:20],
        "count": len(report.damage) + len(report.problems),
        "position": top,
        "as_of": ledger.until,
    }
    with ledger._cache_lock:
        ledger._integrity[experiment_id] = (top, result)
    return result


# --- trace and session ------------------------------------------------------------------------


def trace_page(ledger: Ledger, trace_id: str) -> dict[str, Any]:
    """One trace: outcome, timeline, conversation, model and tool calls, raw events."""
    events = ledger.stream(trace_stream(trace_id))
    if not events:
        raise NotFoundError(f"no trace {trace_id!r} in the log; trace ids are on experiment pages")
    view = build_trace_view(trace_stream(trace_id), events)
    experiment = ExperimentFold()
    correlation = events[0].correlation_id
    if correlation:
        for ev in ledger.stream(experiment_stream(correlation)):
            experiment.apply(ev)
    records = (
        [r for r in evaluation_results(ledger.store, correlation, ledger.until) if r.trace_id]
        if correlation
        else []
    )
    return {
        "title": f"Trace {trace_id}",
        **_stream_parts(view),
        "experiment": experiment,
        "evaluation": [r for r in records if r.trace_id == trace_id],
        "live": _live(ledger, view.fold.status == "running", stream=trace_stream(trace_id)),
    }


def session_page(ledger: Ledger, session_id: str) -> dict[str, Any]:
    """An agent session: its transcript with each turn's model calls."""
    events = ledger.stream(session_stream(session_id))
    if not events:
        raise NotFoundError(f"no session {session_id!r} in the log; sessions are on the list page")
    view = build_trace_view(session_stream(session_id), events)
    return {
        "title": f"Session {session_id}",
        **_stream_parts(view),
        "live": _live(ledger, not view.ended, stream=session_stream(session_id)),
    }


def _stream_parts(view: TraceView) -> dict[str, Any]:
    """The timeline and the listed rows of a trace or session page, within their limits."""
    return {
        "view": view,
        "timeline": waterfall(view.bars[:TIMELINE_BARS], view.total_ms),
        "bars_hidden": max(0, len(view.bars) - TIMELINE_BARS),
        "rows_shown": ROWS_SHOWN,
    }


# --- diff ------------------------------------------------------------------------------------


def diff_page(
    ledger: Ledger, a: str, b: str, *, changed: bool = False, page: str | None = None
) -> dict[str, Any]:
    """Two experiments side by side per slot, with ``agentledger diff``'s verdicts."""
    if not a or not b:
        return {
            "title": "Compare experiments",
            "result": None,
            "a": a,
            "b": b,
            "experiments": [e for e in ledger.catalog.entries() if e.kind == "experiment"],
        }
    a_id, b_id = ledger.catalog.experiment_id(a), ledger.catalog.experiment_id(b)
    a_traces = list(load_report(ledger.store, a_id, ledger.until).traces)
    b_traces = list(load_report(ledger.store, b_id, ledger.until).traces)
    result = diff_experiments(a_id, a_traces, b_id, b_traces)
    rows = diff_rows(result, a_traces, b_traces)
    scores_a = _scores(ledger, a_id)
    scores_b = _scores(ledger, b_id)
    if changed:
        rows = [r for r in rows if r["verdict"] != "unchanged"]
    paging = _pages(len(rows), DIFF_PAGE, page_number(page))
    return {
        "title": f"Compare {a_id} and {b_id}",
        "a": a_id,
        "b": b_id,
        "result": result,
        "rows": rows[paging["start"] : paging["start"] + DIFF_PAGE],
        "scores_a": scores_a,
        "scores_b": scores_b,
        "changed_only": changed,
        "paging": paging,
        "experiments": [],
    }


def diff_rows(
    result: ExperimentDiff, a_traces: list[TraceFold], b_traces: list[TraceFold]
) -> list[dict[str, Any]]:
    """Every slot of either experiment in plan order, with its verdict: ``regression``
    (a success in A that failed or is missing in B), ``changed`` (success or output
    differs, or the slot is only in one), or ``unchanged`` (``agentledger diff`` does not
    list it)."""
    a_index = {slot_of(t): t for t in a_traces}
    b_index = {slot_of(t): t for t in b_traces}
    changed = {(c.input_index, c.iteration, c.persona): c for c in result.changed}
    rows = []
    for key in sorted(set(a_index) | set(b_index), key=lambda k: (k[0], k[1], k[2] or "")):
        before, after = a_index.get(key), b_index.get(key)
        entry = changed.get(key)
        if entry is None:
            assert before is not None and after is not None and same_outcome(before, after)
            verdict = "unchanged"
        else:
            verdict = "regression" if entry.regression else "changed"
        either = before or after
        assert either is not None
        rows.append(
            {
                "input_index": key[0],
                "iteration": key[1],
                "persona": key[2],
                "input": either.input,
                "a": before,
                "b": after,
                "verdict": verdict,
                "diff": entry.output_diff if entry is not None else "",
            }
        )
    return rows


def _scores(ledger: Ledger, experiment_id: str) -> dict[str, str]:
    return {
        r.trace_id: r.brief()
        for r in evaluation_results(ledger.store, experiment_id, ledger.until)
        if r.trace_id is not None
    }
