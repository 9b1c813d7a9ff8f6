"""Reading the documents users hand us (configs, inputs, ``-i @file``): bounded and strict.

Every YAML or JSON file or text agentledger reads goes through here, so the same limits
hold everywhere:

- at most ``MAX_DOCUMENT_BYTES`` (32 MiB) of text per file;
- text must be UTF-8 (a BOM is allowed); anything else is an error naming the byte offset;
- YAML aliases may not expand a document beyond ``MAX_YAML_VALUES`` (5,000,000) values or
  ``MAX_YAML_CHARACTERS`` (64 Mi) characters of text, counted with every alias expanded,
  and nesting may not exceed ``MAX_YAML_DEPTH`` (1,000): a "billion laughs" file is
  refused after reading its small graph, before it is built.

Every failure is a ``ConfigError`` with one line naming the file and the fix.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import yaml

from agentledger.errors import ConfigError

MAX_DOCUMENT_BYTES = 32 * 1024 * 1024
MAX_YAML_VALUES = 5_000_000
MAX_YAML_DEPTH = 1_000
MAX_YAML_CHARACTERS = 64 * 1024 * 1024
"""Characters of text a YAML document may expand to through aliases (twice the file
limit: a few aliases of a long string are fine, a bomb of long strings is not)."""


def read_text(path: Path, what: str) -> str:
    """The UTF-8 text of ``path`` (a ``what`` such as "inputs file"), within the size limit."""
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_DOCUMENT_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError(f"{what} {path} not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{what} {path} is a directory; name a file") from None
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc.strerror}") from None
    if len(data) > MAX_DOCUMENT_BYTES:
        raise ConfigError(
            f"{what} {path} is larger than {MAX_DOCUMENT_BYTES // (1024 * 1024)} MiB; "
            "split it into smaller files"
        )
    return decode_utf8(data, f"{what} {path}")


def decode_utf8(data: bytes, where: str) -> str:
    """``data`` as UTF-8 text (a leading BOM dropped); invalid bytes are an error."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{where}: not valid UTF-8 (byte 0x{data[exc.start]:02x} at offset {exc.start}); "
            "save it as UTF-8"
        ) from None


def parse_yaml(text: str, where: str) -> Any:
    """The value of one YAML document, refusing alias bombs and runaway nesting."""
    try:
        loader = yaml.SafeLoader(text)  # checks every character up front
    except yaml.reader.ReaderError as exc:
        raise _unprintable(text, exc, where) from None
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_expansion(node, where)
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError(f"{where}{line}: {problem}; fix the YAML syntax") from None
    except RecursionError:
        raise ConfigError(
            f"{where}: nested deeper than Python can read; flatten the document"
        ) from None
    finally:
        loader.dispose()


def _unprintable(text: str, exc: yaml.reader.ReaderError, where: str) -> ConfigError:
    """YAML allows no control characters but tab and line breaks (nor NUL, nor lone
    surrogates) in a file, only as escapes in double-quoted strings."""
    line = text.count("\n", 0, exc.position) + 1
    code = exc.character if isinstance(exc.character, int) else 0
    return ConfigError(
        f"{where} line {line}: character U+{code:04X} is not allowed in YAML; write it as an "
        'escape in a double-quoted string (e.g. "\\0", "\\e", "\\uD800") or remove it'
    )


def parse_json(text: str | bytes, where: str) -> Any:
    """The value of a JSON document."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise ConfigError(f"{where}: not valid JSON ({exc}); fix it") from None


def _check_expansion(root: yaml.Node, where: str) -> None:
    """Refuse a node graph whose aliases expand it beyond the limits (iteratively, with the
    expanded size of each shared node computed once)."""
    sizes: dict[int, tuple[int, int]] = {}
    """Expanded (values, characters) of each node done."""
    open_nodes: set[int] = set()
    # (node, depth, children done?) on an explicit stack: a deep document cannot exhaust
    # Python's recursion here.
    stack: list[tuple[yaml.Node, int, bool]] = [(root, 1, False)]
    while stack:
        node, depth, expanded = stack.pop()
        if id(node) in sizes:
            continue
        if depth > MAX_YAML_DEPTH:
            raise ConfigError(
                f"{where}: nested more than {MAX_YAML_DEPTH} levels deep; flatten the document"
            )
        children = _children(node)
        if not expanded and children:
            if id(node) in open_nodes:
                raise ConfigError(f"{where}: an alias refers to itself; remove the cycle")
            open_nodes.add(id(node))
            stack.append((node, depth, True))
            stack.extend((child, depth + 1, False) for child in children if id(child) not in sizes)
            continue
        open_nodes.discard(id(node))
        own = len(node.value) if isinstance(node, yaml.ScalarNode) else 0
        values = 1 + sum(sizes[id(child)][0] for child in children)
        characters = own + sum(sizes[id(child)][1] for child in children)
        if values > MAX_YAML_VALUES:
            raise ConfigError(
                f"{where}: expands to more than {MAX_YAML_VALUES:,} values (through YAML "
                "aliases); write the values out or make the document smaller"
            )
        if characters > MAX_YAML_CHARACTERS:
            raise ConfigError(
                f"{where}: expands to more than {MAX_YAML_CHARACTERS // (1024 * 1024)} Mi "
                "characters of text (through YAML aliases); write the values out or make "
                "the document smaller"
            )
        sizes[id(node)] = (values, characters)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []
