"""The library API: the one frame every caller runs experiments through.

The command line, the pytest plugin and workers all call these; none rebuilds the frame.

- ``open_store(url)`` opens the event store (a SQLite path or a PostgreSQL URL).
- ``run_experiment(project, ...)`` resolves the project's config, records the experiment
  and writes its report; ``resume_experiment`` finishes an interrupted one;
  ``replay_experiment`` re-runs one (or one trace) from the log and compares.
- ``Workspace`` (``agentledger.workspace``) is the frame they share.

Nothing here prints or exits: progress goes to an ``ExperimentListener``, plans to an
``on_plan`` callback, and failures are ``AgentLedgerError`` subclasses.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agentledger.errors import ConfigError, ReplayError
from agentledger.workspace import (
    DEFAULT_STORE,
    Workspace,
    load_env,
    open_store,
    store_location,
)

__all__ = [
    "DEFAULT_STORE",
    "ReplayResult",
    "Workspace",
    "join_experiment",
    "load_env",
    "open_store",
    "replay_agent_session",
    "replay_experiment",
    "resume_experiment",
    "run_experiment",
    "store_location",
]

if TYPE_CHECKING:
    from agentledger.agents.session import SessionReplay
    from agentledger.eventstore.store import EventStore
    from agentledger.experiments.config import Overrides
    from agentledger.experiments.context import ToolApprover
    from agentledger.experiments.prepare import PreparedExperiment
    from agentledger.experiments.runner import (
        ExperimentListener,
        ExperimentResult,
    )
    from agentledger.projections.compare import ReplayRow
    from agentledger.replay.book import RecordMode, ReplaySource
    from agentledger.workers.coordination import WorkerResult


def __getattr__(name: str) -> Any:
    # ExperimentResult is the runner's own; re-exported lazily (the runner imports openai
    # machinery that a caller of open_store alone should not pay for).
    if name == "ExperimentResult":
        from agentledger.experiments.runner import ExperimentResult

        return ExperimentResult
    raise AttributeError(f"module 'agentledger.api' has no attribute {name!r}")


def run_experiment(
    project: str | os.PathLike[str] = ".",
    *,
    store: EventStore | str | os.PathLike[str] | None = None,
    config: str | None = None,
    overrides: Overrides | None = None,
    record_mode: str = "live",
    workers: int | None = None,
    lease_seconds: float | None = None,
    listener: ExperimentListener | None = None,
    approver: ToolApprover | None = None,
    supervisor_api_key: str | None = None,
    on_plan: Callable[[PreparedExperiment, ReplaySource | None], None] | None = None,
    handle_signals: bool = False,
    on_second_interrupt: Callable[[], None] | None = None,
    env: Mapping[str, str] | None = None,
) -> ExperimentResult:
    """Run the experiment of the project at ``project`` (``configs/simulation.yaml``, or
    ``config``), record it in ``store`` and write its report; returns how it ended.

    ``on_plan`` sees the checked plan before the first event is recorded (raise to stop).
    With ``workers`` the slots are shared through the store by that many local worker
    processes (and any ``agentledger worker`` that joins)."""
    if lease_seconds is not None and workers is None:
        raise ConfigError("--lease-seconds is the lease of worker processes; add --workers N")
    project_dir = Path(project).resolve()
    with Workspace(
        project_dir,
        store,
        listener=listener,
        handle_signals=handle_signals,
        on_second_interrupt=on_second_interrupt,
        env=env,
    ) as workspace:
        prepared, source = workspace.prepare(
            config, overrides, record_mode=record_mode, supervisor_api_key=supervisor_api_key
        )
        if on_plan is not None:
            on_plan(prepared, source)
        multi_turn = prepared.settings.multi_turn
        if multi_turn is None and overrides is not None and overrides.auto_approve_tools is False:
            raise ConfigError(
                "--manual-approve-tools asks about the tool calls of multi-turn conversations, "
                "and this experiment is single-turn (its tools run approved); add --multi-turn "
                "or drop --manual-approve-tools"
            )
        if multi_turn is not None and not multi_turn.auto_approve_tools:
            if approver is None:
                raise ConfigError(
                    "--manual-approve-tools asks about each tool call on a terminal, and stdin "
                    "is not one; use --auto-approve-tools"
                )
            if workers is not None:
                raise ConfigError(
                    "--workers runs in processes that cannot ask about tool calls; "
                    "use --auto-approve-tools"
                )
        if workers is None:
            return workspace.start(prepared, replay=source, approver=approver)
        return workspace.start_shared(
            prepared,
            workers,
            lease_seconds=lease_seconds,
            replay=source,
            supervisor_api_key=supervisor_api_key,
        )


def resume_experiment(
    experiment: str,
    project: str | os.PathLike[str] = ".",
    *,
    store: EventStore | str | os.PathLike[str] | None = None,
    parallel: int | None = None,
    workers: int | None = None,
    listener: ExperimentListener | None = None,
    handle_signals: bool = False,
    on_second_interrupt: Callable[[], None] | None = None,
) -> ExperimentResult:
    """Run the slots of an interrupted experiment that have no finished trace, then
    complete it (same id, same output folder) and write its report."""
    with Workspace(
        Path(project).resolve(),
        store,
        listener=listener,
        handle_signals=handle_signals,
        on_second_interrupt=on_second_interrupt,
        create=False,
    ) as workspace:
        return workspace.resume(experiment, parallel=parallel, workers=workers)


def join_experiment(
    experiment: str,
    project: str | os.PathLike[str] | None = None,
    *,
    store: EventStore | str | os.PathLike[str] | None = None,
    parallel: int | None = None,
    supervisor_api_key: str | None = None,
    listener: ExperimentListener | None = None,
    handle_signals: bool = False,
    on_second_interrupt: Callable[[], None] | None = None,
) -> WorkerResult:
    """Work on a shared experiment (started with ``workers``) as one more worker: claim and
    run its slots until none is left. ``project`` is where its project is on this machine
    (default: where it was started, if that exists here); the store must already exist."""
    from agentledger.projections.catalog import resolve_experiment
    from agentledger.workers.coordination import LogProgress, prepare_worker, run_worker

    project_dir = Path(project).resolve() if project is not None else None
    with Workspace(
        project_dir or Path.cwd(),
        store,
        handle_signals=handle_signals,
        on_second_interrupt=on_second_interrupt,
        live_refresh=None,
        create=False,
    ) as workspace:
        if supervisor_api_key:
            workspace.redactor.add_secret(supervisor_api_key)
        experiment_id = resolve_experiment(workspace.store, experiment).experiment_id
        started, prepared, replay = prepare_worker(
            workspace.store,
            experiment_id,
            workspace.env,
            parallel=parallel,
            project_dir=project_dir,
            supervisor_api_key=supervisor_api_key,
        )
        stop = threading.Event()
        watcher = None
        if listener is not None:
            progress = LogProgress(workspace.store, experiment_id, started.plan, listener)
            progress.start(Path(started.output_dir or prepared.settings.output_directory))
            watcher = threading.Thread(target=progress.follow, args=(stop,), daemon=True)
            watcher.start()
        try:
            return run_worker(workspace.runner(), workspace.store, started, prepared, replay)
        finally:
            stop.set()
            if watcher is not None:
                watcher.join()


@dataclass
class ReplayResult:
    """A replay of a recorded experiment: the new experiment, and every run's verdict."""

    source_id: str
    result: ExperimentResult
    rows: list[ReplayRow] = field(default_factory=list)

    @property
    def identical(self) -> bool:
        """Every run came out as recorded."""
        from agentledger.projections.compare import count_verdicts

        return count_verdicts(self.rows).all_identical


