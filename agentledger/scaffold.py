"""``agentledger init``: new projects from the templates shipped with the package."""

from __future__ import annotations

from importlib import resources
from importlib.abc import Traversable
from pathlib import Path

from agentledger.errors import ConfigError

TEMPLATES = ("experiment", "agent")


def _files(root: Traversable, prefix: str = "") -> list[tuple[str, Traversable]]:
    found = []
    for entry in sorted(root.iterdir(), key=lambda e: e.name):
        if entry.name == "__pycache__":
            continue
        name = f"{prefix}{entry.name}"
        if entry.is_dir():
            found += _files(entry, f"{name}/")
        else:
            found.append((name, entry))
    return found


def init_project(directory: Path, template: str, *, force: bool = False) -> list[str]:
    """Copy ``template`` into ``directory``; returns the files written. Existing files are
    never overwritten unless ``force``."""
    if template not in TEMPLATES:
        raise ConfigError(f"unknown template {template!r}; choose one of {', '.join(TEMPLATES)}")
    files = _files(resources.files("agentledger") / "templates" / template)
    if not force:
        clashes = [name for name, _ in files if (directory / name).exists()]
        if clashes:
            raise ConfigError(
                f"{directory / clashes[0]} already exists; choose an empty DIR or pass --force"
            )
    for name, source in files:
        target = directory / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(source.read_bytes())
    return [name for name, _ in files]
