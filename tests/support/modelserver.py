"""A real OpenAI-compatible HTTP server on 127.0.0.1, for tests and benchmarks.

``ModelServer`` serves ``POST /v1/chat/completions`` with and without ``stream``, tool
calls, ``response_format`` json_schema and usage, answering like the mock provider (echo,
or ``replies`` in order). It adds what a network model has and the mock has not: latency
(``latency`` seconds before answering, ``chunk_delay`` between streamed chunks) and faults
on demand, from a queue (``fail_next``) or per request from the ``x-mock-fault`` header:

    429, 500           an OpenAI-style error body with that status
    timeout            answer only after ``hang_seconds`` (longer than the client waits)
    malformed          status 200 with a body that is not JSON
    stream_error       a streamed answer with an error event after its first chunks
    disconnect         a streamed answer cut off mid-way (connection closed)

``gzip = True`` compresses whole bodies. Every request is kept in ``requests`` (path,
headers, JSON body) for assertions.
"""

from __future__ import annotations

import gzip
import json
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson

from agentledger.models.mock import completion, error_body, sse_event, stream_chunks

FAULTS = ("429", "500", "timeout", "malformed", "stream_error", "disconnect")


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: Any


class ModelServer:
    """Start with ``start()`` (or as a context manager); ``base_url`` ends in ``/v1``."""

    def __init__(self, *, latency: float = 0.0, chunk_delay: float = 0.0) -> None:
        self.latency = latency
        self.chunk_delay = chunk_delay
        self.hang_seconds = 5.0
        self.gzip = False
        """Compress whole (non-streamed) bodies, as api.openai.com does."""
        self.reflect_auth = False
        """Answer with the request's bearer credential (a server that leaks it)."""
        self.replies: list[str] = []
        self.queue: deque[str] = deque()
        """Answers given in order, one per request, before ``replies``/echo take over."""
        self.requests: list[Received] = []
        self._faults: deque[str] = deque()
        self._lock = threading.Lock()
        self._server = _QuietServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self._server.request_queue_size = 1024
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1"

    def fail_next(self, fault: str, times: int = 1) -> None:
        """Make the next ``times`` requests fail with ``fault`` (one of ``FAULTS``)."""
        if fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}; faults: {', '.join(FAULTS)}")
        with self._lock:
            self._faults.extend([fault] * times)

    def take_fault(self, header: str | None) -> str | None:
        if header:
            return header
        with self._lock:
            return self._faults.popleft() if self._faults else None

    def next_queued(self) -> str | None:
        with self._lock:
            return self.queue.popleft() if self.queue else None

    def record(self, received: Received) -> None:
        with self._lock:
            self.requests.append(received)

    def start(self) -> ModelServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> ModelServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _QuietServer(ThreadingHTTPServer):
    """Clients hanging up (a closed pool, a cancelled run) is normal here, not an error."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


def _json_body(value: Any) -> bytes:
    """JSON as a real server may send it: lone surrogates escaped (``\\ud800``), which
    orjson refuses to encode and JSON allows."""
    try:
        return orjson.dumps(value)
    except orjson.JSONEncodeError:
        return json.dumps(value).encode()


def _handler(model: ModelServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _send(self, status: int, body: bytes, content_type: str = "application/json") -> None:
            self.send_response(status)
            self.send_header("content-type", content_type)
            if model.gzip:
                body = gzip.compress(body)
                self.send_header("content-encoding", "gzip")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _chunk(self, data: bytes) -> None:
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()

        def do_POST(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            raw = self.rfile.read(length)
            try:
                body = orjson.loads(raw)
            except orjson.JSONDecodeError:
                body = None
            model.record(Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body))
            if not self.path.rstrip("/").endswith("/chat/completions"):
                self._send(404, error_body(404, f"no route {self.path}", "not_found"))
                return
            if not isinstance(body, dict):
                self._send(400, error_body(400, "body is not JSON", "invalid_request_error"))
                return
            fault = model.take_fault(self.headers.get("x-mock-fault"))
            time.sleep(model.hang_seconds if fault == "timeout" else model.latency)
            if fault in ("429", "500"):
                status = int(fault)
                kind = "rate_limit_exceeded" if status == 429 else "server_error"
                self._send(status, error_body(status, f"injected {status}", kind))
                return
            if fault == "malformed":
                self._send(200, b'{"id": "chatcmpl-broken", "choices": [')
                return
            queued = model.next_queued()
            if model.reflect_auth:
                # The bare credential, as a leaking server might print it: no "Bearer" for
                # the pattern of bearer credentials to catch.
                queued = f"you sent {(self.headers.get('authorization') or '').partition(' ')[2]}"
            if queued is not None:
                done = completion(body, "scripted", [queued])
            else:
                done = completion(body, "scripted" if model.replies else "echo", model.replies)
            if not body.get("stream"):
                self._send(200, _json_body(done))
                return
            self.send_response(200)
            self.send_header("content-type", "text/event-stream")
            self.send_header("transfer-encoding", "chunked")
            self.end_headers()
            chunks = stream_chunks(body, done)
            for number, chunk in enumerate(chunks):
                if number == 2 and fault == "stream_error":
                    self._chunk(
                        sse_event(
                            {
                                "error": {
                                    "message": "injected mid-stream error",
                                    "type": "server_error",
                                }
                            }
                        )
                    )
                    break
                if number == 2 and fault == "disconnect":
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                self._chunk(sse_event(chunk))
                if model.chunk_delay:
                    time.sleep(model.chunk_delay)
            else:
                self._chunk(sse_event("[DONE]"))
            self._chunk(b"")

    return Handler
