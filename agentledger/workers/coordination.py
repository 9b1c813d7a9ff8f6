"""Experiments shared by workers: many processes, on one machine or many, through the store.

An experiment started for workers puts its slots on the board (``eventstore.slots``) before
its ``ExperimentStarted``. Workers — local processes forked by the starting process, and
``agentledger worker`` on any machine that reaches the same store — claim slots under a
lease, run them exactly as a single process would, and keep their leases alive while they
run. A slot whose holder stopped renewing is claimed again once the lease is over; the new
holder starts its trace again at the stream's head, so anything the old holder still
appends is refused by optimistic concurrency (and recorded as ``SlotResultRejected``).

No process is in charge of the experiment's end: whoever sees every slot finished records
``ExperimentCompleted``, guarded by the experiment stream's version so it happens once.
Progress is counted from the log, so every process sees every worker's runs.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from multiprocessing.process import BaseProcess
from pathlib import Path
from types import FrameType
from typing import Any

from agentledger.errors import AgentLedgerError, ResumeError, WorkerError
from agentledger.events.payloads import (
    ExperimentInterrupted,
    ExperimentPlan,
    ExperimentResumed,
    ExperimentStarted,
    final_outcome,
)
from agentledger.events.streams import TRACE_PREFIX, experiment_stream
from agentledger.eventstore.errors import ConcurrencyError, StoreError
from agentledger.eventstore.redaction import Redactor
from agentledger.eventstore.slots import SlotBoard
from agentledger.eventstore.store import EventStore
from agentledger.experiments.outcomes import FINAL_TYPES, completed_event
from agentledger.experiments.plan import iter_slots
from agentledger.experiments.prepare import PreparedExperiment, prepare_recorded
from agentledger.experiments.runner import ExperimentListener, ExperimentResult, ExperimentRunner
from agentledger.models.specs import provider_keys
from agentledger.replay.book import RecordMode, ReplaySource
from agentledger.replay.rerun import load_source, recorded_settings, recorded_start
from agentledger.workers.claims import ClaimFeed

log = logging.getLogger("agentledger.workers")

_COMPLETE_TRIES = 8
WATCH_SECONDS = 0.2
"""How often the starting process reads the log for progress."""


class LogProgress:
    """An experiment's progress as the log tells it, whichever processes run it: reports
    every trace that reaches its final event to ``listener``."""

    def __init__(
        self,
        store: EventStore,
        experiment_id: str,
        plan: ExperimentPlan,
        listener: ExperimentListener,
    ) -> None:
        self._store = store
        self.experiment_id = experiment_id
        self.total = plan.total_runs
        self._slots = {slot.trace_id: slot for slot in iter_slots(experiment_id, plan)}
        self._listener = listener
        self._outcome: dict[str, bool] = {}
        self._after = 0

    @property
    def finished(self) -> int:
        return len(self._outcome)

    @property
    def successful(self) -> int:
        return sum(self._outcome.values())

    def start(self, output_dir: Path) -> None:
        """Read what is already finished, then tell the listener where things stand."""
        self.poll(report=False)
        self._listener.started(self.experiment_id, output_dir, self.total, self.finished)

    def poll(self, *, report: bool = True) -> None:
        """Read the log's new trace outcomes."""
        events = self._store.read_all(
            after=self._after, correlation_id=self.experiment_id, types=FINAL_TYPES
        )
        for ev in events:
            self._after = ev.position
            trace_id = ev.stream_id[len(TRACE_PREFIX) :]
            final = final_outcome(ev.type, ev.data)
            if final is None or trace_id in self._outcome:
                continue
            self._outcome[trace_id] = final
            slot = self._slots.get(trace_id)
            if report and slot is not None:
                self._listener.finished_run(slot, final)

    def follow(self, stop: threading.Event, every: float = 0.5) -> None:
        """Poll until ``stop`` is set (run it on a thread)."""
        while not stop.wait(every):
            try:
                self.poll()
            except StoreError as exc:
                log.warning("reading progress failed (will retry): %s", exc)


def complete_if_done(store: EventStore, experiment_id: str, total: int) -> bool:
    """Record ``ExperimentCompleted`` if every slot is done and nobody has yet; True when
    the experiment is complete (by this call or before).

    A slot is done on the board only once its final event is committed, and a shared
    slot's trace has exactly one final event (the stream version fences off late
    holders), so the runs that succeeded are the ``TraceCompleted`` events."""
    stream = experiment_stream(experiment_id)
    board = SlotBoard(store)
    for _ in range(_COMPLETE_TRIES):
        history = store.read_stream(stream)
        if any(ev.type == "ExperimentCompleted" for ev in history):
            return True
        if board.counts(experiment_id).remaining:
            return False
        successful = store.count(correlation_id=experiment_id, types=["TraceCompleted"])
        event = completed_event(store, experiment_id, total, successful, total - successful)
        try:
            store.append(
                stream,
                [event],
                expected_version=history[-1].stream_version,
                metadata={"correlation_id": experiment_id},
            )
        except ConcurrencyError:
            continue  # another process recorded something (maybe the completion): look again
        return True
    return False


