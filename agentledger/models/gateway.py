"""The model gateway: recorded ``openai`` clients for one model, shared by every run.

A ``ModelGateway`` is built per experiment (or agent session) from a ``ModelSpec`` and its
resolved ``Endpoint``. Its clients are real ``openai.OpenAI`` / ``AsyncOpenAI`` objects
whose HTTP client carries a recording transport over the provider's transport (the
network, or the in-process mock), so every call made inside a run is recorded with the
trace that made it. The API key is registered with the store's redactor, so it cannot
reach the log even if an agent echoes it.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from agentledger.eventstore.redaction import Redactor
from agentledger.models.specs import Endpoint, ModelSpec

if TYPE_CHECKING:
    from openai import AsyncOpenAI, OpenAI

Messages = str | Sequence[Mapping[str, Any]]


def as_messages(prompt: Messages, system: str | None = None) -> list[dict[str, Any]]:
    """Chat messages from a prompt string (one user message) or a message list."""
    messages = (
        [{"role": "user", "content": prompt}]
        if isinstance(prompt, str)
        else [dict(m) for m in prompt]
    )
    if system is not None:
        messages.insert(0, {"role": "system", "content": system})
    return messages


class ModelGateway:
    """Builds, shares and closes the recorded clients of one model."""

    def __init__(self, spec: ModelSpec, endpoint: Endpoint, redactor: Redactor) -> None:
        self.spec = spec
        self.endpoint = endpoint
        self._redactor = redactor
        if spec.provider != "mock":  # the mock's placeholder key is no secret
            redactor.add_secret(endpoint.api_key)
        self._lock = threading.Lock()
        self._client: OpenAI | None = None
        self._async_client: AsyncOpenAI | None = None

    @property
    def model(self) -> str:
        """The model name to pass as ``model=`` in requests."""
        return self.spec.name

    def sampling(self) -> dict[str, Any]:
        """The spec's sampling parameters as request fields."""
        return self.spec.sampling()

    # The HTTP stack (httpx2, openai, the recording transports) is imported when a client
    # is first built: an experiment whose agent never calls a model does not pay for it.

    def _inner(self, asynchronous: bool) -> Any:
        if self.spec.provider == "mock":
            from agentledger.models.mock import MockModelTransport

            return MockModelTransport(self.spec.name, self.spec.replies)
        import httpx2
        from openai._constants import DEFAULT_CONNECTION_LIMITS

        if asynchronous:
            return httpx2.AsyncHTTPTransport(limits=DEFAULT_CONNECTION_LIMITS)
        return httpx2.HTTPTransport(limits=DEFAULT_CONNECTION_LIMITS)

    def client(self) -> OpenAI:
        """The shared sync client (thread-safe; built on first use)."""
        with self._lock:
            if self._client is None:
                import openai

                from agentledger.models.recording import RecordingTransport

                transport = RecordingTransport(
                    self._inner(False), self._redactor, self.spec.provider
                )
                self._client = openai.OpenAI(
                    api_key=self.endpoint.api_key,
                    base_url=self.endpoint.base_url,
                    http_client=openai.DefaultHttpxClient(transport=transport),
                )
            return self._client

    def async_client(self) -> AsyncOpenAI:
        """The shared async client, for the event loop of the experiment."""
        with self._lock:
            if self._async_client is None:
                import openai

                from agentledger.models.recording import AsyncRecordingTransport

                transport = AsyncRecordingTransport(
                    self._inner(True), self._redactor, self.spec.provider
                )
                self._async_client = openai.AsyncOpenAI(
                    api_key=self.endpoint.api_key,
                    base_url=self.endpoint.base_url,
                    http_client=openai.DefaultAsyncHttpxClient(transport=transport),
                )
            return self._async_client

    def chat_request(
        self, prompt: Messages, system: str | None, params: Mapping[str, Any]
    ) -> dict[str, Any]:
        """Keyword arguments of ``chat.completions.create`` for a simple chat call."""
        return {
            "model": self.model,
            "messages": as_messages(prompt, system),
            **self.sampling(),
            **params,
        }

    def close(self) -> None:
        """Close the sync client (the async one is closed by ``aclose`` on its loop)."""
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()

    async def aclose(self) -> None:
        """Close the async client, on the event loop that used it."""
        with self._lock:
            client, self._async_client = self._async_client, None
        if client is not None:
            await client.close()
