"""Evaluation: rule-only throughput and memory, judged traces at 200 ms, replayed re-scoring.

Targets (issue 20):
- rule-only evaluation of 100,000 traces: >= 20,000 traces/s after start-up, RSS < 150 MB;
- 1,000 traces judged by an LLM at 200 ms latency (the loopback model server),
  ``--parallel 64``: <= 6 s;
- re-scoring those 1,000 from the recorded judge calls (``--record-mode replay``, server
  stopped): < 2 s, scores.jsonl byte-identical.

The experiments are written straight into a store (TraceStarted, TurnStarted,
TurnCompleted, a model call pair, TraceCompleted per trace); every figure is a whole
``agentledger evaluate`` command. "After start-up" subtracts the same command on a
one-trace experiment (interpreter, imports, store open, config), measured in the same run.
The rule-only memory is summed over the command's processes (it forks a rule worker and an
integrity check): PSS (shared pages divided among the processes sharing them), and RSS
(shared pages counted in each, which overstates).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import AGENTLEDGER, command_env, machine, repo_first, run_command, work_dir

repo_first()

from agentledger.events.payloads import (  # noqa: E402
    ExperimentCompleted,
    ExperimentPlan,
    ExperimentStarted,
    ModelCallCompleted,
    ModelCallStarted,
    PlanInput,
    TraceCompleted,
    TraceStarted,
    TurnCompleted,
    TurnStarted,
)
from agentledger.events.streams import experiment_stream, trace_stream  # noqa: E402
from agentledger.eventstore import EventStore  # noqa: E402
from agentledger.eventstore.store import NO_STREAM, AppendRequest  # noqa: E402

RULES = """
evaluators:
  - name: answered
    type: rule_based
    weight: 0.4
    rules:
      - check: output_not_empty
      - check: success
      - check: latency_under
        budget_ms: 1000
  - name: on_topic
    type: rule_based
    weight: 0.6
    rules:
      - check: contains
        keywords: [answer]
      - check: not_contains
        keywords: [sorry, error]
      - check: token_usage_under
        max_total_tokens: 500
aggregate: {method: weighted_sum, threshold: 0.7}
success_criteria:
  quality: {pass_rate: 0.9}
"""

JUDGE = """
evaluators:
  - name: quality
    type: llm_judge
    model: {{provider: openai, name: judge-model, base_url: "{base_url}"}}
    prompt_template: "Input: {{input}} Output: {{output}}"
    metrics: [helpfulness, accuracy]
    labels: [GOOD, FAIR, BAD]
