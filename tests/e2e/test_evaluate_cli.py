"""End to end: `agentledger evaluate` and `run experiment --evaluate` through the installed
command: exit status as a CI gate, one-line errors, offline replay, every reader of the log."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from tests.support.modelserver import ModelServer
from tests.support.projects import (
    agentledger,
    experiment_id,
    folder_bytes,
    make_project,
    output_folder,
    read_jsonl,
)

pytestmark = pytest.mark.slow

AGENT = """
def run(input_text, persona, ctx):
    return "" if "third" in input_text else f"answer to {input_text}"
"""
RULES: dict[str, Any] = {
    "evaluation_goal": {"text": "Answer every question."},
    "evaluators": [
        {
            "name": "answered",
            "type": "rule_based",
            "rules": [{"check": "output_not_empty"}, {"check": "contains", "keywords": ["answer"]}],
        },
        {
            "name": "quality",
            "type": "llm_judge",
            "model": "mock:echo",
            "metrics": ["helpfulness"],
            "labels": ["GOOD", "FAIR", "BAD"],
        },
    ],
    "aggregate": {"method": "average", "threshold": 0.8},
    "success_criteria": {"quality": {"pass_rate": 0.5}},
}


def project_with(tmp_path: Path, config: dict[str, Any]) -> Path:
    root = make_project(tmp_path / "proj", agent=AGENT)
    (root / "configs" / "evaluation.yaml").write_text(yaml.safe_dump(config))
    return root


def run(root: Path, *args: str) -> Any:
    return agentledger("run", "experiment", "-y", *args, cwd=root)


def test_evaluate_passes_and_writes_files_from_the_log(tmp_path: Path) -> None:
    root = project_with(tmp_path, RULES)
    ran = run(root)
    assert ran.returncode == 0, ran.stderr
    result = agentledger("evaluate", experiment_id(ran), cwd=root)
    assert result.returncode == 0, result.stderr
    assert "Success criteria: passed" in result.stdout
    folder = output_folder(result)
    assert folder == output_folder(ran) / "evaluation"
    lines = read_jsonl(folder / "scores.jsonl")
    # The empty answers fail the rules; the offline mock judge still rates them GOOD.
    assert [line["verdict"] for line in lines] == ["PASS"] * 4 + ["PARTIAL"] * 2
    written = folder_bytes(folder)
    rebuilt = agentledger("evaluate", "demo", "--rebuild", cwd=root)
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert folder_bytes(folder) == written
    # The evaluation is part of the experiment's report: its summary names it, and a
    # report rebuild gives the whole folder the same bytes.
    experiment_folder = output_folder(ran)
    assert (
        orjson.loads((experiment_folder / "summary.json").read_bytes())["evaluation"]["verdict"]
        == "passed"
    )
    report = folder_bytes(experiment_folder)
    again = agentledger("report", "rebuild", "demo", cwd=root)
    assert again.returncode == 0, again.stderr
    assert folder_bytes(experiment_folder) == report


def test_failed_success_criteria_exit_1(tmp_path: Path) -> None:
    config = {**RULES, "success_criteria": {"quality": {"pass_rate": 0.9}}}
    root = project_with(tmp_path, config)
    assert run(root).returncode == 0
    result = agentledger("evaluate", "demo", cwd=root)
    assert result.returncode == 1
    assert "FAIL quality.pass_rate: 0.667 (needs >= 0.9)" in result.stdout
    assert "Success criteria: failed" in result.stdout


def test_run_experiment_evaluate_scores_it_and_gates(tmp_path: Path) -> None:
    config = {**RULES, "success_criteria": {"quality": {"pass_rate": 0.9}}}
    root = project_with(tmp_path, config)
    result = run(root, "--evaluate")
    assert result.returncode == 1
    assert "Evaluating..." in result.stdout
    assert (output_folder(result) / "summary.json").is_file()


def test_bad_evaluation_config_is_refused_before_the_run(tmp_path: Path) -> None:
    root = project_with(tmp_path, {**RULES, "agregate": {"method": "average"}})
    result = run(root, "--evaluate")
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"Error: {root / 'configs' / 'evaluation.yaml'}: unknown key 'agregate'; did you mean "
        "'aggregate'?"
    )
    assert not (root / "experiments").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--record-mode", "replai"), "Error: --record-mode 'replai' is not a record mode"),
        (("--as-of", "3"), "Error: --as-of picks what --rebuild writes; add --rebuild or drop it"),
        (("--rebuild", "--name", "x"), "Error: --rebuild scores nothing; drop --name"),
        (("--name", "a/b"), "Error: --name 'a/b': use 1-64 letters"),
        (("--judge-model", "gpt"), "Error: --judge-model 'gpt' must be provider:model"),
        (("-c", "missing.yaml"), "Error: evaluation config"),
    ],
)
def test_bad_flags_are_one_line_errors(tmp_path: Path, args: tuple[str, ...], message: str) -> None:
    root = project_with(tmp_path, RULES)
    assert run(root).returncode == 0
    result = agentledger("evaluate", "demo", *args, cwd=root)
    assert result.returncode == 2, result.stdout
    assert result.stderr.startswith(message), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_unknown_experiment_is_a_one_line_error(tmp_path: Path) -> None:
    root = project_with(tmp_path, RULES)
    assert run(root).returncode == 0
    result = agentledger("evaluate", "nope", cwd=root)
    assert result.returncode == 2
    assert result.stderr.startswith("Error: no experiment 'nope' in store")


def test_replay_rescores_offline_byte_identically(tmp_path: Path) -> None:
    with ModelServer() as server:
        server.replies = ['{"helpfulness": {"label": "GOOD", "reason": "clear"}}']
        judge = {
            **RULES["evaluators"][1],
            "model": {"provider": "openai", "name": "judge", "base_url": server.base_url},
        }
        root = project_with(tmp_path, {**RULES, "evaluators": [RULES["evaluators"][0], judge]})
        assert run(root).returncode == 0
        live = agentledger("evaluate", "demo", "--parallel", "8", cwd=root)
        assert live.returncode == 0, live.stderr
        recorded = (output_folder(live) / "scores.jsonl").read_bytes()
        calls = len(server.requests)
    replayed = agentledger("evaluate", "demo", "--record-mode", "replay", cwd=root)
    assert replayed.returncode == 0, replayed.stderr
    assert (output_folder(replayed) / "scores.jsonl").read_bytes() == recorded
    assert calls == 6


def test_a_log_with_evaluations_reads_from_every_command(tmp_path: Path) -> None:
    root = project_with(tmp_path, RULES)
    ran = run(root)
    assert agentledger("evaluate", "demo", cwd=root).returncode == 0
    listed = agentledger("events", "list", "--type", "TraceScored", cwd=root)
    assert listed.returncode == 0 and listed.stdout.count("TraceScored") == 6
    assert agentledger("verify", cwd=root).returncode == 0
    assert agentledger("verify", experiment_id(ran), cwd=root).returncode == 0
    rebuilt = agentledger("report", "rebuild", "demo", cwd=root)
    assert rebuilt.returncode == 0, rebuilt.stderr
    exported = agentledger("export", "-o", str(tmp_path / "log.jsonl"), cwd=root)
    assert exported.returncode == 0, exported.stderr
    copy = str(tmp_path / "copy.db")
    imported = agentledger("import", str(tmp_path / "log.jsonl"), cwd=root, store=copy)
    assert imported.returncode == 0, imported.stderr
    again = agentledger(
        "evaluate",
        "demo",
        "--rebuild",
        "--output-dir",
        str(tmp_path / "again"),
        cwd=root,
        store=copy,
    )
    assert again.returncode == 0, again.stderr
    original = output_folder(ran) / "evaluation"
    assert folder_bytes(tmp_path / "again") == folder_bytes(original)


def test_evaluate_refuses_live_judges_while_the_experiment_replays(tmp_path: Path) -> None:
    judge = {**RULES["evaluators"][1], "model": "openai:gpt-4o-mini"}
    root = project_with(tmp_path, {**RULES, "evaluators": [judge]})
    result = run(root, "--record-mode", "replay", "--evaluate")
    assert result.returncode == 2
    assert result.stderr.startswith(
        "Error: --evaluate: judge 'quality' (openai:gpt-4o-mini) would be called live while "
        "the experiment replays"
    )


def test_without_a_config_the_fluxloop_judge_scores_offline(tmp_path: Path) -> None:
    root = make_project(tmp_path / "proj", agent=AGENT)
    assert run(root).returncode == 0
    result = agentledger("evaluate", "demo", cwd=root)
    assert result.returncode == 0, result.stderr
    summary = yaml.safe_load((output_folder(result) / "summary.json").read_text())
    assert list(summary["metrics"]) == [
        "task_completion",
        "hallucination",
        "relevance",
        "tool_usage",
        "user_satisfaction",
        "clarity",
        "persona_consistency",
    ]
    assert summary["judge"]["calls"] == 6
    assert "Success criteria: none set" in result.stdout


CHANGED_AGENT = """
def run(input_text, persona, ctx):
    if "third" in input_text:
        return ""
    return f"reply to {input_text}" if "second" in input_text else f"answer to {input_text}"
