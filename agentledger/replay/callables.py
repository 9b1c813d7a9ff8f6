"""Callables in recorded arguments: callbacks put back when recorded calls are replayed.

FluxLoop's SDK records a callable argument as a placeholder string: ``<builtin:collector.
send>`` for a send-message collector, ``<builtin:collector.error>`` for an error
collector, ``<callable:NAME>`` for any other function. Replayed as it is, the agent would
call a string. Each placeholder is given a callable instead:

- ``collector.send`` / ``collector.error`` (the placeholder itself, or a
  ``replay_args.callable_providers`` entry ``builtin:collector.send``/``...error``): a
  collector that records each call as an observation of the run (``collector.send`` /
  ``collector.error`` with its arguments) and keeps what it was given (``.messages`` /
  ``.errors``, as FluxLoop's collectors do). A target that returns nothing answers with
  what it sent: the one message, or the list of them.
- ``module:function`` (a ``callable_providers`` entry): that function, imported with the
  project's search paths.

``callable_providers`` maps an argument's path (``send_callback``, ``handlers.on_error``)
to its provider. A ``<callable:NAME>`` placeholder without a provider, a provider for an
argument that is not a placeholder, or one that cannot be imported is an error before
any run.
"""

from __future__ import annotations

import copy
import importlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from agentledger.errors import ConfigError
from agentledger.events.payloads import ExperimentPlan
from agentledger.experiments.config import ExperimentSettings
from agentledger.experiments.context import current_context, jsonable
from agentledger.replay.args import _tokens

JsonDict = dict[str, Any]
PLACEHOLDER = re.compile(r"^<(builtin|callable):([^<>]+)>$")
BUILTINS = ("collector.send", "collector.error")


Location = tuple[str | int, ...]


def placeholders(value: Any, at: Location = ()) -> list[tuple[str, Location, str]]:
    """``(dotted path, keys and indices, placeholder)`` of every callable recorded as a
    placeholder string."""
    if isinstance(value, dict):
        found: list[tuple[str, Location, str]] = []
        for key, item in value.items():
            found += placeholders(item, (*at, key))
        return found
    if isinstance(value, list):
        return [p for i, item in enumerate(value) for p in placeholders(item, (*at, i))]
    if isinstance(value, str) and PLACEHOLDER.match(value):
        return [(_dotted(at), at, value)]
    return []


def _dotted(at: Location) -> str:
    text = ""
    for part in at:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


@dataclass
class Collector:
    """A recorded callback: each call becomes an observation of the current run."""

    kind: str
    """``collector.send`` or ``collector.error``."""
    path: str
    calls: list[Any] = field(default_factory=list)

    @property
    def __fluxloop_builtin__(self) -> str:  # FluxLoop's marker of its own collectors
        return self.kind

    @property
    def messages(self) -> list[Any]:
        return self.calls if self.kind == "collector.send" else []

    @property
    def errors(self) -> list[Any]:
        return self.calls if self.kind == "collector.error" else []

    def __call__(self, *args: Any, **kwargs: Any) -> None:
        value = args[0] if len(args) == 1 and not kwargs else {"args": args, "kwargs": kwargs}
        self.calls.append(value)
        ctx = current_context()
        if ctx is not None:
            level = "error" if self.kind == "collector.error" else "info"
            ctx.log(self.kind, level=level, argument=self.path, value=jsonable(value))


Provider = str | Callable[..., Any]
"""A builtin collector's name, or an imported function."""


def _provider(path: str, spec: str) -> Provider:
    name = spec.removeprefix("builtin:")
    if spec.startswith("builtin:"):
        if name not in BUILTINS:
            raise ConfigError(
                f"replay_args.callable_providers.{path}: unknown builtin '{spec}'; use "
                "builtin:collector.send, builtin:collector.error or module:function"
            )
        return name
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise ConfigError(
            f"replay_args.callable_providers.{path}: '{spec}' is neither builtin:collector."
            "send, builtin:collector.error nor module:function"
        )
    try:
        found: Any = importlib.import_module(module_name)
        for part in attribute.split("."):
            found = getattr(found, part)
    except (Exception, SystemExit) as exc:
        raise ConfigError(
            f"replay_args.callable_providers.{path}: cannot import {spec} "
            f"({type(exc).__name__}: {exc}); check the module path"
        ) from None
    if not callable(found):
        raise ConfigError(f"replay_args.callable_providers.{path}: {spec} is not callable")
    return found


def argument_callables(settings: ExperimentSettings, plan: ExperimentPlan) -> dict[str, Provider]:
    """Path -> provider for every callable placeholder in the plan's recorded arguments
    (import the target first: providers are imported with its search paths)."""
    if settings.replay_args is None:
        return {}
    configured = settings.replay_args.callable_providers
    # The input is written at override_param_path: text there is the user's, never a
    # placeholder, whatever it says.
    written = tuple(_tokens(settings.replay_args.override_param_path))
    found: dict[str, str] = {}
    where: dict[str, Location] = {}
    for item in plan.inputs:
        for path, at, placeholder in placeholders(item.call_args or {}):
            if at == written:
                continue
            if where.setdefault(path, at) != at:
                raise ConfigError(
                    f"recorded arguments hold two callables both named by the path '{path}' "
                    "(a key with a dot in it); replay_args.callable_providers cannot tell "
                    "them apart: rename the key in the recording"
                )
            found.setdefault(path, placeholder)
    for path in configured:
        if path not in found:
            listing = ", ".join(sorted(found)) or "none"
            raise ConfigError(
                f"replay_args.callable_providers.{path}: no recorded argument '{path}' holds "
                f"a callable; arguments recorded as callables: {listing}"
            )
    providers: dict[str, Provider] = {}
    for path, placeholder in sorted(found.items()):
        if path in configured:
            providers[path] = _provider(path, configured[path])
            continue
        kind, name = PLACEHOLDER.match(placeholder).groups()  # type: ignore[union-attr]
        if kind == "builtin" and name in BUILTINS:
            providers[path] = name
            continue
        raise ConfigError(
            f"recorded argument '{path}' is a callable ({placeholder}); name what to call "
            f"instead in replay_args.callable_providers, e.g. {path}: builtin:collector.send"
        )
    return providers


def restore_callables(
    kwargs: JsonDict, providers: Mapping[str, Provider]
) -> tuple[JsonDict, list[Collector]]:
    """``kwargs`` with each placeholder replaced by its callable (fresh collectors per
    call), and the collectors made."""
    collectors: list[Collector] = []
    found = placeholders(kwargs)
    if not found:
        return kwargs, collectors
    restored = copy.deepcopy(kwargs)
    for path, at, _ in found:
        provider = providers.get(path)
        if provider is None:
            continue  # the input's own text (written at override_param_path)
        value: Any = provider
        if isinstance(provider, str):
            value = Collector(provider, path)
            collectors.append(value)
        container: Any = restored
        for part in at[:-1]:
            container = container[part]
        container[at[-1]] = value
    return restored, collectors


def collected_output(output: Any, collectors: list[Collector]) -> Any:
    """A target that returned nothing answers with what it sent: the one message or the list."""
    if output is not None:
        return output
    sent = [message for c in collectors for message in c.messages]
    if not sent:
        return None
    return sent[0] if len(sent) == 1 else sent
