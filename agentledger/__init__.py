"""agentledger: run, record, audit and replay AI agents on an immutable event log.

The public API (re-exports only, loaded on first use so that importing a submodule, as the
command line does at start-up, stays cheap):

- ``open_store(url)``: the event store (SQLite file or PostgreSQL URL).
- ``run_experiment(project, ...)``, ``resume_experiment(...)``, ``replay_experiment(...)``: the
  library calls behind ``agentledger run experiment``, ``--resume`` and ``replay``.
- ``RunContext`` / ``current_context()``: what an agent's ``ctx`` parameter receives.
- ``record_args`` / ``recorded_args``: capture production call arguments for replay.
- ``__version__``: the installed version, recorded in every event's metadata.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agentledger.api import (
        ExperimentResult,
        ReplayResult,
        open_store,
        replay_experiment,
        resume_experiment,
        run_experiment,
    )
    from agentledger.experiments.context import RunContext, current_context
    from agentledger.replay.args import record_args, recorded_args

_EXPORTS = {
    "ExperimentResult": "agentledger.api",
    "ReplayResult": "agentledger.api",
    "open_store": "agentledger.api",
    "replay_experiment": "agentledger.api",
    "resume_experiment": "agentledger.api",
    "run_experiment": "agentledger.api",
    "RunContext": "agentledger.experiments.context",
    "current_context": "agentledger.experiments.context",
    "record_args": "agentledger.replay.args",
    "recorded_args": "agentledger.replay.args",
}

__all__ = [
    "ExperimentResult",
    "ReplayResult",
    "RunContext",
    "__version__",
    "current_context",
    "open_store",
    "record_args",
    "recorded_args",
    "replay_experiment",
    "resume_experiment",
    "run_experiment",
]


def __getattr__(name: str) -> Any:
    if name == "__version__":
        from agentledger.version import installed_version

        return installed_version()
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'agentledger' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