def shared_start(store: EventStore, experiment_id: str) -> ExperimentStarted:
    """The ``ExperimentStarted`` of an experiment whose slots are shared by workers."""
    try:
        started = recorded_start(store, experiment_id)
    except AgentLedgerError:
        raise WorkerError(f"no experiment {experiment_id} in the store") from None
    if started.lease_seconds is None or not SlotBoard(store).exists(experiment_id):
        raise WorkerError(
            f"experiment {experiment_id} runs in one process, its slots are not shared; "
            "start experiments for workers with `run experiment --workers N`"
        )
    return started


def recording_of(store: EventStore, started: ExperimentStarted) -> ReplaySource | None:
    """The recording a replayed experiment answers from, to go on the same way."""
    if started.replay_of is None:
        return None
    return load_source(store, started.replay_of, RecordMode(started.record_mode))


@dataclass
class WorkerResult:
    """What one worker did."""

    experiment_id: str
    owner: str
    successful: int
    failed: int
    rejected: int
    """Results refused because the slot had been taken over by another worker."""
    taken_over: int
    """Slots this worker took over from one whose lease ran out."""
    interrupted: bool
    completed: bool
    """Whether the experiment is complete (not only this worker's part)."""

    @property
    def ran(self) -> int:
        """Runs finished here (refused results included)."""
        return self.successful + self.failed


def prepare_worker(
    store: EventStore,
    experiment_id: str,
    env: Mapping[str, str],
    *,
    parallel: int | None = None,
    project_dir: Path | None = None,
    supervisor_api_key: str | None = None,
) -> tuple[ExperimentStarted, PreparedExperiment, ReplaySource | None]:
    """A shared experiment set up to run here: its recorded settings and plan, with this
    worker's ``parallel`` and, if the project lives elsewhere on this machine, its
    ``project_dir``."""
    started = shared_start(store, experiment_id)
    settings = recorded_settings(started, project_dir)
    if parallel is not None:
        settings = settings.model_copy(update={"parallel": parallel})
    for key in provider_keys(env):
        store.redactor.add_secret(key)
    replay = recording_of(store, started)
    offline = replay is not None and replay.mode is RecordMode.REPLAY
    prepared = prepare_recorded(
        settings, started.plan, env, offline=offline, supervisor_api_key=supervisor_api_key
    )
    return started, prepared, replay