def replay_experiment(
    target: str,
    project: str | os.PathLike[str] = ".",
    *,
    store: EventStore | str | os.PathLike[str] | None = None,
    mode: str = "replay",
    project_dir: str | os.PathLike[str] | None = None,
    parallel: int | None = None,
    output_dir: str | os.PathLike[str] | None = None,
    listener: ExperimentListener | None = None,
    on_plan: Callable[[PreparedExperiment, str, int | None], None] | None = None,
    handle_signals: bool = False,
    on_second_interrupt: Callable[[], None] | None = None,
) -> ReplayResult:
    """Re-run a recorded experiment (id, name or output folder) or one of its traces with
    its recorded inputs, seeds and model answers, as a new experiment linked by
    ``replay_of``; compare every run with its recording.

    ``project`` is where the store is found by default; ``project_dir`` is where the
    recorded project is now, if it moved. ``mode`` is ``replay`` (a miss fails the run)
    or ``replay-or-live`` (a miss calls the live model and records it)."""
    from agentledger.replay.book import RecordMode

    record_mode = RecordMode.parse(mode, "--mode")
    if record_mode is RecordMode.LIVE:
        raise ReplayError("--mode live is not a replay; use replay or replay-or-live")
    moved_to = Path(project_dir).resolve() if project_dir is not None else None
    if moved_to is not None and not moved_to.is_dir():
        raise ReplayError(f"--project {project_dir}: not a directory")
    with contextlib.ExitStack() as stack:
        if record_mode is RecordMode.REPLAY:
            # Nothing goes live, but agents that build openai.OpenAI() need a key to
            # construct one: a placeholder for the length of the replay.
            stack.enter_context(_env_default("OPENAI_API_KEY", "replay-offline-no-key"))
        return _replay(
            target,
            Path(project).resolve(),
            store,
            record_mode,
            moved_to,
            parallel,
            output_dir,
            listener,
            on_plan,
            handle_signals,
            on_second_interrupt,
        )


