"""The ``mock`` provider: deterministic chat completions from an in-process transport.

``MockModelTransport`` answers ``/chat/completions`` behind a real ``openai`` client, so
everything runs offline and without a key. The answer depends only on the request:

- tools offered (and ``tool_choice`` is not ``none``) and the last message is the user's:
  one call to the chosen tool (``tool_choice``'s function, else the first tool), with
  arguments made from its JSON schema (strings get the user's message, numbers 1, ...);
- the last message is a tool result: ``Tool results: <contents>``;
- ``response_format`` ``json_schema``: a JSON object matching the schema's shape (a
  scripted reply that is a JSON object already is kept as it is);
- otherwise ``mock:echo`` repeats the last user message and ``mock:scripted`` gives its
  n-th reply for the n-th assistant turn (the last reply once the script runs out).

``stream: true`` returns the same answer as server-sent events, word by word, with a usage
chunk when ``stream_options.include_usage`` is set. Token counts are word counts.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

import httpx2
import orjson

from agentledger.models.fingerprint import endpoint_of

JsonDict = dict[str, Any]
_WORDS = re.compile(r"\S+\s*|\s+")


def message_text(message: JsonDict) -> str:
    """The text of a chat message (string content, or its text parts joined)."""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return ""


def _count(text: str) -> int:
    return len(text.split())


def _last_user_text(messages: Sequence[JsonDict]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            return message_text(message)
    return ""


def example_value(schema: Any, text: str) -> Any:
    """A value of the JSON schema's shape: strings are ``text``, numbers 1, and so on."""
    if not isinstance(schema, dict):
        return text
    if schema.get("enum"):
        return schema["enum"][0]
    if "const" in schema:
        return schema["const"]
    for key in ("anyOf", "oneOf"):
        if schema.get(key):
            return example_value(schema[key][0], text)
    kind = schema.get("type", "object" if "properties" in schema else "string")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "string")
    if kind == "object":
        properties = schema.get("properties") or {}
        return {name: example_value(sub, text) for name, sub in properties.items()}
    if kind == "array":
        return [example_value(schema.get("items"), text)]
    if kind == "integer":
        return 1
    if kind == "number":
        return 1.0
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    return text


def _chosen_tool(body: JsonDict) -> JsonDict | None:
    tools = [t for t in body.get("tools") or [] if isinstance(t, dict) and t.get("function")]
    choice = body.get("tool_choice")
    if not tools or choice == "none":
        return None
    if isinstance(choice, dict):
        wanted = (choice.get("function") or {}).get("name")
        return next((t for t in tools if t["function"].get("name") == wanted), tools[0])
    return tools[0]


def _digest(body: JsonDict) -> str:
    return hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()[:24]


def _is_json_object(text: str) -> bool:
    """Whether a scripted reply already is the JSON object a schema asks for."""
    try:
        return isinstance(orjson.loads(text), dict)
    except orjson.JSONDecodeError:
        return False


def reply_message(body: JsonDict, mode: str, replies: Sequence[str] = ()) -> JsonDict:
    """The assistant message the mock answers ``body`` with (see the module docstring)."""
    messages = [m for m in body.get("messages") or [] if isinstance(m, dict)]
    last = messages[-1] if messages else {}
    user_text = _last_user_text(messages)
    tool = _chosen_tool(body)
    if tool is not None and last.get("role") == "user":
        function = tool["function"]
        arguments = example_value(function.get("parameters") or {}, user_text)
        return {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": f"call_{_digest(body)[:16]}",
                    "type": "function",
                    "function": {
                        "name": function.get("name", "tool"),
                        "arguments": orjson.dumps(arguments).decode(),
                    },
                }
            ],
        }
    if last.get("role") == "tool":
        results = [message_text(m) for m in messages if m.get("role") == "tool"]
        text = "Tool results: " + "; ".join(results)
    elif mode == "scripted" and replies:
        turn = sum(1 for m in messages if m.get("role") == "assistant")
        text = replies[min(turn, len(replies) - 1)]
    else:
        text = user_text
    response_format = body.get("response_format") or {}
    if response_format.get("type") == "json_schema" and not _is_json_object(text):
        schema = (response_format.get("json_schema") or {}).get("schema") or {}
        text = orjson.dumps(example_value(schema, text)).decode()
    elif response_format.get("type") == "json_object":
        text = orjson.dumps({"answer": text}).decode()
    return {"role": "assistant", "content": text}


