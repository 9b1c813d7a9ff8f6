"""The installed distribution's version: what ``--version`` prints and every event records."""

from __future__ import annotations

from functools import cache


@cache
def installed_version() -> str:
    """``agentledger``'s version from the installed metadata (``0+unknown`` when run from a
    source tree that was never installed)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("agentledger")
    except PackageNotFoundError:
        return "0+unknown"
