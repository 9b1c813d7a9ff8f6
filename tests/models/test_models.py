"""Model specs, sampling ranges, provider endpoints, fingerprints and the mock provider."""

from __future__ import annotations

import pytest

from agentledger.errors import ModelConfigError
from agentledger.models.fingerprint import endpoint_of, fingerprint, first_difference
from agentledger.models.mock import completion, example_value, stream_chunks
from agentledger.models.recording import assemble_stream
from agentledger.models.specs import MOCK_BASE_URL, ModelSpec, default_model, endpoint, parse_model


def test_model_spec_parses_provider_and_name() -> None:
    spec = parse_model("openai:gpt-4o-mini")
    assert (spec.provider, spec.name, spec.label) == ("openai", "gpt-4o-mini", "openai:gpt-4o-mini")
    assert parse_model("anthropic:claude-sonnet-4-5").provider == "anthropic"
    assert parse_model("mock:echo").label == "mock:echo"


def test_model_name_may_contain_colons() -> None:
    assert parse_model("openai:ft:gpt-4o-mini:acme::abc123").name == "ft:gpt-4o-mini:acme::abc123"


def test_model_mapping_carries_sampling_parameters() -> None:
    spec = parse_model({"provider": "openai", "name": "gpt-4o", "temperature": 0.2, "top_p": 0.9})
    assert spec.sampling() == {"temperature": 0.2, "top_p": 0.9}
    assert parse_model({"name": "openai:gpt-4o"}).provider == "openai"
    assert parse_model({"provider": "openai", "model": "gpt-4o"}).name == "gpt-4o"


def test_bare_model_name_is_rejected_with_an_example() -> None:
    with pytest.raises(ModelConfigError, match=r"--model 'gpt-4o' must be provider:model"):
        parse_model("gpt-4o")


def test_unknown_provider_suggests_the_nearest() -> None:
    with pytest.raises(ModelConfigError, match="did you mean 'openai'"):
        parse_model("opnai:gpt-4o")
    with pytest.raises(ModelConfigError, match="providers are openai, anthropic, mock"):
        parse_model("vertex:gemini")


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        (
            "temperature",
            2.5,
            "--temperature 2.5 is out of range: temperature must be between 0 and 2",
        ),
        ("top_p", 1.5, "--top-p 1.5 is out of range: top_p must be between 0 and 1"),
        ("presence_penalty", -3, "--presence-penalty -3 is out of range"),
        ("frequency_penalty", 2.1, "--frequency-penalty 2.1 is out of range"),
    ],
)
def test_sampling_out_of_range_names_the_flag_and_range(
    field: str, value: float, message: str
) -> None:
    with pytest.raises(ModelConfigError, match=message):
        parse_model("openai:gpt-4o").with_overrides(**{field: value})


def test_sampling_out_of_range_in_config_names_the_key() -> None:
    with pytest.raises(
        ModelConfigError, match=r"simulation\.yaml: 'model' temperature 3 is out of range"
    ):
        parse_model(
            {"provider": "openai", "name": "x", "temperature": 3}, "simulation.yaml: 'model'"
        )


def test_unknown_key_in_model_mapping_suggests_the_nearest() -> None:
    with pytest.raises(
        ModelConfigError, match="unknown key 'temprature'; did you mean 'temperature'"
    ):
        parse_model({"provider": "openai", "name": "x", "temprature": 1})


def test_mock_models_are_checked() -> None:
    with pytest.raises(
        ModelConfigError, match="unknown mock model 'parrot'; mock models are echo, scripted"
    ):
        parse_model("mock:parrot")
    with pytest.raises(ModelConfigError, match="mock:scripted needs 'replies'"):
        parse_model("mock:scripted")
    assert parse_model({"provider": "mock", "name": "scripted", "replies": ["a"]}).replies == ["a"]


def test_real_provider_without_a_key_is_an_error() -> None:
    with pytest.raises(
        ModelConfigError, match="openai:gpt-4o needs an API key: set OPENAI_API_KEY"
    ):
        endpoint(parse_model("openai:gpt-4o"), {})
    with pytest.raises(ModelConfigError, match="set ANTHROPIC_API_KEY"):
        endpoint(parse_model("anthropic:claude-x"), {})


def test_endpoint_takes_key_and_base_url_from_the_environment() -> None:
    found = endpoint(
        parse_model("openai:gpt-4o"),
        {"OPENAI_API_KEY": "sk-env", "OPENAI_BASE_URL": "https://proxy/v1"},
    )
    assert (found.base_url, found.api_key) == ("https://proxy/v1", "sk-env")
    anthropic = endpoint(parse_model("anthropic:claude-x"), {"ANTHROPIC_API_KEY": "k"})
    assert anthropic.base_url == "https://api.anthropic.com/v1/"


def test_flag_key_wins_and_masked_config_key_is_ignored() -> None:
    spec = ModelSpec(provider="openai", name="x", api_key="***")
    assert endpoint(spec, {"OPENAI_API_KEY": "sk-env"}).api_key == "sk-env"
    assert endpoint(spec, {"OPENAI_API_KEY": "sk-env"}, api_key="sk-flag").api_key == "sk-flag"


