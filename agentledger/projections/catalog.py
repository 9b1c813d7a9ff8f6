"""Finding experiments and sessions in the log: listing them and resolving user references.

An experiment is referenced by its id, its unique name, or its output folder (whose
``summary.json`` names the id). Its first event, ``ExperimentStarted``, is version 1 of
stream ``experiment-<id>``; every event of the experiment carries its id as correlation id.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson

from agentledger.events.streams import (  # noqa: F401  (re-exported for agentledger.projections)
    EXPERIMENT_PREFIX,
    SESSION_PREFIX,
    TRACE_PREFIX,
    experiment_stream,
    session_stream,
    trace_stream,
)
from agentledger.eventstore.envelope import StoredEvent
from agentledger.eventstore.store import EventStore
from agentledger.projections.errors import UnknownExperimentError


@dataclass(frozen=True)
class ExperimentRef:
    """An experiment as listed: id, name and when it started."""

    experiment_id: str
    name: str
    started_at: str
    position: int


def experiment_starts(store: EventStore) -> Iterator[StoredEvent]:
    """The ``ExperimentStarted`` event of every experiment, in start order."""
    yield from store.read_all(types=["ExperimentStarted"])


def list_experiments(store: EventStore) -> list[ExperimentRef]:
    """Every experiment in the store, oldest first."""
    from agentledger.projections.folds import malformed

    refs = []
    for ev in experiment_starts(store):
        try:
            experiment_id, name = ev.data["experiment_id"], ev.data.get("name", "")
            if not isinstance(experiment_id, str) or not isinstance(name, str):
                raise TypeError("its experiment_id or name is not text")
        except (KeyError, TypeError, AttributeError) as exc:  # a damaged or tampered log
            raise malformed(ev, exc) from None
        refs.append(ExperimentRef(experiment_id, name, ev.recorded_at, ev.position))
    return refs


def resolve_experiment(store: EventStore, ref: str) -> ExperimentRef:
    """The experiment named by ``ref``: an id, a unique name, or an output folder."""
    experiments = list_experiments(store)
    by_id = {e.experiment_id: e for e in experiments}
    if ref in by_id:
        return by_id[ref]
    folder = Path(ref)
    summary = folder / "summary.json"
    if folder.is_dir():
        if not summary.is_file():
            raise UnknownExperimentError(
                f"{folder} is not an experiment output folder (no summary.json)"
            )
        try:
            experiment_id = orjson.loads(summary.read_bytes()).get("experiment_id")
        except (orjson.JSONDecodeError, AttributeError):
            raise UnknownExperimentError(f"{summary} is not a valid summary.json") from None
        if experiment_id in by_id:
            return by_id[experiment_id]
        raise UnknownExperimentError(
            f"experiment {experiment_id} of folder {folder} is not in store "
            f"{store.location.display()}; pass the --store it was recorded in"
        )
    named = [e for e in experiments if e.name == ref]
    if len(named) == 1:
        return named[0]
    if len(named) > 1:
        ids = ", ".join(e.experiment_id for e in named)
        raise UnknownExperimentError(f"several experiments are named {ref!r} ({ids}); use an id")
    hint = (
        f"; recent: {', '.join(e.experiment_id for e in experiments[-3:])}"
        if experiments
        else "; the store has no experiments yet"
    )
    raise UnknownExperimentError(f"no experiment {ref!r} in store {store.location.display()}{hint}")