def completion(body: JsonDict, mode: str = "echo", replies: Sequence[str] = ()) -> JsonDict:
    """A ``chat.completion`` answering ``body``."""
    message = reply_message(body, mode, replies)
    prompt = sum(_count(message_text(m)) for m in body.get("messages") or [] if isinstance(m, dict))
    if message.get("tool_calls"):
        produced = sum(max(1, len(c["function"]["arguments"]) // 4) for c in message["tool_calls"])
        finish = "tool_calls"
    else:
        produced = _count(message["content"] or "")
        finish = "stop"
    return {
        "id": f"chatcmpl-mock-{_digest(body)}",
        "object": "chat.completion",
        "created": 0,
        "model": body.get("model") or "mock",
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": produced,
            "total_tokens": prompt + produced,
        },
    }


def stream_chunks(body: JsonDict, done: JsonDict) -> list[JsonDict]:
    """The ``chat.completion.chunk`` sequence that streams the completion ``done``."""
    choice = done["choices"][0]
    message = choice["message"]
    base = {
        "id": done["id"],
        "object": "chat.completion.chunk",
        "created": 0,
        "model": done["model"],
    }

    def chunk(delta: JsonDict, finish: str | None = None) -> JsonDict:
        return {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

    chunks = [chunk({"role": "assistant", "content": ""})]
    for index, call in enumerate(message.get("tool_calls") or []):
        arguments = call["function"]["arguments"]
        half = len(arguments) // 2
        head = {
            "id": call["id"],
            "type": "function",
            "function": {"name": call["function"]["name"], "arguments": arguments[:half]},
        }
        chunks.append(chunk({"tool_calls": [{"index": index, **head}]}))
        chunks.append(
            chunk({"tool_calls": [{"index": index, "function": {"arguments": arguments[half:]}}]})
        )
    for piece in _WORDS.findall(message.get("content") or ""):
        chunks.append(chunk({"content": piece}))
    chunks.append(chunk({}, choice["finish_reason"]))
    if (body.get("stream_options") or {}).get("include_usage"):
        chunks.append({**base, "choices": [], "usage": done["usage"]})
    return chunks


def sse_event(data: JsonDict | str) -> bytes:
    """One server-sent event carrying ``data`` (JSON, or a literal such as ``[DONE]``)."""
    payload = data if isinstance(data, str) else orjson.dumps(data).decode()
    return f"data: {payload}\n\n".encode()


def error_body(status: int, message: str, kind: str) -> bytes:
    """An OpenAI-style error document."""
    return orjson.dumps({"error": {"message": message, "type": kind, "code": status}})


class MockModelTransport(httpx2.BaseTransport, httpx2.AsyncBaseTransport):
    """Answers chat completions in process; usable by sync and async clients."""

    def __init__(self, mode: str = "echo", replies: Sequence[str] = ()) -> None:
        self.mode = mode
        self.replies = tuple(replies)

    def respond(self, request: httpx2.Request, content: bytes) -> httpx2.Response:
        """The response to a request whose body is ``content``."""
        if endpoint_of(request.url.path) != "chat/completions":
            return httpx2.Response(
                404,
                content=error_body(
                    404,
                    f"the mock provider only serves chat/completions, not {request.url.path}",
                    "not_found",
                ),
                headers={"content-type": "application/json"},
            )
        try:
            body = orjson.loads(content)
        except orjson.JSONDecodeError:
            return httpx2.Response(
                400,
                content=error_body(400, "request body is not JSON", "invalid_request_error"),
                headers={"content-type": "application/json"},
            )
        done = completion(body, self.mode, self.replies)
        if not body.get("stream"):
            return httpx2.Response(
                200, content=orjson.dumps(done), headers={"content-type": "application/json"}
            )
        events = b"".join(sse_event(c) for c in stream_chunks(body, done)) + sse_event("[DONE]")
        return httpx2.Response(
            200, stream=EventStreamBody(events), headers={"content-type": "text/event-stream"}
        )

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        return self.respond(request, request.read())

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        return self.respond(request, await request.aread())


class EventStreamBody(httpx2.SyncByteStream, httpx2.AsyncByteStream):
    """An SSE body, one event per read, for sync and async clients alike; ``error`` is
    raised after the last event (a connection lost mid-stream)."""

    def __init__(self, content: bytes, error: Exception | None = None) -> None:
        self._events = [part + b"\n\n" for part in content.split(b"\n\n") if part]
        self._error = error

    def __iter__(self) -> Iterator[bytes]:
        yield from self._events
        if self._error is not None:
            raise self._error

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for event in self._events:
            yield event
        if self._error is not None:
            raise self._error
