"""Input generation events: what ``agentledger generate inputs`` asked for and got.

One generation writes one stream, ``generation-<id>``: ``InputsGenerationStarted`` (the
resolved settings and the plan, in plan order), then, as calls finish, the model call
events the recording transport appends (``ModelCallStarted`` / ``Completed`` /
``Failed``) and one ``InputGenerated`` or ``InputGenerationFailed`` per planned item,
and last ``InputsGenerationCompleted`` (or ``InputsGenerationInterrupted``). The inputs
file is a projection of these events (``agentledger.generation.inputsfile``): entries in
plan order, empty and duplicate texts dropped there, so it can be rewritten from the log.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from agentledger.events.payloads import Payload, register

JsonDict = dict[str, Any]

GENERATION_PREFIX = "generation-"


def generation_stream(generation_id: str) -> str:
    """The stream of one input generation."""
    return f"{GENERATION_PREFIX}{generation_id}"


class PlannedInput(BaseModel):
    """One planned generation: a base input x persona x strategy x variation, one call."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    index: int
    """Position in plan order, from 0."""
    base_index: int
    """Index of the base input in ``base_inputs``."""
    persona: str | None = None
    persona_description: str | None = None
    strategy: str
    variation: int = 0
    """Which of ``variation_count`` variations of the same prompt this is, from 0."""
    prompt_hash: str
    """First 16 hex digits of the SHA-256 of the user prompt (as FluxLoop writes it)."""


@register
class InputsGenerationStarted(Payload):
    generation_id: str
    settings: JsonDict
    """Redacted snapshot of the resolved settings (model, strategies, prompts, ...)."""
    plan: list[PlannedInput]
    output: str
    """The inputs file it writes (absolute path)."""
    started_at: str
    """UTC time the generation started, taken once (the file's header shows it)."""


@register
class InputGenerated(Payload):
    """A planned item's call answered; ``input`` is the reply text, trimmed (an empty or
    duplicate text is dropped by the inputs-file projection, and counted)."""

    index: int
    input: str


@register
class InputGenerationFailed(Payload):
    """A planned item got no usable answer: the call failed, or the reply held no text."""

    index: int
    error_type: str
    error_message: str


@register
class InputsGenerationCompleted(Payload):
    generation_id: str
    planned: int
    generated: int
    """Inputs the file holds."""
    failed: int
    duplicates: int
    empty: int


@register
class InputsGenerationInterrupted(Payload):
    generation_id: str
    reason: str
    finished: int
    """Planned items answered or failed before the interruption."""
