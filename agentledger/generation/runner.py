"""Running a generation: every call through the recorded gateway, the file from the log.

``generate`` appends ``InputsGenerationStarted`` to a new stream ``generation-<id>``,
makes one chat call per planned item (at most ``parallel`` in flight, on one event loop)
through a recorded ``openai`` client, so each call's ``ModelCallStarted`` / ``Completed``
/ ``Failed`` land in that stream, then records per item ``InputGenerated`` (the reply
text, trimmed) or ``InputGenerationFailed``. Once every call is done it reads the stream
back, folds it into the inputs file (plan order, empty and duplicate inputs dropped),
records ``InputsGenerationCompleted`` with the counts and writes the file atomically, only
if at least one input is left. ``rewrite`` writes the same file again from the log,
offline: the same events give the same bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import httpx2
import orjson

from agentledger.errors import ModelConfigError
from agentledger.events.generation import (
    InputGenerated,
    InputGenerationFailed,
    InputsGenerationCompleted,
    InputsGenerationInterrupted,
    InputsGenerationStarted,
    generation_stream,
)
from agentledger.eventstore.envelope import utc_now
from agentledger.eventstore.errors import StoreError
from agentledger.eventstore.store import NO_STREAM, EventStore
from agentledger.generation.config import GenerationSettings
from agentledger.generation.errors import GenerationConfigError, GenerationError
from agentledger.generation.gateway import GenerationGateway, VariationModel
from agentledger.generation.inputsfile import render
from agentledger.generation.output import (
    GenerationResult,
    check_output,
    generation_view,
    write_file,
)
from agentledger.generation.plan import GenerationItem, build_plan, request
from agentledger.models.specs import (
    MOCK_API_KEY,
    MOCK_BASE_URL,
    Endpoint,
    endpoint,
    key_variable,
)

if TYPE_CHECKING:
    from openai import AsyncOpenAI

    from agentledger.experiments.context import RunContext

_QUOTES = {'"': '"', "'": "'", "\u201c": "\u201d", "\u2018": "\u2019", "`": "`"}


def model_endpoint(
    settings: GenerationSettings, env: Mapping[str, str], api_key: str | None
) -> Endpoint:
    """Where the model is reached; a real provider without a key fails here, before any
    event is written."""
    if settings.model.provider == "mock":
        return Endpoint(base_url=MOCK_BASE_URL, api_key=MOCK_API_KEY)
    try:
        return endpoint(settings.model, env, api_key=api_key)
    except ModelConfigError:
        raise GenerationConfigError(
            f"model {settings.model.label} needs an API key: pass --llm-api-key or set "
            f"{key_variable(settings.model.provider)} (or FLUXLOOP_LLM_API_KEY, or "
            "input_generation.llm.api_key); --mode deterministic generates offline"
        ) from None


def trim_reply(text: str) -> str:
    """A reply as an input: whitespace trimmed, and one pair of quotes wrapping it all."""
    text = text.strip()
    if len(text) >= 2 and _QUOTES.get(text[0]) == text[-1]:
        inner = text[1:-1]
        if text[0] not in inner:
            text = inner.strip()
    return text


class NoTextError(ValueError):
    """A reply that holds no input text (not JSON, no choices, tool calls, ...)."""


def reply_text(body: bytes) -> str:
    """The text of a ``chat.completion`` body; a reply without one raises ``NoTextError``."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise NoTextError("the reply is not JSON") from None
    choices = data.get("choices") if isinstance(data, dict) else None
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise NoTextError("the reply has no choices")
    message = choices[0].get("message")
    content = message.get("content") if isinstance(message, dict) else None
    if not isinstance(content, str):
        what = (
            "tool calls" if isinstance(message, dict) and message.get("tool_calls") else "no text"
        )
        reason = choices[0].get("finish_reason")
        raise NoTextError(f"the reply holds {what} (finish_reason {reason})")
    return content


def _failure(exc: BaseException) -> tuple[str, str]:
    status = getattr(exc, "status_code", None)
    kind = f"HTTP{status}" if isinstance(status, int) else type(exc).__name__
    message = str(getattr(exc, "message", None) or exc) or kind
    return kind, message.splitlines()[0][:500]


