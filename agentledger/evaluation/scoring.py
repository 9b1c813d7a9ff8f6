"""Scoring an experiment: read its traces from the log, score each, append the scores.

Protocol of one evaluation of experiment ``X`` (stream ``evaluation-X-eNNN``):

1. ``EvaluationStarted`` is appended as version 1 of the next free ``eNNN`` (two
   evaluations started at once get different numbers: the append expects a new stream).
2. The experiment's finished traces are read as the log stood then, in plan order, one
   folded trace in memory at a time. ``limits.sample_rate`` keeps a trace when a hash of
   its id falls under the rate (the same traces every time); ``limits.max_traces`` keeps
   the first N kept. Left-out traces are counted by reason, never dropped silently.
3. Rules score each trace at once; judges are asked with up to ``parallel`` traces in
   flight, their calls recorded in the stream. ``TraceScored`` events are appended in
   plan order whatever order the judges answer in. Rules alone are scored by a forked
   ``RuleWorker`` while this process appends.
4. The stream is read back and folded (writing ``scores.jsonl``; with a rule worker, each
   append is read back as it lands); the integrity check's verdict (``checked``) is taken
   before ``scores.jsonl`` is put in place; ``EvaluationCompleted`` records what that
   fold says (the aggregate, the success-criteria verdict), and ``summary.json`` is
   written from the fold with the completion applied: the same fold a rebuild makes
   (``summary.write_evaluation``).

In ``replay`` mode every judge call is answered from an earlier evaluation of the same
experiment (matched per trace by request fingerprint, in order); a miss is a divergence,
recorded as an unscored metric, never a live call. ``replay-or-live`` (and
``limits.cache: true``) calls live on a miss.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import threading
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agentledger.evaluation.catalog import evaluation_numbers, latest_of, list_evaluations
from agentledger.evaluation.config import (
    EvaluationSettings,
    JudgeEvaluator,
    RuleEvaluator,
)
from agentledger.evaluation.errors import EvaluationConfigError
from agentledger.evaluation.judge import JudgeBudget, JudgeContext, judge_trace
from agentledger.evaluation.rules import rule_document
from agentledger.evaluation.summary import (
    EvaluationFold,
    fold_evaluation,
    write_scores,
    write_summary,
)
from agentledger.evaluation.traces import TraceView, read_traces
from agentledger.events.evaluation import (
    VERDICTS,
    EvaluationCompleted,
    EvaluationStarted,
    MetricScore,
    TraceScored,
    evaluation_id_for,
    evaluation_stream,
)
from agentledger.events.payloads import Payload
from agentledger.eventstore.appending import BuiltPayload
from agentledger.eventstore.envelope import AppendResult
from agentledger.eventstore.errors import ConcurrencyError
from agentledger.eventstore.store import NO_STREAM, EventStore
from agentledger.experiments.context import TraceRecorder
from agentledger.experiments.writer import BatchWriter
from agentledger.models.gateway import ModelGateway
from agentledger.replay.book import RecordedCall, RecordMode, ReplayBook, ReplayState

JsonDict = dict[str, Any]
IN_FLIGHT = 4096
"""Scores handed to the writer and not yet committed, at most."""
RULES_CHUNK = 5000
"""Rule-only scores appended per transaction (the ordinary path)."""
WINDOW_PER_SLOT = 4
"""Traces read ahead per judge slot in flight (bounds memory, keeps every slot busy)."""


@dataclass(frozen=True)
class EvaluationResult:
    """How an evaluation went, for the caller to print and exit on."""

    evaluation_id: str
    experiment_id: str
    output_dir: Path | None
    completed: EvaluationCompleted
    diverged: int = 0
    """Judged traces whose replay missed the recording."""
    integrity_warning: str | None = None
    """What ``checked`` returned: the log fails verify and was scored anyway."""


def sampled(trace_id: str, rate: float) -> bool:
    """Whether ``limits.sample_rate`` keeps the trace (a stable hash of its id)."""
    if rate >= 1:
        return True
    digest = hashlib.sha256(trace_id.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < rate


def aggregate(scores: list[JsonDict], method: str) -> float | None:
    """``weighted_sum`` (weights over the scored metrics, as a weighted mean in 0..1) or
    ``average`` (plain mean) of a trace's scores (``MetricScore`` data)."""
    scored = [s for s in scores if s["score"] is not None]
    if not scored:
        return None
    if method == "average":
        return round(math.fsum(s["score"] for s in scored) / len(scored), 6)
    weight = math.fsum(s["weight"] for s in scored)
    if weight == 0:
        return None
    total = math.fsum(s["weight"] * s["score"] for s in scored)
    return round(total / weight, 6)


