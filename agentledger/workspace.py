"""The frame every run of agents goes through: environment, store, recording, reports.

A ``Workspace`` holds the project's environment (``.env.local`` and ``.env`` loaded under
the real one), the store with every provider key registered as a secret, the hook that
records the ``openai`` clients agents build themselves, the live report while an
experiment runs, and the final report written from the log. ``agentledger.api`` builds
its calls on it; nothing here prints or exits.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agentledger import heap
from agentledger.errors import ConfigError, ResumeError
from agentledger.eventstore.errors import StoreUnavailableError

if TYPE_CHECKING:
    from agentledger.eventstore.redaction import Redactor
    from agentledger.eventstore.store import EventStore
    from agentledger.experiments.config import Overrides
    from agentledger.experiments.context import ToolApprover
    from agentledger.experiments.prepare import PreparedExperiment
    from agentledger.experiments.runner import (
        ExperimentListener,
        ExperimentResult,
        ExperimentRunner,
    )
    from agentledger.replay.book import ReplaySource

DEFAULT_STORE = Path(".agentledger") / "ledger.db"
"""Where a project's store lives unless ``--store`` / ``AGENTLEDGER_STORE`` says otherwise."""
LIVE_REFRESH_SECONDS = 5.0
"""How often the output folder is brought up to date while an experiment runs."""


def store_location(url: str | os.PathLike[str] | None, project_dir: Path | None = None) -> str:
    """``url``, else ``AGENTLEDGER_STORE``, else ``.agentledger/ledger.db`` in the project."""
    if url:
        return str(url)
    return os.environ.get("AGENTLEDGER_STORE") or str((project_dir or Path.cwd()) / DEFAULT_STORE)


def open_store(
    url: str | os.PathLike[str] | None = None,
    *,
    project_dir: Path | None = None,
    create: bool = True,
    schema: str = "upgrade",
    readonly: bool = False,
    redactor: Redactor | None = None,
) -> EventStore:
    """Open the event store at ``url`` (see ``store_location`` for the default), creating
    and migrating it unless ``create=False`` / ``schema="require"``."""
    from agentledger.eventstore import EventStore

    return EventStore.open(
        store_location(url, project_dir),
        create=create,
        schema=schema,
        readonly=readonly,
        redactor=redactor,
    )


def load_env(project_dir: Path) -> dict[str, str]:
    """The environment, with the project's ``.env.local`` and ``.env`` files (if any)
    loaded under it: variables already set win. Loaded into ``os.environ`` too, for the
    clients agents build themselves."""
    from dotenv import load_dotenv

    load_dotenv(project_dir / ".env.local", override=False)
    load_dotenv(project_dir / ".env", override=False)
    return dict(os.environ)


class _CombinedListener:
    """Hands progress to the caller's listener and starts the live report on ``started``."""

    def __init__(self, listener: ExperimentListener | None, live: _LiveRefresher) -> None:
        self._listener = listener
        self._live = live

    def started(self, experiment_id: str, output_dir: Path, total: int, done: int) -> None:
        self._live.attach(experiment_id, output_dir, total)
        if self._listener is not None:
            self._listener.started(experiment_id, output_dir, total, done)

    def finished_run(self, slot: Any, ok: bool) -> None:
        if self._listener is not None:
            self._listener.finished_run(slot, ok)


class _LiveRefresher:
    """While an experiment runs, a thread keeps its output folder's files current."""

    def __init__(self, workspace: Workspace, every: float | None) -> None:
        self._workspace = workspace
        self._every = every
        self._stop = threading.Event()
        self._report: Any = None
        self._attached: tuple[str, Path, int] | None = None
        self._thread: threading.Thread | None = None

    def attach(self, experiment_id: str, folder: Path, total: int) -> None:
        if self._every is not None:
            self._report, self._attached = None, (experiment_id, folder, total)

    def _loop(self) -> None:
        assert self._every is not None
        while not self._stop.wait(self._every):
            if self._report is None and self._attached is not None:
                # Made at the first refresh: an experiment that ends sooner never loads it.
                from agentledger.projections.live import LiveReport

                self._report = LiveReport(self._workspace.store, *self._attached)
            if self._report is not None:
                self._report.refresh()

    def __enter__(self) -> _LiveRefresher:
        if self._every is not None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name="agentledger-live", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None


