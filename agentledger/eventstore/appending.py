"""What an append is made of: requests, the driver statements, and the chain numbering.

An append is prepared (encoded, redacted) first, then numbered and hashed from the heads
of its streams by ``chain`` inside the backend's serialised write: the SQLite path
(``store.py``) and the PostgreSQL protocol (``postgres.py``) share it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from agentledger.events.payloads import Payload
from agentledger.eventstore.envelope import AppendResult, chain_hash
from agentledger.eventstore.errors import ConcurrencyError, EventValidationError
from agentledger.eventstore.rows import COLUMN_LIST

ANY_VERSION = -1
"""``expected_version`` that skips the optimistic-concurrency check."""
NO_STREAM = 0
"""``expected_version`` for a stream that must not exist yet."""


@dataclass(frozen=True, slots=True)
class BuiltPayload:
    """An event whose data is already built as its payload model dumps it (``model_dump(
    mode="json")``), for a writer that makes very many of one type: appended as given, no
    model validated or serialized again (redaction still applies). Whoever builds these
    answers for the data matching the model; a test of each such writer checks it."""

    event_type: str
    schema_version: int
    document: dict[str, Any]


class AppendRequest(NamedTuple):
    """One stream's share of an ``append_batch``."""

    stream_id: str
    payloads: Sequence[Payload | BuiltPayload]
    expected_version: int = ANY_VERSION
    metadata: Mapping[str, Any] | None = None


class DriverSQL:
    """Hot-path statements as driver SQL, built once per dialect (no per-call compilation)."""

    multi_row = 500
    """Rows per multi-row INSERT on PostgreSQL (11 parameters each, under its 65,535 cap)."""

    append = ""
    """PostgreSQL: the whole append in one statement (migration 0003)."""

    def __init__(self, marker: str) -> None:
        m = self.marker = marker
        self.head = (
            f"SELECT stream_version, hash FROM events WHERE stream_id = {m} "
            "ORDER BY stream_version DESC LIMIT 1"
        )
        self.max_position = "SELECT coalesce(max(position), 0) FROM events"
        self.head_and_max = (
            "SELECT (SELECT coalesce(max(position), 0) FROM events), h.stream_version, h.hash "
            f"FROM (SELECT 1 AS one) AS o LEFT JOIN (SELECT stream_version, hash FROM events "
            f"WHERE stream_id = {m} ORDER BY stream_version DESC LIMIT 1) AS h ON 1 = 1"
        )
        self.insert = (
            "INSERT INTO events (position, event_id, stream_id, stream_version, type, "
            "schema_version, correlation_id, data, metadata, recorded_at, hash) VALUES "
        )
        self.row = f"({', '.join([m] * 11)})"
        if m == "%s":
            # Arrays go as literals built by postgres.text_array / int_array.
            self.append = (
                "SELECT * FROM agentledger_append(%s, %s::text[], %s::integer[], %s::text[], "
                "%s::text[], %s::text[], %s::integer[], %s::text[], %s::integer[], %s::text[], "
                "%s::text[], %s::text[], %s::text[], %s)"
            )
        self.page = (
            f"SELECT {COLUMN_LIST} FROM events WHERE position > {m} ORDER BY position LIMIT {m}"
        )


SQL = {"sqlite": DriverSQL("?"), "postgresql": DriverSQL("%s")}


class Prepared(NamedTuple):
    """One request of an append, encoded and redacted, waiting for its stream heads."""

    request: AppendRequest
    correlation_id: str | None
    metadata_json: str
    events: list[tuple[str, str, int, str]]
    """(event_id, type, schema_version, data JSON) per event."""


def chain(
    prepared: Sequence[Prepared],
    heads: Mapping[str, tuple[int, str]],
    first_position: int,
    recorded_at: str,
) -> tuple[list[tuple[Any, ...]], list[AppendResult]]:
    """Number and hash an append's events from the streams' ``heads`` (version, hash),
    checking each request's expected version. Returns the rows and the results."""
    heads = dict(heads)
    rows: list[tuple[Any, ...]] = []
    results = []
    position = first_position - 1
    for request, correlation_id, metadata_json, events_json in prepared:
        stream_id = request.stream_id
        version, prev_hash = heads[stream_id]
        expected = request.expected_version
        if expected != ANY_VERSION and expected != version:
            raise ConcurrencyError(stream_id, expected, version)
        start = position + 1
        for event_id, event_type, schema_version, data_json in events_json:
            position += 1
            version += 1
            prev_hash = chain_hash(
                prev_hash,
                event_id,
                stream_id,
                event_type,
                schema_version,
                recorded_at,
                data_json,
                metadata_json,
            )
            rows.append(
                (
                    position,
                    event_id,
                    stream_id,
                    version,
                    event_type,
                    schema_version,
                    correlation_id,
                    data_json,
                    metadata_json,
                    recorded_at,
                    prev_hash,
                )
            )
        heads[stream_id] = (version, prev_hash)
        results.append(AppendResult(stream_id, start, position, version, prev_hash))
    return rows, results


def raise_if_duplicate(exc: Exception, rows: Sequence[tuple[Any, ...]]) -> None:
    """Turn a unique violation on insert into the store's own error for it."""
    detail = str(exc).lower()
    if not rows or ("unique" not in detail and "duplicate" not in detail):
        return
    if "event_id" in detail:
        message = "an event with the same event_id is already in the store"
        raise EventValidationError(message) from exc
    stream, version = rows[0][2], rows[0][3]
    raise ConcurrencyError(stream, version - 1, -1) from exc
