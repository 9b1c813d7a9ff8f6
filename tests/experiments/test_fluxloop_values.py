"""The FluxLoop SDK's observations made JSON-safe: orjson's round trip agrees with the walk."""

from __future__ import annotations

import enum
import uuid
from datetime import UTC, date, datetime
from typing import Any

import pytest

from agentledger.experiments.fluxloop_sdk import _plain, _walk


class Kind(enum.Enum):
    AGENT = "agent"


class Model:
    def model_dump(self, mode: str = "python") -> dict[str, Any]:
        return {"kind": "model", "mode": mode}


ID = uuid.UUID("12345678-1234-5678-1234-567812345678")

SAMPLES: list[Any] = [
    {"type": Kind.AGENT, "id": ID, "at": datetime(2026, 12, 2, 9, 30, 1, 250, tzinfo=UTC)},
    {"naive": datetime(2026, 1, 2, 3, 4, 5), "day": date(2026, 1, 2), "whole": 3.0},
    {"nested": [1, (2, {"x": (3,)})], "keys": {1: "one", 2.5: "float"}, "none": None},
    {"set": {3}, "model": Model(), "bytes": b"raw", "object": Kind},
    {"huge": 2**70, "surrogate": "\ud800", "nul": "a\x00b"},
]


@pytest.mark.parametrize("value", SAMPLES)
def test_round_trip_and_walk_agree(value: Any) -> None:
    assert _plain(value) == _walk(value)
