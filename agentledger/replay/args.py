"""Argument replay: production call arguments, recorded, fed back with the input swapped in.

Recordings come from FluxLoop's JSON-lines file (``{"_version": "1", "iteration": N,
"target": "mod:fn", "kwargs": {...}, "timestamp": "..."}``, the ``replay_args.
recording_file``) or from ``ArgsRecorded`` events that ``record_args`` (or the
``recorded_args`` decorator) appends to the store from production code. Every recording of
the experiment's target is used: the plan runs each input with each recording, in input
order then recording order, the input written at ``override_param_path`` (``data.
content``, ``messages[0].content``). Values recorded masked (``***``) are never passed on:
each must be supplied through an environment variable, ``AGENTLEDGER_ARG_<PATH>`` or the
one ``replay_args.secrets_from_env`` names for its path, or the experiment does not start.
"""

from __future__ import annotations

import copy
import functools
import inspect
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import orjson

from agentledger.errors import ConfigError, InputsError
from agentledger.events.payloads import ArgsRecorded, ExperimentPlan
from agentledger.eventstore.redaction import MASK
from agentledger.eventstore.store import ANY_VERSION, EventStore
from agentledger.experiments.config import ExperimentSettings

JsonDict = dict[str, Any]
RECORDING_PREFIX = "recording-"
FILE_VERSION = "1"
_TOKEN = re.compile(r"[^.\[\]]+|\[\d+\]")


@dataclass(frozen=True)
class ArgsRecording:
    """One recorded call of a target: its keyword arguments."""

    target: str
    kwargs: JsonDict
    iteration: int
    origin: str
    """Where it came from (``file:line`` or ``store position``), for error messages."""


def recording_stream(target: str) -> str:
    return f"{RECORDING_PREFIX}{target}"


def read_recording_file(path: Path) -> list[ArgsRecording]:
    """Every recording in a FluxLoop arguments file; a bad line is an error naming it."""
    try:
        lines = path.read_bytes().splitlines()
    except FileNotFoundError:
        raise InputsError(
            f"replay_args.recording_file {path} not found; record arguments first or fix the path"
        ) from None
    recordings = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            item = orjson.loads(line)
        except orjson.JSONDecodeError:
            raise InputsError(f"{where}: not a JSON object; each line is one recording") from None
        if not isinstance(item, dict) or not isinstance(item.get("kwargs"), dict):
            raise InputsError(f"{where}: a recording needs 'target' and a 'kwargs' object")
        version = str(item.get("_version", FILE_VERSION))
        if version != FILE_VERSION:
            raise InputsError(f"{where}: recording format version {version!r} is not supported")
        recordings.append(
            ArgsRecording(
                str(item.get("target", "")), item["kwargs"], int(item.get("iteration", 0)), where
            )
        )
    return recordings


def read_recorded_events(store: EventStore, target: str) -> list[ArgsRecording]:
    """The ``ArgsRecorded`` events of ``target`` in the store, oldest first."""
    return [
        ArgsRecording(
            ev.data["target"],
            ev.data["kwargs"],
            ev.data.get("iteration", 0),
            f"event {ev.position}",
        )
        for ev in store.read_stream(recording_stream(target))
        if ev.type == "ArgsRecorded"
    ]


def for_target(recordings: list[ArgsRecording], target: str, source: str) -> list[ArgsRecording]:
    """The recordings of ``target``; none is an error listing the targets that were recorded."""
    mine = [r for r in recordings if r.target == target]
    if not mine:
        seen = sorted({r.target for r in recordings})
        listing = ", ".join(seen) if seen else "none"
        raise InputsError(f"{source} has no recorded call of {target}; recorded targets: {listing}")
    return mine


_PATH = re.compile(r"[^.\[\]]+(\.[^.\[\]]+|\[\d+\])*")


def _tokens(path: str) -> list[str | int]:
    """``data.items[0].content`` (or ``data.items.0.content``) as keys and indices."""
    if not _PATH.fullmatch(path or ""):
        raise ConfigError(
            f"override_param_path {path!r} is not a dotted path like data.content or "
            "messages[0].content"
        )
    tokens: list[str | int] = []
    for token in _TOKEN.findall(path):
        if token.startswith("["):
            tokens.append(int(token[1:-1]))
        elif token.isdigit():
            tokens.append(int(token))
        else:
            tokens.append(token)
    return tokens


def set_path(kwargs: JsonDict, path: str, value: Any, origin: str = "") -> JsonDict:
    """A copy of ``kwargs`` with ``value`` at ``path``; a path that does not exist in the
    recording is an error naming it and the keys that do exist there."""
    result = copy.deepcopy(kwargs)
    tokens = _tokens(path)
    current: Any = result
    walked = ""
    for position, token in enumerate(tokens):
        last = position == len(tokens) - 1
        if isinstance(token, int):
            if not isinstance(current, list) or token >= len(current):
                size = len(current) if isinstance(current, list) else "not a list"
                raise ConfigError(
                    f"override_param_path {path!r}: {walked or 'kwargs'}[{token}] does not exist "
                    f"in the recorded arguments{' (' + origin + ')' if origin else ''} "
                    f"(length {size})"
                )
            walked += f"[{token}]"
        else:
            if not isinstance(current, dict) or token not in current:
                keys = ", ".join(sorted(current)) if isinstance(current, dict) else "none"
                where = walked or "the recorded kwargs"
                raise ConfigError(
                    f"override_param_path {path!r}: '{token}' does not exist in {where}"
                    f"{' (' + origin + ')' if origin else ''}; keys there: {keys}"
                )
            walked = f"{walked}.{token}" if walked else token
        if last:
            current[token] = value
        else:
            current = current[token]
    return result