def verdict(scores: list[JsonDict], value: float | None, threshold: float) -> str:
    """REVIEW when a metric is unscored; PASS at or above the threshold; PARTIAL below it
    with some metric rated good; FAIL otherwise."""
    if value is None or any(s["score"] is None for s in scores):
        return "REVIEW"
    if value >= threshold:
        return "PASS"
    if any(s["rating"] == "good" for s in scores):
        return "PARTIAL"
    return "FAIL"


# --- replay ------------------------------------------------------------------------------


def latest_evaluation(store: EventStore, experiment_id: str, name: str | None) -> str | None:
    """The most recent evaluation of the experiment (with ``name``, when given)."""
    ref = latest_of(list_evaluations(store, experiment_id), name)
    return ref.evaluation_id if ref is not None else None


def judge_books(store: EventStore, evaluation_id: str) -> dict[str, ReplayBook]:
    """``<trace id>:judge`` -> the judge calls recorded for it in an evaluation."""
    books: dict[str, ReplayBook] = {}
    where: dict[str, tuple[str, int]] = {}
    stream = evaluation_stream(evaluation_id)
    for ev in store.read_prefix_folds(stream):
        if ev.stream_id != stream:
            continue
        data = ev.data
        if ev.type == "ModelCallStarted":
            sink = data["call_id"].rsplit(":model:", 1)[0]
            book = books.setdefault(sink, ReplayBook(sink))
            where[data["call_id"]] = (sink, len(book.calls))
            book.calls.append(
                RecordedCall(
                    len(book.calls),
                    data["fingerprint"],
                    data.get("endpoint", "chat/completions"),
                    data["request"],
                    "",
                    {},
                )
            )
        elif ev.type in ("ModelCallCompleted", "ModelCallFailed") and data["call_id"] in where:
            sink, index = where[data["call_id"]]
            call = books[sink].calls[index]
            books[sink].calls[index] = RecordedCall(
                call.index, call.fingerprint, call.endpoint, call.request, ev.type, data
            )
    return books


# --- scoring -----------------------------------------------------------------------------


