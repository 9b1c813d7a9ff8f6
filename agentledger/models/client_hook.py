"""Recording for ``openai`` clients that agents build themselves.

An agent may call ``openai.OpenAI()`` or ``AsyncOpenAI()`` on its own instead of using
``ctx.openai``. Such a client, built without an ``http_client``, makes its default HTTP
client from ``openai._base_client.SyncHttpxClientWrapper`` (``AsyncHttpxClientWrapper``).
While ``record_default_clients()`` is active (agentledger holds it for the whole of an
experiment, target import included, so module-level clients count), those classes are
replaced by subclasses whose transport is a recording transport. The transport records a
call only when it is made inside a run, attributing it to that run's trace through the
run's context variable, so it is correct under ``--parallel``; anywhere else it passes
requests through untouched. Leaving the block restores the originals. If ``openai`` is not
imported yet, the swap waits for it (an import hook), so an experiment whose agent never
uses ``openai`` does not pay for importing it. A client given its
own ``http_client`` is not recorded; build it with ``ctx.openai`` instead.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agentledger.eventstore.redaction import Redactor

BASE_CLIENT = "openai._base_client"

_lock = threading.Lock()
_depth = 0
_redactor: Redactor | None = None
_saved: tuple[Any, Any, Any] | None = None
"""The patched module and its original wrapper classes, while patched."""


def _recorded_classes(base: Any, redactor: Redactor) -> tuple[type[Any], type[Any]]:
    # Imported here: only an agent that uses openai pays for the HTTP stack.
    import httpx2
    from openai._constants import DEFAULT_CONNECTION_LIMITS

    from agentledger.models.recording import AsyncRecordingTransport, RecordingTransport

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


def _patch(base: Any) -> None:
    """Swap the wrapper classes of ``openai._base_client`` (caller holds the lock)."""
    global _saved
    if _saved is not None or _redactor is None:
        return
    _saved = (base, base.SyncHttpxClientWrapper, base.AsyncHttpxClientWrapper)
    base.SyncHttpxClientWrapper, base.AsyncHttpxClientWrapper = _recorded_classes(base, _redactor)


def _unpatch() -> None:
    global _saved
    if _saved is not None:
        base, sync_class, async_class = _saved
        base.SyncHttpxClientWrapper, base.AsyncHttpxClientWrapper = sync_class, async_class
        _saved = None


class _PatchOnImport(importlib.abc.MetaPathFinder):
    """Patches ``openai._base_client`` right after it is first imported."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != BASE_CLIENT:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        loader = spec.loader if spec is not None else None
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        original = loader.exec_module

        def exec_module(module: ModuleType) -> None:
            original(module)
            with _lock:
                if _depth > 0:
                    _patch(module)

        loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


_finder = _PatchOnImport()


@contextmanager
def record_default_clients(redactor: Redactor) -> Iterator[None]:
    """While active, ``openai`` clients built without an ``http_client`` record the calls
    they make inside a run. Re-entrant; the outermost block's redactor is used."""
    global _depth, _redactor
    with _lock:
        if _depth == 0:
            _redactor = redactor
            loaded = sys.modules.get(BASE_CLIENT)
            if loaded is not None:
                _patch(loaded)
            else:
                sys.meta_path.insert(0, _finder)
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                if _finder in sys.meta_path:
                    sys.meta_path.remove(_finder)
                _unpatch()
                _redactor = None
