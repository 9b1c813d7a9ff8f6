"""configs/input.yaml and the flags: every key honoured or refused by name."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from agentledger.errors import ConfigError
from agentledger.generation.config import (
    DEFAULT_TEMPLATE,
    Flags,
    GenerationSettings,
    api_key_for,
    resolve_settings,
)
from agentledger.generation.plan import build_plan, request
from tests.generation.support import write_config


def settings(tmp_path: Path, flags: Flags | None = None, **config: Any) -> GenerationSettings:
    return resolve_settings(write_config(tmp_path, **config), flags or Flags())


def refused(tmp_path: Path, flags: Flags | None = None, **config: Any) -> str:
    with pytest.raises(ConfigError) as caught:
        settings(tmp_path, flags, **config)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_default_is_offline_mock_variations_with_fluxloops_default_strategies(
    tmp_path: Path,
) -> None:
    resolved = settings(tmp_path)
    assert resolved.mode == "deterministic"
    assert resolved.model.label == "mock:variations"
    assert resolved.strategies == ["rephrase", "verbose", "concise"]
    assert resolved.user_prompt_template == DEFAULT_TEMPLATE
    assert resolved.output == str(tmp_path / "inputs" / "generated.yaml")


def test_enabled_llm_uses_the_configured_provider_and_model(tmp_path: Path) -> None:
    resolved = settings(
        tmp_path, input_generation={"llm": {"enabled": True, "provider": "anthropic"}}
    )
    assert resolved.mode == "llm"
    assert resolved.model.label == "anthropic:claude-3-5-haiku-latest"


def test_an_llm_flag_switches_to_llm_mode(tmp_path: Path) -> None:
    resolved = settings(tmp_path, Flags(llm_model="gpt-4o"))
    assert (resolved.mode, resolved.model.label) == ("llm", "openai:gpt-4o")


def test_sampling_keys_and_variation_temperature_reach_the_request(tmp_path: Path) -> None:
    resolved = settings(
        tmp_path,
        variation_temperature=0.3,
        input_generation={
            "llm": {
                "enabled": True,
                "top_p": 0.5,
                "max_tokens": 64,
                "frequency_penalty": 0.1,
                "presence_penalty": -0.1,
                "reasoning_effort": "low",
                "text_verbosity": "high",
                "system_prompt": "You write user messages.",
            }
        },
    )
    sent = request(resolved, build_plan(resolved)[0])
    assert sent["temperature"] == 0.3
    assert (sent["top_p"], sent["max_tokens"]) == (0.5, 64)
    assert (sent["frequency_penalty"], sent["presence_penalty"]) == (0.1, -0.1)
    assert (sent["reasoning_effort"], sent["verbosity"]) == ("low", "high")
    assert sent["messages"][0] == {"role": "system", "content": "You write user messages."}


def test_unknown_key_names_the_nearest_one(tmp_path: Path) -> None:
    message = refused(tmp_path, input_generation={"llm": {"modle": "x"}})
    assert "unknown key 'input_generation.llm.modle'; did you mean 'model'?" in message


@pytest.mark.parametrize(
    ("config", "key", "fix"),
    [
        ({"input_generation": {"llm": {"max_outputs": 3}}}, "llm.max_outputs", "variation_count"),
        ({"input_generation": {"llm": {"batch_size": 2}}}, "llm.batch_size", "--parallel"),
        ({"variation_model": "gpt-4o"}, "variation_model", "input_generation.llm.model"),
    ],
)
def test_fluxloop_keys_not_honoured_are_refused_with_what_to_use(
    tmp_path: Path, config: dict[str, Any], key: str, fix: str
) -> None:
    message = refused(tmp_path, **config)
    assert f"{key}' is not supported" in message
    assert fix in message


def test_misspelled_strategy_names_the_nearest(tmp_path: Path) -> None:
    assert "unknown strategy 'typos'; did you mean 'typo'?" in refused(
        tmp_path, variation_strategies=["typos"]
    )
    assert "-s/--strategy: unknown strategy 'verbos'; did you mean 'verbose'?" in refused(
        tmp_path, Flags(strategies=["verbos"])
    )


def test_strategy_flags_replace_the_configured_strategies(tmp_path: Path) -> None:
    resolved = settings(tmp_path, Flags(strategies=["typo"]), variation_strategies=["concise"])
    assert resolved.strategies == ["typo"]


def test_custom_strategy_needs_its_instruction(tmp_path: Path) -> None:
    message = refused(tmp_path, variation_strategies=["custom"])
    assert "input_generation.llm.strategy_prompts.custom" in message


def test_unknown_template_placeholder_is_refused(tmp_path: Path) -> None:
    message = refused(
        tmp_path, input_generation={"llm": {"user_prompt_template": "Vary {input} for {user}"}}
    )
    assert "unknown placeholder {user}" in message


def test_deterministic_mode_refuses_llm_flags(tmp_path: Path) -> None:
    message = refused(tmp_path, Flags(mode="deterministic", llm_provider="openai"))
    assert message == "--mode deterministic makes no model call; drop --llm-provider"


def test_llm_mode_with_the_llm_disabled_is_refused(tmp_path: Path) -> None:
    message = refused(tmp_path, input_generation={"mode": "llm", "llm": {"enabled": False}})
    assert "set enabled: true, or mode: deterministic" in message


def test_two_temperatures_that_disagree_are_refused(tmp_path: Path) -> None:
    message = refused(
        tmp_path,
        variation_temperature=0.2,
        input_generation={"llm": {"enabled": True, "temperature": 0.9}},
    )
    assert "'variation_temperature' (0.2) and 'input_generation.llm.temperature' (0.9)" in message


def test_out_of_range_sampling_is_refused(tmp_path: Path) -> None:
    message = refused(tmp_path, input_generation={"llm": {"enabled": True, "top_p": 3}})
    assert "top_p must be between 0 and 1" in message


def test_base_input_without_input_is_refused(tmp_path: Path) -> None:
    message = refused(tmp_path, base_inputs=[{"input": "ok"}, {"inputs": "typo"}])
    assert "base_inputs[1] needs a non-empty 'input' string ('inputs' is not 'input')" in message


def test_empty_base_inputs_are_refused(tmp_path: Path) -> None:
    assert "'base_inputs' is empty" in refused(tmp_path, base_inputs=[])


def test_misspelled_persona_key_is_refused(tmp_path: Path) -> None:
    message = refused(tmp_path, personas=[{"name": "a", "descripton": "x"}])
    assert "personas[0]: unknown key 'descripton'; did you mean 'description'?" in message


def test_mock_provider_refuses_a_base_url(tmp_path: Path) -> None:
    message = refused(tmp_path, Flags(llm_provider="mock", base_url="http://127.0.0.1:9/v1"))
    assert message.startswith("--base-url: the mock provider runs in process")


def test_unknown_provider_names_the_nearest(tmp_path: Path) -> None:
    assert "'opneai': did you mean 'openai'?" in refused(tmp_path, Flags(llm_provider="opneai"))


def test_output_defaults_to_inputs_file_and_the_flag_wins(tmp_path: Path) -> None:
    assert settings(tmp_path, inputs_file="inputs/mine.yaml").output == str(
        tmp_path / "inputs" / "mine.yaml"
    )
    assert settings(tmp_path, Flags(output="out.yaml")).output == str(tmp_path / "out.yaml")


def test_api_key_order_is_flag_then_config_then_fluxloops_variable(tmp_path: Path) -> None:
    env = {"FLUXLOOP_LLM_API_KEY": "sk-fluxloop-variable-0001"}
    plain = settings(tmp_path, input_generation={"llm": {"enabled": True}})
    assert api_key_for(plain, env, "sk-flag-0001") == "sk-flag-0001"
    assert api_key_for(plain, env, None) == "sk-fluxloop-variable-0001"
    configured = settings(
        tmp_path, input_generation={"llm": {"enabled": True, "api_key": "sk-config-0001"}}
    )
    assert api_key_for(configured, env, None) is None  # the spec's own key is used


def test_another_provider_flag_does_not_take_the_configured_model(tmp_path: Path) -> None:
    config = {"llm": {"enabled": True, "provider": "openai", "model": "gpt-4o"}}
    switched = settings(tmp_path, Flags(llm_provider="anthropic"), input_generation=config)
    assert switched.model.label == "anthropic:claude-3-5-haiku-latest"
    assert settings(tmp_path, Flags(llm_provider="mock"), input_generation=config).model.label == (
        "mock:variations"
    )
    assert settings(tmp_path, input_generation=config).model.label == "openai:gpt-4o"


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("{input.upper}", "unknown placeholder {input.upper}"),
        ("{0}", "unknown placeholder {0}"),
        ("Vary { this", "expected '}' before end of string"),
        ("{input:d}", "Unknown format code 'd'"),
    ],
)
def test_templates_that_would_fail_at_call_time_are_refused_up_front(
    tmp_path: Path, template: str, message: str
) -> None:
    assert message in refused(
        tmp_path, input_generation={"llm": {"user_prompt_template": template}}
    )