class _Scorer:
    """Scores traces and appends their events, in plan order."""

    def __init__(
        self,
        store: EventStore,
        settings: EvaluationSettings,
        evaluation_id: str,
        experiment_id: str,
        *,
        mode: RecordMode,
        books: dict[str, ReplayBook] | None,
        env: Mapping[str, str],
        parallel: int,
    ) -> None:
        self.store = store
        self.settings = settings
        self.evaluation_id = evaluation_id
        self.experiment_id = experiment_id
        self.mode = mode
        self.books = books
        self.env = env
        self.parallel = parallel
        self.stream_id = evaluation_stream(evaluation_id)
        self.version = 1
        """The evaluation stream's version so far (its ``EvaluationStarted`` is 1)."""
        # The judges' writer thread, started only for judges (rules append from this
        # thread, and a rule worker is forked from it: no thread may run at the fork).
        self.writer: BatchWriter | None = None
        self.recorder: TraceRecorder | None = None
        self._in_flight = threading.Semaphore(IN_FLIGHT)
        self.diverged = 0
        self.judge_calls = 0
        limits = settings.config.limits
        self.budget = JudgeBudget(
            limits.max_llm_calls, limits.max_cost, limits.cost_per_1k_tokens, limits.timeout_seconds
        )
        self.gateways: dict[str, ModelGateway] = {}
        self.rule_evaluators = [e for e in settings.evaluators if isinstance(e, RuleEvaluator)]

    def rule_scores(self, trace: TraceView) -> list[JsonDict]:
        return [rule_document(e, trace, self.settings) for e in self.rule_evaluators]

    def emit(self, trace: TraceView, by_evaluator: dict[str, list[JsonDict]]) -> None:
        # Bounded: scoring outpaces the writer, and a queue of every score would hold them all.
        self._in_flight.acquire()
        payload = TraceScored.model_validate(self.scored(trace, by_evaluator))
        assert self.recorder is not None
        self.recorder.record(payload, callback=self._written)

    def scored(self, trace: TraceView, by_evaluator: dict[str, list[JsonDict]]) -> JsonDict:
        """The data of a trace's ``TraceScored`` (as ``model_dump(mode="json")`` gives it):
        its scores (``MetricScore`` data) in evaluator order, aggregated."""
        scores = [s for e in self.settings.evaluators for s in by_evaluator.get(e.name, [])]
        config = self.settings.config.aggregate
        value = aggregate(scores, config.method)
        fold = trace.trace
        return {
            "evaluation_id": self.evaluation_id,
            "trace_id": fold.trace_id,
            "slot": fold.slot,
            "input_index": fold.input_index,
            "iteration": fold.iteration,
            "persona": fold.persona,
            "success": fold.success,
            "scores": scores,
            "aggregate": value,
            "verdict": verdict(scores, value, config.threshold),
            "unscored": [s["metric"] for s in scores if s["score"] is None],
            "latency_ms": float(fold.duration_ms),
            "output_tokens": int(trace.usage["completion_tokens"]),
            "conversation_depth": trace.depth,
            "tool_calls": len(fold.tool_calls),
            "failed_tool_calls": trace.failed_tool_calls,
        }

    def _written(self, result: Any, error: Any) -> None:
        self._in_flight.release()

    # -- rules only: no event loop --

    def score_rules_only(self, traces: Iterator[TraceView]) -> None:
        """The ordinary rule-only path: score in this thread, each ``TraceScored`` a
        validated model, ``RULES_CHUNK`` a transaction (``RuleWorker`` is the fast one)."""
        chunk: list[Payload] = []
        for trace in traces:
            scores = self.rule_scores(trace)
            document = self.scored(trace, {s["evaluator"]: [s] for s in scores})
            chunk.append(TraceScored.model_validate(document))
            if len(chunk) >= RULES_CHUNK:
                self.append(chunk)
                chunk = []
        if chunk:
            self.append(chunk)

    def append(self, payloads: Sequence[Payload | BuiltPayload]) -> AppendResult:
        """Append ``payloads`` to the evaluation stream (in this thread); where they landed."""
        done = self.store.append(
            self.stream_id,
            payloads,
            expected_version=self.version,
            metadata={"correlation_id": self.experiment_id},
        )
        self.version += len(payloads)
        return done

    # -- with judges --

    def open_writer(self) -> None:
        """Start the writer thread the judges' events go through."""
        self.writer = BatchWriter(self.store)
        self.recorder = TraceRecorder(
            self.writer,
            self.stream_id,
            version=self.version,
            metadata={"correlation_id": self.experiment_id},
        )

    def close_writer(self) -> None:
        """Stop the writer (everything queued committed)."""
        if self.writer is not None and self.recorder is not None:
            self.writer.close()
            self.version = self.recorder.version

    def check_refused(self) -> None:
        """Refuse the scores when another process appended to the stream meanwhile."""
        if self.writer is not None and self.writer.refused:
            raise EvaluationConfigError(
                f"evaluation {self.evaluation_id}: another process appended to its stream; "
                "its scores are incomplete, evaluate again"
            )

    def gateway(self, judge: JudgeEvaluator) -> ModelGateway:
        from agentledger.models.specs import resolve_endpoint

        key = judge.model.model_dump_json()
        if key not in self.gateways:
            offline = self.mode is RecordMode.REPLAY
            endpoint = resolve_endpoint(judge.model, self.env, offline=offline)
            self.gateways[key] = ModelGateway(judge.model, endpoint, self.store.redactor)
        return self.gateways[key]

    async def judged(self, trace: TraceView, slots: asyncio.Semaphore) -> dict[str, list[JsonDict]]:
        replay = None
        if self.books is not None:
            book = self.books.get(f"{trace.trace_id}:judge") or ReplayBook(
                f"{trace.trace_id}:judge"
            )
            replay = ReplayState(self.mode, book)
        results: dict[str, list[MetricScore]] = {}
        async with slots:
            judges = self.settings.judges
            assert self.recorder is not None
            ctx = JudgeContext(self.recorder, trace, self.experiment_id, None, replay)
            token = ctx.activate()
            try:
                for judge in judges:
                    results[judge.name] = await judge_trace(
                        judge, self.gateway(judge), ctx, trace, self.settings, self.budget
                    )
            finally:
                ctx.deactivate(token)
                self.judge_calls += len(ctx.call_ids)
            divergence = ctx.divergence or (replay.book.unused() if replay is not None else None)
            if divergence is not None and self.mode is not RecordMode.LIVE:
                self.diverged += 1
                reason = divergence.message().splitlines()[0]
                for name, scores in results.items():
                    results[name] = [
                        s.model_copy(
                            update={"score": None, "rating": None, "passed": None, "reason": reason}
                        )
                        for s in scores
                    ]
        return {
            name: [s.model_dump(mode="json") for s in scores] for name, scores in results.items()
        }

    async def score_with_judges(self, traces: Iterator[TraceView]) -> None:
        slots = asyncio.Semaphore(self.parallel)
        pending: deque[tuple[TraceView, list[JsonDict], asyncio.Task[Any]]] = deque()
        window = self.parallel * WINDOW_PER_SLOT

        def flush_done() -> None:
            while pending and pending[0][2].done():
                trace, rules, task = pending.popleft()
                found = {s["evaluator"]: [s] for s in rules}
                found.update(task.result())
                self.emit(trace, found)

        try:
            for trace in traces:
                rules = self.rule_scores(trace)
                pending.append((trace, rules, asyncio.create_task(self.judged(trace, slots))))
                flush_done()
                while len(pending) >= window:
                    await asyncio.wait([pending[0][2]])
                    flush_done()
            while pending:
                await asyncio.wait([pending[0][2]])
                flush_done()
        finally:
            for _, _, task in pending:
                task.cancel()
            for gateway in self.gateways.values():
                await gateway.aclose()


