"""Loading targets: a module name another project already imported in this process."""

from __future__ import annotations

from pathlib import Path

from agentledger.experiments.targets import load_target


def _project(root: Path, answer: str) -> Path:
    root.mkdir()
    (root / "agent.py").write_text(f"def run(input_text):\n    return {answer!r}\n")
    return root


def test_each_project_gets_its_own_module_of_the_same_name(tmp_path: Path) -> None:
    first = _project(tmp_path / "first", "from the first")
    second = _project(tmp_path / "second", "from the second")
    assert load_target("agent:run", [str(first)]).fn("x") == "from the first"
    assert load_target("agent:run", [str(second)]).fn("x") == "from the second"
    assert load_target("agent:run", [str(first)]).fn("x") == "from the first"


def test_the_same_project_keeps_its_module(tmp_path: Path) -> None:
    only = _project(tmp_path / "only", "once")
    loaded = load_target("agent:run", [str(only)])
    assert load_target("agent:run", [str(only)]).fn is loaded.fn
