"""Verification of the hash chains and experiment seals: what ``agentledger verify`` runs.

Each stream is walked in version order. A problem is classified by what still holds
around it, so the report names what happened, not only where:

* deleted   - a version is missing from the stream, or a sealed stream lost its tail;
* reordered - positions do not rise with versions (two events swapped places);
* modified  - an event no longer matches its hash while its successor still chains to it;
* inserted  - an event does not chain, but its successor chains straight past it to its
  predecessor; or a sealed stream grew after its experiment completed.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

from agentledger.events.payloads import final_outcome
from agentledger.events.streams import experiment_traces_prefix
from agentledger.eventstore.checkpoint import KEY_VARIABLE, key_id, seal_message, sign, signing_key
from agentledger.eventstore.envelope import GENESIS_HASH
from agentledger.eventstore.errors import StoreDamagedError, StoreError
from agentledger.eventstore.store import EventStore, RawEvent

ProblemKind = Literal["modified", "deleted", "inserted", "reordered", "duplicated"]


@dataclass(frozen=True)
class IntegrityProblem:
    """One broken link, named by the event (or gap) where it shows."""

    kind: ProblemKind
    stream_id: str
    position: int | None
    stream_version: int
    event_id: str | None
    detail: str

    def describe(self) -> str:
        where = f"{self.stream_id} v{self.stream_version}"
        if self.position is not None:
            where += f" (position {self.position}, event {self.event_id})"
        return f"{self.kind}: {where}: {self.detail}"


@dataclass
class VerificationReport:
    """Result of a verification run: how much was checked and what was wrong."""

    streams: int = 0
    events: int = 0
    seals: int = 0
    problems: list[IntegrityProblem] = field(default_factory=list)
    signed_seals: int = 0
    """Seals whose signature was checked under the signing key."""
    unchecked_signatures: int = 0
    """Signed seals that could not be checked: no ``AGENTLEDGER_SIGNING_KEY`` here."""
    damage: list[str] = field(default_factory=list)
    """What is wrong with the database itself (the engine's check, a text that does not
    decode, events an index hides, positions missing from the log, edited correlation
    columns): one summary line per kind, ending with what to do."""
    damage_details: dict[str, list[str]] = field(default_factory=dict)
    """Every finding behind a summary line of ``damage`` (by that line), for
    ``verify --verbose``."""

    @property
    def ok(self) -> bool:
        return not self.problems and not self.damage

    def add_damage(self, summary: str, details: list[str] | None = None) -> None:
        self.damage.append(summary)
        if details:
            self.damage_details[summary] = details


RESTORE = "restore the store from a copy or an export"
"""What to do about damage under the chains: the file itself no longer holds the log."""


def _first_of(findings: list[str], capped: int | None = None) -> str:
    """The one finding, or ``N findings; first: ...`` (``N+`` when a check stopped at
    ``capped``)."""
    if len(findings) == 1:
        return findings[0]
    count = f"{len(findings)}+" if capped is not None and len(findings) >= capped else len(findings)
    return f"{count} findings; first: {findings[0]}"


def _group_streams(rows: Iterable[RawEvent]) -> Iterator[list[RawEvent]]:
    current: list[RawEvent] = []
    for row in rows:
        if current and row.stream_id != current[0].stream_id:
            yield current
            current = []
        current.append(row)
    if current:
        yield current


def check_stream(stream: list[RawEvent]) -> IntegrityProblem | None:
    """The first problem in one stream's events (given in version order), if any."""
    hashes = [GENESIS_HASH]  # hashes[i] is what event i should chain from
    prev: RawEvent | None = None
    for index, event in enumerate(stream):
        expected_version = prev.stream_version + 1 if prev else 1
        if event.stream_version != expected_version:
            return IntegrityProblem(
                "deleted",
                event.stream_id,
                None,
                expected_version,
                None,
                f"version {expected_version} is missing before event {event.event_id} "
                f"(v{event.stream_version}, position {event.position})",
            )
        prev_hash = hashes[-1]
        if event.expected_hash(prev_hash) != event.hash:
            return _classify_break(stream, index, hashes)
        if prev is not None and event.position <= prev.position:
            return _problem(
                "reordered",
                event,
                f"stored at position {event.position}, before v{prev.stream_version} "
                f"at position {prev.position}",
            )
        hashes.append(event.hash)
        prev = event
    return None


def check_single_ending(stream: list[RawEvent]) -> IntegrityProblem | None:
    """A stream that ended twice: a trace with two final events, or an experiment
    completed twice (two processes ran the same slot, or a completion was copied in).
    Each chains correctly, so only this check sees it."""
    endings = [
        event
        for event in stream
        if event.type == "ExperimentCompleted"
        or (event.type in _FINAL_TYPES and final_outcome(event.type, _document(event)) is not None)
    ]
    if len(endings) < 2:
        return None
    first, second = endings[0], endings[1]
    return _problem(
        "duplicated",
        second,
        f"a second final {second.type}: the stream already ended at v{first.stream_version} "
        f"(position {first.position}); the slot was recorded twice",
    )


def _problem(kind: ProblemKind, event: RawEvent, detail: str) -> IntegrityProblem:
    return IntegrityProblem(
        kind, event.stream_id, event.position, event.stream_version, event.event_id, detail
    )


def _classify_break(stream: list[RawEvent], index: int, hashes: list[str]) -> IntegrityProblem:
    """Name what happened where event ``index`` fails to chain from ``hashes[-1]``."""
    event = stream[index]
    prev_hash = hashes[-1]
    following = stream[index + 1] if index + 1 < len(stream) else None
    if index >= 1 and event.expected_hash(hashes[-2]) == event.hash:
        # This event chains from the one before its predecessor: the predecessor was added.
        return _problem(
            "inserted",
            stream[index - 1],
            "not part of the chain: the next event links straight past it",
        )
    if following is not None:
        if (
            following.expected_hash(prev_hash) == following.hash
            and event.expected_hash(following.hash) == event.hash
        ):
            return _problem(
                "reordered",
                event,
                f"swapped with v{following.stream_version} (event {following.event_id})",
            )
        if following.expected_hash(prev_hash) == following.hash:
            return _problem(
                "inserted", event, "not part of the chain: the next event links straight past it"
            )
        if following.expected_hash(event.hash) == following.hash:
            return _problem("modified", event, "content no longer matches its hash")
    return _problem(
        "modified",
        event,
        "does not chain from the previous event (modified, or an event around it was "
        "inserted or deleted)",
    )


def seal_digest(heads: Iterable[tuple[str, int, str]]) -> tuple[int, str]:
    """(how many, SHA-256) over trace stream heads given in stream id order: the seal an
    ``ExperimentCompleted`` records and verify recomputes."""
    digest = hashlib.sha256()
    count = 0
    for stream_id, version, head_hash in heads:
        digest.update(f"{stream_id}\x1f{version}\x1f{head_hash}\n".encode())
        count += 1
    return count, digest.hexdigest()


_FINAL_TYPES = ("TraceCompleted", "TraceFailed")


def _document(event: RawEvent) -> dict[str, Any]:
    """An event's data, or nothing when it is not a JSON object (its hash says the rest)."""
    try:
        data = orjson.loads(event.data_json)
    except orjson.JSONDecodeError:
        return {}
    return data if isinstance(data, dict) else {}


@dataclass(frozen=True, slots=True)
class _Tail:
    """What verify keeps of each stream: its head, and what a seal check needs."""

    version: int
    hash: str
    final: bool
    """The last event ends a trace for good (TraceCompleted, or a TraceFailed that is not
    an interruption): every trace of a completed experiment ends so."""
    last_position: int


def _tail(stream: list[RawEvent]) -> _Tail:
    last = stream[-1]
    final = last.type in _FINAL_TYPES and final_outcome(last.type, _document(last)) is not None
    return _Tail(last.stream_version, last.hash, final, max(event.position for event in stream))


