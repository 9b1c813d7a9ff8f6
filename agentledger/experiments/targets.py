"""Loading the agent target (``module:function``) and binding its arguments by name.

The module is imported with the project directory, the working directory and the
configured ``python_path`` entries at the front of ``sys.path``. Parameters are bound by
name: ``input_text``/``input``/``text`` get the input (in a conversation, the current
user message), ``persona``, ``iteration``, ``metadata`` and ``ctx`` (or ``context``) what
they say, and ``messages``/``history``/``conversation_state`` the conversation so far.
A lone parameter with another name gets the input. Anything else must have a default, or
loading fails before any run.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import inspect
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from agentledger.errors import TargetError

INPUT_NAMES = ("input_text", "input", "text")
CONVERSATION_NAMES = ("messages", "history", "conversation_state")
BINDABLE = (
    *INPUT_NAMES,
    "persona",
    "iteration",
    "metadata",
    "ctx",
    "context",
    *CONVERSATION_NAMES,
)

Kind = Literal["sync", "async", "generator", "async_generator"]


@dataclass(frozen=True)
class Target:
    """A loaded target: the callable, how to call it, and which values its parameters take."""

    spec: str
    fn: Callable[..., Any]
    kind: Kind
    bindings: tuple[tuple[str, str, bool], ...]
    """(parameter name, value name, keyword-only?) in signature order."""

    binds_conversation: bool = field(init=False)
    """Whether a parameter takes ``messages``, ``history`` or ``conversation_state``."""
    is_async: bool = field(init=False)

    def __post_init__(self) -> None:
        # Asked on every run: worked out once.
        binds = any(source in CONVERSATION_NAMES for _, source, _ in self.bindings)
        object.__setattr__(self, "binds_conversation", binds)
        object.__setattr__(self, "is_async", self.kind in ("async", "async_generator"))

    def replay_arguments(
        self, recorded: Mapping[str, Any], values: Mapping[str, Any]
    ) -> dict[str, Any]:
        """Keyword arguments for a call with replayed ``recorded`` arguments; the run's own
        values (``ctx``, ``persona``, ...) fill the parameters the recording does not."""
        kwargs = dict(recorded)
        for name, source, _ in self.bindings:
            kwargs.setdefault(name, values[source])
        return kwargs

    def arguments(self, values: Mapping[str, Any]) -> tuple[list[Any], dict[str, Any]]:
        """Positional and keyword arguments for one call, from the slot's ``values``."""
        args: list[Any] = []
        kwargs: dict[str, Any] = {}
        for name, source, keyword in self.bindings:
            if keyword:
                kwargs[name] = values[source]
            else:
                args.append(values[source])
        return args, kwargs


def _kind(fn: Callable[..., Any]) -> Kind:
    if inspect.isasyncgenfunction(fn):
        return "async_generator"
    if inspect.iscoroutinefunction(fn):
        return "async"
    if inspect.isgeneratorfunction(fn):
        return "generator"
    return "sync"


def _bindings(
    spec: str, fn: Callable[..., Any], from_args: bool
) -> tuple[tuple[str, str, bool], ...]:
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        return () if from_args else (("input", "input", False),)
    if from_args:
        # Replayed arguments fill the parameters; only the run's own values are bound.
        return tuple(
            (p.name, "ctx" if p.name == "context" else p.name, True)
            for p in signature.parameters.values()
            if p.name in ("persona", "iteration", "metadata", "ctx", "context", *CONVERSATION_NAMES)
        )
    params = [
        p for p in signature.parameters.values() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]
    takes_input = any(p.name in INPUT_NAMES for p in params)
    bindings = []
    for position, param in enumerate(params):
        keyword = param.kind == param.KEYWORD_ONLY
        if param.name in BINDABLE:
            source = "input" if param.name in INPUT_NAMES else param.name
            source = "ctx" if source == "context" else source
            bindings.append((param.name, source, keyword))
        elif not takes_input and position == 0 and param.kind != param.KEYWORD_ONLY:
            bindings.append((param.name, "input", False))
            takes_input = True
        elif param.default is param.empty:
            raise TargetError(
                f"target {spec}: parameter '{param.name}' cannot be bound; name it one of "
                f"{', '.join(BINDABLE)} or give it a default"
            )
        else:
            break  # later positional parameters keep their defaults
    return tuple(bindings)


def add_import_paths(paths: list[str]) -> None:
    """Put ``paths`` at the front of ``sys.path`` (once each, first path first)."""
    for path in reversed(paths):
        if path in sys.path:
            sys.path.remove(path)
        sys.path.insert(0, path)


def _forget_other_projects_module(module_name: str, search_paths: list[str]) -> None:
    """A module of that name imported earlier in this process from another place (another
    project's ``agent``, in a test session or a program that runs several experiments)
    is dropped, with its submodules, so that this project's own is imported."""
    top = module_name.split(".")[0]
    loaded = sys.modules.get(top)
    loaded_from = getattr(loaded, "__file__", None) if loaded is not None else None
    if loaded_from is None:
        return
    try:
        spec = importlib.machinery.PathFinder.find_spec(top, search_paths)
    except (ImportError, ValueError):
        return
    here = spec.origin if spec is not None else None
    if here is None or Path(here).resolve() == Path(loaded_from).resolve():
        return
    for name in [n for n in sys.modules if n == top or n.startswith(top + ".")]:
        del sys.modules[name]


def load_target(spec: str, search_paths: list[str], *, from_args: bool = False) -> Target:
    """Import ``module:function`` with ``search_paths`` first on ``sys.path``. With
    ``from_args`` (argument replay) its parameters come from recorded arguments."""
    module_name, _, function_name = spec.partition(":")
    if not module_name or not function_name:
        raise TargetError(f"target {spec!r} must be module:function, e.g. agent:run")
    add_import_paths(search_paths)
    importlib.invalidate_caches()
    _forget_other_projects_module(module_name, search_paths)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == "fluxloop":
            from agentledger.experiments.fluxloop_sdk import missing_sdk

            raise missing_sdk(spec) from None
        if exc.name and module_name.startswith(exc.name):
            tried = ", ".join(search_paths)
            raise TargetError(
                f"cannot import module '{module_name}' of target {spec}: no module named "
                f"'{exc.name}' (searched {tried}); check runner.target and runner.python_path"
            ) from None
        raise TargetError(f"importing {module_name} for target {spec} failed: {exc}") from None
    except (Exception, SystemExit) as exc:
        raise TargetError(
            f"importing {module_name} for target {spec} raised {type(exc).__name__}: {exc}"
        ) from None
    if "fluxloop" in sys.modules:
        from agentledger.experiments import fluxloop_sdk

        fluxloop_sdk.install()  # an SDK this cannot work with is refused before any run
    fn = getattr(module, function_name, None)
    where = getattr(module, "__file__", None) or module_name
    if fn is None:
        functions = sorted(
            name
            for name, value in vars(module).items()
            if inspect.isfunction(value) and not name.startswith("_")
        )
        listing = ", ".join(functions) if functions else "none"
        raise TargetError(
            f"module '{module_name}' ({Path(where)}) has no function '{function_name}'; "
            f"functions there: {listing}"
        )
    if not callable(fn):
        raise TargetError(f"{spec} ({Path(where)}) is not callable")
    return Target(spec, fn, _kind(fn), _bindings(spec, fn, from_args))