def _selected(
    traces: Iterator[TraceView], settings: EvaluationSettings, counts: dict[str, int]
) -> Iterator[TraceView]:
    limits = settings.config.limits
    kept = 0
    for trace in traces:
        counts["available"] += 1
        if not sampled(trace.trace_id, limits.sample_rate):
            counts["sample_rate"] += 1
            continue
        if limits.max_traces is not None and kept >= limits.max_traces:
            counts["max_traces"] += 1
            continue
        kept += 1
        yield trace


def _begin(store: EventStore, experiment_id: str, payload_for: Any) -> str:
    """Append ``EvaluationStarted`` as the next free evaluation number; its id."""
    for _ in range(100):
        numbers = evaluation_numbers(store, experiment_id)
        number = (numbers[-1] if numbers else 0) + 1
        evaluation_id = evaluation_id_for(experiment_id, number)
        started = payload_for(evaluation_id, number)
        try:
            store.append(
                evaluation_stream(evaluation_id),
                [started],
                expected_version=NO_STREAM,
                metadata={"correlation_id": experiment_id},
            )
        except ConcurrencyError:
            continue
        return evaluation_id
    raise EvaluationConfigError(
        f"could not number a new evaluation of experiment {experiment_id}; try again"
    )


def evaluate_experiment(
    store: EventStore,
    experiment_id: str,
    settings: EvaluationSettings,
    env: Mapping[str, str],
    *,
    name: str | None = None,
    record_mode: str = "live",
    parallel: int = 4,
    output_dir: Path | None = None,
    checked: Callable[[], str | None] | None = None,
    fast_path: bool = True,
) -> EvaluationResult:
    """Score every finished trace of ``experiment_id`` (see the module docstring) and write
    the evaluation's files into ``output_dir`` (None: write none). ``checked`` is called
    once the scores are appended and before anything records the result (the integrity
    check's verdict: it raises to refuse). Rules alone are scored by a ``RuleWorker``;
    ``fast_path=False`` scores them here instead, folding whole traces and validating
    every ``TraceScored`` model (the path the tests compare the fast one with)."""
    mode = RecordMode.parse(record_mode)
    source = None
    if mode is RecordMode.LIVE and settings.config.limits.cache and settings.judges:
        source = latest_evaluation(store, experiment_id, None)
        mode = RecordMode.REPLAY_OR_LIVE if source else RecordMode.LIVE
    elif mode is not RecordMode.LIVE:
        source = latest_evaluation(store, experiment_id, name)
        if source is None:
            named = f" named {name!r}" if name else ""
            raise EvaluationConfigError(
                f"--record-mode {mode.value}: experiment {experiment_id} has no earlier "
                f"evaluation{named} to answer the judges from; evaluate it once with "
                "--record-mode live"
            )
    from agentledger.models.specs import resolve_endpoint

    for judge in settings.judges:  # a missing key is refused before anything is recorded
        resolve_endpoint(judge.model, env, offline=mode is RecordMode.REPLAY)
    books = (
        judge_books(store, source) if source is not None and mode is not RecordMode.LIVE else None
    )
    until = store.last_position()
    read = read_traces(store, experiment_id, until)
    experiment = read.experiment

    def started(evaluation_id: str, number: int) -> EvaluationStarted:
        return EvaluationStarted(
            evaluation_id=evaluation_id,
            experiment_id=experiment_id,
            number=number,
            name=name,
            config_file=settings.config_file,
            config=settings.snapshot(),
            evaluators=[e.name for e in settings.evaluators],
            metrics=settings.metric_names,
            judge_models={j.name: j.model.label for j in settings.judges},
            record_mode=mode.value,
            replay_of=source if books is not None else None,
            as_of_position=until,
            planned_runs=experiment.total_runs,
            parallel=parallel,
            output_dir=str(output_dir) if output_dir is not None else None,
        )

    evaluation_id = _begin(store, experiment_id, started)
    scorer = _Scorer(
        store,
        settings,
        evaluation_id,
        experiment_id,
        mode=mode,
        books=books,
        env=env,
        parallel=parallel,
    )
    counts = {"available": 0, "sample_rate": 0, "max_traces": 0}
    if not settings.judges and fast_path:
        from agentledger.evaluation.ruleworker import score_in_worker

        fold, warning = score_in_worker(
            store, experiment, until, scorer, counts, output_dir, checked
        )
    else:
        fold, warning = _score_here(read.traces, scorer, counts, output_dir, checked)
    completed = _completed(
        fold, scorer, evaluation_id, experiment_id, counts, experiment.total_runs
    )
    appended = store.append(
        evaluation_stream(evaluation_id),
        [completed],
        expected_version=scorer.version,
        metadata={"correlation_id": experiment_id},
    )
    for ev in store.read_all(appended.first_position - 1, until=appended.last_position):
        fold.apply(ev)
    if output_dir is not None:
        write_summary(fold, output_dir)
    return EvaluationResult(
        evaluation_id,
        experiment_id,
        output_dir,
        completed,
        diverged=scorer.diverged,
        integrity_warning=warning,
    )


