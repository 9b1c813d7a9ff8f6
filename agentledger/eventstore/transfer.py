"""Export and import of the log as JSON lines, so it moves between stores losslessly.

Format (version 1): a header line ``{"format": "agentledger-export", "version": 1}``, then
one event per line with its whole envelope (``StoredEvent.to_dict``), in position order.
Import keeps event ids, versions, timestamps and hashes, renumbers positions in file order,
re-verifies every chain and redaction, and writes everything or nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import orjson
from pydantic import BaseModel, ConfigDict, ValidationError

from agentledger.events.payloads import decode_payload
from agentledger.eventstore.envelope import encode_json
from agentledger.eventstore.errors import EventValidationError, ExportFormatError
from agentledger.eventstore.store import EventStore, RawEvent

FORMAT_NAME = "agentledger-export"
FORMAT_VERSION = 1


class ExportedEvent(BaseModel):
    """One line of an export file."""

    model_config = ConfigDict(extra="forbid", strict=True)

    position: int
    event_id: str
    stream_id: str
    stream_version: int
    type: str
    schema_version: int
    data: dict[str, Any]
    metadata: dict[str, Any]
    recorded_at: str
    hash: str


def export_events(store: EventStore, out: IO[bytes], correlation_id: str | None = None) -> int:
    """Write the log (or one experiment's events) to ``out``; returns the event count."""
    out.write(orjson.dumps({"format": FORMAT_NAME, "version": FORMAT_VERSION}) + b"\n")
    count = 0
    for event in store.read_all(correlation_id=correlation_id):
        out.write(orjson.dumps(event.to_dict(), option=orjson.OPT_SORT_KEYS) + b"\n")
        count += 1
    return count


def _read_lines(path: Path) -> Iterator[RawEvent]:
    name = str(path)
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise ExportFormatError(f"cannot read {name}: {exc.strerror}") from None
    with handle:
        header = handle.readline()
        try:
            meta = orjson.loads(header) if header.strip() else None
        except orjson.JSONDecodeError:
            meta = None
        if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
            raise ExportFormatError(
                f"{name}:1: not an agentledger export (missing the format header line); "
                "create it with `agentledger export`"
            )
        if meta.get("version") != FORMAT_VERSION:
            raise ExportFormatError(
                f"{name}:1: export format version {meta.get('version')} is not supported "
                f"(this agentledger reads version {FORMAT_VERSION})"
            )
        for number, line in enumerate(handle, start=2):
            if not line.strip():
                continue
            try:
                item = ExportedEvent.model_validate(orjson.loads(line))
                decode_payload(item.type, item.schema_version, item.data)
            except orjson.JSONDecodeError as exc:
                raise ExportFormatError(f"{name}:{number}: not valid JSON ({exc})") from None
            except ValidationError as exc:
                first = exc.errors()[0]
                field = ".".join(str(p) for p in first["loc"]) or "(line)"
                raise ExportFormatError(f"{name}:{number}: {field}: {first['msg']}") from None
            except EventValidationError as exc:
                raise ExportFormatError(f"{name}:{number}: {exc}") from None
            yield RawEvent(
                item.position,
                item.event_id,
                item.stream_id,
                item.stream_version,
                item.type,
                item.schema_version,
                encode_json(item.data),
                encode_json(item.metadata),
                item.recorded_at,
                item.hash,
            )


def import_events(store: EventStore, path: Path) -> int:
    """Import an export file into ``store``, all or nothing; returns the event count."""
    try:
        return store.append_raw(_read_lines(path))
    except EventValidationError as exc:
        raise ExportFormatError(f"{path}: {exc}; nothing was imported") from None