class Workspace:
    """The frame of every call that executes an experiment (see the module docstring).

    ``store`` is an open ``EventStore`` (kept open) or a URL / path / None (opened here,
    closed on exit). ``handle_signals`` makes Ctrl-C interrupt the experiment cleanly
    (record ``ExperimentInterrupted``); ``on_second_interrupt`` runs on a second one.
    ``live_refresh`` is how often the output folder is refreshed while it runs (None: only
    at the end).
    """

    def __init__(
        self,
        project_dir: Path,
        store: EventStore | str | os.PathLike[str] | None = None,
        *,
        listener: ExperimentListener | None = None,
        handle_signals: bool = False,
        on_second_interrupt: Callable[[], None] | None = None,
        live_refresh: float | None = LIVE_REFRESH_SECONDS,
        env: Mapping[str, str] | None = None,
        create: bool = True,
    ) -> None:
        from agentledger.eventstore.redaction import Redactor
        from agentledger.eventstore.store import EventStore
        from agentledger.models.specs import provider_keys

        self.project_dir = project_dir
        self.env = {**load_env(project_dir), **(env or {})}
        self._owns_store = not isinstance(store, EventStore)
        self._store: EventStore | None = store if isinstance(store, EventStore) else None
        self._location = None if isinstance(store, EventStore) else store
        self._create = create
        self.redactor = self._store.redactor if self._store is not None else Redactor()
        for key in provider_keys(self.env):
            self.redactor.add_secret(key)
        self._live = _LiveRefresher(self, live_refresh)
        self.listener = _CombinedListener(listener, self._live)
        self._handle_signals = handle_signals
        self._on_second_interrupt = on_second_interrupt
        self._cleanup = contextlib.ExitStack()

    def __enter__(self) -> Workspace:
        from agentledger.models.client_hook import record_default_clients

        # Held from target import on, so clients an agent builds at module level record too.
        self._cleanup.enter_context(record_default_clients(self.redactor))
        return self

    def __exit__(self, *exc: object) -> None:
        self._cleanup.close()
        if self._owns_store and self._store is not None:
            self._store.close()

    @property
    def store(self) -> EventStore:
        """The store, opened on first use: a command that fails before it needs one (a
        missing config, say) leaves no new store behind."""
        if self._store is None:
            self._store = open_store(
                self._location,
                project_dir=self.project_dir,
                create=self._create,
                redactor=self.redactor,
            )
        return self._store

    # --- planning -------------------------------------------------------------------------

    def prepare(
        self,
        config: str | None = None,
        overrides: Overrides | None = None,
        *,
        record_mode: str = "live",
        supervisor_api_key: str | None = None,
    ) -> tuple[PreparedExperiment, ReplaySource | None]:
        """Resolve and check the project's experiment (config, inputs, target, model) and,
        for a replay mode, the earlier experiment of the same name to answer from."""
        from agentledger.experiments.config import Overrides, resolve_settings
        from agentledger.experiments.prepare import prepare
        from agentledger.replay.book import RecordMode

        mode = RecordMode.parse(record_mode)
        settings = resolve_settings(self.project_dir, config, overrides or Overrides(), self.env)
        source = None
        if mode is not RecordMode.LIVE:
            source = self._recording_for(settings.name, mode)
        if supervisor_api_key:
            self.redactor.add_secret(supervisor_api_key)
        prepared = prepare(
            settings,
            self.env,
            offline=mode is RecordMode.REPLAY,
            store=self.store,
            supervisor_api_key=supervisor_api_key,
        )
        heap.settle()  # the agent is loaded: what start-up made lives on (see ``heap``)
        return prepared, source

    def _recording_for(self, name: str, mode: Any) -> ReplaySource:
        from agentledger.replay.rerun import latest_named, load_source

        source_id = latest_named(self.store, name)
        if source_id is None:
            raise ConfigError(
                f"--record-mode {mode.value}: no earlier experiment named {name!r} in the store "
                "to answer from; run it once with --record-mode live"
            )
        return load_source(self.store, source_id, mode)

    # --- running --------------------------------------------------------------------------

    def runner(self, approver: ToolApprover | None = None) -> ExperimentRunner:
        """An experiment runner on this workspace's store, listener and signal handling."""
        from agentledger.experiments.runner import ExperimentRunner

        return ExperimentRunner(
            self.store,
            self.listener,
            handle_signals=self._handle_signals,
            on_second_interrupt=self._on_second_interrupt,
            approver=approver,
        )

    def start(
        self,
        prepared: PreparedExperiment,
        *,
        replay: ReplaySource | None = None,
        approver: ToolApprover | None = None,
    ) -> ExperimentResult:
        """Run a prepared experiment in this process; the report is written at the end."""
        with self._live:
            result = self.runner(approver).start(prepared, replay=replay)
        return self.finish(result)

    def start_shared(
        self,
        prepared: PreparedExperiment,
        workers: int,
        *,
        lease_seconds: float | None = None,
        replay: ReplaySource | None = None,
        supervisor_api_key: str | None = None,
    ) -> ExperimentResult:
        """Put the experiment's slots on the board, start ``workers`` local worker
        processes, and follow its progress in the log until it ends."""
        from agentledger.experiments.runner import ExperimentRunner
        from agentledger.workers.claims import LEASE_SECONDS

        runner = ExperimentRunner(self.store)
        result = runner.begin(
            prepared,
            replay=replay,
            workers=workers,
            lease_seconds=lease_seconds or LEASE_SECONDS,
        )
        return self._watch(
            result, workers, prepared.settings.parallel, supervisor_api_key, prepared.plan
        )

    def resume(
        self, experiment: str, *, parallel: int | None = None, workers: int | None = None
    ) -> ExperimentResult:
        """Go on with an unfinished experiment (id, name or output folder): in this
        process, or with local workers if its slots are shared."""
        from agentledger.projections.catalog import resolve_experiment
        from agentledger.replay.rerun import recorded_start
        from agentledger.workers.coordination import recording_of

        heap.settle()
        try:
            store = self.store
        except StoreUnavailableError as exc:
            raise ResumeError(f"no experiment {experiment!r} in store: {exc}") from None
        experiment_id = resolve_experiment(store, experiment).experiment_id
        started = recorded_start(self.store, experiment_id)
        if started.lease_seconds is None and workers is not None:
            raise ResumeError(
                f"experiment {experiment_id} was started in one process; resume it without "
                "--workers"
            )
        completed = self._completed(experiment_id, started)
        if completed is not None:
            return self.finish(completed)
        if started.lease_seconds is not None:
            return self._resume_shared(experiment_id, workers or started.workers or 1, parallel)
        source = recording_of(self.store, started)
        with self._live:
            result = self.runner().resume(experiment_id, self.env, parallel=parallel, replay=source)
        return self.finish(result)

    def _completed(self, experiment_id: str, started: Any) -> ExperimentResult | None:
        """The result of an experiment that is already completed (its workers may have
        finished it after the starting process died), or None."""
        from agentledger.events.payloads import ExperimentCompleted
        from agentledger.events.streams import experiment_stream
        from agentledger.experiments.runner import ExperimentResult

        for event in self.store.read_stream(experiment_stream(experiment_id)):
            done = event.payload
            if isinstance(done, ExperimentCompleted):
                output_dir = Path(started.output_dir or ".")
                return ExperimentResult(
                    experiment_id,
                    started.name,
                    output_dir,
                    started.plan.total_runs,
                    successful=done.successful,
                    failed=done.failed,
                    already_completed=True,
                )
        return None

    def _resume_shared(
        self, experiment_id: str, workers: int, parallel: int | None
    ) -> ExperimentResult:
        from agentledger.experiments.runner import ExperimentResult
        from agentledger.workers.coordination import resume_shared

        started = resume_shared(self.store, experiment_id)
        output_dir = Path(started.output_dir or ".")
        output_dir.mkdir(parents=True, exist_ok=True)
        result = ExperimentResult(experiment_id, started.name, output_dir, started.plan.total_runs)
        return self._watch(result, workers, parallel, None, started.plan)

    def _watch(
        self,
        result: ExperimentResult,
        workers: int,
        parallel: int | None,
        supervisor_api_key: str | None,
        plan: Any,
    ) -> ExperimentResult:
        from agentledger.workers.coordination import LogProgress, coordinate, start_local_workers

        # Forked before this process starts any thread of its own (the live report's).
        processes = start_local_workers(
            self.store,
            result.experiment_id,
            workers,
            parallel=parallel,
            env=self.env,
            supervisor_api_key=supervisor_api_key,
        )
        with self._live:
            progress = LogProgress(self.store, result.experiment_id, plan, self.listener)
            progress.start(result.output_dir)
            result = coordinate(self.store, result, processes, progress)
        return self.finish(result)

    def finish(self, result: ExperimentResult) -> ExperimentResult:
        """Write the experiment's report from the log into its output folder."""
        from agentledger.projections.report import load_report
        from agentledger.projections.writers import write_report

        write_report(load_report(self.store, result.experiment_id), result.output_dir)
        return result
