"""Input of ``run agent``: words, schema flags, key order, output selection, project files."""

from __future__ import annotations

from pathlib import Path

import pytest

from agentledger.agents.inputs import in_order, key_order, schema_flags, split_arguments
from agentledger.agents.project import Agent, load_project
from agentledger.agents.session import select_output
from agentledger.errors import ConfigError

AGENT = Agent(
    name="summary",
    source="summary.yaml",
    instructions="x",
    input_schema={
        "type": "object",
        "properties": {
            "text": {"type": "string"},
            "count": {"type": "number"},
            "short": {"type": "boolean"},
        },
    },
)


@pytest.mark.parametrize(
    ("words", "split"),
    [
        ([], (".", None, [])),
        (["--text", "x"], (".", None, ["--text", "x"])),
        ([".", "--text", "x"], (".", None, ["--text", "x"])),
        (["p", "summary", "--text", "x"], ("p", "summary", ["--text", "x"])),
    ],
)
def test_path_and_agent_are_the_words_before_the_first_option(
    words: list[str], split: tuple[str, str | None, list[str]]
) -> None:
    assert split_arguments(words) == split


def test_schema_flags_take_inline_values() -> None:
    flags = schema_flags(AGENT, ["--text=a=b", "--count=2", "--short=false"])
    assert flags == {"text": "a=b", "count": 2.0, "short": False}


def test_unknown_flag_names_the_option_and_the_nearest_command_option() -> None:
    with pytest.raises(ConfigError) as caught:
        schema_flags(AGENT, ["--interactiv"], ["--interactive", "--chat"])
    assert str(caught.value) == (
        "no such option --interactiv; did you mean --interactive? the agent summary's input "
        "fields are: --text, --count, --short"
    )


def test_a_word_after_an_option_is_refused_saying_where_agent_goes() -> None:
    with pytest.raises(ConfigError, match="PATH and AGENT come before any option"):
        schema_flags(AGENT, ["--short", "summary"])


def test_key_order_puts_sorted_keys_back_in_the_order_given() -> None:
    given = {"text": "t", "count": 2, "meta": {"z": [{"y": 1, "b": 2}], "a": 1}}
    stored = {
        "count": 2,
        "meta": {"a": 1, "z": [{"b": 2, "y": 1}]},
        "text": "t",
    }
    restored = in_order(stored, key_order(given))
    assert list(restored) == ["text", "count", "meta"]
    assert list(restored["meta"]) == ["z", "a"] and list(restored["meta"]["z"][0]) == ["y", "b"]


@pytest.mark.parametrize(
    ("result", "key", "output"),
    [
        ({"message": "hi", "other": 1}, None, "hi"),
        ({"summary": "s"}, None, {"summary": "s"}),
        ({"summary": "s"}, "summary", "s"),
        ("text", None, "text"),
    ],
)
def test_output_selection(result: object, key: str | None, output: object) -> None:
    assert select_output(AGENT, result, key) == output


def test_output_key_the_result_lacks_names_the_keys_it_has() -> None:
    with pytest.raises(ConfigError) as caught:
        select_output(AGENT, {"summary": "s", "points": 2}, "nope")
    assert str(caught.value) == (
        "--output-key 'nope' is not in the result of agent summary; its keys: 'summary', 'points'"
    )


def test_output_key_on_a_text_result_says_to_drop_it() -> None:
    with pytest.raises(ConfigError, match="is text, not an object with keys; drop --output-key"):
        select_output(AGENT, "plain", "message")


def test_project_file_that_is_a_directory_is_named(tmp_path: Path) -> None:
    (tmp_path / "aigne.yaml").mkdir()
    with pytest.raises(ConfigError) as caught:
        load_project(tmp_path)
    assert str(caught.value) == (
        f"{tmp_path / 'aigne.yaml'} is a directory; the project file must be a YAML file"
    )


def test_agent_file_that_is_a_directory_is_named(tmp_path: Path) -> None:
    (tmp_path / "aigne.yaml").write_text("agents: [chat.yaml]\n")
    (tmp_path / "chat.yaml").mkdir()
    with pytest.raises(ConfigError, match=r"agent file .*chat.yaml is a directory; name a YAML"):
        load_project(tmp_path)


STRUCTURED = Agent(
    name="plan",
    source="plan.yaml",
    instructions="x",
    input_schema={
        "type": "object",
        "properties": {
            "audience": {"type": "object"},
            "steps": {"type": "array", "items": {"type": "object"}},
            "tags": {"type": "array", "items": {"type": "string"}},
        },
    },
)


def test_object_fields_take_inline_json() -> None:
    flags = schema_flags(
        STRUCTURED,
        ["--audience", '{"name": "kids"}', "--steps", '{"n": 1}', "--steps={}", "--tags", "a"],
    )
    assert flags == {"audience": {"name": "kids"}, "steps": [{"n": 1}, {}], "tags": ["a"]}


@pytest.mark.parametrize("value", ["kids", "[1]", "{broken"])
def test_an_object_field_given_no_json_object_is_an_error_saying_how(value: str) -> None:
    with pytest.raises(ConfigError, match=r"--audience .*expected an object as JSON"):
        schema_flags(STRUCTURED, ["--audience", value])


def test_cli_agents_are_offered_and_the_first_is_the_default(tmp_path: Path) -> None:
    (tmp_path / "aigne.yaml").write_text(
        "model: mock:echo\nagents: [summary.yaml]\ncli:\n  agents: [chat.yaml]\n"
    )
    (tmp_path / "summary.yaml").write_text("name: summary\ninstructions: Sum up.\n")
    (tmp_path / "chat.yaml").write_text("name: chat\ninstructions: Talk.\n")
    project = load_project(tmp_path)
    assert [a.name for a in project.agents] == ["summary", "chat"]
    assert project.agent(None).name == "chat"
    assert project.agent("summary").name == "summary"