def masked_paths(value: Any, path: str = "") -> list[str]:
    """Dotted paths of every value recorded masked (``***``)."""
    if isinstance(value, dict):
        found = []
        for key, item in value.items():
            found += masked_paths(item, f"{path}.{key}" if path else str(key))
        return found
    if isinstance(value, list):
        return [p for i, item in enumerate(value) for p in masked_paths(item, f"{path}[{i}]")]
    return [path] if value == MASK else []


def env_name(path: str) -> str:
    """``AGENTLEDGER_ARG_<PATH>``: ``headers.api_key`` -> ``AGENTLEDGER_ARG_HEADERS_API_KEY``."""
    return "AGENTLEDGER_ARG_" + re.sub(r"[^A-Za-z0-9]+", "_", path).strip("_").upper()


def masked_values(
    recordings: list[ArgsRecording], env: Mapping[str, str], names: Mapping[str, str]
) -> dict[str, str]:
    """Path -> the value to use for every masked argument; one missing is an error."""
    values = {}
    for recording in recordings:
        for path in masked_paths(recording.kwargs):
            if path in values:
                continue
            variable = names.get(path) or env_name(path)
            value = env.get(variable)
            if not value:
                raise ConfigError(
                    f"recorded argument '{path}' is masked (***) in {recording.origin}; set "
                    f"{variable} to the value to replay (or name another variable in "
                    f"replay_args.secrets_from_env)"
                )
            values[path] = value
    return values


def fill_masked(kwargs: JsonDict, values: Mapping[str, str]) -> JsonDict:
    """``kwargs`` with every masked value replaced by the one supplied for its path."""
    filled = kwargs
    for path in masked_paths(kwargs):
        filled = set_path(filled, path, values[path])
    return filled


def check_parameters(fn: Callable[..., Any], recordings: list[ArgsRecording], target: str) -> None:
    """Every recorded argument must be a parameter of the target (unless it takes ``**``)."""
    try:
        parameters = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return
    if any(p.kind is p.VAR_KEYWORD for p in parameters.values()):
        return
    for recording in recordings:
        for name in recording.kwargs:
            if name not in parameters:
                raise ConfigError(
                    f"recorded argument '{name}' ({recording.origin}) is not a parameter of "
                    f"{target}; its parameters: {', '.join(parameters)}"
                )


def argument_recordings(
    settings: ExperimentSettings, store: EventStore | None
) -> list[ArgsRecording] | None:
    """The recorded calls of the target for argument replay (None without it)."""
    if settings.replay_args is None:
        return None
    if settings.replay_args.recording_file:
        source = settings.replay_args.recording_file
        recordings = read_recording_file(Path(source))
    else:
        if store is None:
            raise ConfigError("argument replay from the store needs a store")
        source = f"the store (ArgsRecorded events of {settings.target})"
        recordings = read_recorded_events(store, settings.target)
    return for_target(recordings, settings.target, source)


def argument_secrets(
    settings: ExperimentSettings, plan: ExperimentPlan, env: Mapping[str, str]
) -> dict[str, str]:
    """Values for the arguments the plan's recordings hold masked, from the environment."""
    if settings.replay_args is None:
        return {}
    recordings = [
        ArgsRecording(settings.target, item.call_args, 0, f"planned input #{item.index}")
        for item in plan.inputs
        if item.call_args is not None
    ]
    return masked_values(recordings, env, settings.replay_args.secrets_from_env)


# --- capture in production ---------------------------------------------------------------


def _open_store(store: EventStore | str | None) -> tuple[EventStore, bool]:
    if isinstance(store, EventStore):
        return store, False
    location = store or os.environ.get("AGENTLEDGER_STORE") or ".agentledger/ledger.db"
    if "://" not in location:
        Path(location).parent.mkdir(parents=True, exist_ok=True)
    return EventStore.open(location), True


def record_args(target: str, *, store: EventStore | str | None = None, **kwargs: Any) -> None:
    """Record one call of ``target`` (``module:function``) with ``kwargs`` as an
    ``ArgsRecorded`` event, for argument replay. ``store`` is a store, a URL or a path
    (default ``$AGENTLEDGER_STORE``, else ``.agentledger/ledger.db``). Secret-looking
    values are masked by the store's redaction like everything else."""
    from agentledger.experiments.context import jsonable

    opened, close = _open_store(store)
    try:
        count = len(opened.read_stream(recording_stream(target)))
        opened.append(
            recording_stream(target),
            [ArgsRecorded(target=target, kwargs=jsonable(kwargs), iteration=count)],
            expected_version=ANY_VERSION,
        )
    finally:
        if close:
            opened.close()


F = TypeVar("F", bound=Callable[..., Any])


def recorded_args(
    target: str | None = None, *, store: EventStore | str | None = None
) -> Callable[[F], F]:
    """Decorator: record the keyword arguments of every call (positional ones are bound to
    their names) with ``record_args``, then call the function."""

    def decorate(fn: F) -> F:
        name = target or f"{fn.__module__}:{fn.__qualname__}"
        signature = inspect.signature(fn)

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            bound = signature.bind_partial(*args, **kwargs)
            record_args(name, store=store, **bound.arguments)
            return fn(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate
