"""Setting up a replay: the recorded experiment's settings, plan, target and recordings.

``prepare_replay`` turns a recorded experiment (or one trace of it) into a
``PreparedExperiment`` plus the ``ReplaySource`` its runs are answered from; the runner
then executes it as a new experiment with ``replay_of`` set. ``latest_named`` finds the
recording ``run experiment --record-mode replay`` answers from.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from agentledger.errors import ConfigError, ReplayError
from agentledger.events.payloads import ExperimentStarted
from agentledger.events.streams import (
    TRACE_PREFIX,
    experiment_stream,
    experiment_traces_prefix,
    trace_stream,
)
from agentledger.eventstore.store import EventStore
from agentledger.experiments.config import ExperimentSettings
from agentledger.experiments.plan import iter_slots, slot_key
from agentledger.experiments.prepare import PreparedExperiment, prepare_recorded
from agentledger.replay.book import RecordMode, ReplayBook, ReplaySource, SlotKey, build_books


def recorded_start(store: EventStore, experiment_id: str) -> ExperimentStarted:
    """The ``ExperimentStarted`` of a recorded experiment."""
    history = store.read_stream(experiment_stream(experiment_id))
    if not history or not isinstance(history[0].payload, ExperimentStarted):
        raise ReplayError(f"no experiment {experiment_id} in the store to replay")
    return history[0].payload


def trace_slot(store: EventStore, trace_id: str) -> tuple[str, int] | None:
    """(experiment id, slot number) of a recorded trace, or None if there is no such trace."""
    for ev in store.read_stream(trace_stream(trace_id)):
        if ev.type == "TraceStarted" and ev.data.get("experiment_id"):
            return ev.data["experiment_id"], int(ev.data["slot"])
    return None


def load_source(store: EventStore, experiment_id: str, mode: RecordMode) -> ReplaySource:
    """The recordings of every run of ``experiment_id``, keyed by what each slot runs."""
    started = recorded_start(store, experiment_id)
    books = build_books(store.read_prefix(experiment_traces_prefix(experiment_id)), TRACE_PREFIX)
    by_key: dict[SlotKey, ReplayBook] = {}
    for slot in iter_slots(experiment_id, started.plan):
        book = books.get(trace_stream(slot.trace_id))
        if book is not None:
            by_key[slot_key(slot)] = book
    return ReplaySource(experiment_id, mode, by_key)


def latest_named(store: EventStore, name: str, before: str | None = None) -> str | None:
    """The id of the most recent experiment called ``name`` that is not a replay."""
    latest = None
    for ev in store.read_all(types=["ExperimentStarted"]):
        if ev.data.get("name") == name and not ev.data.get("replay_of"):
            if ev.data["experiment_id"] == before:
                break
            latest = ev.data["experiment_id"]
    return latest


def rebase(settings: ExperimentSettings, project_dir: Path) -> ExperimentSettings:
    """``settings`` recorded for a project elsewhere (another machine, a CI checkout), with
    every path under the recorded project directory moved under ``project_dir``."""
    old = Path(settings.project_dir)
    new = project_dir.resolve()

    def moved(value: str) -> str:
        path = Path(value)
        return str(new / path.relative_to(old)) if path.is_relative_to(old) else value

    return settings.model_copy(
        update={
            "project_dir": str(new),
            "config_file": moved(settings.config_file),
            "working_directory": moved(settings.working_directory),
            "python_path": [moved(p) for p in settings.python_path],
            "inputs_file": moved(settings.inputs_file),
            "output_directory": moved(settings.output_directory),
        }
    )


def recorded_settings(started: ExperimentStarted, project_dir: Path | None) -> ExperimentSettings:
    """The settings an experiment was recorded with, for its project where it is now:
    moved under ``project_dir`` if given, else where it was (which must exist here)."""
    settings = ExperimentSettings.model_validate(started.config)
    if project_dir is not None:
        return rebase(settings, project_dir)
    if not Path(settings.project_dir).is_dir():
        raise ConfigError(
            f"the project of experiment {started.experiment_id} was at {settings.project_dir}, "
            "which does not exist here; pass --project DIR where it is now"
        )
    return settings


def prepare_replay(
    store: EventStore,
    experiment_id: str,
    env: Mapping[str, str],
    mode: RecordMode,
    *,
    slot: int | None = None,
    project_dir: Path | None = None,
) -> tuple[PreparedExperiment, ReplaySource]:
    """The recorded experiment (or its run ``slot``) set up to run again with its model
    calls answered from the log. Pure ``replay`` needs no key: nothing goes live.
    ``project_dir`` is where the project is now, if it moved since it was recorded."""
    if mode is RecordMode.LIVE:
        raise ReplayError("a replay answers from the log: use --mode replay or replay-or-live")
    started = recorded_start(store, experiment_id)
    settings = recorded_settings(started, project_dir)
    settings = settings.model_copy(update={"name": f"{started.name}-replay"})
    plan = started.plan
    if slot is not None:
        plan = plan.model_copy(update={"only_slots": [slot], "total_runs": 1})
    prepared = prepare_recorded(settings, plan, env, offline=mode is RecordMode.REPLAY)
    return prepared, load_source(store, experiment_id, mode)