def run_worker(
    runner: ExperimentRunner,
    store: EventStore,
    started: ExperimentStarted,
    prepared: PreparedExperiment,
    replay: ReplaySource | None = None,
    *,
    write_report: bool | Callable[[], bool] = True,
) -> WorkerResult:
    """Claim and run slots of a shared experiment until none is left; then complete the
    experiment if every slot is finished, and write its report if ``write_report`` (or
    what it returns then) says so."""
    assert started.lease_seconds is not None
    experiment_id = started.experiment_id
    total = started.plan.total_runs
    output_dir = Path(started.output_dir or prepared.settings.output_directory)
    result = ExperimentResult(experiment_id, started.name, output_dir, total)
    feed = ClaimFeed(
        store,
        experiment_id,
        prepared.plan,
        lease_seconds=started.lease_seconds,
        batch=max(1, prepared.settings.parallel // 4),
    )
    with feed:
        runner.work(prepared, result, feed, replay=replay)
    completed = not result.interrupted and complete_if_done(store, experiment_id, total)
    if completed and (write_report() if callable(write_report) else write_report):
        _write_report(store, experiment_id, output_dir)
    return WorkerResult(
        experiment_id,
        feed.owner,
        successful=result.successful,
        failed=result.failed,
        rejected=feed.rejected,
        taken_over=feed.taken_over,
        interrupted=result.interrupted,
        completed=completed,
    )


def _write_report(store: EventStore, experiment_id: str, output_dir: Path) -> None:
    """The experiment's report, written from the log (atomically per file: a starting
    process writing the same report at once writes the same bytes)."""
    from agentledger.projections.report import load_report
    from agentledger.projections.writers import write_report

    try:
        write_report(load_report(store, experiment_id), output_dir)
    except AgentLedgerError as exc:
        log.error("writing the report of %s failed: %s", experiment_id, exc)


# --- local workers and the starting process -------------------------------------------------


def start_local_workers(
    store: EventStore,
    experiment_id: str,
    count: int,
    *,
    parallel: int | None,
    env: Mapping[str, str],
    supervisor_api_key: str | None = None,
) -> list[BaseProcess]:
    """Start ``count`` worker processes on this machine (forked where the platform can)."""
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    context: Any = multiprocessing.get_context(method)
    # A forked child must inherit no open SQLite file: when it drops such a connection,
    # closing the descriptor releases every POSIX lock the child holds on the database,
    # its own connections' included, and another process may then checkpoint and delete
    # the WAL the child is still writing to (losing its commits).
    store.release_connections()
    processes: list[BaseProcess] = []
    for number in range(count):
        process = context.Process(
            target=_local_worker,
            args=(store.url, store.redactor, experiment_id, parallel, dict(env)),
            kwargs={"supervisor_api_key": supervisor_api_key},
            name=f"agentledger-worker-{number + 1}",
        )
        process.start()
        processes.append(process)
    return processes


def _local_worker(
    url: str,
    redactor: Redactor,
    experiment_id: str,
    parallel: int | None,
    env: dict[str, str],
    *,
    supervisor_api_key: str | None = None,
) -> None:
    """A local worker process: its own process group (a terminal's Ctrl-C reaches the
    starting process, which passes it on once), its own store connections."""
    os.setpgid(0, 0)
    parent = os.getppid()
    code = 0
    try:
        with EventStore.open(url, redactor=redactor, schema="require") as store:
            started, prepared, replay = prepare_worker(
                store, experiment_id, env, parallel=parallel, supervisor_api_key=supervisor_api_key
            )
            runner = ExperimentRunner(
                store, handle_signals=True, on_second_interrupt=partial(os._exit, 130)
            )
            # The starting process writes the report, unless it died: then whoever
            # completes the experiment does.
            outcome = run_worker(
                runner,
                store,
                started,
                prepared,
                replay,
                write_report=lambda: os.getppid() != parent,
            )
            code = 130 if outcome.interrupted else 0
    except AgentLedgerError as exc:
        log.error("worker %d: %s", os.getpid(), exc)
        code = 2
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def resume_shared(store: EventStore, experiment_id: str) -> ExperimentStarted:
    """Record that a shared experiment goes on (its unfinished slots stay on the board)."""
    started = shared_start(store, experiment_id)
    history = store.read_stream(experiment_stream(experiment_id))
    if any(ev.type == "ExperimentCompleted" for ev in history):
        raise ResumeError(f"experiment {experiment_id} already completed; start a new one instead")
    remaining = SlotBoard(store).counts(experiment_id).remaining
    store.append(
        experiment_stream(experiment_id),
        [ExperimentResumed(experiment_id=experiment_id, remaining=remaining)],
        metadata={"correlation_id": experiment_id},
    )
    return started


def coordinate(
    store: EventStore,
    result: ExperimentResult,
    processes: list[BaseProcess],
    progress: LogProgress,
    *,
    poll_seconds: float = WATCH_SECONDS,
) -> ExperimentResult:
    """Watch a shared experiment from the process that started it: progress from the log,
    until every slot is finished, or the local workers are gone and no worker anywhere
    holds a live lease. Ctrl-C (or SIGTERM) is passed on to each local worker. Returns
    how it ended; an unfinished experiment is recorded as interrupted."""
    interrupts = 0

    def on_signal(signum: int, frame: FrameType | None) -> None:
        nonlocal interrupts
        interrupts += 1
        if interrupts == 1:
            log.warning("interrupted: telling the workers to stop (Ctrl-C again to quit them)")
        for process in processes:
            if process.is_alive() and process.pid is not None:
                os.kill(process.pid, signal.SIGTERM)

    handlers = _install(on_signal)
    board = SlotBoard(store)
    reported: set[int] = set()
    try:
        while True:
            progress.poll()
            if progress.finished >= result.total:
                break
            for process in processes:
                if process.exitcode not in (None, 0, 130) and id(process) not in reported:
                    reported.add(id(process))
                    log.warning(
                        "worker %s (pid %s) stopped with status %s; its slots go to the "
                        "others when its leases run out",
                        process.name,
                        process.pid,
                        process.exitcode,
                    )
            workers_gone = not any(p.is_alive() for p in processes)
            if workers_gone and (interrupts or board.counts(result.experiment_id).running == 0):
                break
            time.sleep(poll_seconds)
        for process in processes:
            process.join()
    finally:
        _restore(handlers)
    progress.poll()
    result.successful = progress.successful
    result.failed = progress.finished - progress.successful
    if complete_if_done(store, result.experiment_id, result.total):
        return result
    result.interrupted = True
    store.append(
        experiment_stream(result.experiment_id),
        [
            ExperimentInterrupted(
                experiment_id=result.experiment_id,
                reason="interrupted" if interrupts else "workers stopped",
                completed=progress.finished,
                remaining=result.total - progress.finished,
            )
        ],
        metadata={"correlation_id": result.experiment_id},
    )
    return result


_Handler = Any


def _install(handler: _Handler) -> dict[int, _Handler]:
    if threading.current_thread() is not threading.main_thread():
        return {}
    return {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}


def _restore(handlers: dict[int, _Handler]) -> None:
    for sig, handler in handlers.items():
        signal.signal(sig, handler)
