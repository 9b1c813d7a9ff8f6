"""Input generation: ``agentledger generate inputs``, recorded and reproducible.

``resolve_settings`` reads the project's ``configs/input.yaml`` and the flags;
``plan_items`` lists the planned calls (``--dry-run``); ``generate`` makes them through
the recorded model gateway and writes the inputs file as a projection of the log;
``rewrite`` writes a completed generation's file again from the log, offline;
``recorded_generation`` reads which generation an inputs file came from.
"""

from __future__ import annotations

from agentledger.generation.config import Flags, GenerationSettings, resolve_settings
from agentledger.generation.inputsfile import recorded_generation
from agentledger.generation.runner import GenerationResult, generate, plan_items, rewrite

__all__ = [
    "Flags",
    "GenerationResult",
    "GenerationSettings",
    "generate",
    "plan_items",
    "recorded_generation",
    "resolve_settings",
    "rewrite",
]
