"""agentledger: evaluation: score an experiment's traces with rules and recorded LLM judges.

``evaluate`` scores one experiment and writes its files; ``rebuild_evaluation`` writes
them again from the log; ``EvaluationOutcome`` carries the summary and test assertions.
They are imported on first use: every report build looks for evaluations
(``evaluation.section``) and should not pay for the judges' stack when there are none.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agentledger.evaluation.api import EvaluationOutcome, evaluate, rebuild_evaluation

__all__ = ["EvaluationOutcome", "evaluate", "rebuild_evaluation"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from agentledger.evaluation import api

        return getattr(api, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
