"""The generation config: FluxLoop's ``configs/input.yaml`` read strictly, plus flags.

``configs/input.yaml`` (or ``-c FILE``) holds ``personas``, ``base_inputs``,
``variation_strategies``, ``variation_count``, ``variation_temperature``, ``inputs_file``
and ``input_generation`` (``mode`` and ``llm``: provider, model, api_key, base_url,
system_prompt, user_prompt_template, strategy_prompts, request_timeout and the sampling
parameters). Every key is honoured or refused by name: unknown keys name the nearest
valid one, and the FluxLoop keys this version does not honour say what to use instead.
``resolve_settings`` folds the file and the flags into one ``GenerationSettings``.
"""

from __future__ import annotations

import difflib
import string
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agentledger.errors import ModelConfigError
from agentledger.experiments.config import (
    DEFAULT_INPUTS,
    INPUT_FILE,
    PROJECT_FILE,
    ProjectConfig,
    load_yaml,
    validate_file,
)
from agentledger.generation.errors import GenerationConfigError
from agentledger.models.specs import SAMPLING_RANGES, ModelSpec, check_sampling

STRATEGIES: tuple[str, ...] = (
    "rephrase",
    "error_prone",
    "typo",
    "verbose",
    "concise",
    "persona_based",
    "adversarial",
    "multilingual",
    "custom",
)
DEFAULT_STRATEGIES: tuple[str, ...] = ("rephrase", "verbose", "concise")
DEFAULT_MODELS = {
    "openai": "gpt-4o-mini",
    "anthropic": "claude-3-5-haiku-latest",
    "mock": "variations",
}
MOCK_MODEL = "variations"
DEFAULT_PARALLEL = 8
FLUXLOOP_KEY_VARIABLE = "FLUXLOOP_LLM_API_KEY"

DEFAULT_TEMPLATE = (
    "Generate a user input variation given the base input and persona.\n"
    "Base Input: {input}\n"
    "Strategy: {strategy}\n"
    "Persona: {persona}\n"
    "Provide a single realistic user message variant."
)
"""FluxLoop's default user prompt, so the same config gives the same prompt hashes."""
PLACEHOLDERS = ("input", "strategy", "persona", "metadata", "variation")

