"""The event envelope: what a stored event is, its canonical encoding, and its chain hash."""

from __future__ import annotations

import hashlib
import os
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple

import orjson

from agentledger.events.payloads import Payload, decode_payload
from agentledger.eventstore.errors import EventValidationError

JsonDict = dict[str, Any]
TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"
GENESIS_HASH = ""
"""The "previous hash" of the first event of every stream."""


def encode_json(value: Any) -> str:
    """Canonical JSON text: sorted keys, no whitespace; what is stored and hashed.

    Text that is not valid Unicode (a lone surrogate, as ``os.fsdecode`` or
    ``surrogateescape`` decoding make from invalid UTF-8) cannot be stored as UTF-8: each
    lone surrogate is stored as the six characters of its escape, ``\\udXXX``."""
    return encode_json_bytes(value).decode()


def encode_json_bytes(value: Any) -> bytes:
    """``encode_json`` as UTF-8 bytes."""
    return dumps_storable(value, orjson.OPT_SORT_KEYS)


def dumps_storable(value: Any, option: int = 0) -> bytes:
    """``orjson.dumps``, never failing on what JSON can carry some way: lone surrogates are
    stored as their escape text, integers beyond 64 bits as their decimal text, and what
    is nested deeper than ``MAX_DEPTH`` levels as the JSON text of that part (orjson
    writes neither). Anything else unencodable still raises ``orjson.JSONEncodeError``."""
    try:
        return orjson.dumps(value, option=option)
    except orjson.JSONEncodeError:
        return orjson.dumps(storable(value), option=option)


MAX_DEPTH = 200
"""Nesting kept as structure; deeper parts are stored as their JSON text."""
_INT64 = (-(2**63), 2**64 - 1)


def storable(value: Any, depth: int = 0) -> Any:
    """``value`` made encodable by orjson (see ``dumps_storable``)."""
    if isinstance(value, str):
        return escape_text(value)
    if isinstance(value, bool) or value is None or isinstance(value, float):
        return value
    if isinstance(value, int):
        return value if _INT64[0] <= value <= _INT64[1] else str(value)
    if isinstance(value, dict | list | tuple) and depth >= MAX_DEPTH:
        return _deep_text(value)
    if isinstance(value, dict):
        return {storable(str(k), depth + 1): storable(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [storable(v, depth + 1) for v in value]
    return value


def _deep_text(value: Any) -> str:
    import json
    import sys

    try:
        return escape_text(json.dumps(value, ensure_ascii=False, default=str))
    except (RecursionError, ValueError, TypeError):
        limit = sys.getrecursionlimit()
        return escape_text(f"<not storable: nested deeper than the recursion limit {limit}>")


_SURROGATE = re.compile("[\ud800-\udfff]")


def escape_text(text: str) -> str:
    """``text`` with each lone surrogate replaced by its ``\\udXXX`` escape text."""
    return _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def escape_surrogates(value: Any) -> Any:
    """``value`` with every string (keys included) passed through ``escape_text``."""
    if isinstance(value, str):
        return escape_text(value)
    if isinstance(value, dict):
        return {escape_surrogates(k): escape_surrogates(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [escape_surrogates(v) for v in value]
    return value


def format_timestamp(moment: datetime) -> str:
    """UTC ISO-8601 with microseconds and a ``Z``; fixed width, so text order is time order."""
    return moment.astimezone(UTC).strftime(TIMESTAMP_FORMAT)


def parse_timestamp(text: str) -> datetime:
    """Parse an ISO-8601 time; naive times are taken as UTC."""
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def new_event_ids(count: int) -> list[str]:
    """``count`` time-ordered (version 7, RFC 9562) UUID strings: the current Unix time in
    milliseconds, then 74 random bits; one urandom call for the whole batch.

    Time-ordered ids go to the end of the unique index on ``event_id``, as positions do:
    random (version 4) ids each dirtied a random page of that index, which made every
    commit write (and every checkpoint copy) a page per event once the index outgrew the
    page cache (a 100,000-run experiment spent 8 ms a commit)."""
    pool = bytearray(os.urandom(16 * count))
    stamp = (time.time_ns() // 1_000_000).to_bytes(6, "big")
    ids = []
    for start in range(0, 16 * count, 16):
        pool[start : start + 6] = stamp
        pool[start + 6] = (pool[start + 6] & 0x0F) | 0x70
        pool[start + 8] = (pool[start + 8] & 0x3F) | 0x80
        h = pool[start : start + 16].hex()
        ids.append(f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}")
    return ids


def utc_now() -> str:
    """The current time, formatted as stored."""
    return format_timestamp(datetime.now(UTC))


def chain_hash(
    prev_hash: str,
    event_id: str,
    stream_id: str,
    event_type: str,
    schema_version: int,
    recorded_at: str,
    data_json: str,
    metadata_json: str,
) -> str:
    """Hash linking an event to the previous event of its stream.

    The stream version and the global position are deliberately left out: verification
    orders a stream by version and checks positions separately, so a re-numbered stream
    (a deleted or inserted event) shows up as a link that skips or doubles back.
    """
    material = "\x1f".join(
        (
            prev_hash,
            event_id,
            stream_id,
            event_type,
            str(schema_version),
            recorded_at,
            data_json,
            metadata_json,
        )
    )
    return hashlib.sha256(material.encode()).hexdigest()


class StoredEvent(NamedTuple):
    """An event as read back from the store (a tuple, so reading builds it in C)."""

    position: int
    event_id: str
    stream_id: str
    stream_version: int
    type: str
    schema_version: int
    data: JsonDict
    metadata: JsonDict
    recorded_at: str
    hash: str

    @property
    def payload(self) -> Payload:
        """The typed payload (upcast to the current schema version and validated); an
        event that does not hold what its type says is a one-line error naming it."""
        try:
            return decode_payload(self.type, self.schema_version, self.data)
        except Exception as exc:
            raise EventValidationError(
                f"event at position {self.position} ({self.stream_id} v{self.stream_version}) "
                f"is not a valid {self.type}: {exc}; the log is damaged: run `agentledger verify`"
            ) from None

    @property
    def correlation_id(self) -> str | None:
        """The experiment or session this event belongs to, if any."""
        value = self.metadata.get("correlation_id")
        return value if isinstance(value, str) else None

    def to_dict(self) -> JsonDict:
        """The full envelope as a JSON-ready dict (the export line format)."""
        return {
            "position": self.position,
            "event_id": self.event_id,
            "stream_id": self.stream_id,
            "stream_version": self.stream_version,
            "type": self.type,
            "schema_version": self.schema_version,
            "data": self.data,
            "metadata": self.metadata,
            "recorded_at": self.recorded_at,
            "hash": self.hash,
        }


class FoldEvent(NamedTuple):
    """An event as a projection folds it: no event id, metadata or hash, so reading it
    fetches and decodes a third less than a ``StoredEvent`` (a report rebuild reads
    millions). Field names match ``StoredEvent``'s, so folds take either."""

    position: int
    stream_id: str
    stream_version: int
    type: str
    schema_version: int
    data: JsonDict
    recorded_at: str


FoldableEvent = StoredEvent | FoldEvent
"""What folds accept."""


@dataclass(frozen=True, slots=True)
class AppendResult:
    """Where an append landed: positions of its first and last event, and the stream head."""

    stream_id: str
    first_position: int
    last_position: int
    version: int
    hash: str