def test_local_server_needs_no_key() -> None:
    spec = parse_model(
        {"provider": "openai", "name": "llama", "base_url": "http://localhost:11434/v1"}
    )
    assert endpoint(spec, {}).base_url == "http://localhost:11434/v1"


def test_default_model_is_mock_without_a_key() -> None:
    assert default_model({}).label == "mock:echo"
    assert default_model({"OPENAI_API_KEY": "sk"}).label == "openai:gpt-4o-mini"
    assert endpoint(default_model({}), {}).base_url == MOCK_BASE_URL


def test_fingerprint_ignores_non_semantic_fields_only() -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    same = fingerprint("chat/completions", body)
    assert fingerprint("chat/completions", {**body, "user": "u1", "metadata": {"a": 1}}) == same
    assert fingerprint("chat/completions", dict(reversed(body.items()))) == same
    assert fingerprint("chat/completions", {**body, "temperature": 0.5}) != same
    assert fingerprint("embeddings", body) != same


def test_endpoint_of_drops_the_base_url() -> None:
    assert endpoint_of("/v1/chat/completions") == "chat/completions"
    assert endpoint_of("/openai/deployments/x/chat/completions") == "chat/completions"
    assert endpoint_of("/v1/embeddings") == "embeddings"


def test_first_difference_names_the_json_path() -> None:
    recorded = {"messages": [{"role": "system", "content": "a"}, {"role": "user", "content": "b"}]}
    actual = {"messages": [{"role": "system", "content": "a"}, {"role": "user", "content": "c"}]}
    assert first_difference(recorded, actual) == "messages[1].content"
    assert first_difference(recorded, recorded) is None
    assert first_difference({"a": [1]}, {"a": [1, 2]}) == "a[1]"
    assert first_difference({"a": 1}, {"a": 1, "b": 2}) == "b"


def test_mock_answers_echo_scripted_tools_and_schema() -> None:
    ask = {"model": "echo", "messages": [{"role": "user", "content": "hello there"}]}
    assert completion(ask)["choices"][0]["message"]["content"] == "hello there"
    scripted = {
        "messages": [
            *ask["messages"],
            {"role": "assistant", "content": "x"},
            {"role": "user", "content": "y"},
        ]
    }
    assert (
        completion(scripted, "scripted", ["one", "two"])["choices"][0]["message"]["content"]
        == "two"
    )
    tools = [
        {
            "type": "function",
            "function": {
                "name": "f",
                "parameters": {
                    "type": "object",
                    "properties": {"q": {"type": "string"}, "n": {"type": "integer"}},
                },
            },
        }
    ]
    call = completion({**ask, "tools": tools})["choices"][0]
    assert call["finish_reason"] == "tool_calls"
    assert call["message"]["tool_calls"][0]["function"] == {
        "name": "f",
        "arguments": '{"q":"hello there","n":1}',
    }
    schema = {
        "type": "json_schema",
        "json_schema": {
            "name": "s",
            "schema": {"type": "object", "properties": {"ok": {"type": "boolean"}}},
        },
    }
    assert (
        completion({**ask, "response_format": schema})["choices"][0]["message"]["content"]
        == '{"ok":true}'
    )


def test_streamed_chunks_assemble_to_the_completion() -> None:
    body = {
        "model": "m",
        "messages": [{"role": "user", "content": "one two three"}],
        "stream_options": {"include_usage": True},
    }
    done = completion(body)
    assembled = assemble_stream(stream_chunks(body, done))
    assert assembled is not None
    assert assembled["choices"][0]["message"]["content"] == "one two three"
    assert assembled["usage"] == done["usage"]


def test_example_value_follows_the_schema() -> None:
    schema = {
        "type": "object",
        "properties": {
            "tags": {"type": "array", "items": {"type": "string"}},
            "kind": {"enum": ["a", "b"]},
            "score": {"type": ["number", "null"]},
        },
    }
    assert example_value(schema, "t") == {"tags": ["t"], "kind": "a", "score": 1.0}


def test_identical_requests_get_their_recorded_answers_in_sequence() -> None:
    from agentledger.replay.book import RecordedCall, ReplayBook

    book = ReplayBook(
        "t",
        [
            RecordedCall(0, "same", "chat/completions", {}, "ModelCallCompleted", {"n": 1}),
            RecordedCall(1, "other", "chat/completions", {}, "ModelCallCompleted", {"n": 2}),
            RecordedCall(2, "same", "chat/completions", {}, "ModelCallCompleted", {"n": 3}),
        ],
    )
    first, second = book.take("same"), book.take("same")
    assert (first and first.data, second and second.data) == ({"n": 1}, {"n": 3})
    assert book.take("same") is None
    missing = book.unused()
    assert missing is not None and "recorded call #1 was never made" in missing.reason
