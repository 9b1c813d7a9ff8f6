"""The generation plan: one model call per base input x persona x strategy x variation.

Items are numbered in that nesting order (base inputs outermost, as FluxLoop does), and
``--limit`` keeps the first N. Each item's user prompt is the template filled with the
base input, the persona's description, the strategy (or its ``strategy_prompts`` text)
and the base input as JSON; with ``variation_count`` above 1, a line naming the variation
("Variation 2 of 3 ...") makes every call of the same prompt a distinct request, unless
the template places ``{variation}`` itself.
"""

from __future__ import annotations

import hashlib
import json
import string
from dataclasses import dataclass
from typing import Any

from agentledger.events.generation import PlannedInput
from agentledger.generation.config import GenerationPersona, GenerationSettings

GENERIC_PERSONA = "Generic user"


@dataclass(frozen=True)
class GenerationItem:
    """A planned call: what it is (recorded in the plan) and the prompt it sends."""

    planned: PlannedInput
    prompt: str
    base_input: dict[str, Any]
    persona: GenerationPersona | None


def prompt_hash(prompt: str) -> str:
    """First 16 hex digits of the prompt's SHA-256 (FluxLoop's ``prompt_hash``)."""
    return hashlib.sha256(prompt.encode("utf-8")).hexdigest()[:16]


def _places_variation(template: str) -> bool:
    return any(field == "variation" for _, field, _, _ in string.Formatter().parse(template))


def format_prompt(
    settings: GenerationSettings,
    base_input: dict[str, Any],
    persona: GenerationPersona | None,
    strategy: str,
    variation: int,
) -> str:
    """The user prompt of one item."""
    template = settings.user_prompt_template
    count = settings.variation_count
    prompt = template.format(
        input=base_input["input"],
        strategy=settings.strategy_prompts.get(strategy, strategy),
        persona=persona.to_prompt() if persona is not None else GENERIC_PERSONA,
        metadata=json.dumps(base_input, ensure_ascii=False, default=str),
        variation=f"{variation + 1} of {count}",
    )
    if count > 1 and not _places_variation(template):
        prompt += (
            f"\nVariation {variation + 1} of {count}: make it different from the other variations."
        )
    return prompt


def build_plan(settings: GenerationSettings) -> list[GenerationItem]:
    """Every planned call, in plan order, cut to ``settings.limit``."""
    personas: list[GenerationPersona | None] = list(settings.personas) or [None]
    items: list[GenerationItem] = []
    for base_index, base_input in enumerate(settings.base_inputs):
        for persona in personas:
            for strategy in settings.strategies:
                for variation in range(settings.variation_count):
                    if settings.limit is not None and len(items) >= settings.limit:
                        return items
                    prompt = format_prompt(settings, base_input, persona, strategy, variation)
                    planned = PlannedInput(
                        index=len(items),
                        base_index=base_index,
                        persona=persona.name if persona is not None else None,
                        persona_description=persona.description if persona is not None else None,
                        strategy=strategy,
                        variation=variation,
                        prompt_hash=prompt_hash(prompt),
                    )
                    items.append(GenerationItem(planned, prompt, base_input, persona))
    return items


def messages(settings: GenerationSettings, item: GenerationItem) -> list[dict[str, str]]:
    """The chat messages of one item's call: the system prompt (if any), then the prompt."""
    found = []
    if settings.system_prompt:
        found.append({"role": "system", "content": settings.system_prompt})
    found.append({"role": "user", "content": item.prompt})
    return found


def request(settings: GenerationSettings, item: GenerationItem) -> dict[str, Any]:
    """The ``chat.completions.create`` arguments of one item's call."""
    return {
        "model": settings.model.name,
        "messages": messages(settings, item),
        **settings.model.sampling(),
        **settings.request_fields(),
    }
