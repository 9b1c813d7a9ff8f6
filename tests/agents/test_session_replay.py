"""What a recorded session's replay feeds and compares: inputs in their recorded key
order, outcomes (output or failure) turn by turn."""

from __future__ import annotations

from typing import Any

from agentledger.agents.session import TurnOutcome, _recorded_steps
from agentledger.eventstore.envelope import StoredEvent


def _event(number: int, kind: str, data: dict[str, Any]) -> StoredEvent:
    return StoredEvent(number, f"e{number}", "session-s", number, kind, 1, data, {}, "t", "h")


def _events(*items: tuple[str, dict[str, Any]]) -> list[StoredEvent]:
    return [_event(number, kind, data) for number, (kind, data) in enumerate(items, 1)]


def test_turn_inputs_come_back_in_their_recorded_key_order() -> None:
    steps, _ = _recorded_steps(
        _events(
            ("SessionStarted", {"session_id": "s"}),
            (
                "TurnStarted",
                {
                    "input": {"count": 2, "text": "t"},
                    "input_order": [["text"], ["count"]],
                },
            ),
            ("TurnCompleted", {"agent_output": {"message": "ok"}}),
        )
    )
    assert steps[0].values is not None and list(steps[0].values) == ["text", "count"]
    assert steps[0].outcome == TurnOutcome(output={"message": "ok"})


def test_a_recorded_failure_is_the_turn_s_outcome_and_clear_is_a_step() -> None:
    steps, ended = _recorded_steps(
        _events(
            ("SessionStarted", {"session_id": "s"}),
            ("TurnStarted", {"input": {"message": "a"}}),
            (
                "ObservationRecorded",
                {"name": "turn.failed", "data": {"error_type": "InternalServerError"}},
            ),
            ("ObservationRecorded", {"name": "chat.cleared", "data": {}}),
            ("SessionEnded", {"reason": "completed"}),
        )
    )
    assert [s.values for s in steps] == [{"message": "a"}, None]
    assert steps[0].outcome == TurnOutcome(error="InternalServerError") and ended == "completed"


def test_an_older_run_without_failure_records_takes_its_end_reason() -> None:
    steps, _ = _recorded_steps(
        _events(
            ("SessionStarted", {"session_id": "s"}),
            ("TurnStarted", {"input": {"message": "a"}}),
            ("SessionEnded", {"reason": "failed: APITimeoutError"}),
        )
    )
    assert steps[0].outcome == TurnOutcome(error="APITimeoutError")


def test_failures_compare_by_type_and_an_unnamed_one_matches_any() -> None:
    failed = TurnOutcome(error="InternalServerError")
    assert failed.same_as(TurnOutcome(error="InternalServerError"))
    assert not failed.same_as(TurnOutcome(error="APITimeoutError"))
    assert failed.same_as(TurnOutcome(error=""))
    assert not failed.same_as(TurnOutcome(output=None))
    assert not TurnOutcome(output="x").same_as(TurnOutcome(error=""))
    assert TurnOutcome(output="x").same_as(TurnOutcome(output="x"))
