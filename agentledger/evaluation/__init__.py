"""agentledger: evaluation: score an experiment's traces with rules and recorded LLM judges.

``evaluate`` scores one experiment and writes its files; ``rebuild_evaluation`` writes
them again from the log; ``EvaluationOutcome`` carries the summary and test assertions.
"""

from agentledger.evaluation.api import EvaluationOutcome, evaluate, rebuild_evaluation

__all__ = ["EvaluationOutcome", "evaluate", "rebuild_evaluation"]
