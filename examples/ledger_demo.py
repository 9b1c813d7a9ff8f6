"""Record a small sealed experiment straight through the event store, offline.

This is the event-store demo that ``./dev.sh demo`` runs until ``agentledger run
experiment`` lands: three traces with observations, an experiment completion that seals
their hash chains, and a secret that the store masks before it is written.

    python examples/ledger_demo.py STORE_PATH
"""

from __future__ import annotations

import sys

from eventstore import NO_STREAM, EventStore
from eventstore.envelope import utc_now
from eventstore.payloads import (
    ExperimentCompleted,
    ExperimentPlan,
    ExperimentStarted,
    ObservationRecorded,
    PlanInput,
    TraceCompleted,
    TraceSeal,
    TraceStarted,
)

INPUTS = ["How do I start?", "What are the advanced options?", "Can I export results?"]


def main(path: str) -> None:
    experiment_id = "demo-0001"
    meta = {"correlation_id": experiment_id}
    plan = ExperimentPlan(
        inputs=[
            PlanInput(index=i, input=text, persona="novice_user") for i, text in enumerate(INPUTS)
        ],
        iterations=1,
        personas=["novice_user"],
        total_runs=len(INPUTS),
    )
    with EventStore.open(path) as store:
        store.append(
            f"experiment-{experiment_id}",
            [
                ExperimentStarted(
                    experiment_id=experiment_id,
                    name="demo",
                    # The api key is masked by the store's redactor before it is stored.
                    config={"runner": {"target": "agent:run"}, "api_key": "sk-demo-not-stored"},
                    plan=plan,
                )
            ],
            expected_version=NO_STREAM,
            metadata=meta,
        )
        seals = {}
        for slot, item in enumerate(plan.inputs):
            trace_id = f"{experiment_id}-{slot:04d}"
            result = store.append(
                f"trace-{trace_id}",
                [
                    TraceStarted(
                        experiment_id=experiment_id,
                        trace_id=trace_id,
                        slot=slot,
                        input_index=item.index,
                        iteration=0,
                        persona=item.persona,
                        input=item.input,
                    ),
                    ObservationRecorded(
                        observation_id=f"{trace_id}-span",
                        kind="span_start",
                        name="agent_run",
                        timestamp=utc_now(),
                    ),
                    ObservationRecorded(
                        observation_id=f"{trace_id}-span",
                        kind="span_end",
                        name="agent_run",
                        timestamp=utc_now(),
                    ),
                    TraceCompleted(output=f"echo: {item.input}", duration_ms=1.0),
                ],
                expected_version=NO_STREAM,
                metadata=meta,
            )
            seals[f"trace-{trace_id}"] = TraceSeal(version=result.version, hash=result.hash)
        store.append(
            f"experiment-{experiment_id}",
            [
                ExperimentCompleted(
                    experiment_id=experiment_id,
                    total_traces=len(seals),
                    successful=len(seals),
                    failed=0,
                    seals=seals,
                )
            ],
            expected_version=1,
            metadata=meta,
        )
    print(f"recorded experiment {experiment_id} ({len(seals)} traces) in {path}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python examples/ledger_demo.py STORE_PATH")
    main(sys.argv[1])
