"""The wheel ships every package (migrations included) and its console script works."""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Built from a copy of the source without build leftovers: setuptools would otherwise
    # put whatever an old build/lib holds into the wheel.
    source = tmp_path_factory.mktemp("source") / "agentledger"
    # __pycache__ is copied on purpose: a checkout has byte-code, and the wheel must not.
    leftovers = shutil.ignore_patterns(
        ".git", ".venv", "build", "dist", "*.egg-info", ".*_cache", ".demo", ".work"
    )
    shutil.copytree(ROOT, source, ignore=leftovers)
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(out),
            str(source),
        ],
        check=True,
        capture_output=True,
    )
    [built] = out.glob("agentledger-*.whl")
    return built


def test_wheel_installs_nothing_at_the_top_of_site_packages_but_agentledger(wheel: Path) -> None:
    # Agents are imported into our process: their own `runner`, `cli` or `migrations`
    # must never meet a module of ours.
    names = zipfile.ZipFile(wheel).namelist()
    top = {name.split("/")[0] for name in names}
    [dist_info] = [t for t in top if t.endswith(".dist-info")]
    assert top == {"agentledger", dist_info}
    assert not [n for n in names if n.endswith(".pyc") or "__pycache__" in n]


def test_wheel_contains_every_subpackage_the_migrations_and_the_templates(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for package in (
        "",
        "eventstore/",
        "events/",
        "projections/",
        "models/",
        "replay/",
        "experiments/",
        "workers/",
        "agents/",
        "cli/",
        "migrations/",
    ):
        assert f"agentledger/{package}__init__.py" in names
    assert "agentledger/migrations/env.py" in names
    assert "agentledger/migrations/script.py.mako" in names
    for revision in ("0001_event_log", "0002_slots", "0003_append_function"):
        assert f"agentledger/migrations/versions/{revision}.py" in names
    assert "agentledger/templates/experiment/configs/simulation.yaml" in names
    assert "agentledger/templates/agent/aigne.yaml" in names
    assert any(n.endswith("entry_points.txt") for n in names)


def test_installed_wheel_runs_outside_the_source_tree(wheel: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    target = venv / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}"
    site = target / "site-packages"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "-q",
            "--target",
            str(site),
            str(wheel),
        ],
        check=True,
        capture_output=True,
    )
    # Third-party dependencies come from the test environment; ours only from the wheel.
    deps = sysconfig.get_paths()["purelib"]
    env = {"PYTHONPATH": deps, "PATH": "/usr/bin:/bin"}
    work = tmp_path / "elsewhere"
    work.mkdir()
    python = str(venv / "bin" / "python")
    where = subprocess.run(
        [python, "-c", "import agentledger.migrations as m; print(m.__file__)"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert where.stdout.startswith(str(site))
    result = subprocess.run(
        [python, "-m", "agentledger.cli.main", "--store", str(work / "l.db"), "db", "upgrade"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{work / 'l.db'}: upgraded empty -> 0003 (head)\n"
