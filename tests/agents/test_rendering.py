"""Prompt values rendered as AIGNE's JavaScript renders them."""

from __future__ import annotations

import pytest

from agentledger.agents.project import Agent, render
from agentledger.agents.rendering import js_json, js_number, js_text
from agentledger.agents.session import user_message


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (2.0, "2"),
        (2, "2"),
        (-3.25, "-3.25"),
        (0.1, "0.1"),
        (100.0, "100"),
        (1e16, "10000000000000000"),
        (1.2345678901234568e20, "123456789012345680000"),
        (1e21, "1e+21"),
        (0.000001, "0.000001"),
        (1.5e-6, "0.0000015"),
        (1e-7, "1e-7"),
        (5e-324, "5e-324"),
        (-0.0, "0"),
        (2**60, "1152921504606847000"),
        (float("nan"), "NaN"),
        (float("-inf"), "-Infinity"),
    ],
)
def test_numbers_print_as_javascript_prints_them(value: float, text: str) -> None:
    assert js_number(value) == text


def test_json_is_compact_in_key_order_with_javascript_numbers() -> None:
    value = {"z": 1.0, "a": [2.5, 'é\n"', None, True], "c": {"b": 1e21, "a": float("inf")}}
    assert js_json(value) == '{"z":1,"a":[2.5,"é\\n\\"",null,true],"c":{"b":1e+21,"a":null}}'


def test_json_escapes_control_characters_and_lone_surrogates() -> None:
    assert js_json("\x01\ud800\x7f") == '"\\u0001\\ud800\x7f"'


def test_template_values_render_like_aigne_suppress_value() -> None:
    values = {
        "count": 2.0,
        "tags": ["a", "b"],
        "meta": {"z": 1, "a": [1, 2]},
        "short": False,
        "none": None,
        "text": "<b>&</b>",
    }
    template = "{{count}}|{{tags}}|{{meta}}|{{ short }}|{{none}}|{{missing}}|{{text}}|{{meta.z}}"
    assert render(template, values) == '2|["a","b"]|{"z":1,"a":[1,2]}|false|||<b>&</b>|1'


def test_structured_user_message_is_javascript_json_in_the_given_order() -> None:
    agent = Agent(name="a", source="a.yaml", instructions="x")
    assert user_message(agent, {"text": "hi", "count": 2.0}) == '{"text":"hi","count":2}'


def test_text_of_a_string_is_itself() -> None:
    assert js_text("2.0") == "2.0"
