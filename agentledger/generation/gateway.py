"""The generation's model gateway: the mock's variations in process, pooled connections.

``VariationModel`` is an in-process transport (like the agents' mock) that knows the
plan: it finds the item whose prompt a request carries and answers with that item's
deterministic variation (``agentledger.generation.variations``), as a real
``chat.completion``. ``GenerationGateway`` is the model gateway with that transport
under the recording one, so the mock's calls are recorded like any provider's; for a
network provider it spreads the calls over several connection pools (``PooledTransport``).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import httpx2
import orjson

from agentledger.eventstore.redaction import Redactor
from agentledger.generation.plan import GenerationItem
from agentledger.generation.variations import vary
from agentledger.models.fingerprint import endpoint_of
from agentledger.models.gateway import ModelGateway
from agentledger.models.mock import (
    EventStreamBody,
    MockModelTransport,
    completion,
    error_body,
    message_text,
    sse_event,
    stream_chunks,
)
from agentledger.models.specs import Endpoint, ModelSpec


class VariationModel(MockModelTransport):
    """Answers each planned prompt with its variation; any other request is a 400."""

    def __init__(self, items: Sequence[GenerationItem], strategy_prompts: dict[str, str]) -> None:
        super().__init__("scripted")
        self._items: dict[str, GenerationItem] = {}
        for item in items:
            self._items.setdefault(item.prompt, item)
        self._instructions = strategy_prompts

    def answer(self, body: dict[str, Any]) -> str | None:
        """The variation for the request's prompt (its last user message), if planned."""
        users = [m for m in body.get("messages") or [] if isinstance(m, dict)]
        users = [m for m in users if m.get("role") == "user"]
        item = self._items.get(message_text(users[-1])) if users else None
        if item is None:
            return None
        planned = item.planned
        return vary(
            planned.strategy,
            str(item.base_input["input"]),
            item.persona,
            planned.variation,
            self._instructions.get(planned.strategy, ""),
        )

    def respond(self, request: httpx2.Request, content: bytes) -> httpx2.Response:
        if endpoint_of(request.url.path) != "chat/completions":
            return super().respond(request, content)
        try:
            body = orjson.loads(content)
        except orjson.JSONDecodeError:
            body = None
        text = self.answer(body) if isinstance(body, dict) else None
        if body is None or text is None:
            return httpx2.Response(
                400,
                content=error_body(
                    400,
                    "the mock generation model answers only the prompts of its plan",
                    "invalid_request_error",
                ),
                headers={"content-type": "application/json"},
            )
        done = completion(body, "scripted", (text,))
        if not body.get("stream"):
            return httpx2.Response(
                200, content=orjson.dumps(done), headers={"content-type": "application/json"}
            )
        events = b"".join(sse_event(c) for c in stream_chunks(body, done)) + sse_event("[DONE]")
        return httpx2.Response(
            200, stream=EventStreamBody(events), headers={"content-type": "text/event-stream"}
        )


CALLS_PER_POOL = 8
"""Calls in flight per connection pool: httpcore checks every connection of its pool each
time it hands one out, so one pool of 64 connections costs 64 checks per request (most of
the client's CPU at --parallel 64); eight pools of 8 cost 8."""


class PooledTransport(httpx2.AsyncBaseTransport):
    """Hands requests round-robin to several network transports, each its own pool."""

    def __init__(self, pools: int) -> None:
        from openai._constants import DEFAULT_CONNECTION_LIMITS

        tls = httpx2.create_ssl_context()  # one, not one per pool: each loads the CA file
        self._pools = [
            httpx2.AsyncHTTPTransport(verify=tls, limits=DEFAULT_CONNECTION_LIMITS)
            for _ in range(pools)
        ]
        self._next = itertools.cycle(self._pools)

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        return await next(self._next).handle_async_request(request)

    async def aclose(self) -> None:
        for pool in self._pools:
            await pool.aclose()


class GenerationGateway(ModelGateway):
    """The model gateway, with ``VariationModel`` as the mock provider's transport and
    ``parallel`` calls in flight spread over pools of ``CALLS_PER_POOL``."""

    def __init__(
        self,
        spec: ModelSpec,
        endpoint: Endpoint,
        redactor: Redactor,
        mock: VariationModel | None = None,
        parallel: int = 1,
    ) -> None:
        super().__init__(spec, endpoint, redactor)
        self._mock = mock
        self._pools = max(1, -(-parallel // CALLS_PER_POOL))

    def _inner(self, asynchronous: bool) -> Any:
        if self.spec.provider == "mock" and self._mock is not None:
            return self._mock
        if asynchronous and self._pools > 1:
            return PooledTransport(self._pools)
        return super()._inner(asynchronous)
