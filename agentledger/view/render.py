"""The templates: one Jinja2 environment, autoescaped, shared by the viewer and the report.

Everything recorded reaches a page through a template variable, and autoescaping turns it
into text (a recorded ``<script>`` shows as those characters). The only markup that is not
escaped is what ``charts`` draws, which escapes every text it puts in.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import orjson

HERE = Path(__file__).resolve().parent
STATIC = HERE / "static"


def pretty_json(value: Any) -> str:
    """A value as indented JSON with sorted keys (text: the template escapes it)."""
    if isinstance(value, str):
        return value
    return orjson.dumps(
        value, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS
    ).decode()


def ms(value: Any) -> str:
    if value is None:
        return "-"
    number = float(value)
    if number >= 1000:
        return f"{number / 1000:,.2f} s"
    return f"{number:,.1f} ms"


def percent(value: Any) -> str:
    return f"{float(value) * 100:.1f}%"


def at(url: str, pin: int | None) -> str:
    """``url`` kept at the page's pinned log position (``?as_of=``), when there is one."""
    if pin is None:
        return url
    return f"{url}{'&' if '?' in url else '?'}as_of={pin}"


def clip(text: Any, limit: int = 120) -> str:
    value = text if isinstance(text, str) else pretty_json(text)
    return value if len(value) <= limit else value[: limit - 1] + "…"


@cache
def environment() -> Any:
    """The Jinja2 environment (autoescape on for every template, undefined names fail)."""
    from jinja2 import Environment, FileSystemLoader, StrictUndefined

    env = Environment(
        loader=FileSystemLoader(str(HERE / "templates")),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update(json=pretty_json, ms=ms, percent=percent, clip=clip, at=at)
    return env


def render(template: str, **context: Any) -> bytes:
    """A template rendered to UTF-8 (a lone surrogate in recorded text becomes U+FFFD)."""
    text = environment().get_template(template).render(**context)
    return text.encode("utf-8", "replace")


def static_text(name: str) -> str:
    return (STATIC / name).read_text(encoding="utf-8")
