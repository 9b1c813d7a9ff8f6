"""The recording transport: every model call made inside a run becomes events of its trace.

``RecordingTransport`` (sync) and ``AsyncRecordingTransport`` wrap the transport an
``openai`` client really talks through (the network, or the mock provider). For each
request made while a run is current (``current_context()``) they append
``ModelCallStarted`` (redacted body, fingerprint, attempt) and, once the response is read,
``ModelCallCompleted`` (body or streamed chunks in order, usage, latency, status) or
``ModelCallFailed`` (HTTP error, timeout, malformed body, error in mid-stream). Outside a
run they pass requests through untouched. Headers are never recorded, so neither are keys.
"""

from __future__ import annotations

import contextlib
import json
import time
import zlib
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import httpx2
import orjson

from agentledger.events.payloads import (
    ModelCallCompleted,
    ModelCallFailed,
    ModelCallStarted,
    Payload,
)
from agentledger.eventstore.envelope import escape_surrogates
from agentledger.eventstore.redaction import Redactor
from agentledger.models.fingerprint import endpoint_of, fingerprint
from agentledger.models.mock import EventStreamBody, error_body, sse_event
from agentledger.replay.book import Divergence, RecordedCall, RecordMode, ReplayState

JsonDict = dict[str, Any]
_BODY_LIMIT = 4000  # characters of an error body kept in ModelCallFailed
_NOT_JSON = (ValueError, RecursionError)
"""What ``_loads`` raises for a body that is not JSON (or nested past any sane depth)."""