# FluxLoop keys this version refuses, each with what to do instead.
REFUSED = {
    "input_generation.llm.max_outputs": "one call makes one input; use variation_count "
    "for several variations of each prompt",
    "input_generation.llm.batch_size": "every prompt is its own call; --parallel N caps "
    "the calls in flight",
    "input_generation.llm.metadata": "FluxLoop never sends it to the model; remove it",
    "variation_model": "name the model in input_generation.llm.model (or --llm-model)",
    "custom_variation_prompt": "put the instruction in "
    "input_generation.llm.strategy_prompts.custom",
    "input_template": "write the prompt in input_generation.llm.user_prompt_template",
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LLMConfig(_Strict):
    """``input_generation.llm``."""

    enabled: bool = False
    provider: str = "openai"
    model: str | None = None
    api_key: str | None = None
    base_url: str | None = None
    """agentledger extension: an OpenAI-compatible endpoint (``--base-url``)."""
    system_prompt: str | None = None
    user_prompt_template: str | None = None
    strategy_prompts: dict[str, str] = Field(default_factory=dict)
    request_timeout: float = Field(default=60, gt=0, le=600)
    temperature: float | None = None
    top_p: float | None = None
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    max_tokens: int | None = Field(default=None, gt=0)
    reasoning_effort: Literal["minimal", "low", "medium", "high"] | None = None
    text_verbosity: Literal["low", "medium", "high"] | None = None


class InputGenerationConfig(_Strict):
    """``input_generation``."""

    mode: Literal["deterministic", "llm"] | None = None
    llm: LLMConfig = Field(default_factory=LLMConfig)


class InputFileConfig(_Strict):
    """``configs/input.yaml`` as input generation reads it (``run`` reads the same file)."""

    personas: list[Any] = Field(default_factory=list)
    base_inputs: list[Any] = Field(default_factory=list)
    variation_strategies: list[str] = Field(default_factory=list)
    variation_count: int = Field(default=1, ge=1, le=100)
    variation_temperature: float | None = None
    inputs_file: str | None = None
    input_generation: InputGenerationConfig = Field(default_factory=InputGenerationConfig)


PERSONA_KEYS = (
    "name",
    "description",
    "characteristics",
    "goals",
    "constraints",
    "language",
    "expertise_level",
    "custom_attributes",
)


class GenerationPersona(_Strict):
    """A persona; keys beyond FluxLoop's are kept in ``extra`` and shown in the prompt."""

    name: str
    description: str | None = None
    characteristics: list[str] = Field(default_factory=list)
    goals: list[str] = Field(default_factory=list)
    constraints: list[str] = Field(default_factory=list)
    language: str = "en"
    expertise_level: str = "intermediate"
    custom_attributes: dict[str, Any] = Field(default_factory=dict)
    extra: dict[str, Any] = Field(default_factory=dict)

    def to_prompt(self) -> str:
        """The persona as FluxLoop describes it to the model (then any extra keys)."""
        parts = [f"User Persona: {self.name}"]
        if self.description is not None:
            parts.append(f"Description: {self.description}")
        if self.characteristics:
            parts.append(f"Characteristics: {', '.join(self.characteristics)}")
        if self.goals:
            parts.append(f"Goals: {', '.join(self.goals)}")
        if self.constraints:
            parts.append(f"Constraints: {', '.join(self.constraints)}")
        parts.append(f"Language: {self.language}")
        parts.append(f"Expertise Level: {self.expertise_level}")
        for key, value in {**self.custom_attributes, **self.extra}.items():
            parts.append(f"{key.replace('_', ' ').title()}: {value}")
        return "\n".join(parts)


class GenerationSettings(_Strict):
    """Everything a generation runs with, resolved; recorded (redacted) when it starts."""

    project_dir: str
    config_file: str
    config_name: str | None = None
    output: str
    base_inputs: list[dict[str, Any]]
    personas: list[GenerationPersona] = Field(default_factory=list)
    strategies: list[str]
    variation_count: int = 1
    limit: int | None = None
    mode: Literal["deterministic", "llm"]
    model: ModelSpec
    system_prompt: str | None = None
    user_prompt_template: str = DEFAULT_TEMPLATE
    strategy_prompts: dict[str, str] = Field(default_factory=dict)
    request_timeout: float = 60
    reasoning_effort: str | None = None
    text_verbosity: str | None = None
    parallel: int = DEFAULT_PARALLEL

    def request_fields(self) -> dict[str, Any]:
        """Request fields beyond model, messages and the spec's sampling parameters."""
        fields: dict[str, Any] = {}
        if self.reasoning_effort is not None:
            fields["reasoning_effort"] = self.reasoning_effort
        if self.text_verbosity is not None:
            fields["verbosity"] = self.text_verbosity
        return fields


class Flags(BaseModel):
    """Command-line values (``None``: not given)."""

    model_config = ConfigDict(frozen=True)

    config_file: str | None = None
    output: str | None = None
    limit: int | None = None
    mode: str | None = None
    strategies: list[str] | None = None
    llm_provider: str | None = None
    llm_model: str | None = None
    base_url: str | None = None
    parallel: int | None = None
    llm_api_key_given: bool = False


def _near(word: str, choices: tuple[str, ...] | list[str]) -> str:
    near = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"did you mean '{near[0]}'? " if near else ""


def check_strategy(name: Any, where: str) -> str:
    """A valid strategy name; a misspelling names the nearest one."""
    if isinstance(name, str) and name in STRATEGIES:
        return name
    text = str(name)
    raise GenerationConfigError(
        f"{where}: unknown strategy {text!r}; {_near(text, STRATEGIES)}strategies are "
        f"{', '.join(STRATEGIES)}"
    )


def _refuse_unsupported(data: Mapping[str, Any], path: Path) -> None:
    """The FluxLoop keys this version does not honour are refused with what to use."""
    llm = (data.get("input_generation") or {}) if isinstance(data, Mapping) else {}
    llm = llm.get("llm") if isinstance(llm, Mapping) else None
    for dotted, fix in REFUSED.items():
        parts = dotted.split(".")
        scope: Any = llm if len(parts) == 3 else data
        if isinstance(scope, Mapping) and parts[-1] in scope:
            raise GenerationConfigError(f"{path}: '{dotted}' is not supported: {fix}")


def _base_inputs(items: list[Any], path: Path) -> list[dict[str, Any]]:
    if not items:
        raise GenerationConfigError(
            f"{path}: 'base_inputs' is empty; add the inputs to vary, e.g. "
            "base_inputs: [{input: 'How do I start?'}]"
        )
    found = []
    for number, item in enumerate(items):
        entry = {"input": item} if isinstance(item, str) else item
        if not isinstance(entry, dict):
            raise GenerationConfigError(
                f"{path}: base_inputs[{number}] must be a mapping with an 'input' string"
            )
        text = entry.get("input")
        if not isinstance(text, str) or not text.strip():
            keys = [str(k) for k in entry]
            near = next((k for k in keys if _near(k, ("input",))), None)
            hint = f" ('{near}' is not 'input')" if near else ""
            raise GenerationConfigError(
                f"{path}: base_inputs[{number}] needs a non-empty 'input' string{hint}"
            )
        found.append({str(k): v for k, v in entry.items()})
    return found


def _personas(items: list[Any], path: Path) -> list[GenerationPersona]:
    personas = []
    names: set[str] = set()
    for number, item in enumerate(items):
        where = f"{path}: personas[{number}]"
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise GenerationConfigError(f"{where} must be a mapping with a 'name'")
        item = dict(item)
        if "expertise" in item:  # the key FluxLoop's docs write for expertise_level
            if "expertise_level" in item:
                raise GenerationConfigError(
                    f"{where}: 'expertise' and 'expertise_level' both set; keep one"
                )
            item["expertise_level"] = item.pop("expertise")
        known = {k: v for k, v in item.items() if k in PERSONA_KEYS}
        extra = {str(k): v for k, v in item.items() if k not in PERSONA_KEYS}
        for key in extra:
            hint = _near(key, PERSONA_KEYS)
            if hint:
                raise GenerationConfigError(f"{where}: unknown key '{key}'; {hint.strip()}")
        try:
            persona = GenerationPersona.model_validate({**known, "extra": extra})
        except ValidationError as exc:
            first = exc.errors()[0]
            key = ".".join(str(p) for p in first["loc"])
            raise GenerationConfigError(f"{where}: '{key}': {first['msg']}") from None
        if persona.name in names:
            raise GenerationConfigError(f"{where}: persona '{persona.name}' is listed twice")
        names.add(persona.name)
        personas.append(persona)
    return personas


def _strategies(names: list[str], where: str) -> list[str]:
    checked = [check_strategy(name, where) for name in names]
    for name in checked:
        if checked.count(name) > 1:
            raise GenerationConfigError(f"{where}: strategy '{name}' is listed twice")
    return checked


def check_template(template: str, where: str) -> None:
    """Refuse a prompt template with unknown placeholders or stray braces."""
    allowed = ", ".join("{" + p + "}" for p in PLACEHOLDERS)
    try:
        fields = [field for _, field, _, _ in string.Formatter().parse(template)]
    except ValueError as exc:
        raise GenerationConfigError(
            f"{where}: {exc}; write a literal brace as {{{{ or }}}}"
        ) from None
    for field in fields:
        if field is not None and field not in PLACEHOLDERS:
            raise GenerationConfigError(
                f"{where}: unknown placeholder {{{field}}}; use {allowed} (write a literal "
                "brace as {{ or }})"
            )
    try:  # every value is text: a trial fill finds bad conversions and format specs
        template.format(**{name: "text" for name in PLACEHOLDERS})
    except (ValueError, KeyError, IndexError, AttributeError) as exc:
        raise GenerationConfigError(
            f"{where}: {type(exc).__name__} {exc}; use plain placeholders such as {{input}}"
        ) from None


def _mode(config: InputGenerationConfig, flags: Flags, path: Path) -> str:
    llm_flags = [
        flag
        for flag, value in (
            ("--llm-provider", flags.llm_provider),
            ("--llm-model", flags.llm_model),
            ("--base-url", flags.base_url),
            ("--llm-api-key", flags.llm_api_key_given or None),
        )
        if value
    ]
    if flags.mode is not None:
        if flags.mode not in ("deterministic", "llm"):
            raise GenerationConfigError(
                f"--mode {flags.mode!r}: use deterministic (offline, no model) or llm"
            )
        if flags.mode == "deterministic" and llm_flags:
            raise GenerationConfigError(
                f"--mode deterministic makes no model call; drop {llm_flags[0]}"
            )
        return flags.mode
    if llm_flags:
        return "llm"
    if config.mode == "deterministic" and config.llm.enabled:
        raise GenerationConfigError(
            f"{path}: 'input_generation.mode' is deterministic but 'input_generation.llm."
            "enabled' is true; set mode: llm to call the model, or enabled: false"
        )
    if config.mode == "llm" and not config.llm.enabled:
        raise GenerationConfigError(
            f"{path}: 'input_generation.mode' is llm but 'input_generation.llm.enabled' is "
            "false; set enabled: true, or mode: deterministic to generate offline"
        )
    if config.mode is not None:
        return config.mode
    return "llm" if config.llm.enabled else "deterministic"


def _temperature(file: InputFileConfig, path: Path) -> float | None:
    nested, top = file.input_generation.llm.temperature, file.variation_temperature
    if nested is not None and top is not None and nested != top:
        raise GenerationConfigError(
            f"{path}: 'variation_temperature' ({top:g}) and 'input_generation.llm."
            f"temperature' ({nested:g}) disagree; keep one"
        )
    return nested if nested is not None else top


def _model(file: InputFileConfig, flags: Flags, mode: str, path: Path) -> ModelSpec:
    llm = file.input_generation.llm
    provider = "mock" if mode == "deterministic" else flags.llm_provider or llm.provider
    if provider not in DEFAULT_MODELS:
        where = (
            "--llm-provider" if flags.llm_provider else f"{path}: 'input_generation.llm.provider'"
        )
        raise GenerationConfigError(
            f"{where} {provider!r}: {_near(provider, tuple(DEFAULT_MODELS))}use one of "
            "openai, anthropic, mock"
        )
    # The configured model belongs to the configured provider: not to the mock of
    # deterministic mode, nor to another provider named by --llm-provider.
    configured = llm.model if mode == "llm" and provider == llm.provider else None
    name = flags.llm_model or configured or DEFAULT_MODELS[provider]
    base_url = flags.base_url or llm.base_url
    if provider == "mock":
        if name != MOCK_MODEL:
            where = "--llm-model" if flags.llm_model else f"{path}: 'input_generation.llm.model'"
            raise GenerationConfigError(
                f"{where} {name!r}: the mock provider's generation model is '{MOCK_MODEL}' "
                "(deterministic variations, no model); name an openai or anthropic model"
            )
        if base_url:
            where = "--base-url" if flags.base_url else f"{path}: 'input_generation.llm.base_url'"
            raise GenerationConfigError(
                f"{where}: the mock provider runs in process; a base URL needs "
                "--llm-provider openai (any OpenAI-compatible server)"
            )
    sampling: dict[str, Any] = {
        "temperature": _temperature(file, path),
        "top_p": llm.top_p,
        "frequency_penalty": llm.frequency_penalty,
        "presence_penalty": llm.presence_penalty,
        "max_tokens": llm.max_tokens,
    }
    try:
        for key in SAMPLING_RANGES:
            check_sampling(key, sampling.get(key), f"{path}: 'input_generation.llm.{key}'")
    except ModelConfigError as exc:
        raise GenerationConfigError(str(exc)) from None
    return ModelSpec(
        provider=provider,  # type: ignore[arg-type]
        name=name,
        base_url=base_url,
        api_key=llm.api_key,
        **{k: v for k, v in sampling.items() if v is not None},
    )


def resolve_settings(project_dir: Path, flags: Flags) -> GenerationSettings:
    """Read the project's input config and apply the flags; every problem is a
    ``ConfigError`` naming the key or flag and the fix."""
    path = Path(flags.config_file) if flags.config_file else INPUT_FILE
    if not path.is_absolute():
        path = project_dir / path
    if not path.is_file():
        raise GenerationConfigError(
            f"config file {path} not found; pass -c/--config or run in a project whose "
            "configs/input.yaml holds base_inputs"
        )
    data = load_yaml(path, "config file")
    _refuse_unsupported(data, path)
    file = validate_file(InputFileConfig, data, path)
    llm = file.input_generation.llm
    mode = _mode(file.input_generation, flags, path)
    strategies = (
        _strategies(flags.strategies, "-s/--strategy")
        if flags.strategies
        else _strategies(file.variation_strategies, f"{path}: 'variation_strategies'")
        if file.variation_strategies
        else list(DEFAULT_STRATEGIES)
    )
    for key in llm.strategy_prompts:
        check_strategy(key, f"{path}: 'input_generation.llm.strategy_prompts'")
    if "custom" in strategies and not llm.strategy_prompts.get("custom"):
        raise GenerationConfigError(
            f"{path}: strategy 'custom' needs its instruction in "
            "'input_generation.llm.strategy_prompts.custom'"
        )
    template = llm.user_prompt_template or DEFAULT_TEMPLATE
    check_template(template, f"{path}: 'input_generation.llm.user_prompt_template'")
    project_path = project_dir / PROJECT_FILE
    project = (
        validate_file(ProjectConfig, load_yaml(project_path, "project file"), project_path)
        if project_path.is_file()
        else ProjectConfig()
    )
    output = flags.output or file.inputs_file or str(DEFAULT_INPUTS)
    return GenerationSettings(
        project_dir=str(project_dir),
        config_file=str(path),
        config_name=project.name,
        output=str((project_dir / output).resolve()),
        base_inputs=_base_inputs(file.base_inputs, path),
        personas=_personas(file.personas, path),
        strategies=strategies,
        variation_count=file.variation_count,
        limit=flags.limit,
        mode=mode,  # type: ignore[arg-type]
        model=_model(file, flags, mode, path),
        system_prompt=llm.system_prompt,
        user_prompt_template=template,
        strategy_prompts=dict(llm.strategy_prompts),
        request_timeout=llm.request_timeout,
        reasoning_effort=llm.reasoning_effort,
        text_verbosity=llm.text_verbosity,
        parallel=flags.parallel or DEFAULT_PARALLEL,
    )


def api_key_for(
    settings: GenerationSettings, env: Mapping[str, str], flag: str | None
) -> str | None:
    """The key to call with: ``--llm-api-key``, then ``api_key`` in the config, then
    ``FLUXLOOP_LLM_API_KEY`` (FluxLoop's variable), then the provider's own variable
    (``agentledger.models.specs.endpoint`` falls back to that)."""
    if flag:
        return flag
    if settings.model.api_key:
        return None
    return env.get(FLUXLOOP_KEY_VARIABLE) or None
