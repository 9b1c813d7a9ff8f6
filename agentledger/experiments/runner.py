"""Running an experiment: every slot of the plan executed, bounded in parallel, recorded.

The experiment stream gets ``ExperimentStarted`` (settings snapshot and plan) before any
run and ``ExperimentCompleted`` (sealing its traces' heads) or ``ExperimentInterrupted``
after. Each slot's trace stream gets ``TraceStarted``, its observations, a
``TraceAttemptFailed`` per retried attempt, and ``TraceCompleted`` or ``TraceFailed``.
Sync targets run on a thread pool, async ones on the event loop; at most ``parallel``
runs are in flight. Nothing here prints: progress goes to an ``ExperimentListener``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import re
import signal
import threading
import time
import uuid
from collections.abc import Callable, Coroutine, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from agentledger.errors import ConfigError, ResumeError
from agentledger.events.payloads import (
    ExperimentCompleted,
    ExperimentInterrupted,
    ExperimentResumed,
    ExperimentStarted,
    TraceAttemptFailed,
    TraceCompleted,
    TraceFailed,
    TraceStarted,
)
from agentledger.events.streams import TRACE_PREFIX, experiment_stream, trace_stream
from agentledger.eventstore.errors import ConcurrencyError
from agentledger.eventstore.slots import SlotBoard
from agentledger.eventstore.store import NO_STREAM, EventStore
from agentledger.experiments import inline
from agentledger.experiments.attempt import (
    ABANDONED,
    CANCEL_GRACE_SECONDS,
    check_replay,
    run_attempt,
)
from agentledger.experiments.config import ExperimentSettings
from agentledger.experiments.context import AutoApprove, RunContext, ToolApprover, TraceRecorder
from agentledger.experiments.feeds import Assignment, PlannedFeed, SlotFeed
from agentledger.experiments.outcomes import completed_event, finished_traces
from agentledger.experiments.plan import Slot, iter_slots, slot_key
from agentledger.experiments.prepare import PreparedExperiment, prepare_recorded, slot_seed
from agentledger.experiments.supervisor import ModelSupervisor, ScriptedSupervisor, Supervisor
from agentledger.experiments.writer import BatchWriter
from agentledger.models.client_hook import record_default_clients
from agentledger.models.gateway import ModelGateway
from agentledger.replay.book import RecordMode, ReplaySource

log = logging.getLogger("agentledger.runner")

_COMPLETE_TRIES = 20
"""How often recording the end of an experiment is tried against a moving stream."""
AGENT_THREAD_GRACE_SECONDS = 1.0
"""How long the end of an experiment waits for threads its runs left going."""
LOOK_UP_SECONDS = 0.02
"""How often runs on the loop's own thread hand the loop a turn (signals, other tasks)."""


class ExperimentListener(Protocol):
    """Receives progress; the CLI draws it, tests count it."""

    def started(self, experiment_id: str, output_dir: Path, total: int, done: int) -> None: ...

    def finished_run(self, slot: Slot, ok: bool) -> None: ...


class _Silent:
    def started(self, experiment_id: str, output_dir: Path, total: int, done: int) -> None:
        pass

    def finished_run(self, slot: Slot, ok: bool) -> None:
        pass


@dataclass
class ExperimentResult:
    """How an experiment ended."""

    experiment_id: str
    name: str
    output_dir: Path
    total: int
    successful: int = 0
    failed: int = 0
    interrupted: bool = False
    already_completed: bool = False
    """A resume found the experiment completed (by an earlier or another process): nothing
    ran, its report was written again from the log."""


MAX_FOLDER_NAME = 100
"""Characters of the experiment name kept in its folder's name (file systems allow 255
bytes per name; the full name stays in the log and the report)."""


