"""The input of a ``run agent`` call, merged from flags, ``-i`` values, files and stdin.

Every source yields either an object (merged into the input, later sources winning) or
text (the user's message, stored under the agent's ``input_key``, else ``message``):

- ``--<field> VALUE`` flags made from the agent's ``input_schema`` (integers, numbers,
  booleans as ``--flag``/``--no-flag``, arrays by repeating the flag; ``@file`` reads a
  file: its text for a string field, parsed by its extension for any other);
- ``-i/--input`` values: ``@file`` (parsed as JSON or YAML by ``--format`` or the file's
  extension, else its text), a JSON object, or plain text;
- stdin when it is piped, parsed by ``--format`` (text by default).

Required fields of the input schema are checked after merging, whatever the source.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson

from agentledger.agents.project import Agent
from agentledger.errors import ConfigError

JsonDict = dict[str, Any]
FORMATS = ("text", "json", "yaml")


def message_key(agent: Agent) -> str:
    return agent.input_key or "message"


def _parse(text: str, fmt: str, where: str) -> Any:
    if fmt == "json":
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            raise ConfigError(
                f"{where}: not valid JSON ({exc}); fix it or use --format text"
            ) from None
    if fmt == "yaml":
        from agentledger.documents import parse_yaml

        return parse_yaml(text, where)
    return text


def check_text(text: str, where: str) -> str:
    """``text`` from the command line, which must be UTF-8: an argument with bytes that are
    not arrives with lone surrogates (``os.fsdecode``), and is refused naming the byte."""
    for index, char in enumerate(text):
        if "\ud800" <= char <= "\udfff":
            byte = f"byte 0x{ord(char) - 0xDC00:02x}" if char >= "\udc80" else "a lone surrogate"
            raise ConfigError(
                f"{where}: not valid UTF-8 text ({byte} at character {index}); pass UTF-8"
            )
    return text


def _file_format(path: Path, fmt: str | None) -> str:
    if fmt:
        return fmt
    return {".json": "json", ".yaml": "yaml", ".yml": "yaml"}.get(path.suffix.lower(), "text")


def _merge(values: JsonDict, item: Any, agent: Agent, where: str) -> None:
    if isinstance(item, dict):
        values.update(item)
    elif isinstance(item, str):
        values[message_key(agent)] = item
    else:
        raise ConfigError(f"{where}: expected an object or text, got {type(item).__name__}")


def split_arguments(args: list[str]) -> tuple[str, str | None, list[str]]:
    """``run agent``'s words in order: PATH (default ``.``), then AGENT, each present only
    if it comes before the first option; the rest are ``--<field>`` flags."""
    path = args.pop(0) if args and not args[0].startswith("-") else "."
    name = args.pop(0) if args and not args[0].startswith("-") else None
    return path, name, args


def schema_flags(agent: Agent, args: list[str], options: Iterable[str] = ()) -> JsonDict:
    """Values from ``--field VALUE`` (or ``--field=VALUE``) flags named after the agent's
    input schema properties; an unknown flag is an error naming it, suggesting the nearest
    field or one of ``options`` (the command's own)."""
    properties: JsonDict = (agent.input_schema or {}).get("properties") or {}
    values: JsonDict = {}
    position = 0
    while position < len(args):
        arg = args[position]
        if not arg.startswith("-"):
            raise ConfigError(
                f"unexpected argument {arg!r}: PATH and AGENT come before any option, input "
                "goes in -i/--input or --<field> VALUE"
            )
        inline: str | None = None
        if "=" in arg:
            arg, _, inline = arg.partition("=")
        name = arg.lstrip("-").replace("-", "_")
        negated = name.startswith("no_") and name[3:] in properties
        field = name[3:] if negated else name
        schema = properties.get(field) if arg.startswith("--") else None
        if schema is None:
            fields = [f"--{p.replace('_', '-')}" for p in properties]
            near = difflib.get_close_matches(arg, [*fields, *options], n=1)
            hint = f"did you mean {near[0]}? " if near else ""
            raise ConfigError(
                f"no such option {arg}; {hint}the agent {agent.name}'s input fields are: "
                f"{', '.join(fields) or 'none'}"
            )
        kind = schema.get("type", "string")
        if kind == "boolean":
            if inline is not None:
                if inline.lower() not in ("true", "false"):
                    raise ConfigError(f"{arg}={inline}: expected true or false, or {arg} alone")
                values[field] = (inline.lower() == "true") != negated
            else:
                values[field] = not negated
            position += 1
            continue
        if inline is not None:
            raw = inline
            position += 1
        elif position + 1 >= len(args):
            raise ConfigError(f"{arg} needs a value")
        else:
            raw = args[position + 1]
            position += 2
        check_text(raw, arg)
        if raw.startswith("@"):
            # @file: its text for a string field, parsed by its extension for any other.
            from agentledger.documents import read_text

            path = Path(raw[1:])
            text = read_text(path.resolve(), f"{arg} {raw}: file")
            if kind == "string":
                values[field] = text
            else:
                values[field] = _parse(text, _file_format(path, None), f"{arg} {raw}")
            continue
        item_kind = (schema.get("items") or {}).get("type", "string") if kind == "array" else kind
        if item_kind in ("object", "array"):
            # A structured field (or an item of one) takes JSON inline, or @file.
            try:
                parsed = orjson.loads(raw)
            except orjson.JSONDecodeError:
                parsed = None
            if not isinstance(parsed, dict if item_kind == "object" else list):
                raise ConfigError(
                    f"{arg} {raw!r}: expected {'an' if item_kind == 'object' else 'a'} "
                    f'{item_kind} as JSON (e.g. {arg} \'{{"name": "x"}}\'), or @file'
                    if item_kind == "object"
                    else f"{arg} {raw!r}: expected an array as JSON (e.g. {arg} '[1, 2]'), or @file"
                )
            if kind == "array":
                values.setdefault(field, []).append(parsed)
            else:
                values[field] = parsed
            continue
        try:
            value: Any = (
                int(raw) if item_kind == "integer" else float(raw) if item_kind == "number" else raw
            )
        except ValueError:
            raise ConfigError(
                f"{arg} {raw!r}: expected {'an' if item_kind == 'integer' else 'a'} {item_kind}"
            ) from None
        if kind == "array":
            values.setdefault(field, []).append(value)
        else:
            values[field] = value
    return values


def gather_input(
    agent: Agent,
    inputs: list[str],
    fmt: str | None,
    stdin_text: str | None,
    flags: JsonDict,
    cwd: Path,
    *,
    check_required: bool = True,
) -> JsonDict:
    """The merged input: stdin first, then each ``-i`` in order, then schema flags."""
    values: JsonDict = {}
    if stdin_text is not None and stdin_text.strip():
        _merge(values, _parse(stdin_text, fmt or "text", "stdin"), agent, "stdin")
    for item in inputs:
        check_text(item, "-i")
        if item.startswith("@"):
            from agentledger.documents import read_text

            path = (cwd / item[1:]).resolve()
            where = f"-i {item}"
            text = read_text(path, f"{where}: file")
            _merge(values, _parse(text, _file_format(path, fmt), where), agent, where)
        elif item.lstrip().startswith("{"):
            _merge(values, _parse(item, "json", f"-i {item[:40]}"), agent, "-i")
        else:
            _merge(values, item, agent, "-i")
    values.update(flags)
    missing = missing_fields(agent, values) if check_required else []
    if missing:
        flags_hint = " ".join(f"--{m.replace('_', '-')}" for m in missing)
        raise ConfigError(
            f"agent {agent.name} needs input field(s) {', '.join(missing)}: pass {flags_hint}, "
            "-i with a JSON object or @file, or pipe it on stdin"
        )
    return values


def missing_fields(agent: Agent, values: JsonDict) -> list[str]:
    """Required input-schema fields ``values`` lacks."""
    required = (agent.input_schema or {}).get("required") or []
    return [field for field in required if field not in values]


KeyPath = list[str | int]


def key_order(value: Any, path: KeyPath | None = None) -> list[KeyPath]:
    """The path of every object key in ``value``, in its order: the store keeps objects
    with sorted keys, and a replay needs the order the input was given in."""
    path = path or []
    paths: list[KeyPath] = []
    if isinstance(value, dict):
        for key, item in value.items():
            paths.append([*path, str(key)])
            paths += key_order(item, [*path, str(key)])
    elif isinstance(value, list):
        for index, item in enumerate(value):
            paths += key_order(item, [*path, index])
    return paths


def in_order(value: Any, order: list[KeyPath], path: KeyPath | None = None) -> Any:
    """``value`` with its object keys put back in the recorded ``order`` (keys the order
    does not name keep their place after the named ones)."""
    path = path or []
    if isinstance(value, dict):
        depth = len(path)
        named = [p[depth] for p in order if len(p) == depth + 1 and p[:depth] == path]
        keys = [k for k in named if k in value] + [k for k in value if k not in named]
        return {str(k): in_order(value[str(k)], order, [*path, str(k)]) for k in keys}
    if isinstance(value, list):
        return [in_order(item, order, [*path, index]) for index, item in enumerate(value)]
    return value
