"""The model gateway records every call of the real ``openai`` client, in process.

Calls go to the loopback model server (tests/modelserver.py) or the mock provider; the
events are read back from a real store.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import openai
import pytest

from agentledger.events.streams import trace_stream
from agentledger.eventstore import EventStore
from agentledger.experiments.context import RunContext, TraceRecorder
from agentledger.experiments.writer import BatchWriter
from agentledger.models.client_hook import record_default_clients
from agentledger.models.gateway import ModelGateway
from agentledger.models.specs import endpoint, parse_model
from tests.support.modelserver import ModelServer

KEY = "sk-test-Gateway0123456789"
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "lookup",
            "parameters": {
                "type": "object",
                "properties": {"q": {"type": "string"}},
                "required": ["q"],
            },
        },
    }
]


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[EventStore]:
    store = EventStore.open(str(tmp_path / "ledger.db"))
    try:
        yield store
    finally:
        store.close()


def server_gateway(server: ModelServer, store: EventStore, **spec: Any) -> ModelGateway:
    model = parse_model(
        {"provider": "openai", "name": "gpt-test", "base_url": server.base_url, **spec}
    )
    return ModelGateway(model, endpoint(model, {"OPENAI_API_KEY": KEY}), store.redactor)


def mock_gateway(store: EventStore, model: str = "mock:echo") -> ModelGateway:
    spec = parse_model(model)
    return ModelGateway(spec, endpoint(spec, {}), store.redactor)


@contextmanager
def recorded_run(
    store: EventStore, gateway: ModelGateway | None, trace_id: str = "t1"
) -> Iterator[RunContext]:
    """A RunContext whose events go to ``trace-<trace_id>``; flushed on exit."""
    writer = BatchWriter(store)
    recorder = TraceRecorder(writer, trace_stream(trace_id), version=0, metadata={})
    ctx = RunContext(
        recorder,
        trace_id=trace_id,
        experiment_id=None,
        input="",
        persona=None,
        iteration=0,
        metadata={},
        seed=1,
        gateway=gateway,
    )
    token = ctx.activate()
    try:
        yield ctx
    finally:
        ctx.deactivate(token)
        writer.close()


def events(store: EventStore, trace_id: str = "t1") -> list[tuple[str, dict[str, Any]]]:
    return [(ev.type, ev.data) for ev in store.read_stream(trace_stream(trace_id))]


def outcomes(store: EventStore, trace_id: str = "t1") -> list[tuple[str, Any]]:
    """(event type, status code or error type) of every call outcome, in order."""
    return [
        (kind, data.get("error_type") or data.get("status_code"))
        for kind, data in events(store, trace_id)
        if kind != "ModelCallStarted"
    ]


def test_plain_call_records_request_response_and_usage(
    model_server: ModelServer, ledger: EventStore
) -> None:
    gateway = server_gateway(model_server, ledger, temperature=0.3)
    with recorded_run(ledger, gateway) as ctx:
        assert ctx.chat("hello model", system="be brief") == "hello model"
    (started_type, started), (done_type, done) = events(ledger)
    assert (started_type, done_type) == ("ModelCallStarted", "ModelCallCompleted")
    assert started["provider"] == "openai" and started["model"] == "gpt-test"
    assert started["request"]["messages"][1] == {"role": "user", "content": "hello model"}
    assert started["request"]["temperature"] == 0.3
    assert started["endpoint"] == "chat/completions" and len(started["fingerprint"]) == 64
    assert started["url"] == f"{model_server.base_url}/chat/completions"
    assert done["response"]["choices"][0]["message"]["content"] == "hello model"
    assert done["usage"] == {"prompt_tokens": 4, "completion_tokens": 2, "total_tokens": 6}
    assert done["status_code"] == 200 and done["latency_ms"] > 0 and done["call_index"] == 0


def test_compressed_response_is_recorded_decoded(
    model_server: ModelServer, ledger: EventStore
) -> None:
    model_server.gzip = True
    with recorded_run(ledger, server_gateway(model_server, ledger)) as ctx:
        assert ctx.chat("squeeze me") == "squeeze me"
    (_, _), (kind, done) = events(ledger)
    assert kind == "ModelCallCompleted"
    assert done["response"]["choices"][0]["message"]["content"] == "squeeze me"


def test_streamed_call_records_every_chunk_in_order(
    model_server: ModelServer, ledger: EventStore
) -> None:
    gateway = server_gateway(model_server, ledger)
    with recorded_run(ledger, gateway) as ctx:
        stream = ctx.openai.chat.completions.create(
            model=ctx.model,
            messages=[{"role": "user", "content": "one two three"}],
            stream=True,
            stream_options={"include_usage": True},
        )
        received = [chunk.model_dump(mode="json", exclude_unset=True) for chunk in stream]
    (_, started), (kind, done) = events(ledger)
    assert started["stream"] is True and kind == "ModelCallCompleted"
    assert [c.get("choices") for c in done["chunks"]] == [c.get("choices") for c in received]
    assert done["response"]["choices"][0]["message"]["content"] == "one two three"
    assert done["usage"]["total_tokens"] == 6
    assert done["truncated"] is False and done["first_chunk_ms"] is not None


def test_stream_closed_early_is_recorded_as_truncated(
    model_server: ModelServer, ledger: EventStore
) -> None:
    gateway = server_gateway(model_server, ledger)
    with recorded_run(ledger, gateway) as ctx:
        stream = ctx.openai.chat.completions.create(
            model=ctx.model, messages=[{"role": "user", "content": "a b c d e f"}], stream=True
        )
        next(iter(stream))
        stream.close()
    (_, _), (kind, done) = events(ledger)
    assert kind == "ModelCallCompleted" and done["truncated"] is True


def test_tool_call_and_json_schema_responses_are_recorded(
    model_server: ModelServer, ledger: EventStore
) -> None:
    gateway = server_gateway(model_server, ledger)
    schema = {
        "type": "json_schema",
        "json_schema": {
            "name": "answer",
            "schema": {"type": "object", "properties": {"ok": {"type": "boolean"}}},
        },
    }
    with recorded_run(ledger, gateway) as ctx:
        first = ctx.openai.chat.completions.create(
            model=ctx.model, messages=[{"role": "user", "content": "find it"}], tools=TOOLS
        )
        call = first.choices[0].message.tool_calls[0]  # type: ignore[index]
        assert call.function.arguments == '{"q":"find it"}'
        structured = ctx.chat("check", response_format=schema)
    assert structured == '{"ok":true}'
    completed = [data for kind, data in events(ledger) if kind == "ModelCallCompleted"]
    message = completed[0]["response"]["choices"][0]["message"]
    assert message["tool_calls"][0]["function"]["name"] == "lookup"
    assert completed[0]["response"]["choices"][0]["finish_reason"] == "tool_calls"
    started = [data for kind, data in events(ledger) if kind == "ModelCallStarted"]
    assert started[0]["request"]["tools"] == TOOLS
    assert started[1]["request"]["response_format"] == schema


def test_rate_limit_then_retry_records_both_attempts(
    model_server: ModelServer, ledger: EventStore
) -> None:
    gateway = server_gateway(model_server, ledger)
    model_server.fail_next("429")
    with recorded_run(ledger, gateway) as ctx:
        assert ctx.chat("again") == "again"
    assert outcomes(ledger) == [
        ("ModelCallFailed", "rate_limit_exceeded"),
        ("ModelCallCompleted", 200),
    ]
    started = [d for k, d in events(ledger) if k == "ModelCallStarted"]
    assert [d["attempt"] for d in started] == [1, 2]
    assert started[0]["fingerprint"] == started[1]["fingerprint"]
    failed = events(ledger)[1][1]
    assert failed["status_code"] == 429 and "injected 429" in failed["body"]


def test_server_errors_are_recorded_until_the_client_gives_up(
    model_server: ModelServer, ledger: EventStore
) -> None:
    gateway = server_gateway(model_server, ledger)
    model_server.fail_next("500", times=2)
    with recorded_run(ledger, gateway) as ctx, pytest.raises(openai.InternalServerError):
        ctx.openai.with_options(max_retries=1).chat.completions.create(
            model=ctx.model, messages=[{"role": "user", "content": "x"}]
        )
    assert outcomes(ledger) == [("ModelCallFailed", "server_error")] * 2


def test_timeout_is_recorded_as_a_failed_call(
    model_server: ModelServer, ledger: EventStore
) -> None:
    gateway = server_gateway(model_server, ledger)
    model_server.hang_seconds = 2.0
    model_server.fail_next("timeout")
    with recorded_run(ledger, gateway) as ctx, pytest.raises(openai.APITimeoutError):
        ctx.openai.with_options(timeout=0.3, max_retries=0).chat.completions.create(
            model=ctx.model, messages=[{"role": "user", "content": "slow"}]
        )
    assert outcomes(ledger) == [("ModelCallFailed", "Timeout")]


def test_malformed_body_is_recorded_as_a_failed_call(
    model_server: ModelServer, ledger: EventStore
) -> None:
    gateway = server_gateway(model_server, ledger)
    model_server.fail_next("malformed")
    with recorded_run(ledger, gateway) as ctx, pytest.raises(ValueError):
        ctx.chat("x")
    (_, _), (kind, failed) = events(ledger)
    assert (kind, failed["error_type"], failed["status_code"]) == (
        "ModelCallFailed",
        "MalformedResponse",
        200,
    )
    assert failed["body"].startswith('{"id": "chatcmpl-broken"')


def test_error_in_mid_stream_is_recorded_with_the_chunks_before_it(
    model_server: ModelServer, ledger: EventStore
) -> None:
    gateway = server_gateway(model_server, ledger)
    model_server.fail_next("stream_error")
    with recorded_run(ledger, gateway) as ctx, pytest.raises(openai.APIError, match="mid-stream"):
        for _ in ctx.openai.chat.completions.create(
            model=ctx.model, messages=[{"role": "user", "content": "a b c d"}], stream=True
        ):
            pass
    (_, _), (kind, failed) = events(ledger)
    assert kind == "ModelCallFailed" and failed["error_type"] == "StreamError"
    assert failed["error_message"] == "injected mid-stream error"
    assert len(failed["chunks"]) == 3 and "error" in failed["chunks"][-1]


def test_connection_lost_mid_stream_is_recorded(
    model_server: ModelServer, ledger: EventStore
) -> None:
    gateway = server_gateway(model_server, ledger)
    model_server.fail_next("disconnect")
    with recorded_run(ledger, gateway) as ctx, pytest.raises(openai.APIError):
        for _ in ctx.openai.with_options(max_retries=0).chat.completions.create(
            model=ctx.model, messages=[{"role": "user", "content": "a b c d"}], stream=True
        ):
            pass
    (_, _), (kind, failed) = events(ledger)
    assert kind == "ModelCallFailed" and len(failed["chunks"]) == 2


def test_async_client_records_calls(model_server: ModelServer, ledger: EventStore) -> None:
    gateway = server_gateway(model_server, ledger)

    async def ask(ctx: RunContext) -> list[str]:
        replies = await asyncio.gather(ctx.achat("first"), ctx.achat("second"))
        stream = await ctx.async_openai.chat.completions.create(
            model=ctx.model, messages=[{"role": "user", "content": "third one"}], stream=True
        )
        parts = [c.choices[0].delta.content or "" async for c in stream if c.choices]
        await gateway.aclose()
        return [*replies, "".join(parts)]

    with recorded_run(ledger, gateway) as ctx:
        assert asyncio.run(ask(ctx)) == ["first", "second", "third one"]
    completed = [d for k, d in events(ledger) if k == "ModelCallCompleted"]
    assert sorted(d["call_index"] for d in completed) == [0, 1, 2]
    assert any(d["chunks"] for d in completed)


def test_mock_provider_answers_offline_and_is_recorded(ledger: EventStore) -> None:
    with recorded_run(ledger, mock_gateway(ledger)) as ctx:
        assert ctx.chat("offline please") == "offline please"
        stream = ctx.openai.chat.completions.create(
            model=ctx.model, messages=[{"role": "user", "content": "x y"}], tools=TOOLS, stream=True
        )
        arguments = "".join(
            c.choices[0].delta.tool_calls[0].function.arguments or ""  # type: ignore[index, union-attr]
            for c in stream
            if c.choices and c.choices[0].delta.tool_calls
        )
    assert arguments == '{"q":"x y"}'
    started, completed = (
        [d for k, d in events(ledger) if k == kind]
        for kind in ("ModelCallStarted", "ModelCallCompleted")
    )
    assert [d["provider"] for d in started] == ["mock", "mock"]
    tool_call = completed[1]["response"]["choices"][0]["message"]["tool_calls"][0]
    assert tool_call["function"] == {"name": "lookup", "arguments": '{"q":"x y"}'}


def test_scripted_mock_replies_in_turn_order(ledger: EventStore) -> None:
    spec = parse_model({"provider": "mock", "name": "scripted", "replies": ["hi", "bye"]})
    gateway = ModelGateway(spec, endpoint(spec, {}), ledger.redactor)
    with recorded_run(ledger, gateway) as ctx:
        first = ctx.chat("hello")
        second = ctx.chat(
            [
                {"role": "user", "content": "hello"},
                {"role": "assistant", "content": first},
                {"role": "user", "content": "thanks"},
            ]
        )
    assert (first, second) == ("hi", "bye")


def test_calls_outside_a_run_are_not_recorded(
    model_server: ModelServer, ledger: EventStore
) -> None:
    gateway = server_gateway(model_server, ledger)
    reply = gateway.client().chat.completions.create(
        model="gpt-test", messages=[{"role": "user", "content": "nobody listens"}]
    )
    assert reply.choices[0].message.content == "nobody listens"
    assert ledger.read_all() is not None and list(ledger.read_all()) == []


def test_clients_agents_build_themselves_are_recorded_per_run(
    model_server: ModelServer, ledger: EventStore
) -> None:
    with record_default_clients(ledger.redactor):
        shared = openai.OpenAI(base_url=model_server.base_url, api_key=KEY)

        def agent(trace_id: str) -> None:
            own = openai.OpenAI(base_url=model_server.base_url, api_key=KEY)
            with recorded_run(ledger, None, trace_id):
                own.chat.completions.create(
                    model="gpt-own", messages=[{"role": "user", "content": f"own {trace_id}"}]
                )
                shared.chat.completions.create(
                    model="gpt-own", messages=[{"role": "user", "content": f"shared {trace_id}"}]
                )

        threads = [threading.Thread(target=agent, args=(f"t{i}",)) for i in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    for i in range(8):
        asked = [
            d["request"]["messages"][0]["content"]
            for k, d in events(ledger, f"t{i}")
            if k == "ModelCallStarted"
        ]
        assert asked == [f"own t{i}", f"shared t{i}"]
    after = openai.OpenAI(base_url=model_server.base_url, api_key=KEY)
    assert type(after._client).__name__ == "SyncHttpxClientWrapper"


def test_api_key_is_sent_but_never_recorded(model_server: ModelServer, ledger: EventStore) -> None:
    gateway = server_gateway(model_server, ledger)
    with recorded_run(ledger, gateway) as ctx:
        ctx.chat(f"my key is {KEY}")
        ctx.observe("leak", key=KEY, note=f"Bearer {KEY}")
    assert model_server.requests[0].headers["authorization"] == f"Bearer {KEY}"
    stored = str(events(ledger))
    assert KEY not in stored and "my key is ***" in stored
