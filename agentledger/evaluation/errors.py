"""Evaluation errors (below ``agentledger.errors``' tree).

AgentLedgerError
└── RunnerError
    └── ConfigError
        └── EvaluationConfigError   evaluation.yaml, an evaluate flag, or the experiment to
                                    score is unusable (names the key or flag and the fix)

A judge reply that is not valid is not an error: it is retried, then recorded as an
unscored metric with its reason.
"""

from __future__ import annotations

from agentledger.errors import ConfigError


class EvaluationConfigError(ConfigError):
    """evaluation.yaml, an ``evaluate`` flag, or the experiment to score is unusable."""