def _loads(data: bytes) -> Any:
    """JSON as a server or client sends it. orjson refuses an escaped lone surrogate
    (``"\\ud800"``), which JSON allows and the ``openai`` client accepts: such a body is
    parsed by the standard library, each lone surrogate kept as its escape text (what the
    store would make of it), so it is recorded, fingerprinted and replayed like any other."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return escape_surrogates(json.loads(data))


class CallSink(Protocol):
    """What a run offers the transport: its trace, call numbering, its event stream, and
    (when it replays) the recording to answer from."""

    trace_id: str

    @property
    def replay(self) -> ReplayState | None: ...

    def next_call_index(self) -> int: ...

    def record_event(self, *payloads: Payload) -> None: ...

    def diverge(self, divergence: Divergence) -> None: ...

    def note_model_tool_calls(self, response: Mapping[str, Any] | None) -> None: ...

    def note_tool_results(self, request: Mapping[str, Any]) -> None: ...


@dataclass(frozen=True)
class _Parsed:
    """A request body read once: redacted, with its endpoint and fingerprint."""

    body: Any
    endpoint: str
    fingerprint: str


def _parse(request: httpx2.Request, content: bytes, redactor: Redactor) -> _Parsed:
    try:
        body: Any = _loads(content) if content else {}
    except _NOT_JSON:
        body = {"unparsed_body": content.decode("utf-8", "replace")}
    if redactor.needs_scrub(content):
        body = redactor.scrub(body)
    endpoint = endpoint_of(request.url.path)
    return _Parsed(body, endpoint, fingerprint(endpoint, body))


def active_sink() -> CallSink | None:
    """The run whose model calls are being made in this context, if any."""
    from agentledger.experiments.context import current_context

    return current_context()


def provider_of(url: httpx2.URL) -> str:
    """A provider label for a client agentledger did not build, from the host it calls."""
    host = url.host or ""
    if host.endswith("anthropic.com"):
        return "anthropic"
    if host.endswith("mock.agentledger.invalid"):
        return "mock"
    return "openai"


def assemble_stream(chunks: list[JsonDict]) -> JsonDict | None:
    """The ``chat.completion`` a sequence of ``chat.completion.chunk``s adds up to."""
    if not chunks or chunks[0].get("object") not in (None, "chat.completion.chunk"):
        return None
    choices: dict[int, JsonDict] = {}
    result: JsonDict = {"object": "chat.completion"}
    for chunk in chunks:
        for key in ("id", "created", "model", "system_fingerprint"):
            if key in chunk and key not in result:
                result[key] = chunk[key]
        if chunk.get("usage"):
            result["usage"] = chunk["usage"]
        for choice in chunk.get("choices") or []:
            slot = choices.setdefault(
                choice.get("index", 0),
                {
                    "index": choice.get("index", 0),
                    "message": {"role": "assistant", "content": None},
                },
            )
            delta = choice.get("delta") or {}
            message = slot["message"]
            if delta.get("role"):
                message["role"] = delta["role"]
            if delta.get("content") is not None:
                message["content"] = (message["content"] or "") + delta["content"]
            for call in delta.get("tool_calls") or []:
                calls = message.setdefault("tool_calls", [])
                index = call.get("index", len(calls))
                while len(calls) <= index:
                    calls.append(
                        {"id": None, "type": "function", "function": {"name": "", "arguments": ""}}
                    )
                target = calls[index]
                if call.get("id"):
                    target["id"] = call["id"]
                function = call.get("function") or {}
                target["function"]["name"] += function.get("name") or ""
                target["function"]["arguments"] += function.get("arguments") or ""
            if choice.get("finish_reason"):
                slot["finish_reason"] = choice["finish_reason"]
    result["choices"] = [choices[i] for i in sorted(choices)]
    return result


class _SSEParser:
    """Splits a (possibly compressed) server-sent-event byte stream into JSON chunks."""

    def __init__(self, encoding: str) -> None:
        self._buffer = b""
        self._inflate = zlib.decompressobj(47) if encoding in ("gzip", "deflate") else None
        self.chunks: list[JsonDict] = []
        self.done = False

    def feed(self, data: bytes) -> None:
        if self._inflate is not None:
            data = self._inflate.decompress(data)
        self._buffer += data.replace(b"\r\n", b"\n")
        while b"\n\n" in self._buffer:
            event, self._buffer = self._buffer.split(b"\n\n", 1)
            self._event(event)

    def _event(self, event: bytes) -> None:
        lines = [line[5:].lstrip(b" ") for line in event.split(b"\n") if line.startswith(b"data:")]
        if not lines:
            return
        data = b"\n".join(lines)
        if data.strip() == b"[DONE]":
            self.done = True
            return
        try:
            parsed = _loads(data)
        except _NOT_JSON:
            parsed = {"malformed": data.decode("utf-8", "replace")}
        self.chunks.append(parsed if isinstance(parsed, dict) else {"value": parsed})


class _Call:
    """One model call in flight: records its start, then exactly one outcome."""

    def __init__(
        self,
        sink: CallSink,
        provider: str,
        request: httpx2.Request,
        parsed: _Parsed,
        redactor: Redactor,
        source: Literal["live", "replay"],
    ) -> None:
        self._sink = sink
        self._finished = False
        self.source: Literal["live", "replay"] = source
        body = parsed.body
        if isinstance(body, dict):
            sink.note_tool_results(body)
        self.stream = isinstance(body, dict) and bool(body.get("stream"))
        self.index = sink.next_call_index()
        self.call_id = f"{sink.trace_id}:model:{self.index}"
        self.attempt = _attempt(request)
        url = redactor.scrub_text(str(request.url.copy_with(fragment=None)))
        sink.record_event(
            ModelCallStarted(
                call_id=self.call_id,
                call_index=self.index,
                provider=provider,
                model=body.get("model") if isinstance(body, dict) else None,
                request=body if isinstance(body, dict) else {"body": body},
                fingerprint=parsed.fingerprint,
                source=source,
                stream=self.stream,
                endpoint=parsed.endpoint,
                url=url,
                attempt=self.attempt,
            )
        )
        self._started = time.perf_counter()
        self._first_chunk: float | None = None
        self._parser: _SSEParser | None = None
        self._status = 0

    def _latency(self) -> float:
        return round((time.perf_counter() - self._started) * 1000, 3)

    def _record(self, payload: Payload) -> None:
        if not self._finished:
            self._finished = True
            self._sink.record_event(payload)
            if isinstance(payload, ModelCallCompleted):
                self._sink.note_model_tool_calls(payload.response)

    def failed(self, exc: BaseException, status: int | None = None) -> None:
        """The call ended in a transport error (timeout, connection, mid-stream read)."""
        kind = "Timeout" if isinstance(exc, httpx2.TimeoutException) else type(exc).__name__
        chunks = self._parser.chunks if self._parser is not None else None
        self._record(
            ModelCallFailed(
                call_id=self.call_id,
                call_index=self.index,
                status_code=status,
                error_type=kind,
                error_message=str(exc) or kind,
                chunks=chunks,
                latency_ms=self._latency(),
                source=self.source,
                attempt=self.attempt,
            )
        )

    def wants_stream(self, response: httpx2.Response) -> bool:
        """Whether to record ``response`` chunk by chunk as it is read."""
        content_type = response.headers.get("content-type", "")
        return response.status_code < 400 and content_type.startswith("text/event-stream")

    def start_stream(self, response: httpx2.Response) -> None:
        self._status = response.status_code
        self._parser = _SSEParser(response.headers.get("content-encoding", "").lower())

    def feed(self, data: bytes) -> None:
        assert self._parser is not None
        if self._first_chunk is None:
            self._first_chunk = self._latency()
        self._parser.feed(data)

    def stream_ended(self, *, truncated: bool = False) -> None:
        """The streamed body was read to its end, or closed (``truncated`` unless the
        ``[DONE]`` event had already arrived)."""
        if self._finished or self._parser is None:
            return
        chunks = self._parser.chunks
        error = next((c for c in chunks if "error" in c or "malformed" in c), None)
        if error is not None:
            detail = error.get("error")
            message = detail.get("message") if isinstance(detail, dict) else detail
            self._record(
                ModelCallFailed(
                    call_id=self.call_id,
                    call_index=self.index,
                    status_code=self._status,
                    error_type="StreamError" if "error" in error else "MalformedChunk",
                    error_message=str(message or error.get("malformed")),
                    chunks=chunks,
                    latency_ms=self._latency(),
                    source=self.source,
                    attempt=self.attempt,
                )
            )
            return
        assembled = assemble_stream(chunks)
        self._record(
            ModelCallCompleted(
                call_id=self.call_id,
                call_index=self.index,
                status_code=self._status,
                response=assembled,
                chunks=chunks,
                usage=(assembled or {}).get("usage"),
                latency_ms=self._latency(),
                first_chunk_ms=self._first_chunk,
                truncated=truncated and not self._parser.done,
                source=self.source,
                attempts=self.attempt,
            )
        )

    def body_response(
        self, response: httpx2.Response, request: httpx2.Request, raw: bytes
    ) -> httpx2.Response:
        """Record a whole body, and the response to hand on in place of the read one."""
        self.body_read(response, raw)
        return _rebuilt(response, request, httpx2.ByteStream(raw))

    def body_read(self, response: httpx2.Response, raw: bytes) -> None:
        """A whole (non-streamed) body arrived: record the completion or the HTTP error."""
        content = raw
        if response.headers.get("content-encoding", "identity") != "identity":
            decoded = httpx2.Response(response.status_code, headers=response.headers, content=raw)
            with contextlib.suppress(httpx2.DecodingError):
                content = decoded.read()
        status = response.status_code
        text = content.decode("utf-8", "replace")
        try:
            body = _loads(content)
        except _NOT_JSON:
            body = None
        if status >= 400 or not isinstance(body, dict):
            detail = body.get("error") if isinstance(body, dict) else None
            detail = detail if isinstance(detail, dict) else {}
            if status >= 400:
                kind = str(detail.get("type") or f"HTTP{status}")
                message = str(detail.get("message") or text[:200] or f"HTTP {status}")
            else:
                kind, message = "MalformedResponse", "the response body is not a JSON object"
            self._record(
                ModelCallFailed(
                    call_id=self.call_id,
                    call_index=self.index,
                    status_code=status,
                    error_type=kind,
                    error_message=message,
                    body=text[:_BODY_LIMIT],
                    latency_ms=self._latency(),
                    source=self.source,
                    attempt=self.attempt,
                )
            )
            return
        self._record(
            ModelCallCompleted(
                call_id=self.call_id,
                call_index=self.index,
                status_code=status,
                response=body,
                usage=body.get("usage"),
                latency_ms=self._latency(),
                source=self.source,
                attempts=self.attempt,
            )
        )


def _attempt(request: httpx2.Request) -> int:
    """Which attempt of the ``openai`` client this is (it numbers its retries)."""
    try:
        return int(request.headers.get("x-stainless-retry-count", "0")) + 1
    except ValueError:
        return 1


def _route(
    sink: CallSink, provider: str, request: httpx2.Request, parsed: _Parsed, redactor: Redactor
) -> tuple[_Call, RecordedCall | None, httpx2.Response | None]:
    """Start recording the call and pick who answers it: a recording (replay), a refusal
    (a replay miss, which diverges the run), or the live transport (both None)."""
    state = sink.replay
    if state is None:
        return _Call(sink, provider, request, parsed, redactor, "live"), None, None
    recorded = state.book.take(parsed.fingerprint)
    if recorded is not None and recorded.outcome:
        return _Call(sink, provider, request, parsed, redactor, "replay"), recorded, None
    if state.mode is RecordMode.REPLAY_OR_LIVE:
        return _Call(sink, provider, request, parsed, redactor, "live"), None, None
    call = _Call(sink, provider, request, parsed, redactor, "replay")
    divergence = state.book.miss(call.index, parsed.endpoint, parsed.body)
    sink.diverge(divergence)
    # A 400 is not retried by the openai client: the agent sees one clear error.
    refusal = httpx2.Response(
        400,
        content=error_body(400, divergence.message(), "ReplayDivergence"),
        headers={"content-type": "application/json"},
    )
    return call, None, refusal


def replayed_response(recorded: RecordedCall, request: httpx2.Request) -> httpx2.Response:
    """The response a recorded call got, served again (streams chunk by chunk); a call
    that ended without a response raises the same kind of transport error."""
    data = recorded.data
    status = data.get("status_code")
    chunks = data.get("chunks")
    if chunks is not None and (status or 200) < 400:
        body = b"".join(sse_event(c["malformed"] if set(c) == {"malformed"} else c) for c in chunks)
        ended = recorded.outcome == "ModelCallCompleted" or data.get("error_type") in (
            "StreamError",
            "MalformedChunk",
        )
        error = None if ended else httpx2.RemoteProtocolError(data.get("error_message", ""))
        if recorded.outcome == "ModelCallCompleted":
            body += sse_event("[DONE]")
        return httpx2.Response(
            status or 200,
            headers={"content-type": "text/event-stream"},
            stream=EventStreamBody(body, error),
            request=request,
        )
    if recorded.outcome == "ModelCallCompleted":
        return httpx2.Response(
            status or 200,
            headers={"content-type": "application/json"},
            content=orjson.dumps(data.get("response")),
            request=request,
        )
    if status is not None:
        # retry-after-ms: the client's own retry of a recorded 429/5xx need not wait.
        return httpx2.Response(
            status,
            headers={"content-type": "application/json", "retry-after-ms": "1"},
            content=(data.get("body") or "").encode(),
            request=request,
        )
    kind = httpx2.ReadTimeout if data.get("error_type") == "Timeout" else httpx2.ConnectError
    raise kind(data.get("error_message", "recorded transport error"), request=request)


def _rebuilt(response: httpx2.Response, request: httpx2.Request, stream: Any) -> httpx2.Response:
    return httpx2.Response(
        response.status_code,
        headers=response.headers,
        stream=stream,
        request=request,
        extensions=response.extensions,
    )


CREDENTIAL_HEADERS = ("authorization", "proxy-authorization", "x-api-key", "api-key")


def learn_credentials(headers: Any, redactor: Redactor) -> None:
    """Register the credentials a request carries (an agent's own client may hold a key
    agentledger was never given) so that a server reflecting them, in an error or a body,
    cannot put them into the log or onto the console."""
    for name in CREDENTIAL_HEADERS:
        value = headers.get(name)
        if value:
            scheme, _, credential = value.partition(" ")
            secret = credential if scheme.lower() in ("bearer", "basic") and credential else value
            redactor.add_secret(secret.strip())


class _Recorder:
    """What both transports share: the redactor, the provider label, and opening a call."""

    def __init__(self, redactor: Redactor, provider: str | None) -> None:
        self._redactor = redactor
        self._provider = provider

    def _open(
        self, sink: CallSink, request: httpx2.Request, content: bytes
    ) -> tuple[_Call, RecordedCall | None, httpx2.Response | None]:
        provider = self._provider or provider_of(request.url)
        learn_credentials(request.headers, self._redactor)
        parsed = _parse(request, content, self._redactor)
        return _route(sink, provider, request, parsed, self._redactor)


class RecordingTransport(_Recorder, httpx2.BaseTransport):
    """Records the calls of a sync ``openai`` client made inside a run."""

    def __init__(
        self, inner: httpx2.BaseTransport, redactor: Redactor, provider: str | None = None
    ) -> None:
        super().__init__(redactor, provider)
        self._inner = inner

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        sink = active_sink()
        if sink is None:
            return self._inner.handle_request(request)
        call, recorded, response = self._open(sink, request, request.read())
        try:
            if response is None:
                response = (
                    replayed_response(recorded, request)
                    if recorded is not None
                    else self._inner.handle_request(request)
                )
        except Exception as exc:
            call.failed(exc)
            raise
        if call.wants_stream(response):
            call.start_stream(response)
            return _rebuilt(response, request, _RecordedStream(response, call))
        try:
            raw = b"".join(response.stream)  # type: ignore[arg-type]
        except Exception as exc:
            call.failed(exc, response.status_code)
            raise
        finally:
            response.close()
        return call.body_response(response, request, raw)

    def close(self) -> None:
        self._inner.close()


class AsyncRecordingTransport(_Recorder, httpx2.AsyncBaseTransport):
    """Records the calls of an async ``openai`` client made inside a run."""

    def __init__(
        self, inner: httpx2.AsyncBaseTransport, redactor: Redactor, provider: str | None = None
    ) -> None:
        super().__init__(redactor, provider)
        self._inner = inner

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        sink = active_sink()
        if sink is None:
            return await self._inner.handle_async_request(request)
        call, recorded, response = self._open(sink, request, await request.aread())
        try:
            if response is None:
                response = (
                    replayed_response(recorded, request)
                    if recorded is not None
                    else await self._inner.handle_async_request(request)
                )
        except Exception as exc:
            call.failed(exc)
            raise
        if call.wants_stream(response):
            call.start_stream(response)
            return _rebuilt(response, request, _AsyncRecordedStream(response, call))
        try:
            raw = b"".join([part async for part in response.stream])  # type: ignore[union-attr]
        except Exception as exc:
            call.failed(exc, response.status_code)
            raise
        finally:
            await response.aclose()
        return call.body_response(response, request, raw)

    async def aclose(self) -> None:
        await self._inner.aclose()


class _RecordedStream(httpx2.SyncByteStream):
    """Passes a streamed body through, recording its chunks in arrival order."""

    def __init__(self, response: httpx2.Response, call: _Call) -> None:
        self._response = response
        self._call = call

    def __iter__(self) -> Iterator[bytes]:
        try:
            for part in self._response.stream:  # type: ignore[union-attr]
                self._call.feed(part)
                yield part
        except Exception as exc:
            self._call.failed(exc, self._response.status_code)
            raise
        self._call.stream_ended()

    def close(self) -> None:
        self._call.stream_ended(truncated=True)
        self._response.close()


class _AsyncRecordedStream(httpx2.AsyncByteStream):
    """The async ``_RecordedStream``."""

    def __init__(self, response: httpx2.Response, call: _Call) -> None:
        self._response = response
        self._call = call

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for part in self._response.stream:  # type: ignore[union-attr]
                self._call.feed(part)
                yield part
        except Exception as exc:
            self._call.failed(exc, self._response.status_code)
            raise
        self._call.stream_ended()

    async def aclose(self) -> None:
        self._call.stream_ended(truncated=True)
        await self._response.aclose()
