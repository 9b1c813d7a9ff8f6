"""Experiment configuration: FluxLoop's config files read strictly, resolved into settings.

Two layouts of ``configs/simulation.yaml`` are accepted: the one in FluxLoop's documentation
(``runner.target``, ``runner.iterations``, ``output.directory``, ``output.format``) and the
one FluxLoop 0.3.x writes (top-level ``iterations``/``parallel_runs``/``seed``,
``runner.module_path`` + ``runner.function_name``, ``output_directory``), plus the 0.3.x
side files ``configs/project.yaml`` and ``configs/input.yaml``. Unknown keys are errors
that name the nearest valid key. ``resolve_settings`` folds files and command-line
overrides into one ``ExperimentSettings`` value, the snapshot an experiment records.
"""

from __future__ import annotations

import difflib
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agentledger.errors import ConfigError
from agentledger.models.specs import ModelSpec, check_sampling, default_model, parse_model

SIMULATION_FILE = Path("configs") / "simulation.yaml"
PROJECT_FILE = Path("configs") / "project.yaml"
INPUT_FILE = Path("configs") / "input.yaml"
DEFAULT_INPUTS = Path("inputs") / "generated.yaml"
DEFAULT_OUTPUT = "experiments"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RunnerConfig(_Strict):
    target: str | None = None
    """``module:function`` (documentation layout; 0.3.x writes it too)."""
    module_path: str | None = None
    function_name: str | None = None
    iterations: int | None = Field(default=None, ge=1)
    """Documentation layout's place for iterations."""
    working_directory: str | None = None
    python_path: list[str] | str | None = None
    timeout_seconds: float | None = Field(default=None, gt=0)
    max_retries: int = Field(default=0, ge=0, le=100)
    retry_backoff_seconds: float = Field(default=0.0, ge=0, le=60)
    """agentledger extension: wait before the first retry, doubled for each further one
    (default 0: retry at once, as FluxLoop does; model rate limits are retried by the
    model client itself)."""


class OutputConfig(_Strict):
    directory: str | None = None
    format: Literal["jsonl", "json"] = "jsonl"
    html: bool = False
    """agentledger extension: also write report.html (``agentledger report html``)."""


class ReplayArgsConfig(_Strict):
    enabled: bool = False
    recording_file: str | None = None
    """FluxLoop's JSON-lines recording; without it, ``ArgsRecorded`` events in the store."""
    override_param_path: str | None = None
    secrets_from_env: dict[str, str] = Field(default_factory=dict)
    """agentledger extension: argument path -> environment variable holding the value of an
    argument recorded masked (default ``AGENTLEDGER_ARG_<PATH>``)."""
    callable_providers: dict[str, str] = Field(default_factory=dict)
    """Argument path -> what to call for an argument recorded as a callable placeholder:
    ``builtin:collector.send``, ``builtin:collector.error`` or ``module:function``."""


class ReplayArgsSettings(_Strict):
    """Argument replay as resolved: where the recordings are and where the input goes."""

    recording_file: str | None = None
    override_param_path: str
    secrets_from_env: dict[str, str] = Field(default_factory=dict)
    callable_providers: dict[str, str] = Field(default_factory=dict)


class SupervisorMetadata(_Strict):
    scripted_questions: list[str] = Field(default_factory=list)
    mock_decision: str = "terminate"
    mock_reason: str = "script_complete"
    mock_closing: str | None = None


SupervisorProvider = Literal["openai", "anthropic", "mock"]


class SupervisorConfig(_Strict):
    provider: SupervisorProvider = "openai"
    model: str | None = None
    temperature: float | None = Field(default=None, ge=0, le=2)
    system_prompt: str | None = None
    api_key: str | None = None
    base_url: str | None = None
    """agentledger extension: an OpenAI-compatible endpoint for the supervisor model."""
    metadata: SupervisorMetadata = Field(default_factory=SupervisorMetadata)


class MultiTurnConfig(_Strict):
    enabled: bool = False
    max_turns: int = Field(default=8, ge=1, le=1000)
    auto_approve_tools: bool = True
    persona_override: str | None = None
    supervisor: SupervisorConfig = Field(default_factory=SupervisorConfig)


