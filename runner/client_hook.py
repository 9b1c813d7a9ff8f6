"""Recording for ``openai`` clients that agents build themselves.

An agent may call ``openai.OpenAI()`` or ``AsyncOpenAI()`` on its own instead of using
``ctx.openai``. Such a client, built without an ``http_client``, makes its default HTTP
client from ``openai._base_client.SyncHttpxClientWrapper`` (``AsyncHttpxClientWrapper``).
While ``record_default_clients()`` is active (agentledger holds it for the whole of an
experiment, target import included, so module-level clients count), those classes are
replaced by subclasses whose transport is a recording transport. The transport records a
call only when it is made inside a run, attributing it to that run's trace through the
run's context variable, so it is correct under ``--parallel``; anywhere else it passes
requests through untouched. Leaving the block restores the originals. A client given its
own ``http_client`` is not recorded; build it with ``ctx.openai`` instead.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx2

from eventstore.redaction import Redactor
from runner.recording import AsyncRecordingTransport, RecordingTransport

_lock = threading.Lock()
_depth = 0
_saved: tuple[Any, Any] | None = None


def _recorded_classes(redactor: Redactor) -> tuple[type[Any], type[Any]]:
    from openai import _base_client as base
    from openai._constants import DEFAULT_CONNECTION_LIMITS

    sync_base: Any = base.SyncHttpxClientWrapper
    async_base: Any = base.AsyncHttpxClientWrapper

    class RecordedSyncClient(sync_base):
        def __init__(self, **kwargs: Any) -> None:
            limits = kwargs.get("limits") or DEFAULT_CONNECTION_LIMITS
            inner = httpx2.HTTPTransport(limits=limits)
            kwargs.setdefault("transport", RecordingTransport(inner, redactor))
            super().__init__(**kwargs)

    class RecordedAsyncClient(async_base):
        def __init__(self, **kwargs: Any) -> None:
            limits = kwargs.get("limits") or DEFAULT_CONNECTION_LIMITS
            inner = httpx2.AsyncHTTPTransport(limits=limits)
            kwargs.setdefault("transport", AsyncRecordingTransport(inner, redactor))
            super().__init__(**kwargs)

    return RecordedSyncClient, RecordedAsyncClient


@contextmanager
def record_default_clients(redactor: Redactor) -> Iterator[None]:
    """While active, ``openai`` clients built without an ``http_client`` record the calls
    they make inside a run. Re-entrant; the outermost block's redactor is used."""
    global _depth, _saved
    from openai import _base_client as base

    with _lock:
        if _depth == 0:
            _saved = (base.SyncHttpxClientWrapper, base.AsyncHttpxClientWrapper)
            recorded_sync, recorded_async = _recorded_classes(redactor)
            base.SyncHttpxClientWrapper = recorded_sync  # type: ignore[misc]
            base.AsyncHttpxClientWrapper = recorded_async  # type: ignore[misc]
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _saved is not None:
                base.SyncHttpxClientWrapper, base.AsyncHttpxClientWrapper = _saved  # type: ignore[misc]
                _saved = None
