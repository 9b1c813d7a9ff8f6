"""Generations against a real store: the mock in process, the loopback server over HTTP.

Every call goes through the real ``openai`` client of the recorded gateway; events are
read back from the store.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from agentledger.events.generation import generation_stream
from agentledger.eventstore import EventStore
from agentledger.generation import Flags, generate, resolve_settings, rewrite
from agentledger.generation.errors import GenerationError, OutputExistsError
from agentledger.generation.runner import reply_text, trim_reply
from tests.generation.support import llm, write_config
from tests.support.modelserver import ModelServer

KEY = "sk-test-Generation0123456789"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[EventStore]:
    opened = EventStore.open(str(tmp_path / "ledger.db"))
    try:
        yield opened
    finally:
        opened.close()


def run(project: Path, store: EventStore, flags: Flags | None = None, **config: Any) -> Any:
    write_config(project, **config)
    settings = resolve_settings(project, flags or Flags())
    return generate(settings, store, {}, api_key=KEY)


def types(store: EventStore, generation_id: str) -> list[str]:
    return [e.type for e in store.read_stream(generation_stream(generation_id))]


def test_mock_generation_records_every_call_and_writes_the_file(
    tmp_path: Path, store: EventStore
) -> None:
    result = run(tmp_path, store, variation_strategies=["typo", "concise"], personas=[])
    recorded = types(store, result.generation_id)
    assert recorded[0] == "InputsGenerationStarted"
    assert recorded[-1] == "InputsGenerationCompleted"
    assert recorded.count("ModelCallStarted") == recorded.count("ModelCallCompleted") == 4
    assert recorded.count("InputGenerated") == 4
    data = yaml.safe_load(result.output.read_text())
    assert [(r["base_index"], r["strategy"]) for r in data["inputs"]] == [
        (0, "typo"),
        (0, "concise"),
        (1, "typo"),
        (1, "concise"),
    ]
    assert data["inputs"][1]["input"] == "How do I export my notes?"  # concise: no filler
    assert data["generation_config"]["generation_id"] == result.generation_id


def test_the_same_config_gives_the_same_inputs(tmp_path: Path, store: EventStore) -> None:
    first = run(tmp_path / "a", store)
    second = run(tmp_path / "b", store)
    assert [e.input for e in first.view.entries] == [e.input for e in second.view.entries]


def test_rewrite_gives_the_same_bytes_without_a_model(
    tmp_path: Path, store: EventStore, model_server: ModelServer
) -> None:
    result = run(tmp_path, store, input_generation=llm(model_server.base_url))
    written = result.output.read_bytes()
    result.output.unlink()
    model_server.stop()
    rewritten = rewrite(store, result.generation_id)
    assert rewritten.output.read_bytes() == written


def test_rewrite_refuses_to_overwrite_and_unknown_generations(
    tmp_path: Path, store: EventStore
) -> None:
    result = run(tmp_path, store)
    with pytest.raises(OutputExistsError, match="exists; pass --overwrite"):
        rewrite(store, result.generation_id)
    with pytest.raises(GenerationError, match="no generation 'nope' in store"):
        rewrite(store, "nope")
    assert rewrite(store, str(result.output), overwrite=True).generation_id == result.generation_id


def test_calls_go_to_the_server_with_the_prompts_and_sampling(
    tmp_path: Path, store: EventStore, model_server: ModelServer
) -> None:
    config = llm(model_server.base_url, temperature=0.4, system_prompt="Write as a user.")
    result = run(
        tmp_path, store, personas=[], variation_strategies=["typo"], input_generation=config
    )
    bodies = [r.body for r in model_server.requests]
    assert len(bodies) == 2
    assert all(b["model"] == "gen-test" and b["temperature"] == 0.4 for b in bodies)
    assert bodies[0]["messages"][0] == {"role": "system", "content": "Write as a user."}
    # the server echoes the prompt: the file holds it, in plan order
    assert "Base Input: How do I export my notes?" in result.view.entries[0].input
    assert "Base Input: Reset my password" in result.view.entries[1].input


def test_parallel_caps_the_calls_in_flight(
    tmp_path: Path, store: EventStore, model_server: ModelServer
) -> None:
    model_server.latency = 0.05
    result = run(
        tmp_path,
        store,
        Flags(parallel=3),
        variation_strategies=["typo", "verbose", "concise"],
        input_generation=llm(model_server.base_url),
    )
    in_flight = peak = 0
    for kind in types(store, result.generation_id):
        in_flight += {"ModelCallStarted": 1, "ModelCallCompleted": -1}.get(kind, 0)
        peak = max(peak, in_flight)
    assert peak == 3
    assert len(result.view.entries) == 12


def test_failed_calls_are_recorded_and_the_rest_written(
    tmp_path: Path, store: EventStore, model_server: ModelServer
) -> None:
    model_server.fail_next("malformed", times=2)
    result = run(
        tmp_path,
        store,
        Flags(parallel=1),
        personas=[],
        variation_strategies=["typo", "verbose"],
        input_generation=llm(model_server.base_url),
    )
    assert (result.view.failed, len(result.view.entries), result.written) == (2, 2, True)
    assert "NoText: the reply is not JSON" in (result.view.first_failure or "")
    assert types(store, result.generation_id).count("InputGenerationFailed") == 2


def test_when_every_call_fails_no_file_is_written(
    tmp_path: Path, store: EventStore, model_server: ModelServer
) -> None:
    model_server.fail_next("malformed", times=4)
    result = run(
        tmp_path,
        store,
        personas=[],
        variation_strategies=["typo", "verbose"],
        input_generation=llm(model_server.base_url),
    )
    assert (result.view.failed, result.written) == (4, False)
    assert not result.output.exists()
    assert types(store, result.generation_id)[-1] == "InputsGenerationCompleted"


def test_empty_and_duplicate_replies_are_dropped_and_counted(
    tmp_path: Path, store: EventStore, model_server: ModelServer
) -> None:
    model_server.queue.extend(['"Same text"', "same TEXT", "   ", "Other"])
    result = run(
        tmp_path,
        store,
        Flags(parallel=1),
        personas=[],
        variation_strategies=["typo", "verbose"],
        input_generation=llm(model_server.base_url),
    )
    assert [e.input for e in result.view.entries] == ["Same text", "Other"]
    assert (result.view.duplicates, result.view.empty) == (1, 1)
    completed = store.read_stream(generation_stream(result.generation_id))[-1].data
    assert (completed["duplicates"], completed["empty"], completed["generated"]) == (1, 1, 2)


def test_anthropic_goes_through_its_openai_compatible_endpoint(
    tmp_path: Path, store: EventStore, model_server: ModelServer
) -> None:
    config = llm(model_server.base_url) | {}
    config["llm"] = config["llm"] | {"provider": "anthropic", "model": "claude-test"}
    result = run(
        tmp_path, store, personas=[], variation_strategies=["typo"], input_generation=config
    )
    started = [
        e
        for e in store.read_stream(generation_stream(result.generation_id))
        if e.type == "ModelCallStarted"
    ]
    assert {e.data["provider"] for e in started} == {"anthropic"}
    assert model_server.requests[0].body["model"] == "claude-test"


def test_the_api_key_never_reaches_the_store(
    tmp_path: Path, store: EventStore, model_server: ModelServer
) -> None:
    model_server.reflect_auth = True
    result = run(tmp_path, store, personas=[], input_generation=llm(model_server.base_url))
    assert model_server.requests[0].headers["authorization"] == f"Bearer {KEY}"
    for event in store.read_stream(generation_stream(result.generation_id)):
        assert KEY not in str(event.data)
    assert KEY not in result.output.read_text()


def test_existing_output_is_refused_before_any_event(tmp_path: Path, store: EventStore) -> None:
    write_config(tmp_path)
    (tmp_path / "inputs").mkdir()
    (tmp_path / "inputs" / "generated.yaml").write_text("inputs: []\n")
    with pytest.raises(OutputExistsError):
        generate(resolve_settings(tmp_path, Flags()), store, {})
    assert store.last_position() == 0


def test_reply_text_trimming() -> None:
    assert trim_reply('  "Quoted whole"  ') == "Quoted whole"
    assert trim_reply('"Two" and "three"') == '"Two" and "three"'
    assert trim_reply("\u201cCurly\u201d") == "Curly"
    with pytest.raises(ValueError, match="holds tool calls"):
        reply_text(b'{"choices": [{"message": {"content": null, "tool_calls": [{}]}}]}')


def test_request_timeout_bounds_each_call(
    tmp_path: Path, store: EventStore, model_server: ModelServer
) -> None:
    model_server.hang_seconds = 1.5
    model_server.fail_next("timeout", times=3)  # the first try and the client's two retries
    result = run(
        tmp_path,
        store,
        personas=[],
        base_inputs=[{"input": "hi"}],
        variation_strategies=["typo"],
        input_generation=llm(model_server.base_url, request_timeout=0.2),
    )
    assert result.view.failed == 1
    assert "APITimeoutError" in (result.view.first_failure or "")
    failed = [
        e.data["error_type"]
        for e in store.read_stream(generation_stream(result.generation_id))
        if e.type == "ModelCallFailed"
    ]
    assert failed == ["Timeout", "Timeout", "Timeout"]


def test_an_output_that_cannot_be_written_is_refused_before_any_event(
    tmp_path: Path, store: EventStore
) -> None:
    write_config(tmp_path)
    (tmp_path / "afile").write_text("not a folder")
    settings = resolve_settings(tmp_path, Flags(output="afile/inputs.yaml"))
    with pytest.raises(GenerationError, match=r"afile is not writable; choose -o FILE"):
        generate(settings, store, {})
    assert store.last_position() == 0


def test_generation_and_rewrite_on_each_backend(
    tmp_path: Path, store_url: str, model_server: ModelServer
) -> None:
    with EventStore.open(store_url) as opened:
        result = run(tmp_path, opened, input_generation=llm(model_server.base_url))
        written = result.output.read_bytes()
        result.output.unlink()
        assert rewrite(opened, result.generation_id).output.read_bytes() == written
    assert len(yaml.safe_load(written)["inputs"]) == 12
