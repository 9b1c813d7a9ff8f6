"""Scoring an experiment in process: events, files, judges through the loopback server,
retries and unscored replies, limits, replay and rebuild."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from agentledger.api import open_store, run_experiment
from agentledger.errors import ConfigError
from agentledger.evaluation import evaluate, rebuild_evaluation
from agentledger.events.evaluation import evaluation_stream
from agentledger.eventstore.integrity import verify
from tests.support.modelserver import ModelServer
from tests.support.projects import make_project, read_jsonl

AGENT = """
def run(input_text, persona, ctx):
    if "third" in input_text:
        return ""
    return f"answer to {input_text}"
"""
INPUTS = [
    {"input": "first question", "persona": "novice", "expected": "answer to first question"},
    {"input": "second question", "persona": "expert"},
    {"input": "third question", "persona": "novice"},
]
RULES: dict[str, Any] = {
    "evaluators": [
        {
            "name": "answered",
            "type": "rule_based",
            "weight": 1,
            "rules": [{"check": "output_not_empty"}, {"check": "contains", "keywords": ["answer"]}],
        }
    ],
    "aggregate": {"threshold": 0.9, "by_persona": True},
    "success_criteria": {"quality": {"pass_rate": 0.6}},
}


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = make_project(tmp_path / "proj", agent=AGENT, inputs=INPUTS, iterations=2)
    run_experiment(root, store=root / "ledger.db")
    return root


def configure(root: Path, config: dict[str, Any]) -> None:
    (root / "configs" / "evaluation.yaml").write_text(yaml.safe_dump(config))


def judge_config(base_url: str, **judge: Any) -> dict[str, Any]:
    return {
        "evaluators": [
            {
                "name": "quality",
                "type": "llm_judge",
                "model": {"provider": "openai", "name": "judge", "base_url": base_url},
                "labels": ["GOOD", "BAD"],
                **judge,
            }
        ]
    }


def stream_types(root: Path, evaluation_id: str) -> list[str]:
    with open_store(root / "ledger.db", create=False) as store:
        return [ev.type for ev in store.read_stream(evaluation_stream(evaluation_id))]


def test_rule_scores_are_events_and_files(project: Path) -> None:
    configure(project, RULES)
    outcome = evaluate("demo", project, store=project / "ledger.db")
    types = stream_types(project, outcome.evaluation_id)
    assert types == ["EvaluationStarted", *["TraceScored"] * 6, "EvaluationCompleted"]
    lines = read_jsonl(outcome.output_dir / "scores.jsonl")
    assert [line["slot"] for line in lines] == [0, 1, 2, 3, 4, 5]
    assert [line["verdict"] for line in lines] == ["PASS"] * 4 + ["FAIL"] * 2
    summary = outcome.summary
    assert summary["verdicts"] == {"PASS": 4, "PARTIAL": 0, "FAIL": 2, "REVIEW": 0}
    assert summary["metrics"]["answered"]["mean"] == pytest.approx(4 / 6)
    assert summary["by_persona"]["novice"]["traces"] == 4
    assert summary["success_criteria"]["passed"] is True
    assert outcome.output_dir == next((project / "experiments").iterdir()) / "evaluation"


def test_a_tampered_log_is_refused_before_the_verdict_is_recorded(project: Path) -> None:
    import sqlite3

    from agentledger.projections.errors import ProjectionError

    configure(project, RULES)
    with sqlite3.connect(project / "ledger.db") as db:
        db.execute(
            """UPDATE events SET data = replace(data, '"attempts":1', '"attempts":2')
            WHERE rowid = (SELECT min(rowid) FROM events WHERE type = 'TraceCompleted')"""
        )
    with pytest.raises(ProjectionError, match="fails verify"):
        evaluate("demo", project, store=project / "ledger.db")
    # The check ran beside the scoring: scores may be in the log, the verdict is not, and
    # no file was written.
    with open_store(project / "ledger.db", create=False) as store:
        kinds = {ev.type for ev in store.read_all() if ev.stream_id.startswith("evaluation-")}
    assert "EvaluationStarted" in kinds and "EvaluationCompleted" not in kinds
    assert not (next((project / "experiments").iterdir()) / "evaluation").exists()
    scored = evaluate("demo", project, store=project / "ledger.db", ignore_integrity=True)
    assert scored.integrity_warning is not None
    assert scored.integrity_warning.startswith("built over a log that fails verify")


def test_an_error_in_the_rule_worker_is_raised_by_evaluate(project: Path) -> None:
    import sqlite3

    from agentledger.projections.errors import ProjectionError

    configure(project, RULES)
    with sqlite3.connect(project / "ledger.db") as db:
        db.execute(
            """UPDATE events SET data = replace(data, '"duration_ms":', '"duration":')
            WHERE rowid = (SELECT min(rowid) FROM events WHERE type = 'TraceCompleted')"""
        )
    with pytest.raises(ProjectionError, match="does not hold what a TraceCompleted holds"):
        evaluate("demo", project, store=project / "ledger.db", ignore_integrity=True)
    with open_store(project / "ledger.db", create=False) as store:
        kinds = {ev.type for ev in store.read_all() if ev.stream_id.startswith("evaluation-")}
    assert "EvaluationCompleted" not in kinds


def test_failed_criteria_are_reported(project: Path) -> None:
    configure(project, {**RULES, "success_criteria": {"quality": {"pass_rate": 0.9}}})
    outcome = evaluate("demo", project, store=project / "ledger.db")
    assert not outcome.passed
    assert outcome.failed_criteria() == [
        {"name": "quality.pass_rate", "expected": ">= 0.9", "actual": 0.666667, "passed": False}
    ]
    with pytest.raises(AssertionError, match=r"quality\.pass_rate is 0\.666667, needs >= 0\.9"):
        outcome.assert_passed()


def test_evaluations_are_numbered_and_named_apart(project: Path) -> None:
    configure(project, RULES)
    first = evaluate("demo", project, store=project / "ledger.db")
    second = evaluate("demo", project, store=project / "ledger.db", name="strict")
    assert (first.evaluation_id[-4:], second.evaluation_id[-4:]) == ("e001", "e002")
    assert second.output_dir.name == "evaluation-strict"
    assert (first.output_dir / "summary.json").is_file()


def test_log_with_evaluations_still_verifies(project: Path) -> None:
    configure(project, RULES)
    evaluate("demo", project, store=project / "ledger.db")
    with open_store(project / "ledger.db", create=False) as store:
        assert verify(store).ok


def test_rebuild_is_byte_identical_and_as_of_shows_it_running(project: Path) -> None:
    configure(project, RULES)
    outcome = evaluate("demo", project, store=project / "ledger.db")
    written = {p.name: p.read_bytes() for p in outcome.output_dir.iterdir()}
    rebuilt = rebuild_evaluation("demo", project, store=project / "ledger.db")
    assert {p.name: p.read_bytes() for p in rebuilt.output_dir.iterdir()} == written
    with open_store(project / "ledger.db", create=False) as store:
        events = store.read_stream(evaluation_stream(outcome.evaluation_id))
    middle = events[3].position
    early = rebuild_evaluation(
        "demo",
        project,
        store=project / "ledger.db",
        as_of=str(middle),
        output_dir=project / "early",
    )
    assert early.summary["status"] == "running"
    assert early.summary["traces"]["scored"] == 3


def test_sample_rate_keeps_the_hashed_share_and_counts_the_rest(project: Path) -> None:
    from agentledger.evaluation.scoring import sampled

    configure(project, {**RULES, "limits": {"sample_rate": 0.5}})
    outcome = evaluate("demo", project, store=project / "ledger.db")
    with open_store(project / "ledger.db", create=False) as store:
        ids = [e.data["trace_id"] for e in store.read_all(types=["TraceStarted"])]
    kept = [t for t in ids if sampled(t, 0.5)]
    scored = [line["trace_id"] for line in read_jsonl(outcome.output_dir / "scores.jsonl")]
    assert scored == kept
    assert outcome.summary["traces"]["skipped"] == (
        {"sample_rate": 6 - len(kept)} if len(kept) < 6 else {}
    )


def test_max_traces_scores_the_first_and_counts_the_rest(project: Path) -> None:
    configure(project, {**RULES, "limits": {"max_traces": 2}})
    outcome = evaluate("demo", project, store=project / "ledger.db")
    assert [line["slot"] for line in read_jsonl(outcome.output_dir / "scores.jsonl")] == [0, 1]
    traces = outcome.summary["traces"]
    assert (traces["scored"], traces["skipped"], traces["available"]) == (2, {"max_traces": 4}, 6)


def test_judge_calls_are_recorded_in_the_evaluation_stream(project: Path) -> None:
    with ModelServer() as server:
        server.replies = ['{"quality": {"label": "GOOD", "reason": "fine"}}']
        configure(project, judge_config(server.base_url))
        outcome = evaluate("demo", project, store=project / "ledger.db", parallel=3)
    types = stream_types(project, outcome.evaluation_id)
    assert types.count("ModelCallStarted") == types.count("ModelCallCompleted") == 6
    line = read_jsonl(outcome.output_dir / "scores.jsonl")[0]
    (score,) = line["scores"]
    assert (score["label"], score["score"], score["reason"]) == ("GOOD", 1.0, "fine")
    assert score["judge_calls"] == [f"{line['trace_id']}:judge:model:0"]
    assert outcome.summary["judge"]["calls"] == 6


def test_reply_that_is_not_json_is_retried_then_recorded_unscored(project: Path) -> None:
    with ModelServer() as server:
        server.replies = ["I think it is GOOD."]
        configure(project, judge_config(server.base_url, retries=2, response_format="none"))
        outcome = evaluate("demo", project, store=project / "ledger.db")
    lines = read_jsonl(outcome.output_dir / "scores.jsonl")
    assert len(lines) == 6 and {line["verdict"] for line in lines} == {"REVIEW"}
    (score,) = lines[0]["scores"]
    assert score["score"] is None
    assert score["reason"] == "unscored: the reply is not JSON: 'I think it is GOOD.'"
    assert len(score["judge_calls"]) == 3
    assert outcome.summary["traces"]["unscored"] == 6


def test_samples_take_the_majority(project: Path) -> None:
    good = '{"quality": {"label": "GOOD", "reason": "g"}}'
    bad = '{"quality": {"label": "BAD", "reason": "b"}}'
    with ModelServer() as server:
        server.queue.extend([good, bad, good] * 6)
        configure(project, judge_config(server.base_url, samples=3))
        outcome = evaluate("demo", project, store=project / "ledger.db", parallel=1)
    lines = read_jsonl(outcome.output_dir / "scores.jsonl")
    assert [s["label"] for line in lines for s in line["scores"]] == ["GOOD"] * 6
    assert lines[0]["scores"][0]["samples"] == ["GOOD", "BAD", "GOOD"]


def test_max_llm_calls_leaves_the_rest_unscored_with_the_reason(project: Path) -> None:
    with ModelServer() as server:
        server.replies = ['{"quality": {"label": "GOOD", "reason": "fine"}}']
        configure(project, {**judge_config(server.base_url), "limits": {"max_llm_calls": 2}})
        outcome = evaluate("demo", project, store=project / "ledger.db", parallel=1)
    lines = read_jsonl(outcome.output_dir / "scores.jsonl")
    assert [line["verdict"] for line in lines] == ["PASS", "PASS"] + ["REVIEW"] * 4
    assert lines[2]["scores"][0]["reason"] == "unscored: limits.max_llm_calls (2) reached"
    assert len(server.requests) == 2


def test_replay_rescores_offline_byte_identically(project: Path) -> None:
    with ModelServer() as server:
        server.replies = ['{"quality": {"label": "GOOD", "reason": "fine"}}']
        configure(project, judge_config(server.base_url))
        live = evaluate("demo", project, store=project / "ledger.db")
        recorded = (live.output_dir / "scores.jsonl").read_bytes()
    # The server is gone: every answer must come from the log.
    replayed = evaluate("demo", project, store=project / "ledger.db", record_mode="replay")
    assert (replayed.output_dir / "scores.jsonl").read_bytes() == recorded
    assert replayed.summary["replay_of"] == live.evaluation_id
    assert replayed.diverged == 0


def test_replay_of_a_changed_prompt_diverges_without_calling(project: Path) -> None:
    with ModelServer() as server:
        server.replies = ['{"quality": {"label": "GOOD", "reason": "fine"}}']
        configure(project, judge_config(server.base_url))
        evaluate("demo", project, store=project / "ledger.db")
        configure(project, judge_config(server.base_url, prompt_template="Changed: {output}"))
        calls = len(server.requests)
        replayed = evaluate("demo", project, store=project / "ledger.db", record_mode="replay")
        assert len(server.requests) == calls
    assert replayed.diverged == 6
    line = read_jsonl(replayed.output_dir / "scores.jsonl")[0]
    assert line["scores"][0]["reason"].startswith("replay diverged in trace")


def test_replay_without_an_earlier_evaluation_is_refused(project: Path) -> None:
    configure(project, judge_config("http://127.0.0.1:9/v1"))
    with pytest.raises(ConfigError, match="has no earlier evaluation to answer the judges from"):
        evaluate("demo", project, store=project / "ledger.db", record_mode="replay")


def test_cache_answers_repeated_requests_from_the_log(project: Path) -> None:
    with ModelServer() as server:
        server.replies = ['{"quality": {"label": "GOOD", "reason": "fine"}}']
        configure(project, {**judge_config(server.base_url), "limits": {"cache": True}})
        evaluate("demo", project, store=project / "ledger.db")
        first = len(server.requests)
        cached = evaluate("demo", project, store=project / "ledger.db")
        assert len(server.requests) == first == 6
    assert cached.summary["record_mode"] == "replay-or-live"
    assert cached.summary["verdicts"]["PASS"] == 6


def test_efficiency_outliers_are_found_over_all_traces(project: Path) -> None:
    configure(
        project,
        {**RULES, "efficiency": {"latency": {"outlier_mode": "absolute", "absolute_threshold": 0}}},
    )
    outcome = evaluate("demo", project, store=project / "ledger.db")
    latency = outcome.summary["efficiency"]["latency"]
    assert latency["outliers"] == 6 and len(latency["trace_ids"]) == 6


def test_summary_is_plain_json(project: Path) -> None:
    configure(project, RULES)
    outcome = evaluate("demo", project, store=project / "ledger.db")
    assert orjson.loads((outcome.output_dir / "summary.json").read_bytes()) == outcome.summary


def test_compare_finds_metric_and_trace_regressions(project: Path) -> None:
    from agentledger.evaluation.compare import compare_evaluations

    configure(project, RULES)
    before = evaluate("demo", project, store=project / "ledger.db")
    strict = {**RULES}
    strict["evaluators"] = [
        {**RULES["evaluators"][0], "rules": [{"check": "contains", "keywords": ["first"]}]}
    ]
    configure(project, strict)
    after = evaluate("demo", project, store=project / "ledger.db")
    with open_store(project / "ledger.db", create=False) as store:
        diff = compare_evaluations(store, before.evaluation_id, after.evaluation_id)
    (metric,) = diff.metrics
    assert (metric.mean_a, metric.mean_b, metric.delta) == (0.666667, 0.333333, -0.333334)
    # The empty answers scored 0 both times: unchanged, not listed.
    assert [t.slot for t in diff.traces] == [(1, 0, "expert"), (1, 1, "expert")]
    assert diff.regressions == [
        "answered: mean 0.666667 -> 0.333333 (-0.333)",
        f"trace {diff.traces[0].trace_b} (input 1, iteration 0): PASS -> FAIL",
        f"trace {diff.traces[1].trace_b} (input 1, iteration 1): PASS -> FAIL",
    ]


def test_judge_model_flag_replaces_the_configured_model(project: Path) -> None:
    config = judge_config("http://127.0.0.1:9/v1")
    config["evaluators"][0]["model"] = "gpt-4o-mini"  # no key in this environment
    configure(project, config)
    outcome = evaluate("demo", project, store=project / "ledger.db", judge_model="mock:echo")
    assert outcome.summary["verdicts"]["PASS"] == 6
    with open_store(project / "ledger.db", create=False) as store:
        (started,) = store.read_all(types=["EvaluationStarted"])
    assert started.data["judge_models"] == {"quality": "mock:echo"}


def test_the_mock_judge_fails_a_failed_run_and_passes_the_others(tmp_path: Path) -> None:
    agent = AGENT.replace('return ""', 'raise RuntimeError("no answer")')
    root = make_project(tmp_path / "proj", agent=agent, inputs=INPUTS, iterations=2)
    run_experiment(root, store=root / "ledger.db")
    judge = {"name": "quality", "type": "llm_judge", "model": "mock:echo"}
    labels = {**judge, "name": "labelled", "labels": {"OK": 1.0, "BAD": 0.0, "MEH": 0.5}}
    configure(root, {"evaluators": [judge, labels]})
    outcome = evaluate("demo", root, store=root / "ledger.db")
    lines = read_jsonl(outcome.output_dir / "scores.jsonl")
    assert sorted(line["success"] for line in lines) == [False] * 2 + [True] * 4
    assert [line["verdict"] for line in lines] == [
        "PASS" if line["success"] else "FAIL" for line in lines
    ]
    failed = next(line for line in lines if not line["success"])
    assert [s["label"] for s in failed["scores"]] == [None, "BAD"]
    assert [s["score"] for s in failed["scores"]] == [0.0, 0.0]


def test_timeout_leaves_slow_judges_unscored_with_the_reason(project: Path) -> None:
    with ModelServer(latency=2.0) as server:
        server.replies = ['{"quality": {"label": "GOOD", "reason": "fine"}}']
        config = {**judge_config(server.base_url, retries=0), "limits": {"timeout_seconds": 0.3}}
        configure(project, config)
        outcome = evaluate("demo", project, store=project / "ledger.db", parallel=6)
    lines = read_jsonl(outcome.output_dir / "scores.jsonl")
    assert {line["verdict"] for line in lines} == {"REVIEW"}
    assert lines[0]["scores"][0]["reason"] == "unscored: limits.timeout_seconds reached"


def test_max_cost_stops_judging_once_spent(project: Path) -> None:
    with ModelServer() as server:
        server.replies = ['{"quality": {"label": "GOOD", "reason": "fine"}}']
        limits = {"max_cost": 0.001, "cost_per_1k_tokens": {"prompt": 1.0, "completion": 1.0}}
        configure(project, {**judge_config(server.base_url), "limits": limits})
        outcome = evaluate("demo", project, store=project / "ledger.db", parallel=1)
    lines = read_jsonl(outcome.output_dir / "scores.jsonl")
    assert lines[0]["verdict"] == "PASS"
    assert lines[1]["scores"][0]["reason"] == "unscored: limits.max_cost (0.001) reached"
    assert len(server.requests) == 1
    assert outcome.summary["judge"]["cost"] > 0.001


def test_evaluate_replay_and_rebuild_on_each_backend(tmp_path: Path, store_url: str) -> None:
    root = make_project(tmp_path / "proj", agent=AGENT, inputs=INPUTS, iterations=2)
    run_experiment(root, store=store_url)
    judge = {
        "name": "quality",
        "type": "llm_judge",
        "model": "mock:echo",
        "labels": ["GOOD", "BAD"],
    }
    configure(root, {**RULES, "evaluators": [*RULES["evaluators"], judge]})
    live = evaluate("demo", root, store=store_url, parallel=3)
    written = {p.name: p.read_bytes() for p in live.output_dir.iterdir()}
    replayed = evaluate("demo", root, store=store_url, record_mode="replay")
    assert (replayed.output_dir / "scores.jsonl").read_bytes() == written["scores.jsonl"]
    rebuilt = rebuild_evaluation(
        "demo", root, store=store_url, which="1", output_dir=tmp_path / "again"
    )
    assert {p.name: p.read_bytes() for p in rebuilt.output_dir.iterdir()} == written
    with open_store(store_url, create=False) as store:
        assert verify(store).ok
