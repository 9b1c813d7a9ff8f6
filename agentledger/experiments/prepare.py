"""Everything an experiment needs checked before its first event: the model's endpoint
(a missing key fails here), the plan, the target, the secrets of masked arguments."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field

from agentledger.errors import ModelConfigError
from agentledger.events.payloads import ExperimentPlan
from agentledger.eventstore.store import EventStore
from agentledger.experiments.config import ExperimentSettings
from agentledger.experiments.plan import build_plan, resupply_masked
from agentledger.experiments.targets import Target, load_target
from agentledger.models.specs import Endpoint, key_variable, resolve_endpoint
from agentledger.replay.args import argument_recordings, argument_secrets, check_parameters
from agentledger.replay.callables import Provider, argument_callables


@dataclass(frozen=True)
class PreparedExperiment:
    """Everything checked before the first event is written: settings, plan, target, and
    where the model is reached."""

    settings: ExperimentSettings
    plan: ExperimentPlan
    target: Target
    endpoint: Endpoint
    argument_secrets: dict[str, str] = field(default_factory=dict)
    """Values of arguments recorded masked (argument replay); never recorded."""
    supervisor_endpoint: Endpoint | None = None
    """Where an LLM supervisor's model is reached (multi-turn)."""
    argument_callables: dict[str, Provider] = field(default_factory=dict)
    """What to call for arguments recorded as callable placeholders (argument replay)."""


def load_experiment_target(settings: ExperimentSettings) -> Target:
    """Import the settings' target with the project's search paths."""
    search = [settings.project_dir, settings.working_directory, *settings.python_path]
    return load_target(
        settings.target,
        list(dict.fromkeys(search)),
        from_args=settings.replay_args is not None,
    )


def prepare(
    settings: ExperimentSettings,
    env: Mapping[str, str],
    *,
    offline: bool = False,
    store: EventStore | None = None,
    supervisor_api_key: str | None = None,
) -> PreparedExperiment:
    """Resolve the model's endpoint (a missing key fails here), load the plan and import the
    target, so bad input fails before anything runs. ``env`` holds the provider keys;
    ``offline`` (a pure replay) needs none."""
    model_endpoint = resolve_endpoint(settings.model, env, offline=offline)
    recordings = argument_recordings(settings, store)
    plan = build_plan(settings, recordings)
    target = load_experiment_target(settings)
    if recordings is not None:
        check_parameters(target.fn, recordings, settings.target)
    secrets = argument_secrets(settings, plan, env)
    supervisor = supervisor_endpoint(settings, env, offline=offline, api_key=supervisor_api_key)
    callables = argument_callables(settings, plan)
    return PreparedExperiment(
        settings, plan, target, model_endpoint, secrets, supervisor, callables
    )


def prepare_recorded(
    settings: ExperimentSettings,
    plan: ExperimentPlan,
    env: Mapping[str, str],
    *,
    offline: bool = False,
    supervisor_api_key: str | None = None,
) -> PreparedExperiment:
    """An experiment prepared from recorded settings and plan (resume, replay, workers):
    secrets the log masked in the inputs are read again from the inputs file."""
    plan = resupply_masked(plan, settings.inputs_file)
    target = load_experiment_target(settings)
    return PreparedExperiment(
        settings,
        plan,
        target,
        resolve_endpoint(settings.model, env, offline=offline),
        argument_secrets(settings, plan, env),
        supervisor_endpoint(settings, env, offline=offline, api_key=supervisor_api_key),
        argument_callables(settings, plan),
    )


def supervisor_endpoint(
    settings: ExperimentSettings,
    env: Mapping[str, str],
    *,
    offline: bool = False,
    api_key: str | None = None,
) -> Endpoint | None:
    """The endpoint of the LLM supervisor's model, if the experiment has one; a missing key
    is an error naming the supervisor's flag."""
    multi_turn = settings.multi_turn
    if multi_turn is None or multi_turn.supervisor.model is None:
        return None
    model = multi_turn.supervisor.model
    try:
        return resolve_endpoint(model, env, offline=offline, api_key=api_key)
    except ModelConfigError:
        raise ModelConfigError(
            f"the supervisor's model {model.label} needs an API key: pass "
            f"--supervisor-api-key, set {key_variable(model.provider)}, or use "
            "--supervisor-provider mock to run offline"
        ) from None


def slot_seed(seed: int, slot: int) -> int:
    """The seed of one slot, derived from the experiment seed (stable across runs)."""
    digest = hashlib.sha256(f"{seed}:{slot}".encode()).digest()
    return int.from_bytes(digest[:4], "big") >> 1
