"""The project's error tree: one base, each package's errors below it.

AgentLedgerError                 base of every error agentledger raises on purpose (one line)
├── StoreError ...               the event store (tree in ``agentledger.eventstore.errors``)
├── ProjectionError ...          reports and lookups (``agentledger.projections.errors``)
└── RunnerError                  an experiment or agent run cannot start or continue as asked
    ├── ConfigError              a config file or flag is invalid (names the key and the fix)
    ├── InputsError              the inputs file is missing, malformed or filtered to nothing
    ├── TargetError              the ``module:function`` target cannot be imported or called
    ├── ResumeError              an experiment cannot be resumed (unknown, finished, changed)
    ├── ModelConfigError         a model spec, sampling parameter or provider key is invalid
    ├── ReplayError              a replay cannot be set up (unknown experiment or trace, mode)
    └── WorkerError              a worker cannot join (unknown experiment, slots not shared)
"""

from __future__ import annotations


class AgentLedgerError(Exception):
    """Base class for every error agentledger raises deliberately (user-facing, one line)."""


class RunnerError(AgentLedgerError):
    """An experiment or agent run cannot start or continue as asked."""


class ConfigError(RunnerError):
    """A configuration file or flag is invalid."""


class InputsError(RunnerError):
    """The inputs file is missing, malformed, or filtered down to nothing."""


class TargetError(RunnerError):
    """The agent target cannot be imported, found, or called with the planned arguments."""


class ResumeError(RunnerError):
    """An experiment cannot be resumed."""


class ModelConfigError(RunnerError):
    """A model spec, sampling parameter, or provider key is invalid or missing."""


class ReplayError(RunnerError):
    """A replay cannot be set up as asked."""


class WorkerError(RunnerError):
    """A worker cannot join the experiment (unknown, or its slots are not shared)."""
