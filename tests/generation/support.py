"""Building generation projects on disk for the generation tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

PERSONAS = [
    {
        "name": "novice_user",
        "description": "A user new to the app",
        "characteristics": ["Asks basic questions"],
        "goals": ["Complete basic tasks"],
    },
    {"name": "expert_user", "description": "A power user", "language": "fr"},
]
BASE_INPUTS = [
    {"input": "How do I export my notes?", "expected_intent": "export"},
    {"input": "Reset my password"},
]


def write_config(root: Path, **config: Any) -> Path:
    """``root/configs/input.yaml`` with two base inputs and two personas unless given."""
    (root / "configs").mkdir(parents=True, exist_ok=True)
    data = {"personas": PERSONAS, "base_inputs": BASE_INPUTS, **config}
    data = {k: v for k, v in data.items() if v is not None}
    (root / "configs" / "input.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    return root


def llm(server_url: str, **extra: Any) -> dict[str, Any]:
    """An ``input_generation`` section calling the loopback server's OpenAI API."""
    return {
        "mode": "llm",
        "llm": {"enabled": True, "provider": "openai", "model": "gen-test", "base_url": server_url}
        | extra,
    }
