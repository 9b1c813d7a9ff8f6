"""A worker's claims on the slot board: which slots it runs, kept leased while it does.

``ClaimFeed`` is the ``SlotFeed`` of a worker of a shared experiment (see
``runner.workers``): it claims slots a few at a time, ahead of need; a heartbeat renews
their leases; a slot claimed before (its holder died, was late, or was interrupted) is
started again at its trace stream's head, which fences off the old holder's appends; a
refused result is recorded as ``SlotResultRejected``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import threading
import time
import uuid
from collections import deque
from collections.abc import Mapping
from functools import partial
from typing import Any

from agentledger.events.payloads import (
    ExperimentPlan,
    SlotResultRejected,
    TraceStarted,
    final_outcome,
)
from agentledger.events.streams import experiment_stream, trace_stream
from agentledger.eventstore.envelope import AppendResult
from agentledger.eventstore.errors import ConcurrencyError, StoreError
from agentledger.eventstore.slots import Claim, SlotBoard
from agentledger.eventstore.store import NO_STREAM, EventStore
from agentledger.experiments.feeds import Assignment
from agentledger.experiments.plan import Slot, iter_slots

log = logging.getLogger("agentledger.workers")

LEASE_SECONDS = 30.0
"""How long a claim holds without renewal; workers renew every third of it."""
POLL_SECONDS = 0.05
"""How often a worker with nothing to claim looks again (one claim per worker process per
interval, however many of its runs are waiting)."""
_TRIES = 8


def worker_name() -> str:
    """This worker's name on the board and in its log messages: host, pid, and a nonce."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class ClaimFeed:
    """Slots claimed from the board for one worker process. A heartbeat thread renews the
    leases of the slots it holds, and passes on the ones it finished; on close, the slots
    it holds but did not finish (interrupted runs) are given back."""

    def __init__(
        self,
        store: EventStore,
        experiment_id: str,
        plan: ExperimentPlan,
        *,
        lease_seconds: float,
        batch: int = 1,
        poll_seconds: float = POLL_SECONDS,
    ) -> None:
        """``batch``: slots claimed per transaction (they wait here, leased, until a run
        is free to take them)."""
        self._store = store
        self._board = SlotBoard(store)
        self.experiment_id = experiment_id
        self.owner = worker_name()
        self._slots = {slot.number: slot for slot in iter_slots(experiment_id, plan)}
        self._lease = lease_seconds
        self._poll = poll_seconds
        self._batch = batch
        self._claimed: deque[tuple[int, int]] = deque()
        """Claimed slots waiting for a free run."""
        self._refill: asyncio.Task[None] | None = None
        self._quiet_until = 0.0
        """Until then, the last claim found nothing: waiting runs do not ask again."""
        self._exhausted = False
        self._lock = threading.Lock()
        self._held: set[int] = set()
        self._done: list[int] = []
        self.rejected = 0
        """Results refused because the slot had been taken over."""
        self.taken_over = 0
        """Slots this worker took over from a worker whose lease ran out."""
        self._stop = threading.Event()
        self._heartbeat = threading.Thread(target=self._beat, name="agentledger-lease", daemon=True)

    def __enter__(self) -> ClaimFeed:
        self._heartbeat.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def take(self) -> Assignment | None:
        """The next slot this worker runs, once claimed; None when every slot is done.
        The next batch is claimed ahead, while the last few claimed slots start, so a run
        that frees up seldom waits for the database."""
        while True:
            with self._lock:
                head = self._claimed.popleft() if self._claimed else None
                low = self._batch > 1 and len(self._claimed) * 2 < self._batch
            if head is not None:
                number, claimed_before = head
                if low:
                    self._refilling()
                slot = self._slots[number]
                return Assignment(
                    slot,
                    fence=partial(self._fence, slot) if claimed_before else None,
                    on_final=partial(self._final, slot),
                )
            if self._exhausted:
                return None
            await asyncio.shield(self._refilling())
            if not self._claimed and not self._exhausted:
                await asyncio.sleep(self._poll)

    def _refilling(self) -> asyncio.Task[None]:
        """The claim in flight, or a new one (one at a time per worker)."""
        if self._refill is None or self._refill.done():
            self._refill = asyncio.create_task(self._fetch())
        return self._refill

    async def _fetch(self) -> None:
        if time.monotonic() < self._quiet_until:
            return  # the last claim found nothing a moment ago
        claim = await asyncio.to_thread(self._claim)
        if claim.remaining is not None:
            self._quiet_until = time.monotonic() + self._poll
            if claim.remaining == 0:
                self._exhausted = True  # every slot is done: every waiting run stops

    def _claim(self) -> Claim:
        with self._lock:
            done, self._done = self._done, []
        try:
            claim = self._board.claim(
                self.experiment_id,
                self.owner,
                limit=self._batch,
                lease_seconds=self._lease,
                done=done,
            )
        except BaseException:
            with self._lock:
                self._done.extend(done)
            raise
        with self._lock:
            self._held.update(number for number, _ in claim.slots)
            self._claimed.extend(claim.slots)
        return claim

    def _fence(self, slot: Slot, started: TraceStarted, metadata: Mapping[str, Any]) -> int | None:
        """Start a slot claimed before (its holder died, was late, or was interrupted) at
        its trace stream's head; None if the trace has its final event after all."""
        stream = trace_stream(slot.trace_id)
        for _ in range(_TRIES):
            history = self._store.read_stream(stream)
            last = history[-1] if history else None
            if last is not None and final_outcome(last.type, last.data) is not None:
                with self._lock:
                    self._held.discard(slot.number)
                    self._done.append(slot.number)
                return None
            version = last.stream_version if last is not None else NO_STREAM
            try:
                self._store.append(stream, [started], expected_version=version, metadata=metadata)
            except ConcurrencyError:
                continue  # the old holder appended meanwhile: look again
            if last is not None and last.type != "TraceFailed":
                self.taken_over += 1
                log.info("slot %d: taken over after its lease ran out", slot.number)
            return version + 1
        log.warning("slot %d: its trace kept moving; leaving it to its holder", slot.number)
        return None

    def _final(self, slot: Slot, result: AppendResult | None, error: StoreError | None) -> None:
        """The run's final event was committed (the slot is done) or refused."""
        with self._lock:
            self._held.discard(slot.number)
            if error is None:
                self._done.append(slot.number)
                self._quiet_until = 0.0  # pass it on at the next look: it may be the last
        if not isinstance(error, ConcurrencyError):
            return
        self.rejected += 1
        log.warning(
            "slot %d: result refused; the slot was taken over after this worker's lease ran out",
            slot.number,
        )
        try:
            self._store.append(
                experiment_stream(self.experiment_id),
                [
                    SlotResultRejected(
                        experiment_id=self.experiment_id,
                        slot=slot.number,
                        trace_id=slot.trace_id,
                        worker=self.owner,
                        reason="lease expired: another worker started the slot's trace again",
                    )
                ],
                metadata={"correlation_id": self.experiment_id},
            )
        except StoreError as exc:
            log.error("recording the refused result of slot %d failed: %s", slot.number, exc)

    def _beat(self) -> None:
        while not self._stop.wait(self._lease / 3):
            with self._lock:
                held = sorted(self._held)
                done, self._done = self._done, []
            try:
                self._board.finish(self.experiment_id, done)
                lost = self._board.renew(self.experiment_id, self.owner, held, self._lease)
            except StoreError as exc:
                with self._lock:
                    self._done.extend(done)
                log.warning("renewing leases failed (will retry): %s", exc)
                continue
            with self._lock:
                self._held.difference_update(lost)
                kept = [item for item in self._claimed if item[0] not in lost]
                self._claimed = deque(kept)
            for number in lost:
                log.warning("slot %d: lease lost to another worker", number)

    def close(self) -> None:
        """Stop renewing; mark finished slots done and give back the others."""
        self._stop.set()
        if self._heartbeat.is_alive():
            self._heartbeat.join()
        with self._lock:
            done, self._done = self._done, []
            held = sorted(self._held - set(done))
            self._held.clear()
        self._board.finish(self.experiment_id, done)
        self._board.release(self.experiment_id, self.owner, held)