def _folder_name(name: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", name)[:MAX_FOLDER_NAME]
    return safe.strip("._") or "experiment"


def create_output_dir(base: Path, name: str, moment: datetime) -> Path:
    """``<base>/<name>_<YYYYMMDD_HHMMSS>``, made exclusively (``_2``, ``_3`` on a clash)."""
    stem = f"{_folder_name(name)}_{moment.strftime('%Y%m%d_%H%M%S')}"
    try:
        base.mkdir(parents=True, exist_ok=True)
        for n in range(1, 10_000):
            candidate = base / (stem if n == 1 else f"{stem}_{n}")
            try:
                candidate.mkdir()
            except FileExistsError:
                continue
            return candidate
    except OSError as exc:
        raise ConfigError(
            f"cannot create the experiment folder under {base}: {exc.strerror or exc}; "
            "choose a writable --output-dir"
        ) from None
    raise ConfigError(f"no free experiment folder name under {base}; clean it up")


@dataclass
class _Run:
    """Mutable state of one experiment execution."""

    result: ExperimentResult
    gateway: ModelGateway
    replay: ReplaySource | None = None
    supervisor: Supervisor | None = None
    approver: ToolApprover | None = None
    stopping: bool = False
    interrupts: int = 0
    in_flight: set[asyncio.Task[None]] = field(default_factory=set)
    next_start: float = 0.0
    on_this_thread: bool = False
    """Sync runs are called on the loop's thread (one at a time, main thread: ``inline``)."""
    heard: int = 0
    """Ctrl-Cs already acted on by the run they interrupted, which the loop hears later."""


class ExperimentRunner:
    """Executes a prepared experiment (or the rest of one) against an event store."""

    def __init__(
        self,
        store: EventStore,
        listener: ExperimentListener | None = None,
        *,
        handle_signals: bool = False,
        on_second_interrupt: Callable[[], None] | None = None,
        approver: ToolApprover | None = None,
    ) -> None:
        """``approver`` asks about tool calls when an experiment wants manual approval."""
        self._store = store
        self._approver = approver
        self._listener = listener or _Silent()
        self._handle_signals = handle_signals
        self._on_second_interrupt = on_second_interrupt

    # --- entry points ---------------------------------------------------------------------

    def start(
        self,
        prepared: PreparedExperiment,
        *,
        experiment_id: str | None = None,
        now: datetime | None = None,
        replay: ReplaySource | None = None,
    ) -> ExperimentResult:
        """Record ``ExperimentStarted``, run every slot, and record how it ended. With
        ``replay``, model calls are answered from that experiment's recording."""
        result = self.begin(prepared, experiment_id=experiment_id, now=now, replay=replay)
        slots = iter_slots(result.experiment_id, prepared.plan)
        return self._execute(prepared, result, PlannedFeed(slots, {}), done=0, replay=replay)

    def begin(
        self,
        prepared: PreparedExperiment,
        *,
        experiment_id: str | None = None,
        now: datetime | None = None,
        replay: ReplaySource | None = None,
        workers: int | None = None,
        lease_seconds: float | None = None,
    ) -> ExperimentResult:
        """Record ``ExperimentStarted`` (and make its output folder). With
        ``lease_seconds``, its slots go on the board first, for workers to claim."""
        settings = prepared.settings
        self._tool_approver(settings)  # refuse manual approval without an approver up front
        experiment_id = experiment_id or uuid.uuid4().hex[:12]
        moment = now or datetime.now(UTC)
        output_dir = create_output_dir(Path(settings.output_directory), settings.name, moment)
        if lease_seconds is not None:
            numbers = (slot.number for slot in iter_slots(experiment_id, prepared.plan))
            SlotBoard(self._store).create(experiment_id, numbers)
        from agentledger.generation.inputsfile import recorded_generation

        self._store.append(
            experiment_stream(experiment_id),
            [
                ExperimentStarted(
                    experiment_id=experiment_id,
                    name=settings.name,
                    config=settings.model_dump(mode="json"),
                    plan=prepared.plan,
                    seed=settings.seed,
                    output_dir=str(output_dir),
                    replay_of=replay.experiment_id if replay else None,
                    record_mode=replay.mode.value if replay else RecordMode.LIVE.value,
                    workers=workers,
                    lease_seconds=lease_seconds,
                    local_time=moment.astimezone().replace(tzinfo=None).isoformat(),
                    # A replay runs a recorded plan, whatever the inputs file holds now.
                    inputs_generation=(
                        None if replay else recorded_generation(Path(settings.inputs_file))
                    ),
                )
            ],
            expected_version=NO_STREAM,
            metadata={"correlation_id": experiment_id},
        )
        return ExperimentResult(experiment_id, settings.name, output_dir, prepared.plan.total_runs)

    def work(
        self,
        prepared: PreparedExperiment,
        result: ExperimentResult,
        feed: SlotFeed,
        *,
        replay: ReplaySource | None = None,
    ) -> ExperimentResult:
        """Run the slots ``feed`` hands out, as one worker of a shared experiment (whoever
        sees the last slot finish records the completion, not this)."""
        return self._execute(prepared, result, feed, done=0, replay=replay, complete=False)

    def resume(
        self,
        experiment_id: str,
        env: Mapping[str, str],
        *,
        parallel: int | None = None,
        replay: ReplaySource | None = None,
    ) -> ExperimentResult:
        """Run the slots of an unfinished experiment that have no finished trace, then
        complete it (same id, same output folder)."""
        history = self._store.read_stream(experiment_stream(experiment_id))
        if not history or history[0].type != "ExperimentStarted":
            raise ResumeError(f"no experiment {experiment_id} to resume")
        started = history[0].payload
        assert isinstance(started, ExperimentStarted)
        if any(ev.type == "ExperimentCompleted" for ev in history):
            raise ResumeError(
                f"experiment {experiment_id} already completed; start a new one instead"
            )
        settings = ExperimentSettings.model_validate(started.config)
        if parallel is not None:
            settings = settings.model_copy(update={"parallel": parallel})
        plan = started.plan
        offline = replay is not None and replay.mode is RecordMode.REPLAY
        prepared = prepare_recorded(settings, plan, env, offline=offline)
        # Heads first: a slot another process finishes after this read moves its head, so
        # this one's append there is refused; one finished before it is in ``finished``.
        heads = self._store.stream_heads(TRACE_PREFIX, experiment_id)
        finished = finished_traces(self._store, experiment_id)
        output_dir = Path(started.output_dir or settings.output_directory)
        output_dir.mkdir(parents=True, exist_ok=True)
        result = ExperimentResult(experiment_id, started.name, output_dir, plan.total_runs)
        result.successful = sum(1 for ok in finished.values() if ok)
        result.failed = len(finished) - result.successful
        remaining = [
            s for s in iter_slots(experiment_id, prepared.plan) if s.trace_id not in finished
        ]
        self._store.append(
            experiment_stream(experiment_id),
            [ExperimentResumed(experiment_id=experiment_id, remaining=len(remaining))],
            metadata={"correlation_id": experiment_id},
        )
        feed = PlannedFeed(iter(remaining), heads)
        return self._execute(prepared, result, feed, done=len(finished), replay=replay)

    # --- execution ------------------------------------------------------------------------

    def _execute(
        self,
        prepared: PreparedExperiment,
        result: ExperimentResult,
        feed: SlotFeed,
        *,
        done: int,
        replay: ReplaySource | None = None,
        complete: bool = True,
    ) -> ExperimentResult:
        settings = prepared.settings
        self._listener.started(result.experiment_id, result.output_dir, result.total, done)
        for secret in prepared.argument_secrets.values():
            self._store.redactor.add_secret(secret)
        writer = BatchWriter(self._store)
        gateway = ModelGateway(settings.model, prepared.endpoint, self._store.redactor)
        run = _Run(
            result, gateway, replay, self._supervisor(prepared), self._tool_approver(settings)
        )
        previous_cwd = os.getcwd()
        threads_before = set(threading.enumerate())
        pool = ThreadPoolExecutor(
            max_workers=settings.parallel * 2 + 4, thread_name_prefix="agentledger-run"
        )
        run.on_this_thread = settings.parallel == 1 and inline.available()
        if run.on_this_thread:
            writer.commit_here()  # between runs, see BatchWriter
        try:
            os.chdir(settings.working_directory)
            with record_default_clients(self._store.redactor), ExitStack() as stack:
                if run.on_this_thread:
                    stack.enter_context(inline.alarm_handler())
                run_loop(self._run_slots(prepared, run, feed, writer, pool))
        finally:
            os.chdir(previous_cwd)
            pool.shutdown(wait=False, cancel_futures=True)
            gateway.close()
            if isinstance(run.supervisor, ModelSupervisor):
                run.supervisor.gateway.close()
            _await_agent_threads(threads_before)
            writer.close()
        if writer.refused:
            # Another process ran some of these slots (two resumes at once): what counts is
            # the log, where each slot has exactly one final event.
            finished = finished_traces(self._store, result.experiment_id)
            result.successful = sum(finished.values())
            result.failed = len(finished) - result.successful
        if complete:
            self._finish(run)
        return result

    async def _run_slots(
        self,
        prepared: PreparedExperiment,
        run: _Run,
        feed: SlotFeed,
        writer: BatchWriter,
        pool: ThreadPoolExecutor,
    ) -> None:
        loop = asyncio.get_running_loop()
        if self._handle_signals:
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(signal.SIGINT, self._interrupt, run)
                loop.add_signal_handler(signal.SIGTERM, self._interrupt, run)
                inline.stand_in_for_sigint(self._on_second_interrupt)
        settings = prepared.settings

        async def worker() -> None:
            me = asyncio.current_task()
            assert me is not None
            looked_up = time.monotonic()
            while not run.stopping:
                assignment = await feed.take()
                if assignment is None:
                    return
                await self._pace(run, settings.run_delay_seconds)
                if run.stopping:
                    return
                if run.on_this_thread:
                    # One run at a time: the slot is awaited right here, not as a task of
                    # its own (a sync run then never leaves this step of the loop). The
                    # worker stands for it among the runs an interrupt cancels.
                    run.in_flight.add(me)
                    try:
                        await self._run_slot(prepared, assignment, writer, pool, run)
                    finally:
                        run.in_flight.discard(me)
                    writer.commit_due()
                    if time.monotonic() - looked_up >= LOOK_UP_SECONDS:
                        await asyncio.sleep(0)  # let the loop hear signals and time out
                        looked_up = time.monotonic()
                    continue
                task = asyncio.create_task(self._run_slot(prepared, assignment, writer, pool, run))
                run.in_flight.add(task)
                try:
                    await task
                finally:
                    run.in_flight.discard(task)

        workers = [asyncio.create_task(worker()) for _ in range(settings.parallel)]
        try:
            await asyncio.gather(*workers)
        finally:
            inline.restore_sigint()
            await run.gateway.aclose()

    async def _pace(self, run: _Run, delay: float) -> None:
        """Space run starts ``delay`` seconds apart (``run_delay_seconds``); an interrupt
        ends the wait at once."""
        if delay <= 0:
            return
        now = time.monotonic()
        start = max(now, run.next_start)
        run.next_start = start + delay
        while not run.stopping and (left := start - time.monotonic()) > 0:
            await asyncio.sleep(min(left, 0.1))

    def _interrupt(self, run: _Run, *, in_run: bool = False) -> None:
        if in_run:
            run.heard += 1  # the loop hears of this signal later: do not count it twice
        elif run.heard:
            run.heard -= 1
            return
        run.interrupts += 1
        if run.interrupts > 1:
            if self._on_second_interrupt is not None:
                self._on_second_interrupt()
            return
        log.warning("interrupted: stopping; in-flight runs are cancelled (Ctrl-C again to quit)")
        run.stopping = True
        run.result.interrupted = True
        # A run interrupted on this thread ends itself (it raises where it is).
        current = asyncio.current_task() if in_run else None
        for task in list(run.in_flight):
            if task is not current:
                task.cancel()

    async def _run_slot(
        self,
        prepared: PreparedExperiment,
        assignment: Assignment,
        writer: BatchWriter,
        pool: ThreadPoolExecutor,
        run: _Run,
    ) -> None:
        settings = prepared.settings
        experiment_id = run.result.experiment_id
        slot = assignment.slot
        seed = slot_seed(settings.seed, slot.number)
        item = slot.input
        metadata = {"correlation_id": experiment_id}
        started = TraceStarted(
            experiment_id=experiment_id,
            trace_id=slot.trace_id,
            slot=slot.number,
            input_index=item.index,
            iteration=slot.iteration,
            persona=item.persona,
            input=item.input,
            call_args=item.call_args,
            seed=seed,
        )
        version = assignment.version
        if assignment.fence is not None:
            fenced = await asyncio.to_thread(assignment.fence, started, metadata)
            if fenced is None:
                return
            version = fenced
        recorder = TraceRecorder(
            writer, trace_stream(slot.trace_id), version=version, metadata=metadata
        )
        if assignment.fence is None:
            recorder.record(started)
        ctx = RunContext(
            recorder,
            trace_id=slot.trace_id,
            experiment_id=experiment_id,
            input=item.input,
            persona=item.persona,
            iteration=slot.iteration,
            metadata=item.metadata,
            seed=seed,
            gateway=run.gateway,
            replay=run.replay.state_for(slot_key(slot)) if run.replay else None,
            approver=run.approver,
        )
        if settings.parallel == 1:
            # One run at a time: the global random module can be seeded per slot too.
            random.seed(seed)
        attempt = 0
        while True:
            attempt += 1
            try:
                outcome = await run_attempt(
                    prepared,
                    slot,
                    ctx,
                    pool,
                    run.supervisor,
                    on_this_thread=(lambda: self._interrupt(run, in_run=True))
                    if run.on_this_thread
                    else None,
                )
            except asyncio.CancelledError:
                recorder.record(_interrupted(attempt, "while this run was going"))
                return
            outcome = check_replay(ctx, outcome)
            if outcome.ok:
                recorder.record(
                    TraceCompleted(
                        output=outcome.output,
                        duration_ms=outcome.duration_ms,
                        attempts=attempt,
                        turn_count=outcome.turn_count,
                        conversation_state=outcome.conversation_state,
                        termination_reason=outcome.termination_reason,
                    ),
                    callback=assignment.on_final,
                )
                break
            retryable = outcome.reason != "divergence" and not run.stopping
            if attempt <= settings.max_retries and retryable:
                wait = min(settings.retry_backoff_seconds * 2 ** (attempt - 1), 30.0)
                recorder.record(
                    TraceAttemptFailed(
                        attempt=attempt,
                        error_type=outcome.error_type,
                        error_message=outcome.error_message,
                        reason=outcome.reason,
                        retry_in_seconds=wait,
                    )
                )
                try:
                    await asyncio.sleep(wait)
                except asyncio.CancelledError:
                    recorder.record(_interrupted(attempt, "between retries"))
                    return
                continue
            recorder.record(
                TraceFailed(
                    error_type=outcome.error_type,
                    error_message=outcome.error_message,
                    traceback=outcome.traceback,
                    reason=outcome.reason,
                    duration_ms=outcome.duration_ms,
                    attempts=attempt,
                    divergence=outcome.divergence,
                    output=outcome.output,
                    turn_count=outcome.turn_count if outcome.conversation_state else 0,
                    conversation_state=outcome.conversation_state,
                    termination_reason=outcome.termination_reason,
                ),
                callback=assignment.on_final,
            )
            break
        if outcome.ok:
            run.result.successful += 1
        else:
            run.result.failed += 1
        self._listener.finished_run(slot, outcome.ok)

    def _tool_approver(self, settings: ExperimentSettings) -> ToolApprover:
        """Automatic approval, unless the experiment asks for manual approval."""
        if settings.multi_turn is None or settings.multi_turn.auto_approve_tools:
            return AutoApprove()
        if self._approver is None:
            raise ConfigError(
                "manual tool approval needs a terminal to ask on; use --auto-approve-tools"
            )
        return self._approver

    def _supervisor(self, prepared: PreparedExperiment) -> Supervisor | None:
        """The supervisor of a multi-turn experiment (its model gateway, if any, is its own)."""
        multi_turn = prepared.settings.multi_turn
        if multi_turn is None:
            return None
        settings = multi_turn.supervisor
        if settings.model is None:
            return ScriptedSupervisor(settings)
        assert prepared.supervisor_endpoint is not None
        return ModelSupervisor(
            settings,
            ModelGateway(settings.model, prepared.supervisor_endpoint, self._store.redactor),
            personas={str(p["name"]): p for p in prepared.settings.personas},
            persona_override=multi_turn.persona_override,
            service_context=prepared.settings.service_context,
        )

    # --- completion -----------------------------------------------------------------------

    def _finish(self, run: _Run) -> None:
        """Record how the experiment ended: ``ExperimentCompleted`` once every slot is
        finished (appended against the stream's version, so two processes finishing at
        once record it once), else ``ExperimentInterrupted``."""
        result = run.result
        stream = experiment_stream(result.experiment_id)
        meta = {"correlation_id": result.experiment_id}
        for _ in range(_COMPLETE_TRIES):
            history = self._store.read_stream(stream)
            if any(ev.type == "ExperimentCompleted" for ev in history):
                result.interrupted = False  # another process completed it
                return
            finished = result.successful + result.failed
            version = history[-1].stream_version if history else 0
            if result.interrupted or finished < result.total:
                event: ExperimentInterrupted | ExperimentCompleted = ExperimentInterrupted(
                    experiment_id=result.experiment_id,
                    reason="interrupted" if result.interrupted else "incomplete",
                    completed=finished,
                    remaining=result.total - finished,
                )
            else:
                event = completed_event(
                    self._store,
                    result.experiment_id,
                    result.total,
                    result.successful,
                    result.failed,
                )
            try:
                self._store.append(stream, [event], expected_version=version, metadata=meta)
            except ConcurrencyError:
                continue  # another process recorded something (maybe the completion)
            result.interrupted = isinstance(event, ExperimentInterrupted)
            return
        raise ResumeError(
            f"experiment {result.experiment_id} kept changing while this run ended; "
            "see `agentledger experiments show`"
        )


def _await_agent_threads(before: set[threading.Thread]) -> None:
    """Give threads the runs started and left going (an agent observing in the background)
    up to ``AGENT_THREAD_GRACE_SECONDS`` to end, so that what they still record is kept;
    what they record later is not (see ``BatchWriter.submit``). Daemon threads are not
    waited for, as Python does not wait for them either."""
    deadline = time.monotonic() + AGENT_THREAD_GRACE_SECONDS
    for thread in threading.enumerate():
        if (
            thread in before
            or thread.daemon
            or thread is threading.current_thread()
            or thread.name.startswith("agentledger-")
        ):
            continue
        thread.join(max(0.0, deadline - time.monotonic()))


def run_loop(main: Coroutine[Any, Any, None]) -> None:
    """``asyncio.run`` without its one wait that can last forever: at the end, tasks still
    pending (runs abandoned after their timeout because they swallow cancellation) are
    cancelled once, given a second, and left behind with the closed loop."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        loop.run_until_complete(main)
    finally:
        try:
            pending = [task for task in asyncio.all_tasks(loop) if not task.done()]
            for task in pending:
                task.cancel()
            if pending:
                loop.run_until_complete(asyncio.wait(pending, timeout=CANCEL_GRACE_SECONDS))
            loop.run_until_complete(
                asyncio.wait_for(loop.shutdown_asyncgens(), CANCEL_GRACE_SECONDS)
            )
            loop.run_until_complete(
                asyncio.wait_for(loop.shutdown_default_executor(), CANCEL_GRACE_SECONDS)
            )
        except (TimeoutError, RuntimeError) as exc:
            log.warning("closing the event loop: %s", exc)
        finally:
            ABANDONED.update(task for task in asyncio.all_tasks(loop) if not task.done())
            asyncio.set_event_loop(None)
            loop.close()


def _interrupted(attempt: int, when: str) -> TraceFailed:
    """The (non-final) failure recorded for a run cut short by Ctrl-C."""
    return TraceFailed(
        error_type="Interrupted",
        error_message=f"the experiment was interrupted {when}",
        reason="interrupted",
        duration_ms=0.0,
        attempts=attempt,
    )