aggregate: {{threshold: 0.5}}
"""


def build(path: Path, experiment: str, traces: int) -> None:
    """Write a finished experiment of ``traces`` single-turn traces into the store."""
    store = EventStore.open(str(path))
    plan = ExperimentPlan(
        inputs=[PlanInput(index=0, input="hello", metadata={"expected": "answer"})],
        iterations=traces,
        total_runs=traces,
    )
    meta = {"correlation_id": experiment}
    store.append(
        experiment_stream(experiment),
        [
            ExperimentStarted(
                experiment_id=experiment,
                name=experiment,
                config={"name": experiment},
                plan=plan,
                seed=1,
                output_dir=str(path.parent / experiment),
            )
        ],
        expected_version=NO_STREAM,
        metadata=meta,
    )
    batch: list[AppendRequest] = []
    for slot in range(traces):
        trace_id = f"{experiment}-{slot:06d}"
        call = f"{trace_id}:model:0"
        events = (
            TraceStarted(
                experiment_id=experiment,
                trace_id=trace_id,
                slot=slot,
                input_index=0,
                iteration=slot,
                input="hello",
                seed=slot,
            ),
            TurnStarted(turn_index=0, user_message="hello"),
            ModelCallStarted(
                call_id=call,
                call_index=0,
                provider="mock",
                model="echo",
                request={"model": "echo", "messages": [{"role": "user", "content": "hello"}]},
                fingerprint="f" * 64,
            ),
            ModelCallCompleted(
                call_id=call,
                call_index=0,
                response={"choices": [{"message": {"content": f"answer {slot}"}}]},
                usage={"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
                latency_ms=1.0,
            ),
            TurnCompleted(turn_index=0, agent_output=f"answer {slot}", duration_ms=12.5),
            TraceCompleted(output=f"answer {slot}", duration_ms=12.5 + slot % 7),
        )
        batch.append(AppendRequest(trace_stream(trace_id), events, NO_STREAM, meta))
        if len(batch) == 200:
            store.append_batch(batch)
            batch = []
    if batch:
        store.append_batch(batch)
    store.append(
        experiment_stream(experiment),
        [
            ExperimentCompleted(
                experiment_id=experiment, total_traces=traces, successful=traces, failed=0
            )
        ],
        metadata=meta,
    )
    store.close()


def command_for(store: Path, experiment: str, config: Path, *options: str) -> list[str]:
    """``agentledger evaluate`` of ``experiment`` into a fresh ``<experiment>-out``."""
    out = store.parent / f"{experiment}-out"
    shutil.rmtree(out, ignore_errors=True)
    command = [AGENTLEDGER, "--store", str(store), "evaluate", experiment, "-c", str(config)]
    return [*command, "--output-dir", str(out), *options]


def evaluate(store: Path, experiment: str, config: Path, *options: str) -> tuple[float, int]:
    """(seconds, peak RSS KB) of one ``agentledger evaluate``."""
    return run_command(command_for(store, experiment, config, *options), store.parent)


def run_tree(command: list[str], cwd: Path) -> tuple[float, tuple[int, int]]:
    """Wall seconds and the peaks of the summed RSS and PSS (KB) of ``command`` and its
    descendants, sampled every 50 ms. Forked processes share their parent's pages: RSS
    counts a shared page in each, PSS divides it among them."""
    with tempfile.TemporaryFile("w+") as stderr:
        started = time.perf_counter()
        proc = subprocess.Popen(
            command,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            env=command_env(),
        )
        rss = pss = 0
        while proc.poll() is None:
            pids = _tree(proc.pid)
            rss = max(rss, sum(_status_kb(pid, "status", "VmRSS:") for pid in pids))
            pss = max(pss, sum(_status_kb(pid, "smaps_rollup", "Pss:") for pid in pids))
            time.sleep(0.05)
        elapsed = time.perf_counter() - started
        if proc.returncode != 0:
            stderr.seek(0)
            raise RuntimeError(f"{' '.join(command)} failed: {stderr.read()[-2000:]}")
    return elapsed, (rss, pss)


def _tree(pid: int) -> list[int]:
    found, pending = [], [pid]
    while pending:
        current = pending.pop()
        found.append(current)
        try:
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except OSError:
            continue
        pending += [int(child) for child in children]
    return found


def _status_kb(pid: int, name: str, key: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/{name}").read_text().splitlines():
            if line.startswith(key):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def rules_round(base: Path, traces: int) -> tuple[float, float, tuple[int, int]]:
    """(whole seconds, start-up seconds, (peak RSS, peak PSS) KB summed over its
    processes) of a rule-only evaluation."""
    store = base / "rules.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{store}{suffix}").unlink(missing_ok=True)
    build(store, "bigrules0000", traces)
    build(store, "onerule00000", 1)
    config = base / "rules.yaml"
    config.write_text(RULES)
    startup, _ = run_tree(command_for(store, "onerule00000", config), base)
    whole, memory = run_tree(command_for(store, "bigrules0000", config), base)
    return whole, startup, memory


def judge_rounds(base: Path, traces: int, parallel: int) -> tuple[float, float, bool]:
    """(judged seconds, replayed seconds, scores identical) for ``traces`` traces."""
    from tests.support.modelserver import ModelServer

    store = base / "judge.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{store}{suffix}").unlink(missing_ok=True)
    build(store, "judged000000", traces)
    server = ModelServer(latency=0.2).start()
    # ModelServer sets request_queue_size after its socket is listening, so the backlog is
    # still 5: 64 connections opened at once would be refused and retried a second later.
    server._server.socket.listen(1024)
    config = base / "judge.yaml"
    config.write_text(JUDGE.format(base_url=server.base_url))
    try:
        judged, _ = evaluate(store, "judged000000", config, "--parallel", str(parallel))
    finally:
        server.stop()
    live = (base / "judged000000-out" / "scores.jsonl").read_bytes()
    replayed, _ = evaluate(
        store, "judged000000", config, "--record-mode", "replay", "--parallel", str(parallel)
    )
    again = (base / "judged000000-out" / "scores.jsonl").read_bytes()
    return judged, replayed, live == again


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--traces", type=int, default=100_000)
    parser.add_argument("--judged", type=int, default=1_000)
    parser.add_argument("--parallel", type=int, default=64)
    parser.add_argument("--skip-rules", action="store_true")
    parser.add_argument("--skip-judge", action="store_true")
    args = parser.parse_args()
    base = work_dir("evaluate")
    print(f"machine: {machine()}")
    if not args.skip_rules:
        rates, rss_values, pss_values = [], [], []
        for n in range(args.rounds):
            whole, startup, (rss, pss) = rules_round(base, args.traces)
            rate = args.traces / max(whole - startup, 1e-9)
            rates.append(rate)
            rss_values.append(rss)
            pss_values.append(pss)
            print(
                f"rules round {n + 1}: {args.traces:,} traces in {whole:.2f} s (start-up "
                f"{startup:.2f} s) = {rate:,.0f} traces/s after start-up, "
                f"{args.traces / whole:,.0f} overall; peak summed RSS {rss / 1024:.0f} MB, "
                f"PSS {pss / 1024:.0f} MB"
            )
        rate = statistics.median(rates)
        rss_mb, pss_mb = max(rss_values) / 1024, max(pss_values) / 1024
        print(
            f"rule-only: median {rate:,.0f} traces/s after start-up (target >= 20,000): "
            f"{'ok' if rate >= 20_000 else 'MISSED'}; peak summed PSS {pss_mb:.0f} MB (target "
            f"< 150): {'ok' if pss_mb < 150 else 'MISSED'} (summed RSS {rss_mb:.0f} MB)"
        )
    if not args.skip_judge:
        judged_times, replay_times, identical = [], [], True
        for n in range(args.rounds):
            judged, replayed, same = judge_rounds(base, args.judged, args.parallel)
            judged_times.append(judged)
            replay_times.append(replayed)
            identical = identical and same
            print(
                f"judge round {n + 1}: {args.judged:,} traces judged at 200 ms in {judged:.2f} s; "
                f"replayed in {replayed:.2f} s; scores identical: {same}"
            )
        judged, replayed = statistics.median(judged_times), statistics.median(replay_times)
        print(
            f"judged: median {judged:.2f} s (target <= 6 s): {'ok' if judged <= 6 else 'MISSED'}; "
            f"replayed: median {replayed:.2f} s (target < 2 s): "
            f"{'ok' if replayed < 2 else 'MISSED'}; identical every round: {identical}"
        )
    if os.environ.get("AGENTLEDGER_BENCH_KEEP") is None:
        shutil.rmtree(base, ignore_errors=True)
    time.sleep(0)


if __name__ == "__main__":
    main()
