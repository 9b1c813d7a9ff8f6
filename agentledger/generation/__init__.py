"""Input generation: ``agentledger generate inputs``, recorded and reproducible.

``resolve_settings`` reads the project's ``configs/input.yaml`` and the flags;
``plan_items`` lists the planned calls (``--dry-run``); ``generate`` makes them through
the recorded model gateway and writes the inputs file as a projection of the log;
``rewrite`` writes a completed generation's file again from the log, offline;
``recorded_generation`` reads which generation an inputs file came from. Names load on
first use, so a rewrite never imports the model client.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Flags": "agentledger.generation.config",
    "GenerationSettings": "agentledger.generation.config",
    "resolve_settings": "agentledger.generation.config",
    "recorded_generation": "agentledger.generation.inputsfile",
    "GenerationResult": "agentledger.generation.output",
    "rewrite": "agentledger.generation.output",
    "generate": "agentledger.generation.runner",
    "plan_items": "agentledger.generation.runner",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'agentledger.generation' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
