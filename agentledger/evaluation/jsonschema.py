"""A JSON Schema subset for the ``json_schema`` rule (no dependency, no network).

Supported keywords: ``type`` (one or a list), ``properties``, ``required``,
``additionalProperties`` (bool or schema), ``items``, ``enum``, ``const``, ``minimum``,
``maximum``, ``exclusiveMinimum``, ``exclusiveMaximum``, ``minLength``, ``maxLength``,
``pattern``, ``minItems``, ``maxItems``, ``anyOf``, ``oneOf``, ``allOf``, ``not``, plus the
annotations ``title``, ``description``, ``$schema``, ``$id``, ``default``, ``examples``.
Any other keyword is refused when the config is read (``check_schema``), never ignored.
"""

from __future__ import annotations

import re
from typing import Any

SUPPORTED = frozenset(
    {
        "type",
        "properties",
        "required",
        "additionalProperties",
        "items",
        "enum",
        "const",
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "minLength",
        "maxLength",
        "pattern",
        "minItems",
        "maxItems",
        "anyOf",
        "oneOf",
        "allOf",
        "not",
        "title",
        "description",
        "$schema",
        "$id",
        "default",
        "examples",
    }
)
_TYPES = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}


def check_schema(schema: Any, where: str = "schema") -> str | None:
    """The first problem with ``schema`` (an unsupported keyword, a bad type), or None."""
    if isinstance(schema, bool):
        return None
    if not isinstance(schema, dict):
        return f"{where} must be a mapping"
    for key, value in schema.items():
        if key not in SUPPORTED:
            return f"{where}: keyword '{key}' is not supported"
        if key == "type":
            for kind in value if isinstance(value, list) else [value]:
                if kind not in _TYPES:
                    return f"{where}.type: unknown type {kind!r}"
        elif key == "properties":
            for name, sub in (value or {}).items():
                problem = check_schema(sub, f"{where}.properties.{name}")
                if problem:
                    return problem
        elif key in ("items", "not", "additionalProperties"):
            problem = check_schema(value, f"{where}.{key}")
            if problem:
                return problem
        elif key in ("anyOf", "oneOf", "allOf"):
            for i, sub in enumerate(value or []):
                problem = check_schema(sub, f"{where}.{key}[{i}]")
                if problem:
                    return problem
        elif key == "pattern":
            try:
                re.compile(value)
            except re.error as exc:
                return f"{where}.pattern: {exc}"
    return None


def first_error(value: Any, schema: Any, path: str = "$") -> str | None:
    """The first way ``value`` fails ``schema`` (a JSON path and what), or None."""
    if schema is True or schema == {}:
        return None
    if schema is False:
        return f"{path}: no value is allowed here"
    kinds = schema.get("type")
    if kinds is not None:
        allowed = kinds if isinstance(kinds, list) else [kinds]
        if not any(_TYPES[k](value) for k in allowed):
            return f"{path}: expected {' or '.join(allowed)}"
    if "enum" in schema and value not in schema["enum"]:
        return f"{path}: not one of {schema['enum']}"
    if "const" in schema and value != schema["const"]:
        return f"{path}: must be {schema['const']!r}"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        for key, bad in (
            ("minimum", lambda lim: value < lim),
            ("maximum", lambda lim: value > lim),
            ("exclusiveMinimum", lambda lim: value <= lim),
            ("exclusiveMaximum", lambda lim: value >= lim),
        ):
            if key in schema and bad(schema[key]):
                return f"{path}: {value} breaks {key} {schema[key]}"
    if isinstance(value, str):
        if "minLength" in schema and len(value) < schema["minLength"]:
            return f"{path}: shorter than {schema['minLength']}"
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            return f"{path}: longer than {schema['maxLength']}"
        if "pattern" in schema and not re.search(schema["pattern"], value):
            return f"{path}: does not match {schema['pattern']!r}"
    if isinstance(value, list):
        if "minItems" in schema and len(value) < schema["minItems"]:
            return f"{path}: fewer than {schema['minItems']} items"
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            return f"{path}: more than {schema['maxItems']} items"
        if "items" in schema:
            for i, item in enumerate(value):
                problem = first_error(item, schema["items"], f"{path}[{i}]")
                if problem:
                    return problem
    if isinstance(value, dict):
        for name in schema.get("required", []):
            if name not in value:
                return f"{path}: missing required '{name}'"
        properties = schema.get("properties", {})
        extra = schema.get("additionalProperties", True)
        for name, item in value.items():
            sub = properties.get(name, extra)
            problem = first_error(item, sub, f"{path}.{name}")
            if problem:
                return (
                    problem
                    if name in properties or sub is not False
                    else (f"{path}: unexpected property '{name}'")
                )
    for sub in schema.get("allOf", []):
        problem = first_error(value, sub, path)
        if problem:
            return problem
    if "anyOf" in schema and all(first_error(value, s, path) for s in schema["anyOf"]):
        return f"{path}: matches none of anyOf"
    if "oneOf" in schema:
        matching = sum(first_error(value, s, path) is None for s in schema["oneOf"])
        if matching != 1:
            return f"{path}: matches {matching} of oneOf, not exactly one"
    if "not" in schema and first_error(value, schema["not"], path) is None:
        return f"{path}: matches the schema under 'not'"
    return None