def verify(
    store: EventStore, correlation_id: str | None = None, *, database: bool = True
) -> VerificationReport:
    """Check the database itself, every stream chain (of one experiment or session, when
    given) and every seal. A log that cannot even be read is reported as damaged.
    ``database=False`` checks the chains and seals only (what building a report needs)."""
    report = VerificationReport()
    if database:
        found = store.engine_check(ENGINE_FINDINGS)
        if found:
            report.add_damage(
                f"the database engine's own check fails ({_first_of(found, ENGINE_FINDINGS)}): "
                f"the file is damaged; {RESTORE}",
                found,
            )
    try:
        _verify_chains(store, correlation_id, report)
    except StoreError as exc:
        what = exc.finding if isinstance(exc, StoreDamagedError) else str(exc)
        report.add_damage(
            f"the log cannot be read to its end ({what}), so its chains were not checked; {RESTORE}"
        )
        return report
    if database:
        try:
            database_damage(store, correlation_id, report)
        except StoreDamagedError as exc:
            report.add_damage(f"the database cannot be scanned ({exc.finding}); {RESTORE}")
    return report


ENGINE_FINDINGS = 10
"""The engine's check stops after this many findings (a damaged file can have thousands)."""


def _verify_chains(
    store: EventStore, correlation_id: str | None, report: VerificationReport
) -> None:
    tails: dict[str, _Tail] = {}
    completions: list[tuple[RawEvent, dict[str, Any]]] = []
    for stream in _group_streams(store.read_streams_raw(correlation_id)):
        report.streams += 1
        report.events += len(stream)
        problem = check_stream(stream) or check_single_ending(stream)
        if problem is not None:
            report.problems.append(problem)
        tails[stream[0].stream_id] = _tail(stream)
        for event in stream:
            if event.type == "ExperimentCompleted":
                completions.append((event, _document(event)))
    key = signing_key()
    for completion, data in completions:
        if data.get("seal") is not None:
            report.seals += 1
            report.problems += _check_seal(completion, data, tails)
            problem = _check_signature(completion, data, key, report)
            if problem is not None:
                report.problems.append(problem)
        seals = data.get("seals") or {}
        if not isinstance(seals, dict) or not all(_is_trace_seal(s) for s in seals.values()):
            report.problems.append(_problem("modified", completion, "its seals are malformed"))
            continue
        for stream_id, seal in sorted(seals.items()):
            report.seals += 1
            head = tails.get(stream_id)
            if head is None and correlation_id is not None:
                version_now, hash_now = store.stream_head(stream_id)
            else:
                version_now, hash_now = (head.version, head.hash) if head else (0, GENESIS_HASH)
            problem = _check_trace_seal(completion, stream_id, seal, version_now, hash_now)
            if problem is not None:
                report.problems.append(problem)
    report.problems.sort(key=lambda p: (p.position is None, p.position or 0, p.stream_id))


def database_damage(
    store: EventStore, correlation_id: str | None, report: VerificationReport
) -> None:
    """Add what is wrong with the log under the chains: events a full scan finds that the
    ordered reads did not (a damaged index), positions missing from the log (events
    deleted anywhere, whole streams included), and edited correlation columns."""
    reachable = report.events
    scanned = store.scan_count(correlation_id)
    if scanned != reachable:
        report.add_damage(
            f"a full scan finds {scanned} events where the stream index gives {reachable}: "
            f"the database file is damaged; {RESTORE}"
        )
    edited = correlation_damage(store)
    if edited:
        report.add_damage(
            f"correlation columns edited ({_first_of(edited, CORRELATION_FINDINGS)}); {RESTORE}",
            edited,
        )
    if correlation_id is None:
        missing, first = store.position_gaps()
        if missing:
            shown = ", ".join(map(str, first))
            report.add_damage(
                f"{missing} position(s) missing from the log (first: {shown}): events were "
                f"deleted; {RESTORE}"
            )


CORRELATION_FINDINGS = 5


