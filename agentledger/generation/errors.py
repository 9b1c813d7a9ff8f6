"""Errors of input generation (all one line, exit status 2 through the CLI).

RunnerError (agentledger.errors)
└── GenerationError              input generation cannot start or be rewritten as asked
    ├── GenerationConfigError    configs/input.yaml or a flag is invalid (names key and fix)
    ├── OutputExistsError        the inputs file exists and --overwrite was not given
    └── UnknownGenerationError   --replay names no completed generation in the store
"""

from __future__ import annotations

from agentledger.errors import ConfigError, RunnerError


class GenerationError(RunnerError):
    """Input generation cannot start, or a generation cannot be rewritten, as asked."""


class GenerationConfigError(GenerationError, ConfigError):
    """The generation config or a flag is invalid."""


class OutputExistsError(GenerationError):
    """The inputs file exists and overwriting it was not asked for."""


class UnknownGenerationError(GenerationError):
    """No (completed) generation of that id is in the store."""