def _score_here(
    traces: Iterator[TraceView],
    scorer: _Scorer,
    counts: dict[str, int],
    output_dir: Path | None,
    checked: Callable[[], str | None] | None,
) -> tuple[EvaluationFold, str | None]:
    """Judges (or rules on the ordinary path): scored in this process; then the stream is
    read back and folded (writing ``scores.jsonl``) once ``checked`` has passed."""
    settings = scorer.settings
    if not settings.judges:
        scorer.score_rules_only(_selected(traces, settings, counts))
    else:
        scorer.open_writer()
        try:
            asyncio.run(scorer.score_with_judges(_selected(traces, settings, counts)))
        finally:
            scorer.close_writer()
        scorer.check_refused()
    warning = checked() if checked is not None else None
    # The totals and the verdict come from the scores as the log holds them: one pass
    # folds them (writing scores.jsonl), the completion is appended, then the summary.
    events = read_evaluation(scorer.store, scorer.evaluation_id)
    fold = write_scores(events, output_dir) if output_dir is not None else fold_evaluation(events)
    return fold, warning


def _completed(
    fold: EvaluationFold,
    scorer: _Scorer,
    evaluation_id: str,
    experiment_id: str,
    counts: dict[str, int],
    planned: int,
) -> EvaluationCompleted:
    criteria = fold.criteria()
    return EvaluationCompleted(
        evaluation_id=evaluation_id,
        experiment_id=experiment_id,
        traces_available=counts["available"],
        not_finished=max(planned - counts["available"], 0),
        traces_scored=fold.scored,
        unscored=fold.unscored,
        skipped={k: counts[k] for k in ("sample_rate", "max_traces") if counts[k]},
        verdicts={v: fold.overall.verdicts[v] for v in VERDICTS},
        pass_rate=fold.pass_rate,
        mean_aggregate=fold.summary()["aggregate"]["mean"],
        judge_calls=scorer.judge_calls,
        judge_tokens=scorer.budget.tokens,
        judge_cost=round(scorer.budget.cost, 6) if scorer.budget.rates is not None else None,
        criteria=criteria,
        passed=all(c.passed for c in criteria),
    )


def read_evaluation(
    store: EventStore, evaluation_id: str, until: int | None = None
) -> Iterator[Any]:
    """The events of one evaluation stream in order (as of position ``until``), paged."""
    stream = evaluation_stream(evaluation_id)
    for ev in store.read_prefix_folds(stream, until=until):
        if ev.stream_id == stream:
            yield ev
