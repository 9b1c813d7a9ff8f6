"""Output files read like FluxLoop 0.3.2's as well as like the documented ones, and the
config behaves as FluxLoop's does (retries at once, near-miss keys named)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import orjson
import yaml

from tests.support.projects import agentledger, make_project, output_folder, read_jsonl

FLAKY_AGENT = """
def run(input_text):
    if "fail" in input_text:
        raise ValueError(f"cannot answer {input_text}")
    return f"ok: {input_text}"
"""
INPUTS = [
    {"input": "fine one", "persona": "novice"},
    {"input": "fail two", "persona": "expert"},
    {"input": "fine three"},
]
DOCUMENTED = (
    "experiment_name",
    "total_traces",
    "successful",
    "failed",
    "avg_duration_ms",
    "started_at",
    "completed_at",
    "config_snapshot",
)


def _run(tmp_path: Path, **simulation: object) -> tuple[Path, Path]:
    project = make_project(
        tmp_path / "proj",
        agent=FLAKY_AGENT,
        inputs=INPUTS,
        iterations=2,
        simulation={"description": "flaky", **simulation},
    )
    config = project / "configs" / "simulation.yaml"
    settings = yaml.safe_load(config.read_text())
    del settings["runner"]["retry_backoff_seconds"]  # FluxLoop's keys only
    config.write_text(yaml.safe_dump(settings))
    (project / "configs" / "input.yaml").write_text(
        "personas:\n"
        "  - name: novice\n    description: new\n    expertise_level: low\n    goals: [learn]\n"
        "  - name: expert\n    description: old\n"
        "variation_strategies: [rephrase, typo]\n"
    )
    result = agentledger("run", "experiment", "--yes", cwd=project)
    assert result.returncode == 1, result.stderr  # failures, within --max-failures 0
    return project, output_folder(result)


def test_summary_has_the_documented_and_fluxloops_fields(tmp_path: Path) -> None:
    _, folder = _run(tmp_path)
    summary = orjson.loads((folder / "summary.json").read_bytes())
    assert all(key in summary for key in DOCUMENTED)
    assert summary["name"] == "demo"
    assert summary["date"][:4].isdigit() and "T" in summary["date"]
    config = summary["config"]
    assert (config["name"], config["description"], config["iterations"]) == ("demo", "flaky", 2)
    assert config["parallel_runs"] == 1 and config["seed"] == 7
    assert config["runner"]["target"] == "agent:run"
    assert config["runner"]["module_path"] == "agent"
    assert config["personas"][0] == {
        "name": "novice",
        "description": "new",
        "expertise_level": "low",
        "goals": ["learn"],
    }
    assert config["variation_strategies"] == ["rephrase", "typo"]
    assert "fluxloop_config" not in summary["config_snapshot"]
    results = summary["results"]
    assert (results["total_runs"], results["successful"], results["failed"]) == (6, 4, 2)
    assert results["success_rate"] == round(4 / 6, 4)
    assert results["avg_duration_ms"] == summary["avg_duration_ms"]
    assert isinstance(results["duration_seconds"], float) and results["duration_seconds"] >= 0


def test_failed_runs_are_listed_in_errors_json(tmp_path: Path) -> None:
    _, folder = _run(tmp_path)
    errors = orjson.loads((folder / "errors.json").read_bytes())
    assert errors == [
        {
            "iteration": 0,
            "persona": "expert",
            "input": "fail two",
            "error": "cannot answer fail two",
        },
        {
            "iteration": 1,
            "persona": "expert",
            "input": "fail two",
            "error": "cannot answer fail two",
        },
    ]


def test_rebuilt_reports_are_byte_identical_including_errors_json(tmp_path: Path) -> None:
    project, folder = _run(tmp_path)
    before = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}
    summary = orjson.loads((folder / "summary.json").read_bytes())
    rebuilt = agentledger("report", "rebuild", summary["experiment_id"], "--force", cwd=project)
    assert rebuilt.returncode == 0, rebuilt.stderr
    after = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}
    assert after == before and "errors.json" in after


def test_single_turn_traces_carry_their_one_exchange(tmp_path: Path) -> None:
    _, folder = _run(tmp_path)
    rows = read_jsonl(folder / "traces.jsonl")
    ok = next(r for r in rows if r["success"])
    failed = next(r for r in rows if not r["success"])
    assert [(m["turn_index"], m["role"], m["source"]) for m in ok["conversation"]] == [
        (1, "user", "input"),
        (1, "assistant", "agent"),
    ]
    assert ok["conversation"][1]["content"] == "ok: fine one"
    assert [m["role"] for m in failed["conversation"]] == ["user"]


def test_retries_run_at_once_by_default(tmp_path: Path) -> None:
    project, _ = _run(tmp_path, runner={"max_retries": 3})
    with sqlite3.connect(project / ".agentledger" / "ledger.db") as db:
        waits = [
            orjson.loads(data)["retry_in_seconds"]
            for (data,) in db.execute("SELECT data FROM events WHERE type = 'TraceAttemptFailed'")
        ]
    assert len(waits) == 2 * 3 and set(waits) == {0.0}


def test_a_misspelt_required_section_names_the_nearest_key(tmp_path: Path) -> None:
    project = make_project(tmp_path / "proj")
    config = project / "configs" / "simulation.yaml"
    config.write_text(config.read_text().replace("runner:", "runer:"))
    result = agentledger("run", "experiment", "--yes", cwd=project)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"Error: {config}: unknown key 'runer'; did you mean 'runner'?"
    )


def test_a_config_file_that_is_a_folder_is_an_error(tmp_path: Path) -> None:
    project = make_project(tmp_path / "proj")
    (project / "configs" / "input.yaml").mkdir()
    result = agentledger("run", "experiment", "--yes", cwd=project)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"Error: {project / 'configs' / 'input.yaml'} is not a file; remove it or make it a "
        "YAML file"
    )