class SupervisorSettings(_Strict):
    """The supervisor as resolved: scripted (mock) or a model; its key is never kept."""

    provider: SupervisorProvider
    model: ModelSpec | None = None
    """The model of an LLM supervisor (None for the scripted mock)."""
    system_prompt: str | None = None
    scripted_questions: list[str] = Field(default_factory=list)
    mock_decision: str = "terminate"
    mock_reason: str = "script_complete"
    mock_closing: str | None = None


class MultiTurnSettings(_Strict):
    max_turns: int
    auto_approve_tools: bool
    persona_override: str | None = None
    supervisor: SupervisorSettings


class SimulationConfig(_Strict):
    """``configs/simulation.yaml`` in either FluxLoop layout."""

    name: str | None = None
    description: str | None = None
    iterations: int | None = Field(default=None, ge=1)
    parallel_runs: int = Field(default=1, ge=1, le=4096)
    run_delay_seconds: float = Field(default=0.0, ge=0, le=3600)
    seed: int | None = None
    runner: RunnerConfig
    replay_args: ReplayArgsConfig = Field(default_factory=ReplayArgsConfig)
    multi_turn: MultiTurnConfig = Field(default_factory=MultiTurnConfig)
    output_directory: str | None = None
    output: OutputConfig | None = None
    inputs_file: str | None = None
    save_traces: bool = True
    """Write traces.jsonl and observations.jsonl (the log keeps everything regardless)."""
    save_aggregated_metrics: bool = True
    model: str | dict[str, Any] | None = None
    """agentledger extension: the model of ``ctx.openai``/``ctx.chat`` (``provider:model``
    or ``{provider, name, temperature, ...}``); default OpenAI with a key, else mock:echo."""


class Persona(BaseModel):
    """A persona from ``configs/input.yaml``; extra fields are kept as persona context."""

    model_config = ConfigDict(extra="allow", frozen=True)

    name: str
    description: str | None = None


class InputConfig(_Strict):
    """``configs/input.yaml``: personas and where the inputs are; generation keys are allowed
    (they belong to input generation, which ``run`` does not do)."""

    personas: list[Persona] = Field(default_factory=list)
    inputs_file: str | None = None
    base_inputs: list[Any] = Field(default_factory=list)
    variation_strategies: list[Any] = Field(default_factory=list)
    variation_count: int | None = None
    variation_temperature: float | None = None
    input_generation: dict[str, Any] = Field(default_factory=dict)


class ProjectConfig(_Strict):
    """``configs/project.yaml``: project metadata (``metadata.service_context`` feeds the
    multi-turn supervisor)."""

    name: str | None = None
    description: str | None = None
    version: str | None = None
    source_root: str | None = None
    collector_url: str | None = None
    collector_api_key: str | None = None
    tags: list[str] = Field(default_factory=list)
    metadata: dict[str, Any] = Field(default_factory=dict)


class ExperimentSettings(_Strict):
    """Everything an experiment runs with, resolved; recorded as its config snapshot."""

    name: str
    description: str | None = None
    project_dir: str
    config_file: str
    target: str
    working_directory: str
    python_path: list[str] = Field(default_factory=list)
    inputs_file: str
    personas: list[dict[str, Any]] = Field(default_factory=list)
    """Persona definitions from configs/input.yaml."""
    persona_filter: list[str] = Field(default_factory=list)
    iterations: int = 1
    parallel: int = 1
    run_delay_seconds: float = 0.0
    seed: int
    timeout_seconds: float | None = None
    max_retries: int = 0
    retry_backoff_seconds: float = 0.0
    max_failures: str = "0"
    output_directory: str
    output_format: Literal["jsonl", "json"] = "jsonl"
    output_html: bool = False
    save_traces: bool = True
    service_context: str | None = None
    model: ModelSpec
    replay_args: ReplayArgsSettings | None = None
    multi_turn: MultiTurnSettings | None = None
    fluxloop_config: dict[str, Any] = Field(default_factory=dict)
    """The config files as FluxLoop's ``ExperimentConfig`` dumps them (summary.json's
    ``config``), keys and secrets left out."""


class Overrides(BaseModel):
    """Command-line values that win over the config files (``None``: not given)."""

    model_config = ConfigDict(frozen=True)

    iterations: int | None = None
    parallel: int | None = None
    timeout_seconds: float | None = None
    inputs_file: str | None = None
    personas: list[str] | None = None
    output_dir: str | None = None
    experiment_name: str | None = None
    max_failures: str | None = None
    multi_turn: bool | None = None
    max_turns: int | None = None
    auto_approve_tools: bool | None = None
    persona_override: str | None = None
    supervisor_provider: str | None = None
    supervisor_model: str | None = None
    supervisor_temperature: float | None = None


