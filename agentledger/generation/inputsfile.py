"""The inputs file as a projection of a generation's events, and its YAML text.

``fold_generation`` is a pure fold over a generation stream: the planned items in plan
order, each with its answer, its failure, or nothing yet. An answer that is empty (after
trimming) or repeats an earlier kept input of the same persona (compared case- and
whitespace-insensitively) is dropped and counted. ``render`` writes FluxLoop's layout:
a header, ``stats``, a summary per persona, ``inputs:`` entries ``{input, strategy,
base_index, persona, persona_description, prompt_hash}`` and ``generation_config`` (with
the generation id). Nothing here reads the clock: the header's time is the recorded start,
so the same events always give the same bytes.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

import orjson

from agentledger.errors import ConfigError
from agentledger.events.generation import (
    InputGenerated,
    InputGenerationFailed,
    InputsGenerationCompleted,
    InputsGenerationInterrupted,
    InputsGenerationStarted,
    PlannedInput,
)
from agentledger.events.payloads import decode_payload

_SPACES = re.compile(r"\s+")


class _Event(Protocol):
    @property
    def type(self) -> str: ...
    @property
    def schema_version(self) -> int: ...
    @property
    def data(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class GeneratedEntry:
    """One input of the file, with where it came from."""

    input: str
    planned: PlannedInput


@dataclass
class GenerationView:
    """A generation as its events tell it."""

    started: InputsGenerationStarted
    entries: list[GeneratedEntry] = field(default_factory=list)
    failed: int = 0
    duplicates: int = 0
    empty: int = 0
    pending: int = 0
    """Planned items with neither an answer nor a failure (an interrupted generation)."""
    first_failure: str | None = None
    completed: bool = False
    interrupted: bool = False

    @property
    def generation_id(self) -> str:
        return self.started.generation_id

    @property
    def planned(self) -> int:
        return len(self.started.plan)


def text_key(text: str) -> str:
    """What two inputs must share to be duplicates: the text, case and spacing aside."""
    return _SPACES.sub(" ", text).strip().casefold()


def fold_generation(events: Iterable[_Event]) -> GenerationView | None:
    """The generation told by ``events`` (one generation stream), or None without a start."""
    started: InputsGenerationStarted | None = None
    answers: dict[int, str] = {}
    failures: dict[int, InputGenerationFailed] = {}
    completed = interrupted = False
    for event in events:
        if event.type not in _TYPES:
            continue
        payload = decode_payload(event.type, event.schema_version, event.data)
        if isinstance(payload, InputsGenerationStarted):
            started = payload
        elif isinstance(payload, InputGenerated):
            answers[payload.index] = payload.input
        elif isinstance(payload, InputGenerationFailed):
            failures[payload.index] = payload
        elif isinstance(payload, InputsGenerationCompleted):
            completed = True
        elif isinstance(payload, InputsGenerationInterrupted):
            interrupted = True
    if started is None:
        return None
    view = GenerationView(started, completed=completed, interrupted=interrupted)
    seen: set[tuple[str | None, str]] = set()
    for planned in started.plan:
        if planned.index in failures:
            failure = failures[planned.index]
            view.failed += 1
            if view.first_failure is None:
                view.first_failure = (
                    f"#{planned.index} (base {planned.base_index}, {planned.strategy}"
                    f"{', ' + planned.persona if planned.persona else ''}): "
                    f"{failure.error_type}: {failure.error_message}"
                )
            continue
        text = answers.get(planned.index)
        if text is None:
            view.pending += 1
            continue
        if not text.strip():
            view.empty += 1
            continue
        key = (planned.persona, text_key(text))
        if key in seen:
            view.duplicates += 1
            continue
        seen.add(key)
        view.entries.append(GeneratedEntry(text, planned))
    return view


_TYPES = frozenset(
    {
        "InputsGenerationStarted",
        "InputGenerated",
        "InputGenerationFailed",
        "InputsGenerationCompleted",
        "InputsGenerationInterrupted",
    }
)


_PLAIN = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")
_YAML_WORDS = frozenset(["y", "n", "yes", "no", "on", "off", "true", "false", "null"])
# Characters YAML may not hold raw in a double-quoted scalar (non-printable, or line
# breaks that it would fold): written as escapes.
_UNSAFE_YAML = re.compile(
    "[^\x09\x0a\x0d\x20-\x7e\xa0-\u2027\u202a-\ud7ff\ue000-\ufefe\uff00-\ufffd"
    "\U00010000-\U0010ffff]"
)


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def scalar(value: Any) -> str:
    """One YAML scalar: identifiers and numbers plain, any other text double-quoted with
    JSON's escapes (a valid YAML double-quoted scalar), so every text reads back as it was.
    Written by hand: PyYAML's pure-Python emitter takes seconds on thousands of inputs."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    text = str(value)
    if _PLAIN.fullmatch(text) and text.lower() not in _YAML_WORDS:
        return text
    return _UNSAFE_YAML.sub(_escape, orjson.dumps(text).decode())


