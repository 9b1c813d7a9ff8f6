"""The rules of rule-based evaluators: each ``check`` and its params, read strictly.

A rule is a mapping ``{check, ...params}`` (FluxLoop's shape); ``parse_rule`` validates it
against its check's model, so an unknown check or a misspelled param is an error naming
the nearest valid one, and a pattern or schema that cannot work is refused when the
config is read, not when the first trace is scored.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from agentledger.evaluation.errors import EvaluationConfigError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def near(key: str, valid: list[str]) -> str:
    """``did you mean 'x'?`` for the closest of ``valid``, else the list of them."""
    found = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
    return f"did you mean '{found[0]}'?" if found else f"valid: {', '.join(valid)}"


class _Rule(_Strict):
    check: str
    target: str = "output"
    """What the rule reads: ``output``, ``input``, or a dotted path into the trace
    (``usage.total_tokens``, ``turns[0].agent_output``, ``metadata.expected``)."""


class OutputNotEmptyRule(_Rule):
    pass


class ContainsRule(_Rule):
    keywords: list[str] = Field(min_length=1)
    case_sensitive: bool = False
    match: Literal["all", "any"] = "all"
    """``contains``: every keyword must appear (``all``) or one is enough (``any``)."""


class MatchesRegexRule(_Rule):
    pattern: str
    case_sensitive: bool = True


class LatencyUnderRule(_Rule):
    budget_ms: float = Field(gt=0)


class TokenUsageUnderRule(_Rule):
    max_total_tokens: int | None = Field(default=None, ge=0)
    max_prompt_tokens: int | None = Field(default=None, ge=0)
    max_completion_tokens: int | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _one_limit(self) -> TokenUsageUnderRule:
        if (self.max_total_tokens, self.max_prompt_tokens, self.max_completion_tokens) == (
            None,
            None,
            None,
        ):
            raise ValueError("set max_total_tokens, max_prompt_tokens or max_completion_tokens")
        return self


class SimilarityRule(_Rule):
    expected_path: str = "expected"
    """Where the reference text is: a dotted path into the trace (``expected`` is the
    input's ``expected`` field)."""
    method: Literal["difflib"] = "difflib"
    threshold: float = Field(default=0.8, ge=0, le=1)


class SuccessRule(_Rule):
    pass


class JsonSchemaRule(_Rule):
    json_schema: dict[str, Any] = Field(alias="schema")


class EqualsRule(_Rule):
    expected: Any = None
    """A literal to compare with; without it, the value at ``expected_path``."""
    expected_path: str = "expected"
    case_sensitive: bool = True
    strip: bool = True


RULES: dict[str, type[_Rule]] = {
    "output_not_empty": OutputNotEmptyRule,
    "contains": ContainsRule,
    "not_contains": ContainsRule,
    "matches_regex": MatchesRegexRule,
    "latency_under": LatencyUnderRule,
    "token_usage_under": TokenUsageUnderRule,
    "similarity": SimilarityRule,
    "success": SuccessRule,
    "json_schema": JsonSchemaRule,
    "equals": EqualsRule,
}


def parse_rule(raw: Any, where: str) -> _Rule:
    """A rule mapping of evaluation.yaml as its check's model (``where`` names it)."""
    if not isinstance(raw, Mapping) or "check" not in raw:
        raise EvaluationConfigError(f"{where}: a rule is a mapping with 'check' and its params")
    check = str(raw["check"])
    model = RULES.get(check)
    if model is None:
        raise EvaluationConfigError(f"{where}: unknown check '{check}'; {near(check, list(RULES))}")
    try:
        rule = model.model_validate(dict(raw))
    except ValidationError as exc:
        errors = exc.errors()
        # A misspelled key also leaves its right spelling missing: name the misspelling.
        error = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
        key = ".".join(str(p) for p in error["loc"]) or "check"
        if error["type"] == "extra_forbidden":
            valid = [f.alias or n for n, f in model.model_fields.items()]
            raise EvaluationConfigError(
                f"{where} ({check}): unknown key '{key}'; {near(key, valid)}"
            ) from None
        if error["type"] == "missing":
            raise EvaluationConfigError(f"{where} ({check}): missing '{key}'") from None
        raise EvaluationConfigError(f"{where} ({check}): '{key}': {error['msg']}") from None
    if isinstance(rule, MatchesRegexRule):
        try:
            re.compile(rule.pattern)
        except re.error as exc:
            raise EvaluationConfigError(
                f"{where} (matches_regex): pattern {rule.pattern!r} is not a regular "
                f"expression ({exc}); fix it"
            ) from None
    if isinstance(rule, JsonSchemaRule):
        from agentledger.evaluation.jsonschema import check_schema

        problem = check_schema(rule.json_schema)
        if problem:
            raise EvaluationConfigError(f"{where} (json_schema): {problem}")
    return rule
