"""Event rows as the store reads them: the column list (written once) and decoders.

``EVENT_COLUMNS`` is the one list of an event's stored fields, in ``StoredEvent`` order;
the SQL column lists, the SQLAlchemy selects and ``RawEvent`` all follow it. Decoding builds
the NamedTuples in C (``tuple.__new__``): reading is dominated by the driver, not by us.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import orjson

from agentledger.eventstore.envelope import FoldEvent, StoredEvent, chain_hash
from agentledger.eventstore.schema import events

EVENT_COLUMNS: tuple[str, ...] = StoredEvent._fields
"""Every stored field of an event, in ``StoredEvent`` (and ``RawEvent``) order."""
FOLD_COLUMNS: tuple[str, ...] = FoldEvent._fields
"""What a projection folds: ``FoldEvent``'s fields, a subset of ``EVENT_COLUMNS``."""

COLUMN_LIST = ", ".join(EVENT_COLUMNS)
FOLD_COLUMN_LIST = ", ".join(FOLD_COLUMNS)
COLUMNS = tuple(events.c[name] for name in EVENT_COLUMNS)
"""``EVENT_COLUMNS`` as SQLAlchemy columns, for Core selects."""


class RawEvent(NamedTuple):
    """A row exactly as stored (JSON still as text); what integrity checks and export read."""

    position: int
    event_id: str
    stream_id: str
    stream_version: int
    type: str
    schema_version: int
    data_json: str
    metadata_json: str
    recorded_at: str
    hash: str

    def expected_hash(self, prev_hash: str) -> str:
        """The hash this event should carry if it follows ``prev_hash``."""
        return chain_hash(
            prev_hash,
            self.event_id,
            self.stream_id,
            self.type,
            self.schema_version,
            self.recorded_at,
            self.data_json,
            self.metadata_json,
        )

    def decode(self) -> StoredEvent:
        return decode_row(self)


_new_tuple = tuple.__new__
_loads = orjson.loads


def decode_row(row: Sequence[Any]) -> StoredEvent:
    return _new_tuple(
        StoredEvent,
        (
            row[0],
            row[1],
            row[2],
            row[3],
            row[4],
            row[5],
            _loads(row[6]),
            _loads(row[7]),
            row[8],
            row[9],
        ),
    )


def fold_row(row: Sequence[Any]) -> FoldEvent:
    return _new_tuple(FoldEvent, (row[0], row[1], row[2], row[3], row[4], _loads(row[5]), row[6]))


def raw_row(row: Sequence[Any]) -> RawEvent:
    return _new_tuple(RawEvent, row)