def load_yaml(path: Path, what: str) -> dict[str, Any]:
    """Read a YAML mapping (bounded, see ``agentledger.documents``); every problem is a
    ``ConfigError`` naming the file."""
    from agentledger.documents import parse_yaml, read_text

    data = parse_yaml(read_text(path, what), str(path))
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of settings, found {type(data).__name__}")
    return data


M = TypeVar("M", bound=BaseModel)


def _fields_at(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """The valid keys of the (sub)model at ``loc``, for nearest-key suggestions."""
    current: type[BaseModel] = model
    for part in loc:
        if isinstance(part, int):
            continue
        field = current.model_fields.get(str(part))
        if field is None:
            break
        annotation = field.annotation
        candidates = [annotation, *getattr(annotation, "__args__", ())]
        nested = [c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)]
        if not nested:
            break
        current = nested[0]
    return list(current.model_fields)


def validate_file(model: type[M], data: dict[str, Any], path: Path) -> M:
    """Validate ``data`` read from ``path``; the first problem becomes a one-line error."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors()
        # A misspelt key explains the rest ("runer:" is also a missing "runner"): report it.
        error = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
        loc = tuple(error["loc"])
        dotted = ".".join(str(p) for p in loc)
        if error["type"] == "extra_forbidden":
            key = str(loc[-1])
            valid = _fields_at(model, loc[:-1])
            near = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
            hint = f"did you mean '{near[0]}'?" if near else f"valid keys: {', '.join(valid)}"
            raise ConfigError(f"{path}: unknown key '{dotted}'; {hint}") from None
        if error["type"] == "missing":
            raise ConfigError(f"{path}: missing required key '{dotted}'") from None
        raise ConfigError(f"{path}: '{dotted}': {error['msg']}") from None


def find_project_dir(project: str | None, root: str | None, cwd: Path) -> Path:
    """``<root>/<project>`` when ``--project`` is given (root defaults to ./fluxloop),
    else ``--root`` if given, else the current directory."""
    if project:
        base = Path(root) if root else Path("fluxloop")
        directory = (cwd / base / project).resolve()
        if not directory.is_dir():
            raise ConfigError(
                f"project directory {directory} not found; check --project and --root"
            )
        return directory
    if root:
        directory = (cwd / root).resolve()
        if not directory.is_dir():
            raise ConfigError(f"--root {directory} is not a directory")
        return directory
    return cwd.resolve()


def _target(runner: RunnerConfig, path: Path) -> str:
    if runner.target:
        if ":" not in runner.target:
            raise ConfigError(f"{path}: 'runner.target' {runner.target!r} must be module:function")
        return runner.target
    if runner.module_path and runner.function_name:
        return f"{runner.module_path}:{runner.function_name}"
    raise ConfigError(
        f"{path}: set 'runner.target' (module:function) or "
        "'runner.module_path' and 'runner.function_name'"
    )


def _iterations(sim: SimulationConfig, path: Path) -> int:
    top, nested = sim.iterations, sim.runner.iterations
    if top is not None and nested is not None and top != nested:
        raise ConfigError(
            f"{path}: 'iterations' ({top}) and 'runner.iterations' ({nested}) disagree; keep one"
        )
    return top or nested or 1


def _paths(value: list[str] | str | None) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


def _check_not_yet_supported(sim: SimulationConfig, path: Path) -> None:
    """Settings this version reads but cannot honour yet are refused, never ignored."""
    if not sim.save_aggregated_metrics:
        raise ConfigError(
            f"{path}: 'save_aggregated_metrics: false' is not supported; summary.json "
            "identifies the output folder, remove the key"
        )


SUPERVISOR_MODELS = {"openai": "gpt-4o-mini", "anthropic": "claude-3-5-haiku-latest"}


def _multi_turn(
    config: MultiTurnConfig, overrides: Overrides, path: Path
) -> MultiTurnSettings | None:
    enabled = overrides.multi_turn if overrides.multi_turn is not None else config.enabled
    if not enabled:
        return None
    supervisor = config.supervisor
    provider = overrides.supervisor_provider or supervisor.provider
    if provider not in ("openai", "anthropic", "mock"):
        raise ConfigError(f"--supervisor-provider {provider!r}: use one of openai, anthropic, mock")
    model = None
    if provider != "mock":
        temperature = (
            overrides.supervisor_temperature
            if overrides.supervisor_temperature is not None
            else supervisor.temperature
        )
        check_sampling("temperature", temperature, "--supervisor-temperature")
        model = ModelSpec(
            provider=provider,  # type: ignore[arg-type]
            name=overrides.supervisor_model or supervisor.model or SUPERVISOR_MODELS[provider],
            temperature=temperature,
            base_url=supervisor.base_url,
            api_key=supervisor.api_key,
        )
    meta = supervisor.metadata
    return MultiTurnSettings(
        max_turns=overrides.max_turns or config.max_turns,
        auto_approve_tools=(
            overrides.auto_approve_tools
            if overrides.auto_approve_tools is not None
            else config.auto_approve_tools
        ),
        persona_override=overrides.persona_override or config.persona_override,
        supervisor=SupervisorSettings(
            provider=provider,  # type: ignore[arg-type]
            model=model,
            system_prompt=supervisor.system_prompt,
            scripted_questions=meta.scripted_questions,
            mock_decision=meta.mock_decision,
            mock_reason=meta.mock_reason,
            mock_closing=meta.mock_closing,
        ),
    )


def _replay_args(
    config: ReplayArgsConfig, project_dir: Path, path: Path
) -> ReplayArgsSettings | None:
    if not config.enabled:
        return None
    if not config.override_param_path:
        raise ConfigError(
            f"{path}: 'replay_args.override_param_path' is required with replay_args.enabled: "
            "the argument the input is written to, e.g. data.content"
        )
    recording = (
        str((project_dir / config.recording_file).resolve()) if config.recording_file else None
    )
    return ReplayArgsSettings(
        recording_file=recording,
        override_param_path=config.override_param_path,
        secrets_from_env=config.secrets_from_env,
        callable_providers=config.callable_providers,
    )


def parse_max_failures(value: str) -> str:
    """Validate ``N`` or ``P%``; returns it normalised."""
    text = value.strip()
    try:
        number = float(text[:-1]) if text.endswith("%") else int(text)
    except ValueError:
        raise ConfigError(
            f"--max-failures {value!r}: give a count (3) or a percentage (5%)"
        ) from None
    if number < 0 or (text.endswith("%") and number > 100):
        raise ConfigError(f"--max-failures {value!r}: must be 0..N runs or 0%..100%")
    return text


def failures_allowed(max_failures: str, total: int) -> int:
    """How many failed runs ``max_failures`` tolerates out of ``total``."""
    if max_failures.endswith("%"):
        return int(total * float(max_failures[:-1]) / 100)
    return int(max_failures)


def _optional_file(path: Path) -> bool:
    """Whether an optional config file is there to read; something else by that name (a
    folder, a socket) is an error rather than silently no file."""
    if not path.exists():
        return False
    if not path.is_file():
        raise ConfigError(f"{path} is not a file; remove it or make it a YAML file")
    return True


def resolve_settings(
    project_dir: Path,
    config_file: str | None,
    overrides: Overrides,
    env: Mapping[str, str] | None = None,
) -> ExperimentSettings:
    """Read the project's config files and apply ``overrides``; ``env`` (the environment)
    picks the default model when the config names none."""
    config_path = Path(config_file) if config_file else SIMULATION_FILE
    if not config_path.is_absolute():
        config_path = project_dir / config_path
    if config_path.exists() and not config_path.is_file():
        raise ConfigError(f"config file {config_path} is not a file; pass -c/--config a YAML file")
    if not config_path.is_file():
        raise ConfigError(
            f"config file {config_path} not found; pass -c/--config or run in a project "
            "directory (agentledger init DIR --template experiment makes one)"
        )
    sim = validate_file(SimulationConfig, load_yaml(config_path, "config file"), config_path)
    _check_not_yet_supported(sim, config_path)
    project_path = project_dir / PROJECT_FILE
    project = (
        validate_file(ProjectConfig, load_yaml(project_path, "project file"), project_path)
        if _optional_file(project_path)
        else ProjectConfig()
    )
    input_path = project_dir / INPUT_FILE
    input_config = (
        validate_file(InputConfig, load_yaml(input_path, "input file"), input_path)
        if _optional_file(input_path)
        else InputConfig()
    )

    inputs_file = (
        overrides.inputs_file or sim.inputs_file or input_config.inputs_file or str(DEFAULT_INPUTS)
    )
    output_dir = (
        overrides.output_dir
        or (sim.output.directory if sim.output else None)
        or sim.output_directory
        or DEFAULT_OUTPUT
    )
    working = sim.runner.working_directory or "."
    service_context = project.metadata.get("service_context")
    settings = ExperimentSettings(
        name=overrides.experiment_name or sim.name or project.name or "experiment",
        description=sim.description,
        project_dir=str(project_dir),
        config_file=str(config_path),
        target=_target(sim.runner, config_path),
        working_directory=str((project_dir / working).resolve()),
        python_path=[str((project_dir / p).resolve()) for p in _paths(sim.runner.python_path)],
        inputs_file=str((project_dir / inputs_file).resolve()),
        personas=[p.model_dump(mode="json") for p in input_config.personas],
        persona_filter=overrides.personas or [],
        iterations=overrides.iterations or _iterations(sim, config_path),
        parallel=overrides.parallel or sim.parallel_runs,
        run_delay_seconds=sim.run_delay_seconds,
        seed=sim.seed if sim.seed is not None else secrets.randbelow(2**31),
        timeout_seconds=overrides.timeout_seconds or sim.runner.timeout_seconds,
        max_retries=sim.runner.max_retries,
        retry_backoff_seconds=sim.runner.retry_backoff_seconds,
        max_failures=parse_max_failures(overrides.max_failures or "0"),
        output_directory=str((project_dir / output_dir).resolve()),
        output_format=sim.output.format if sim.output else "jsonl",
        output_html=sim.output.html if sim.output else False,
        save_traces=sim.save_traces,
        service_context=service_context if isinstance(service_context, str) else None,
        replay_args=_replay_args(sim.replay_args, project_dir, config_path),
        multi_turn=_multi_turn(sim.multi_turn, overrides, config_path),
        model=(
            parse_model(sim.model, f"{config_path}: 'model'")
            if sim.model is not None
            else default_model(env if env is not None else {})
        ),
    )
    view = _fluxloop_view(settings, sim, project, input_config, inputs_file, output_dir)
    return settings.model_copy(update={"fluxloop_config": view})


def _fluxloop_view(
    settings: ExperimentSettings,
    sim: SimulationConfig,
    project: ProjectConfig,
    inputs: InputConfig,
    inputs_file: str,
    output_dir: str,
) -> dict[str, Any]:
    """The resolved config in the shape of FluxLoop's ``ExperimentConfig.to_dict()``."""
    module_path, _, function_name = settings.target.partition(":")
    runner = sim.runner
    multi_turn = sim.multi_turn.model_dump(mode="json")
    multi_turn["supervisor"].pop("api_key", None)
    return {
        "name": settings.name,
        "description": settings.description or project.description,
        "version": project.version,
        "iterations": settings.iterations,
        "parallel_runs": settings.parallel,
        "seed": settings.seed,
        "run_delay_seconds": settings.run_delay_seconds,
        "personas": [p.model_dump(mode="json") for p in inputs.personas],
        "base_inputs": inputs.base_inputs,
        "variation_strategies": inputs.variation_strategies,
        "variation_count": inputs.variation_count,
        "variation_temperature": inputs.variation_temperature,
        "input_generation": inputs.input_generation,
        "inputs_file": inputs_file,
        "runner": {
            "module_path": module_path,
            "function_name": function_name,
            "target": settings.target,
            "working_directory": runner.working_directory,
            "python_path": _paths(runner.python_path),
            "timeout_seconds": settings.timeout_seconds,
            "max_retries": runner.max_retries,
        },
        "replay_args": sim.replay_args.model_dump(mode="json", exclude={"secrets_from_env"}),
        "multi_turn": multi_turn,
        "output_directory": output_dir,
        "save_traces": sim.save_traces,
        "save_aggregated_metrics": sim.save_aggregated_metrics,
        "collector_url": project.collector_url,
        "tags": project.tags,
    }