def _block(key: str, value: Any, indent: str = "") -> list[str]:
    """``key: value`` as block YAML (mappings, lists of scalars or of flat mappings)."""
    head = f"{indent}{scalar(key)}:"
    if isinstance(value, dict):
        if not value:
            return [f"{head} {{}}"]
        lines = [head]
        for sub, item in value.items():
            lines += _block(sub, item, indent + "  ")
        return lines
    if isinstance(value, list):
        if not value:
            return [f"{head} []"]
        lines = [head]
        for item in value:
            if isinstance(item, dict):
                pairs = [f"{scalar(k)}: {scalar(v)}" for k, v in item.items()]
                lines.append(f"{indent}- {pairs[0]}")
                lines += [f"{indent}  {pair}" for pair in pairs[1:]]
            else:
                lines.append(f"{indent}- {scalar(item)}")
        return lines
    return [f"{head} {scalar(value)}"]


def _dump(value: dict[str, Any]) -> str:
    return "\n".join(line for key, item in value.items() for line in _block(key, item))


def _comment(text: str) -> str:
    """``text`` safe inside a one-line YAML comment (no line breaks or controls)."""
    return _UNSAFE_YAML.sub(" ", text.replace("\t", " ").replace("\n", " ").replace("\r", " "))


def _header_time(started_at: str) -> str:
    moment = datetime.fromisoformat(started_at.replace("Z", "+00:00"))
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def render(view: GenerationView) -> str:
    """The inputs file of a generation (FluxLoop's layout, see the module docstring)."""
    settings = view.started.settings
    model = settings.get("model") or {}
    provider, name = str(model.get("provider", "unknown")), str(model.get("name", "unknown"))
    strategies = list(settings.get("strategies") or [])
    rows: list[dict[str, Any]] = []
    by_persona: dict[str, list[str]] = {}
    for entry in view.entries:
        planned = entry.planned
        row: dict[str, Any] = {"input": entry.input, "strategy": planned.strategy}
        row["base_index"] = planned.base_index
        if planned.persona is not None:
            row["persona"] = planned.persona
        if planned.persona_description is not None:
            row["persona_description"] = planned.persona_description
        row["prompt_hash"] = planned.prompt_hash
        rows.append(row)
        by_persona.setdefault(planned.persona or "generic_user", []).append(
            f"[{planned.strategy}] {entry.input}"
        )
    stats = {
        "total_generated": len(view.entries),
        "base_inputs": len(settings.get("base_inputs") or []),
        "personas": len(settings.get("personas") or []),
        "strategies": len(strategies),
        "planned": view.planned,
        "failed": view.failed,
        "duplicates_dropped": view.duplicates,
        "empty_dropped": view.empty,
    }
    config = {
        "config_name": settings.get("config_name"),
        "generation_mode": settings.get("mode"),
        "provider": provider,
        "model": name,
        "strategies": strategies,
        "variation_count": settings.get("variation_count"),
        "limit": settings.get("limit"),
        "prompt": settings.get("user_prompt_template"),
        "generation_id": view.generation_id,
    }
    rule = "# " + "=" * 67
    thin = "# " + "-" * 67
    lines = [
        rule,
        f"# Generated User Inputs: {_header_time(view.started.started_at)}",
        f"# Model: {_comment(provider)}/{_comment(name)}",
        rule,
        "",
        _dump({"stats": stats}),
        "",
    ]
    for persona, items in by_persona.items():
        lines += [
            thin,
            f"# {_comment(persona.replace('_', ' ').upper())} ({len(items)} inputs)",
            thin,
            "",
            _dump({persona: items}),
            "",
        ]
    lines += [rule, "# FULL DATA", rule, "", _dump({"inputs": rows}), ""]
    lines += [
        thin,
        "# COMMON METADATA (applies to all inputs above)",
        thin,
        "",
        _dump({"generation_config": {k: v for k, v in config.items() if v is not None}}),
    ]
    return "\n".join(lines).rstrip() + "\n"


def recorded_generation(path: Path) -> str | None:
    """The generation id an inputs file names in its ``generation_config`` (None for a
    file written otherwise). Reads only the file's last block, so it costs little."""
    from agentledger.documents import parse_yaml, read_text

    try:
        text = read_text(path, "inputs file")
    except ConfigError:
        return None
    at = text.rfind("\ngeneration_config:")
    if at < 0:
        return None
    try:
        tail = parse_yaml(text[at + 1 :], str(path))
    except ConfigError:
        return None
    config = tail.get("generation_config") if isinstance(tail, dict) else None
    found = config.get("generation_id") if isinstance(config, dict) else None
    return found if isinstance(found, str) else None
