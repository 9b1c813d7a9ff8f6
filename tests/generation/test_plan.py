"""The plan: one call per base input x persona x strategy x variation, in that order."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from agentledger.generation.config import Flags, GenerationSettings, resolve_settings
from agentledger.generation.plan import build_plan
from tests.generation.support import write_config


def settings(tmp_path: Path, flags: Flags | None = None, **config: Any) -> GenerationSettings:
    return resolve_settings(write_config(tmp_path, **config), flags or Flags())


def test_plan_order_is_base_input_then_persona_then_strategy_then_variation(
    tmp_path: Path,
) -> None:
    items = build_plan(
        settings(tmp_path, variation_strategies=["typo", "concise"], variation_count=2)
    )
    order = [
        (i.planned.base_index, i.planned.persona, i.planned.strategy, i.planned.variation)
        for i in items
    ]
    expected = [
        (b, p, s, v)
        for b in (0, 1)
        for p in ("novice_user", "expert_user")
        for s in ("typo", "concise")
        for v in (0, 1)
    ]
    assert order == expected
    assert [i.planned.index for i in items] == list(range(16))


def test_limit_keeps_the_first_planned_calls(tmp_path: Path) -> None:
    full = build_plan(settings(tmp_path))
    cut = build_plan(settings(tmp_path, Flags(limit=5)))
    assert [i.planned for i in cut] == [i.planned for i in full[:5]]


def test_default_prompt_is_fluxloops_and_its_hash_the_first_16_hex_of_sha256(
    tmp_path: Path,
) -> None:
    item = build_plan(settings(tmp_path, variation_strategies=["verbose"]))[0]
    assert item.prompt == (
        "Generate a user input variation given the base input and persona.\n"
        "Base Input: How do I export my notes?\n"
        "Strategy: verbose\n"
        "Persona: User Persona: novice_user\n"
        "Description: A user new to the app\n"
        "Characteristics: Asks basic questions\n"
        "Goals: Complete basic tasks\n"
        "Language: en\n"
        "Expertise Level: intermediate\n"
        "Provide a single realistic user message variant."
    )
    assert item.planned.prompt_hash == hashlib.sha256(item.prompt.encode()).hexdigest()[:16]
    assert item.planned.persona_description == "A user new to the app"


def test_without_personas_the_prompt_names_a_generic_user(tmp_path: Path) -> None:
    items = build_plan(settings(tmp_path, personas=[]))
    assert "Persona: Generic user\n" in items[0].prompt
    assert items[0].planned.persona is None


def test_template_placeholders_strategy_prompts_and_metadata(tmp_path: Path) -> None:
    resolved = settings(
        tmp_path,
        personas=[],
        variation_strategies=["typo"],
        input_generation={
            "llm": {
                "user_prompt_template": "{strategy} | {input} | {metadata}",
                "strategy_prompts": {"typo": "add two typos"},
            }
        },
    )
    item = build_plan(resolved)[0]
    metadata = json.dumps({"input": "How do I export my notes?", "expected_intent": "export"})
    assert item.prompt == f"add two typos | How do I export my notes? | {metadata}"


def test_variations_of_one_prompt_are_distinct_requests(tmp_path: Path) -> None:
    items = build_plan(settings(tmp_path, personas=[], variation_count=3))
    first = items[:3]
    assert len({i.prompt for i in first}) == 3
    assert first[1].prompt.endswith(
        "\nVariation 2 of 3: make it different from the other variations."
    )


def test_a_template_placing_the_variation_gets_no_extra_line(tmp_path: Path) -> None:
    resolved = settings(
        tmp_path,
        personas=[],
        variation_count=2,
        input_generation={"llm": {"user_prompt_template": "{input} (take {variation})"}},
    )
    assert [i.prompt for i in build_plan(resolved)[:2]] == [
        "How do I export my notes? (take 1 of 2)",
        "How do I export my notes? (take 2 of 2)",
    ]


def test_persona_keys_beyond_fluxloops_are_shown_to_the_model(tmp_path: Path) -> None:
    personas = [{"name": "ops", "industry": "banking", "expertise": "expert"}]
    items = build_plan(settings(tmp_path, personas=personas))
    assert "\nExpertise Level: expert\nIndustry: banking\nProvide" in items[0].prompt