@contextlib.contextmanager
def _env_default(name: str, value: str) -> Iterator[None]:
    """``os.environ[name]`` set to ``value`` for the block if it is not set already."""
    if name in os.environ:
        yield
        return
    os.environ[name] = value
    try:
        yield
    finally:
        os.environ.pop(name, None)


def _replay(
    target: str,
    project: Path,
    store: EventStore | str | os.PathLike[str] | None,
    record_mode: RecordMode,
    moved_to: Path | None,
    parallel: int | None,
    output_dir: str | os.PathLike[str] | None,
    listener: ExperimentListener | None,
    on_plan: Callable[[PreparedExperiment, str, int | None], None] | None,
    handle_signals: bool,
    on_second_interrupt: Callable[[], None] | None,
) -> ReplayResult:
    from agentledger.projections.compare import replay_verdicts
    from agentledger.projections.report import load_report
    from agentledger.replay.rerun import prepare_replay

    with Workspace(
        project,
        store,
        listener=listener,
        handle_signals=handle_signals,
        on_second_interrupt=on_second_interrupt,
        create=False,
    ) as workspace:
        experiment_id, slot = resolve_replay_target(workspace.store, target)
        prepared, source = prepare_replay(
            workspace.store,
            experiment_id,
            workspace.env,
            record_mode,
            slot=slot,
            project_dir=moved_to,
        )
        update: dict[str, Any] = {}
        if parallel is not None:
            update["parallel"] = parallel
        if output_dir is not None:
            update["output_directory"] = str(output_dir)
        if update:
            settings = prepared.settings.model_copy(update=update)
            prepared = dataclasses.replace(prepared, settings=settings)
        if on_plan is not None:
            on_plan(prepared, experiment_id, slot)
        result = workspace.start(prepared, replay=source)
        rows = replay_verdicts(
            load_report(workspace.store, experiment_id).traces,
            load_report(workspace.store, result.experiment_id).traces,
        )
    return ReplayResult(experiment_id, result, rows)


def replay_agent_session(
    session_id: str,
    project: str | os.PathLike[str] = ".",
    *,
    store: EventStore | str | os.PathLike[str] | None = None,
    mode: str = "replay",
    project_dir: str | os.PathLike[str] | None = None,
) -> SessionReplay | None:
    """Replay the recorded ``run agent`` / chat session ``session_id`` as a new session
    answered from its recording; None when the store has no such session."""
    from agentledger.agents.session import replay_session
    from agentledger.events.streams import session_stream
    from agentledger.replay.book import RecordMode

    record_mode = RecordMode.parse(mode, "--mode")
    moved_to = Path(project_dir).resolve() if project_dir is not None else None
    with Workspace(Path(project).resolve(), store, live_refresh=None, create=False) as workspace:
        if not workspace.store.read_stream(session_stream(session_id)):
            return None
        with contextlib.ExitStack() as stack:
            if record_mode is RecordMode.REPLAY:
                stack.enter_context(_env_default("OPENAI_API_KEY", "replay-offline-no-key"))
            return replay_session(workspace.store, session_id, workspace.env, record_mode, moved_to)


def resolve_replay_target(store: EventStore, ref: str) -> tuple[str, int | None]:
    """(experiment id, slot or None) of an EXPERIMENT or TRACE reference."""
    from agentledger.projections.catalog import resolve_experiment
    from agentledger.projections.errors import UnknownExperimentError
    from agentledger.replay.rerun import trace_slot

    found = trace_slot(store, ref)
    if found is not None:
        return found
    try:
        return resolve_experiment(store, ref).experiment_id, None
    except UnknownExperimentError as exc:
        raise UnknownExperimentError(f"{exc} (nor is there a trace {ref!r})") from None
