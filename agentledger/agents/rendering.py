"""Values rendered into prompts the way AIGNE (JavaScript) renders them.

AIGNE fills ``{{field}}`` with nunjucks, whose ``suppressValue`` it replaces (its
``packages/core/src/prompt/template.ts``): ``null``/``undefined`` render empty, any
object (arrays included: ``typeof [] === "object"``) renders as ``JSON.stringify(v)``,
anything else as JavaScript's ``String(v)``, and nothing is HTML-escaped. Its prompt
builder sends a user message that is not a string as ``JSON.stringify`` too. So:

- numbers as JavaScript prints them: ``2`` (not ``2.0``), ``0.1``, ``1e+21``, ``1e-7``;
- booleans ``true`` / ``false``; ``None`` empty;
- lists and dicts as compact JSON in their own key order (``["a","b"]``,
  ``{"z":1,"a":2.5}``), non-ASCII text unescaped, as ``JSON.stringify`` writes it.
"""

from __future__ import annotations

import math
from typing import Any


def js_number(value: float | int) -> str:
    """``value`` as JavaScript's ``Number.prototype.toString()`` writes it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        # JavaScript numbers are doubles: an integer beyond 2**53 prints as its double.
        if abs(value) < 2**53:
            return str(value)
        value = float(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    if value == 0:
        return "0"  # -0 too
    sign = "-" if value < 0 else ""
    # repr gives the shortest digits that round-trip, as ECMAScript's algorithm does; only
    # where the decimal point and the exponent go differ.
    digits, n = _shortest(abs(value))
    k = len(digits)
    if k <= n <= 21:
        text = digits + "0" * (n - k)
    elif 0 < n <= 21:
        text = f"{digits[:n]}.{digits[n:]}"
    elif -6 < n <= 0:
        text = "0." + "0" * (-n) + digits
    else:
        power = n - 1
        sign_e = "+" if power >= 0 else "-"
        head = digits if k == 1 else f"{digits[0]}.{digits[1:]}"
        text = f"{head}e{sign_e}{abs(power)}"
    return sign + text


def _shortest(value: float) -> tuple[str, int]:
    """(digits, n): the shortest round-trip digits of ``value`` > 0 without leading or
    trailing zeros, and n such that ``value == 0.digits * 10**n``."""
    text = repr(value)
    mantissa, _, exp = text.partition("e")
    power = int(exp) if exp else 0
    whole, _, fraction = mantissa.partition(".")
    digits = (whole + fraction).lstrip("0")
    # Position of the decimal point relative to the first significant digit.
    leading = len(whole + fraction) - len((whole + fraction).lstrip("0"))
    n = len(whole) - leading + power
    return digits.rstrip("0") or "0", n


def js_json(value: Any) -> str:
    """``value`` as ``JSON.stringify`` writes it: compact, keys in their own order,
    numbers as JavaScript prints them, non-ASCII kept, lone surrogates escaped."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        if isinstance(value, float) and not math.isfinite(value):
            return "null"  # JSON.stringify(NaN) and of Infinity
        return js_number(value)
    if isinstance(value, str):
        return _json_string(value)
    if isinstance(value, dict):
        items = (f"{_json_string(str(k))}:{js_json(v)}" for k, v in value.items())
        return "{" + ",".join(items) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(js_json(v) for v in value) + "]"
    return _json_string(str(value))


_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "\b": "\\b",
    "\f": "\\f",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
}


def _json_string(text: str) -> str:
    out = ['"']
    for char in text:
        escape = _ESCAPES.get(char)
        if escape is not None:
            out.append(escape)
        elif char < " " or "\ud800" <= char <= "\udfff":
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(char)
    out.append('"')
    return "".join(out)


def js_text(value: Any) -> str:
    """``value`` as AIGNE renders ``{{value}}`` in a prompt (see the module docstring)."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool | int | float):
        return js_number(value)
    return js_json(value)
