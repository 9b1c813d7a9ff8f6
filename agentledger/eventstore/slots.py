"""Slots of a shared experiment: claimed by workers under a lease, on the database clock.

An experiment started for workers has one row per slot. A worker claims pending slots, and
slots whose lease ran out, with ``SELECT ... FOR UPDATE SKIP LOCKED`` (on SQLite
``BEGIN IMMEDIATE`` serialises claims instead), and keeps its leases alive while it runs
them. A worker that dies stops renewing; once its lease is over, another worker claims the
slot. Leases are measured on the database's clock, so the machines' clocks need not agree.

The board only decides who runs what. Whether a slot's run finished is in its trace stream,
and the stream's version is the fence: a late lease-holder's appends are refused by
optimistic concurrency once the new holder has started the trace again.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import Float, and_, func, insert, literal_column, or_, select, update

from agentledger.eventstore.schema import slots

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection
    from sqlalchemy.sql.elements import ColumnElement

    from agentledger.eventstore.store import EventStore

PENDING = "pending"
CLAIMED = "claimed"
DONE = "done"

_NOW = {
    "postgresql": "CAST(extract(epoch from clock_timestamp()) AS double precision)",
    "sqlite": "((julianday('now') - 2440587.5) * 86400.0)",
}
"""The database's clock in seconds since the epoch."""

_INSERT_CHUNK = 5000


@dataclass(frozen=True)
class Claim:
    """What one claim got: slots (number, times claimed before) and how many are left."""

    slots: list[tuple[int, int]]
    remaining: int | None
    """Slots not done yet, counted only when none was claimed (else None)."""


@dataclass(frozen=True)
class SlotCounts:
    """Where an experiment's slots stand."""

    pending: int = 0
    running: int = 0
    """Claimed under a lease that has not run out."""
    expired: int = 0
    """Claimed, but the lease ran out: the holder is gone (or late) and another may claim."""
    done: int = 0

    @property
    def total(self) -> int:
        return self.pending + self.running + self.expired + self.done

    @property
    def remaining(self) -> int:
        return self.total - self.done


class SlotBoard:
    """The slots table of one store."""

    def __init__(self, store: EventStore) -> None:
        self._store = store
        self._now: ColumnElement[float] = literal_column(_NOW[store.backend], Float())

    def create(self, experiment_id: str, numbers: Iterable[int]) -> int:
        """Add the pending slots of an experiment (once, before it is started)."""
        rows = [{"experiment_id": experiment_id, "slot": n, "state": PENDING} for n in numbers]
        with self._store._write(lock_key=None) as conn:
            for start in range(0, len(rows), _INSERT_CHUNK):
                conn.execute(insert(slots), rows[start : start + _INSERT_CHUNK])
        return len(rows)

    def exists(self, experiment_id: str) -> bool:
        """Whether the experiment's slots are on the board (it was started for workers)."""
        with self._store._read() as conn:
            found = conn.execute(
                select(slots.c.slot).where(slots.c.experiment_id == experiment_id).limit(1)
            ).first()
        return found is not None

    def claim(
        self,
        experiment_id: str,
        owner: str,
        *,
        limit: int,
        lease_seconds: float,
        done: Sequence[int] = (),
    ) -> Claim:
        """Mark ``done`` slots done, then claim up to ``limit`` slots (pending ones, or ones
        whose lease ran out), lowest first, for ``lease_seconds``."""
        mine = slots.c.experiment_id == experiment_id
        with self._store._write(lock_key=None) as conn:
            if done:
                self._mark_done(conn, experiment_id, done)
            now = float(conn.execute(select(self._now)).scalar_one())
            taken: list[tuple[int, int]] = []
            if limit > 0:
                free = or_(
                    slots.c.state == PENDING,
                    and_(slots.c.state == CLAIMED, slots.c.lease_until < now),
                )
                rows = conn.execute(
                    select(slots.c.slot, slots.c.claims)
                    .where(mine, free)
                    .order_by(slots.c.slot)
                    .limit(limit)
                    .with_for_update(skip_locked=True)
                ).all()
                taken = [(int(r[0]), int(r[1])) for r in rows]
                if taken:
                    conn.execute(
                        update(slots)
                        .where(mine, slots.c.slot.in_([n for n, _ in taken]))
                        .values(
                            state=CLAIMED,
                            owner=owner,
                            lease_until=now + lease_seconds,
                            claims=slots.c.claims + 1,
                        )
                    )
            if taken:
                return Claim(taken, None)
            remaining = conn.execute(
                select(func.count()).where(mine, slots.c.state != DONE)
            ).scalar_one()
        return Claim(taken, int(remaining))

    def renew(
        self, experiment_id: str, owner: str, numbers: Sequence[int], lease_seconds: float
    ) -> list[int]:
        """Extend the lease of the slots ``owner`` still holds; returns the ones it lost
        (claimed by another worker after its lease ran out)."""
        if not numbers:
            return []
        held = and_(
            slots.c.experiment_id == experiment_id,
            slots.c.slot.in_(list(numbers)),
            slots.c.owner == owner,
            slots.c.state == CLAIMED,
        )
        with self._store._write(lock_key=None) as conn:
            conn.execute(update(slots).where(held).values(lease_until=self._now + lease_seconds))
            kept = set(conn.execute(select(slots.c.slot).where(held)).scalars())
        return [n for n in numbers if n not in kept]

    def release(self, experiment_id: str, owner: str, numbers: Sequence[int]) -> None:
        """Give slots back (pending again) that ``owner`` holds and will not finish."""
        if not numbers:
            return
        with self._store._write(lock_key=None) as conn:
            conn.execute(
                update(slots)
                .where(
                    slots.c.experiment_id == experiment_id,
                    slots.c.slot.in_(list(numbers)),
                    slots.c.owner == owner,
                    slots.c.state == CLAIMED,
                )
                .values(state=PENDING, owner=None, lease_until=None)
            )

    def finish(self, experiment_id: str, numbers: Sequence[int]) -> None:
        """Mark slots done (their trace has its final event in the log)."""
        if numbers:
            with self._store._write(lock_key=None) as conn:
                self._mark_done(conn, experiment_id, numbers)

    def counts(self, experiment_id: str) -> SlotCounts:
        """How many slots are pending, running, expired and done."""
        expired = slots.c.lease_until < self._now
        with self._store._read() as conn:
            rows = conn.execute(
                select(slots.c.state, expired, func.count())
                .where(slots.c.experiment_id == experiment_id)
                .group_by(slots.c.state, expired)
            ).all()
        counts = {"pending": 0, "running": 0, "expired": 0, "done": 0}
        for state, expired, count in rows:
            if state == CLAIMED:
                counts["expired" if expired else "running"] += int(count)
            else:
                counts[str(state)] += int(count)
        return SlotCounts(**counts)

    def holders(self, experiment_id: str) -> dict[str, int]:
        """Workers holding live leases on the experiment's slots, with how many each."""
        with self._store._read() as conn:
            rows = conn.execute(
                select(slots.c.owner, func.count())
                .where(
                    slots.c.experiment_id == experiment_id,
                    slots.c.state == CLAIMED,
                    slots.c.lease_until >= self._now,
                )
                .group_by(slots.c.owner)
                .order_by(slots.c.owner)
            ).all()
        return {str(owner): int(count) for owner, count in rows}

    @staticmethod
    def _mark_done(conn: Connection, experiment_id: str, numbers: Sequence[int]) -> None:
        conn.execute(
            update(slots)
            .where(slots.c.experiment_id == experiment_id, slots.c.slot.in_(list(numbers)))
            .values(state=DONE, owner=None, lease_until=None)
        )
