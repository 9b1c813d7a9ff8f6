"""Group commit: appends from many concurrent runs, batched into few transactions.

Runs hand their events to a ``BatchWriter`` and move on; one background thread drains
whatever has queued up and appends it with ``EventStore.append_batch`` in a single
transaction. Each request carries the stream version it expects, so ordering within a
stream is checked by the store, not assumed. A batch that loses an optimistic-concurrency
race is retried request by request, so only the conflicting stream's append is refused;
once a stream's append is refused, every later append of this writer to that stream is
refused too (another process owns it now: appending on would interleave two runs).

The writer never dies silently: any failure of an append (the store's or not) is kept,
handed to the waiting callbacks, and raised by the next ``submit`` or ``flush``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from agentledger.eventstore.envelope import AppendResult
from agentledger.eventstore.errors import ConcurrencyError, StoreError
from agentledger.eventstore.store import AppendRequest, EventStore

log = logging.getLogger("agentledger.runner")

Callback = Callable[[AppendResult | None, StoreError | None], None]
LINGER_SECONDS = 0.002
"""How long the writer waits after the first queued request before committing a batch."""
MAX_PENDING = 4096
"""Requests queued and not yet committed beyond which ``submit`` waits for the writer."""
CALLER_LINGER_SECONDS = 0.02
"""How long requests wait for the thread that submits them to commit them (``commit_here``);
the writer thread commits those that have waited twice as long (a run going on)."""


@dataclass
class _Item:
    request: AppendRequest
    callback: Callback | None = None
    owner: object = None
    """Who appends (a trace's recorder): after a refusal, its later appends are refused."""

    @property
    def chain(self) -> tuple[str, object]:
        return (self.request.stream_id, self.owner)


class BatchWriter:
    """Appends submitted requests in order, batching up to ``max_batch`` per transaction.

    Runs called one after another on the loop's own thread can commit on that thread
    (``commit_due`` between runs): with quick runs, the writer thread and the runs would
    otherwise take turns on the interpreter lock, which costs more than the commits. The
    writer thread then commits only what has waited twice ``CALLER_LINGER_SECONDS`` (a
    run that goes on for a while). Either way, one committer at a time takes requests in
    the order they were submitted."""

    def __init__(
        self,
        store: EventStore,
        *,
        max_batch: int = 512,
        linger: float = LINGER_SECONDS,
        max_pending: int = MAX_PENDING,
    ) -> None:
        self._store = store
        self._max_batch = max_batch
        self._linger = linger
        self._max_pending = max_pending
        self._items: deque[tuple[float, _Item | None]] = deque()
        """Submitted and not yet taken by a committer, with when each was submitted."""
        self._failure: StoreError | None = None
        self._lost: dict[tuple[str, object], ConcurrencyError] = {}
        """(stream, owner) pairs whose append was refused, and why."""
        self.refused = 0
        """Appends refused because their stream moved (another process runs the slot)."""
        self._pending = 0
        """Submitted and not yet committed (or refused)."""
        self._state = threading.Condition()
        """Guards ``_items`` and ``_pending``; told of each submit and each commit."""
        self._committing = threading.RLock()
        """Held by whoever takes requests and commits them: one committer at a time (a
        callback that submits may commit again within)."""
        self._caller_commits = False
        self._stopped = False
        self._closed = False
        self.dropped = 0
        """Requests submitted after ``close``: not recorded."""
        self._thread = threading.Thread(target=self._loop, name="agentledger-writer", daemon=True)
        self._thread.start()

    def submit(
        self, request: AppendRequest, callback: Callback | None = None, owner: object = None
    ) -> None:
        """Queue ``request``; ``callback(result, error)`` runs on the thread that commits
        it. Once an append of ``owner`` to a stream is refused, its later ones to it are
        refused too."""
        if self._failure is not None:
            raise self._failure
        if self._closed:
            self._drop(request, callback)
            return
        if self._caller_commits and self._pending >= self._max_pending:
            self._take_and_commit()  # this thread is the committer: commit rather than wait
        with self._state:
            # Runs that make events faster than they can be committed wait here, so that
            # memory stays flat however long the experiment (the writer never stops: it
            # commits, or fails and says so).
            while self._pending >= self._max_pending and self._failure is None:
                self._state.wait(0.5)
            if self._closed:  # closed while this waited
                self._drop(request, callback)
                return
            self._pending += 1
            self._items.append((time.monotonic(), _Item(request, callback, owner)))
            if len(self._items) == 1:
                self._state.notify_all()

    def commit_here(self) -> None:
        """From now on the calling thread commits (``commit_due`` between its runs), and the
        writer thread only what has waited twice ``CALLER_LINGER_SECONDS``."""
        self._caller_commits = True

    def commit_due(self) -> None:
        """Commit, on this thread, what is due: a full batch, or requests that have waited
        ``CALLER_LINGER_SECONDS`` (a run that took longer has its events committed as it
        ends)."""
        with self._state:
            if not self._items:
                return
            waited = time.monotonic() - self._items[0][0]
            if len(self._items) < self._max_batch and waited < CALLER_LINGER_SECONDS:
                return
        self._take_and_commit()
        if self._failure is not None:
            raise self._failure

    def flush(self) -> None:
        """Block until everything submitted so far is committed (or refused)."""
        if self._caller_commits:
            while self._items and self._take_and_commit():
                pass
        with self._state:
            while self._pending:
                self._state.wait(0.5)
        if self._failure is not None:
            raise self._failure

    def close(self) -> None:
        """Flush and stop the writer thread."""
        try:
            self.flush()
        finally:
            with self._state:
                self._closed = True
                self._items.append((time.monotonic(), None))
                self._state.notify_all()
            self._thread.join()

    def _drop(self, request: AppendRequest, callback: Callback | None) -> None:
        """What is submitted after ``close`` (an agent's thread still observing after its
        experiment ended) is not recorded: said once, counted, never waited on."""
        self.dropped += 1
        if self.dropped == 1:
            log.warning(
                "events for %s arrived after the experiment ended (a thread the agent left "
                "running?); they are not recorded",
                request.stream_id,
            )
        if callback is not None:
            callback(None, StoreError("the experiment had ended; the events were not recorded"))

    def _loop(self) -> None:
        while not self._stopped:
            with self._state:
                while not self._items:
                    self._state.wait()
                submitted, first = self._items[0]
                linger = 2 * CALLER_LINGER_SECONDS if self._caller_commits else self._linger
                wait = submitted + linger - time.monotonic()
                if first is not None and wait > 0:
                    # Let the runs queue more before taking the lock they also need: fewer,
                    # larger transactions, and far fewer hand-offs of the interpreter lock.
                    # Then look again: the submitting thread may have committed meanwhile
                    # (``close`` wakes this at once).
                    self._state.wait(wait)
                    continue
            self._take_and_commit()

    def _take_and_commit(self) -> bool:
        """Take up to a batch in submission order and commit it; False when none was left
        (another committer took them)."""
        with self._committing:
            batch: list[_Item] = []
            with self._state:
                while self._items and len(batch) < self._max_batch:
                    item = self._items[0][1]
                    if item is None:
                        self._stopped = True
                        break
                    self._items.popleft()
                    batch.append(item)
            if not batch:
                return False
            try:
                self._commit(batch)
            except BaseException as exc:  # a bug or an unencodable value: fail, never hang
                log.error("appending %d events failed: %s", len(batch), exc)
                if self._failure is None:
                    self._failure = StoreError(f"recording events failed: {exc}")
            finally:
                with self._state:
                    self._pending -= len(batch)
                    self._state.notify_all()
            return True

    def _commit(self, batch: list[_Item]) -> None:
        if self._failure is not None:
            self._finish(batch, None, self._failure)
            return
        if self._lost:
            live = []
            for item in batch:
                lost = self._lost.get(item.chain)
                if lost is None:
                    live.append(item)
                else:
                    self._finish([item], None, lost)
            batch = live
            if not batch:
                return
        try:
            results = self._store.append_batch([item.request for item in batch])
        except ConcurrencyError:
            for item in batch:
                self._commit_one(item)
            return
        except StoreError as exc:
            log.error("appending %d events failed: %s", len(batch), exc)
            self._failure = exc
            self._finish(batch, None, exc)
            return
        for item, result in zip(batch, results, strict=True):
            if item.callback is not None:
                item.callback(result, None)

    def _commit_one(self, item: _Item) -> None:
        lost = self._lost.get(item.chain)
        if lost is not None:
            self._finish([item], None, lost)
            return
        try:
            result = self._store.append_batch([item.request])[0]
        except ConcurrencyError as exc:
            log.warning("append refused: %s", exc)
            self.refused += 1
            self._lost[item.chain] = exc
            self._finish([item], None, exc)
            return
        except StoreError as exc:
            self._failure = exc
            self._finish([item], None, exc)
            return
        if item.callback is not None:
            item.callback(result, None)

    @staticmethod
    def _finish(items: list[_Item], result: AppendResult | None, error: StoreError) -> None:
        for item in items:
            if item.callback is not None:
                item.callback(result, error)
