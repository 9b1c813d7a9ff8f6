"""The mock's variations: deterministic per strategy, computed without a model."""

from __future__ import annotations

import pytest

from agentledger.generation.config import STRATEGIES, GenerationPersona
from agentledger.generation.variations import vary

TEXT = "Could you please tell me how I export all of my notes to Markdown files?"
PERSONA = GenerationPersona(
    name="expert_user", expertise_level="expert", language="fr", goals=["Automate exports"]
)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_each_strategy_changes_the_text_and_repeats_itself(strategy: str) -> None:
    first = vary(strategy, TEXT, PERSONA, 0, "as a pirate")
    assert first != TEXT
    assert first.strip()
    assert vary(strategy, TEXT, PERSONA, 0, "as a pirate") == first


@pytest.mark.parametrize("strategy", ["rephrase", "typo", "verbose", "adversarial", "multilingual"])
def test_later_variations_differ_from_the_first(strategy: str) -> None:
    assert vary(strategy, TEXT, PERSONA, 1) != vary(strategy, TEXT, PERSONA, 0)


def test_concise_drops_filler_words() -> None:
    assert vary("concise", TEXT, None) == "Tell me how I export all of my notes to Markdown files?"


def test_verbose_is_longer_and_keeps_the_question() -> None:
    text = vary("verbose", TEXT, None)
    assert TEXT in text and len(text) > 2 * len(TEXT)


def test_typo_keeps_the_words_but_misspells_some() -> None:
    changed = vary("typo", TEXT, None, 2)
    assert len(changed.split(" ")) == len(TEXT.split(" "))
    assert sum(a != b for a, b in zip(changed.split(" "), TEXT.split(" "), strict=True)) >= 1


def test_multilingual_asks_for_the_personas_language_first() -> None:
    assert vary("multilingual", TEXT, PERSONA).endswith("Réponds en français, s'il te plaît.")


def test_persona_based_speaks_as_the_persona() -> None:
    text = vary("persona_based", TEXT, PERSONA)
    assert text.startswith("Speaking as expert user (expert level): ")
    assert "My goal is to automate exports." in text


def test_custom_tags_the_input_with_its_instruction() -> None:
    assert vary("custom", "Hi", None, 0, "as a pirate") == "[as a pirate] Hi"