def _check_signature(
    completion: RawEvent, data: dict[str, Any], key: bytes | None, report: VerificationReport
) -> IntegrityProblem | None:
    """A signed seal must verify under the signing key (when this machine has it)."""
    signature = data.get("seal_signature")
    if signature is None:
        return None
    if key is None:
        report.unchecked_signatures += 1
        return None
    report.signed_seals += 1
    expected = sign(
        key,
        seal_message(
            str(data.get("experiment_id")), data.get("sealed_traces") or 0, str(data.get("seal"))
        ),
    )
    if data.get("key_id") == key_id(key) and hmac.compare_digest(str(signature), expected):
        return None
    return _problem(
        "modified",
        completion,
        f"its seal's signature does not verify under {KEY_VARIABLE}: the experiment was "
        "rewritten (or sealed with another key)",
    )


def _check_seal(
    completion: RawEvent, data: dict[str, Any], tails: dict[str, _Tail]
) -> list[IntegrityProblem]:
    """Problems with a digest seal: the traces that explain a mismatch, if it mismatches."""
    sealed = data.get("sealed_traces")
    if not isinstance(sealed, int) or not isinstance(data["seal"], str):
        return [_problem("modified", completion, "its seal is not a trace count and a digest")]
    prefix = experiment_traces_prefix(str(data.get("experiment_id")))
    traces = sorted(s for s in tails if s.startswith(prefix))
    count, digest = seal_digest((s, tails[s].version, tails[s].hash) for s in traces)
    if (count, digest) == (sealed, data["seal"]):
        return []
    by = f"the seal of {completion.stream_id} (event {completion.event_id})"
    problems = []
    for stream_id in traces:
        tail = tails[stream_id]
        if tail.last_position > completion.position:
            detail = f"grew after {by}: its last event is at position {tail.last_position}"
            problems.append(
                IntegrityProblem("inserted", stream_id, None, tail.version, None, detail)
            )
        elif not tail.final:
            detail = (
                f"lost its tail after {by}: it ends at version {tail.version} without a "
                "final TraceCompleted or TraceFailed"
            )
            problems.append(
                IntegrityProblem("deleted", stream_id, None, tail.version, None, detail)
            )
    if count < sealed:
        detail = f"{sealed - count} of the {sealed} trace streams it sealed are gone"
        problems.append(_problem("deleted", completion, detail))
    if not problems:
        detail = (
            f"the heads of the experiment's {count} trace streams no longer match its seal "
            f"({sealed} sealed): a trace was rewritten or added after completion"
        )
        problems.append(_problem("modified", completion, detail))
    return problems


def _is_trace_seal(seal: Any) -> bool:
    return isinstance(seal, dict) and isinstance(seal.get("version"), int)


def _check_trace_seal(
    completion: RawEvent, stream_id: str, seal: dict[str, Any], version_now: int, hash_now: str
) -> IntegrityProblem | None:
    """A problem with one entry of a per-trace seal (completions recorded before digests)."""
    version = int(seal["version"])
    if (version_now, hash_now) == (version, seal.get("hash")):
        return None
    if version_now < version:
        kind: ProblemKind = "deleted"
        detail = (
            f"sealed at version {version} by {completion.event_id}, "
            f"now ends at version {version_now}"
        )
    elif version_now > version:
        kind = "inserted"
        detail = f"grew to version {version_now} after being sealed at version {version}"
    else:
        kind = "modified"
        detail = "last event differs from the one sealed at completion"
    return IntegrityProblem(kind, stream_id, None, max(version, version_now), None, detail)


def correlation_damage(store: EventStore, limit: int = CORRELATION_FINDINGS) -> list[str]:
    """Events whose indexed ``correlation_id`` column disagrees with the hashed metadata it
    is taken from: an edit that would move an event out of (or into) an experiment."""
    found = []
    for position, stream_id, column, metadata_json in store.correlation_rows():
        try:
            metadata = orjson.loads(metadata_json)
        except orjson.JSONDecodeError:
            continue  # the chain check names this event as modified
        said = metadata.get("correlation_id") if isinstance(metadata, dict) else None
        if column != (said if isinstance(said, str) else None):
            found.append(
                f"event at position {position} ({stream_id}) is indexed under correlation "
                f"{column!r} but its hashed metadata says {said!r}"
            )
            if len(found) >= limit:
                break
    return found