class _Calls:
    """The planned calls of one generation, made on one event loop."""

    def __init__(
        self,
        settings: GenerationSettings,
        context: RunContext,
        client: AsyncOpenAI,
        on_done: Callable[[int, bool], None] | None,
    ) -> None:
        self._settings = settings
        self._context = context
        self._client = client
        self._on_done = on_done
        self.finished = 0

    async def run(self, items: list[GenerationItem]) -> None:
        limit = asyncio.Semaphore(self._settings.parallel)

        async def one(item: GenerationItem) -> None:
            async with limit:
                await self._call(item)

        await asyncio.gather(*(one(item) for item in items))

    async def _call(self, item: GenerationItem) -> None:
        index = item.planned.index
        try:
            # The client's own request path (documented for any endpoint), without the
            # typed request transform and response models: they cost more CPU than the
            # rest of a call, and only the reply's text is wanted.
            response = await self._client.post(
                "/chat/completions",
                cast_to=httpx2.Response,
                body=request(self._settings, item),
                options={"timeout": self._settings.request_timeout},
            )
            text = trim_reply(reply_text(response.content))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # any failed call is recorded; the others go on
            kind, message = _failure(exc)
            if isinstance(exc, NoTextError):
                kind = "NoText"
            self._context.record_event(
                InputGenerationFailed(index=index, error_type=kind, error_message=message)
            )
            self._done(index, False)
            return
        self._context.record_event(InputGenerated(index=index, input=text))
        self._done(index, True)

    def _done(self, index: int, ok: bool) -> None:
        self.finished += 1
        if self._on_done is not None:
            self._on_done(index, ok)


def plan_items(settings: GenerationSettings) -> list[GenerationItem]:
    """The planned calls (what ``--dry-run`` shows)."""
    return build_plan(settings)


def generate(
    settings: GenerationSettings,
    store: EventStore,
    env: Mapping[str, str],
    *,
    api_key: str | None = None,
    overwrite: bool = False,
    on_start: Callable[[str, int], None] | None = None,
    on_done: Callable[[int, bool], None] | None = None,
) -> GenerationResult:
    """Run a generation (see the module docstring); ``on_start(id, planned)`` and
    ``on_done(index, ok)`` report progress. The file is written only when at least one
    input is left; the caller judges failures from ``result.view``."""
    from agentledger.experiments.context import RunContext, TraceRecorder
    from agentledger.experiments.writer import BatchWriter

    output = Path(settings.output)
    check_output(output, overwrite)
    items = build_plan(settings)
    if not items:
        raise GenerationError("the plan is empty: no base input to vary")
    model = model_endpoint(settings, env, api_key)
    mock = (
        VariationModel(items, settings.strategy_prompts)
        if settings.model.provider == "mock"
        else None
    )
    gateway = GenerationGateway(
        settings.model, model, store.redactor, mock, parallel=settings.parallel
    )
    generation_id = uuid.uuid4().hex[:12]
    stream = generation_stream(generation_id)
    metadata = {"correlation_id": generation_id}
    store.append(
        stream,
        [
            InputsGenerationStarted(
                generation_id=generation_id,
                # Without the key field: even empty, its name makes the store scrub the
                # whole document (plan included) for secrets.
                settings=settings.model_dump(mode="json", exclude={"model": {"api_key"}}),
                plan=[item.planned for item in items],
                output=str(output),
                started_at=utc_now(),
            )
        ],
        expected_version=NO_STREAM,
        metadata=metadata,
    )
    if on_start is not None:
        on_start(generation_id, len(items))
    writer = BatchWriter(store)
    recorder = TraceRecorder(writer, stream, version=1, metadata=metadata)
    context = RunContext(
        recorder,
        trace_id=generation_id,
        experiment_id=None,
        input="",
        persona=None,
        iteration=0,
        metadata={},
        seed=0,
        gateway=gateway,
    )
    calls = _Calls(settings, context, gateway.async_client(), on_done)

    async def run_all() -> None:
        token = context.activate()  # the recording transport finds the stream through it
        try:
            await calls.run(items)
        finally:
            RunContext.deactivate(token)
            await gateway.aclose()

    try:
        asyncio.run(run_all())
    except BaseException as exc:
        # Record how it ended if the store still takes it; the error that stopped the
        # generation is the one to report either way.
        with contextlib.suppress(StoreError):
            writer.close()
            reason = "interrupted" if isinstance(exc, KeyboardInterrupt) else type(exc).__name__
            store.append(
                stream,
                [
                    InputsGenerationInterrupted(
                        generation_id=generation_id, reason=reason, finished=calls.finished
                    )
                ],
                expected_version=recorder.version,
                metadata=metadata,
            )
        raise
    writer.close()
    view = generation_view(store, generation_id)
    store.append(
        stream,
        [
            InputsGenerationCompleted(
                generation_id=generation_id,
                planned=view.planned,
                generated=len(view.entries),
                failed=view.failed,
                duplicates=view.duplicates,
                empty=view.empty,
            )
        ],
        expected_version=recorder.version,
        metadata=metadata,
    )
    view.completed = True
    if view.entries:
        try:
            write_file(output, render(view), overwrite=overwrite)
        except GenerationError as exc:
            raise GenerationError(
                f"{exc}; generation {generation_id} is recorded: write it with "
                f"`agentledger generate inputs --replay {generation_id} -o FILE`"
            ) from None
    return GenerationResult(generation_id, view, output, bool(view.entries))