"""


def evaluated_pair(tmp_path: Path, threshold: float) -> tuple[Path, str, str]:
    """Two evaluated experiments of one project: B's agent answers the second question
    without the keyword the rules look for (its 'answered' score halves)."""
    root = project_with(
        tmp_path, {**RULES, "aggregate": {"method": "average", "threshold": threshold}}
    )
    ids = []
    for agent in (AGENT, CHANGED_AGENT):
        (root / "agent.py").write_text(agent)
        ran = run(root)
        assert ran.returncode == 0, ran.stderr
        ids.append(experiment_id(ran))
        scored = agentledger("evaluate", ids[-1], cwd=root)
        assert scored.returncode in (0, 1), scored.stderr  # 1: B fails its criteria
    return root, ids[0], ids[1]


def test_diff_fails_when_a_metric_falls_beyond_max_regression(tmp_path: Path) -> None:
    # threshold 0.7: the halved traces (aggregate 0.75) keep their PASS; only a mean falls.
    root, a, b = evaluated_pair(tmp_path, 0.7)
    result = agentledger("diff", a, b, cwd=root)
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"Scores: evaluation {a}-e001 -> {b}-e001 (max regression 0.05)" in result.stdout
    assert (
        "answered               0.667    0.500   -0.167    66.7%    33.3%  REGRESSION"
        in result.stdout
    )
    assert "Changed scores: 2 traces, regressions: 1 (0 traces lost PASS)" in result.stdout
    assert "PASS -> PASS, aggregate 1.000 -> 0.750; answered 1.000 -> 0.500" in result.stdout
    tolerant = agentledger("diff", a, b, "--max-regression", "0.2", cwd=root)
    assert tolerant.returncode == 0, tolerant.stdout + tolerant.stderr
    assert "Changed scores: 2 traces, regressions: 0" in tolerant.stdout


def test_diff_json_holds_the_score_changes(tmp_path: Path) -> None:
    root, a, b = evaluated_pair(tmp_path, 0.7)
    result = agentledger("diff", a, b, "--json", cwd=root)
    assert result.returncode == 1
    scores = orjson.loads(result.stdout)["evaluation"]
    assert (scores["evaluation_a"], scores["threshold"]) == (f"{a}-e001", 0.05)
    answered = scores["metrics"][0]
    assert (answered["metric"], answered["delta"], answered["regressed"]) == (
        "answered",
        -0.166667,
        True,
    )
    assert [t["slot"] for t in scores["traces"]] == [[1, 0, "expert"], [1, 1, "expert"]]
    assert scores["regressions"] == ["answered: mean 0.666667 -> 0.5 (-0.167)"]


def test_diff_fails_on_a_trace_that_lost_its_pass_whatever_the_threshold(tmp_path: Path) -> None:
    # threshold 0.8: the halved traces fall from PASS to PARTIAL.
    root, a, b = evaluated_pair(tmp_path, 0.8)
    result = agentledger("diff", a, b, "--max-regression", "1", cwd=root)
    assert result.returncode == 1
    assert "Changed scores: 2 traces, regressions: 2 (2 traces lost PASS)" in result.stdout
    assert "REGRESSION trace" in result.stdout and "PASS -> PARTIAL" in result.stdout


def test_diff_without_evaluations_on_both_sides_is_the_run_diff(tmp_path: Path) -> None:
    root = project_with(tmp_path, RULES)
    a, b = experiment_id(run(root)), experiment_id(run(root))
    plain = agentledger("diff", a, b, "--json", cwd=root)
    assert agentledger("evaluate", a, cwd=root).returncode == 0
    result = agentledger("diff", a, b, "--json", cwd=root)
    assert result.returncode == 0, result.stderr
    assert result.stdout == plain.stdout and "evaluation" not in orjson.loads(result.stdout)
    assert result.stderr == (
        f"Scores not compared: experiment B ({b}) has no evaluation (agentledger evaluate {b})\n"
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--max-regression", "2"), "Error: --max-regression '2': give the largest tolerated"),
        (("--max-regression", "abc"), "Error: --max-regression 'abc': give the largest"),
        (("--max-regression", "0.1"), "Error: --max-regression: experiment B ("),
        (("--evaluation", "strict"), "Error: --evaluation 'strict': experiment A ("),
    ],
)
def test_diff_score_flags_are_one_line_errors(
    tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    root = project_with(tmp_path, RULES)
    a, b = experiment_id(run(root)), experiment_id(run(root))
    assert agentledger("evaluate", a, cwd=root).returncode == 0
    result = agentledger("diff", a, b, *args, cwd=root)
    assert result.returncode == 2, result.stdout
    assert result.stderr.startswith(message), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_diff_evaluation_flag_compares_the_named_evaluations(tmp_path: Path) -> None:
    root = project_with(tmp_path, RULES)
    a, b = experiment_id(run(root)), experiment_id(run(root))
    for experiment in (a, b):
        named = agentledger("evaluate", experiment, "--name", "strict", cwd=root)
        assert named.returncode == 0, named.stderr
    # B's latest evaluation is another, with a rule every answer fails.
    failing = {
        **RULES,
        "evaluators": [
            {
                **RULES["evaluators"][0],
                "name": "answered",
                "rules": [{"check": "contains", "keywords": ["zz"]}],
            }
        ],
    }
    (root / "configs" / "evaluation.yaml").write_text(yaml.safe_dump(failing))
    assert agentledger("evaluate", b, cwd=root).returncode == 1
    latest = agentledger("diff", a, b, cwd=root)
    assert latest.returncode == 1
    assert f"Scores: evaluation {a}-e001 -> {b}-e002" in latest.stdout
    assert "Note: the two evaluations ran with different evaluation configs" in latest.stdout
    named = agentledger("diff", a, b, "--evaluation", "strict", cwd=root)
    assert named.returncode == 0, named.stdout + named.stderr
    assert f"Scores: evaluation {a}-e001 -> {b}-e001" in named.stdout
    assert "Changed scores: 0 traces, regressions: 0" in named.stdout


def test_a_tampered_experiment_is_refused_unless_ignore_integrity(tmp_path: Path) -> None:
    import sqlite3

    root = project_with(tmp_path, RULES)
    ran = run(root)
    assert ran.returncode == 0, ran.stderr
    with sqlite3.connect(root / ".agentledger" / "ledger.db") as db:
        db.execute(
            """UPDATE events SET data = replace(data, '"attempts":1', '"attempts":2')
            WHERE rowid = (SELECT min(rowid) FROM events WHERE type = 'TraceCompleted')"""
        )
    refused = agentledger("evaluate", experiment_id(ran), cwd=root)
    assert refused.returncode == 2
    assert "fails verify" in refused.stderr and "--ignore-integrity" in refused.stderr
    assert not (output_folder(ran) / "evaluation").exists()
    scored = agentledger("evaluate", experiment_id(ran), "--ignore-integrity", cwd=root)
    assert "Warning: built over a log that fails verify" in scored.stderr


def test_report_show_json_has_the_evaluation_entry_summary_json_has(tmp_path: Path) -> None:
    root = project_with(tmp_path, RULES)
    ran = run(root)
    assert ran.returncode == 0, ran.stderr
    assert agentledger("evaluate", experiment_id(ran), cwd=root).returncode == 0
    shown = agentledger("report", "show", experiment_id(ran), "--json", cwd=root)
    assert shown.returncode == 0, shown.stderr
    written = orjson.loads((output_folder(ran) / "summary.json").read_bytes())
    assert orjson.loads(shown.stdout)["evaluation"] == written["evaluation"]


def test_a_rebuild_as_of_before_the_evaluation_removes_its_files(tmp_path: Path) -> None:
    from agentledger.eventstore import EventStore

    root = project_with(tmp_path, RULES)
    ran = run(root)
    assert ran.returncode == 0, ran.stderr
    assert agentledger("evaluate", experiment_id(ran), cwd=root).returncode == 0
    folder = output_folder(ran)
    assert (folder / "evaluation" / "summary.json").exists()
    (folder / "evaluation" / "notes.txt").write_text("mine")
    with EventStore.open(str(root / ".agentledger" / "ledger.db"), create=False) as store:
        done = next(store.read_all(types=["ExperimentCompleted"])).position
    rebuilt = agentledger(
        "report", "rebuild", experiment_id(ran), "--as-of", str(done), "--force", cwd=root
    )
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert not (folder / "evaluation" / "summary.json").exists()
    assert (folder / "evaluation" / "notes.txt").read_text() == "mine"  # not ours: kept
    assert "evaluation" not in orjson.loads((folder / "summary.json").read_bytes())
