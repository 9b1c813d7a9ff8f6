"""Checkpoints of the whole log, and the signing key: what a rewrite cannot get past.

The hash chains of ``integrity`` link each stream's events; anyone who can write the
database can recompute them. Two things close that:

- A **checkpoint** states the log's head: its last position and a root hash chained over
  every event in position order (position, stream, version, correlation id and event
  hash), so no event anywhere can be changed, removed, added or reordered without changing
  it. ``agentledger checkpoint`` prints one (kept wherever the log's writers cannot reach:
  a CI artifact, a ticket, a signed commit); ``verify --against`` recomputes the root over
  the same positions and names the first one that differs. The log may only have grown.
- A **signing key** (``AGENTLEDGER_SIGNING_KEY``) makes checkpoints and experiment seals
  HMAC-SHA256-signed: without the key, a rewritten log and its recomputed seals and
  checkpoints cannot be made to verify at all.

The root is not stored in the log: it is recomputed from the events every time.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from agentledger.eventstore.errors import StoreError

if TYPE_CHECKING:
    from agentledger.eventstore.store import EventStore

FORMAT = "agentledger-checkpoint"
VERSION = 1
KEY_VARIABLE = "AGENTLEDGER_SIGNING_KEY"
ZERO_ROOT = "0" * 64


class CheckpointError(StoreError):
    """A checkpoint file cannot be read, or does not fit this log."""


def signing_key() -> bytes | None:
    """The signing key from ``AGENTLEDGER_SIGNING_KEY``, if one is set."""
    value = os.environ.get(KEY_VARIABLE)
    return value.encode() if value else None


def key_id(key: bytes) -> str:
    """A short public name of a key (so a checkpoint says which key signed it)."""
    return hashlib.sha256(b"agentledger-key-id\x1f" + key).hexdigest()[:16]


def sign(key: bytes, message: str) -> str:
    """HMAC-SHA256 of ``message`` under ``key``, hex."""
    return hmac.new(key, message.encode(), hashlib.sha256).hexdigest()


def seal_message(experiment_id: str, sealed_traces: int, seal: str) -> str:
    """What an experiment's seal signature covers."""
    return f"agentledger-seal\x1f{experiment_id}\x1f{sealed_traces}\x1f{seal}"


def chain_root(previous: str, entry: tuple[int, str, int, str | None, str]) -> str:
    """The log root after one more event: (position, stream id, version, correlation id,
    event hash)."""
    position, stream_id, version, correlation, event_hash = entry
    material = f"{previous}\x1f{position}\x1f{stream_id}\x1f{version}\x1f{correlation or ''}"
    return hashlib.sha256(f"{material}\x1f{event_hash}".encode()).hexdigest()


@dataclass(frozen=True)
class Checkpoint:
    """A statement of the log's head: everything up to ``position`` hashes to ``root``."""

    position: int
    events: int
    root: str
    created_at: str
    store: str
    key_id: str | None = None
    signature: str | None = None

    def message(self) -> str:
        """The canonical text a signature covers (everything but the signature)."""
        body = {k: v for k, v in self.to_dict().items() if k != "signature"}
        return orjson.dumps(body, option=orjson.OPT_SORT_KEYS).decode()

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": VERSION,
            "position": self.position,
            "events": self.events,
            "root": self.root,
            "created_at": self.created_at,
            "store": self.store,
            "key_id": self.key_id,
            "signature": self.signature,
        }

    def signed(self, key: bytes) -> Checkpoint:
        unsigned = Checkpoint(
            self.position, self.events, self.root, self.created_at, self.store, key_id(key)
        )
        return Checkpoint(**{**unsigned.__dict__, "signature": sign(key, unsigned.message())})

    @classmethod
    def parse(cls, text: str | bytes, where: str) -> Checkpoint:
        try:
            data = orjson.loads(text)
        except orjson.JSONDecodeError:
            raise CheckpointError(f"{where} is not a checkpoint (not JSON)") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise CheckpointError(f"{where} is not an agentledger checkpoint")
        if data.get("version") != VERSION:
            raise CheckpointError(
                f"{where} is checkpoint version {data.get('version')}; this agentledger "
                f"reads version {VERSION}"
            )
        try:
            return cls(
                position=int(data["position"]),
                events=int(data["events"]),
                root=str(data["root"]),
                created_at=str(data["created_at"]),
                store=str(data["store"]),
                key_id=data.get("key_id"),
                signature=data.get("signature"),
            )
        except (KeyError, TypeError, ValueError):
            raise CheckpointError(f"{where}: a checkpoint field is missing or malformed") from None


@dataclass
class Comparison:
    """How the log compares with a checkpoint."""

    ok: bool
    findings: list[str]
    signature: str
    """``valid``, ``unsigned``, ``unchecked`` (no key here) or ``invalid``."""


def take_checkpoint(store: EventStore) -> Checkpoint:
    """A checkpoint of ``store`` as it is now (signed when a signing key is set)."""
    from agentledger.eventstore.envelope import utc_now

    last, count, root = log_root(store.log_entries())
    checkpoint = Checkpoint(last, count, root, utc_now(), store.location.display())
    key = signing_key()
    return checkpoint.signed(key) if key else checkpoint


def log_root(entries: Iterable[tuple[int, str, int, str | None, str]]) -> tuple[int, int, str]:
    """(last position, events, root) over ``entries`` in position order."""
    root, last, count = ZERO_ROOT, 0, 0
    for entry in entries:
        root = chain_root(root, entry)
        last, count = entry[0], count + 1
    return last, count, root


def compare(
    checkpoint: Checkpoint,
    entries: Iterable[tuple[int, str, int, str | None, str]],
    key: bytes | None,
) -> Comparison:
    """Recompute the root over the checkpoint's positions and say whether this log is the
    one it stated, grown or not; the first position that differs is named."""
    findings: list[str] = []
    signature = _check_signature(checkpoint, key, findings)
    root, count, last, expected_position = ZERO_ROOT, 0, 0, 1
    for entry in entries:
        position = entry[0]
        if position > checkpoint.position:
            break
        if position != expected_position and not findings:
            findings.append(
                f"position {expected_position} is missing (the log jumps to {position}): "
                "events were deleted"
            )
        expected_position = position + 1
        root = chain_root(root, entry)
        last, count = position, count + 1
    if last < checkpoint.position:
        findings.append(
            f"the log ends at position {last}, before the checkpoint's {checkpoint.position}: "
            "events were cut from its end (or the store was replaced)"
        )
    elif count != checkpoint.events or root != checkpoint.root:
        findings.append(
            f"the events up to position {checkpoint.position} no longer hash to the "
            "checkpoint's root: an event was modified, added, removed or reordered (run "
            "verify to name it)"
        )
    return Comparison(not findings, findings, signature)


def _check_signature(checkpoint: Checkpoint, key: bytes | None, findings: list[str]) -> str:
    if checkpoint.signature is None:
        return "unsigned"
    if key is None:
        return "unchecked"
    if checkpoint.key_id != key_id(key) or not hmac.compare_digest(
        checkpoint.signature, sign(key, checkpoint.message())
    ):
        findings.append(
            f"the checkpoint's signature does not verify under {KEY_VARIABLE}: it was altered "
            "or signed with another key"
        )
        return "invalid"
    return "valid"
