"""Agent projects (``agentledger.yaml`` or AIGNE's ``aigne.yaml``) and their agents.

A project names its model (``model`` or ``chat_model``), its agents (YAML files, or inline
``{name, target: module:function}`` Python agents), project-wide ``skills`` and
``cli.chat``. A YAML AI agent has ``instructions`` (a string or a list, ``{{field}}``
templated from the input), ``input_key`` (the field holding the user's message),
``output_key`` (default ``message``), ``input_schema`` / ``output_schema`` (inline or a
file), an optional ``model`` and ``skills``/``tools`` (Python ``module:function``).
JavaScript skills and MCP servers are refused, naming the file.
"""

from __future__ import annotations

import difflib
import inspect
import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from agentledger.errors import ConfigError
from agentledger.experiments.config import load_yaml, validate_file
from agentledger.experiments.targets import Target, load_target
from agentledger.models.specs import ModelSpec, parse_model

PROJECT_FILES = ("agentledger.yaml", "aigne.yaml")
JsonDict = dict[str, Any]
_TEMPLATE = re.compile(r"\{\{\s*([A-Za-z_][\w.]*)\s*\}\}")
_REFUSED_SUFFIXES = (".js", ".mjs", ".cjs", ".ts")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CliConfig(_Strict):
    chat: str | None = None
    """The agent ``--chat`` talks to when none is named."""
    agents: list[str] = Field(default_factory=list)
    """The agents the command line offers (AIGNE's ``cli.agents``): the first is the
    default when ``chat`` names none."""


class ProjectFile(_Strict):
    name: str | None = None
    description: str | None = None
    model: str | dict[str, Any] | None = None
    chat_model: str | dict[str, Any] | None = None
    agents: list[str | dict[str, Any]] = Field(default_factory=list)
    skills: list[str] = Field(default_factory=list)
    cli: CliConfig = Field(default_factory=CliConfig)
    mcp_server: dict[str, Any] | None = None


class AgentFile(_Strict):
    name: str | None = None
    description: str | None = None
    type: str | None = None
    instructions: str | list[str] | None = None
    input_key: str | None = None
    output_key: str = "message"
    input_schema: dict[str, Any] | str | None = None
    output_schema: dict[str, Any] | str | None = None
    model: str | dict[str, Any] | None = None
    memory: bool | dict[str, Any] | None = None
    skills: list[str] = Field(default_factory=list)
    tools: list[str] = Field(default_factory=list)
    target: str | None = None
    max_iterations: int = Field(default=8, ge=1, le=100)
    """agentledger extension: model/tool round trips allowed per run."""


class Agent(BaseModel):
    """An agent as loaded: a YAML AI agent (instructions) or a Python agent (target)."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    name: str
    source: str
    """The file (or project entry) it came from, for messages."""
    description: str | None = None
    instructions: str = ""
    input_key: str | None = None
    output_key: str = "message"
    input_schema: JsonDict | None = None
    output_schema: JsonDict | None = None
    model: ModelSpec | None = None
    memory: bool = False
    skills: tuple[str, ...] = ()
    target: str | None = None
    max_iterations: int = 8


class AgentProject(BaseModel):
    """A loaded project: its directory, model and agents in file order."""

    model_config = ConfigDict(frozen=True)

    directory: str
    name: str
    model: ModelSpec | None = None
    agents: list[Agent]
    chat_agent: str | None = None

    def agent(self, name: str | None) -> Agent:
        """The agent called ``name`` (else ``cli.chat``'s, else the first); an unknown name
        lists the available ones."""
        if name is None:
            name = self.chat_agent
        if name is None:
            return self.agents[0]
        for agent in self.agents:
            if agent.name == name:
                return agent
        names = ", ".join(a.name for a in self.agents)
        near = difflib.get_close_matches(name, [a.name for a in self.agents], n=1)
        hint = f"did you mean '{near[0]}'? " if near else ""
        raise ConfigError(f"no agent named {name!r} in {self.directory}; {hint}agents: {names}")


def _refuse_foreign(entry: str, where: str) -> None:
    if entry.endswith(_REFUSED_SUFFIXES):
        raise ConfigError(
            f"{where}: {entry} is a JavaScript skill or agent, which agentledger cannot run; "
            "use a Python module:function"
        )


def _require_file(path: Path, what: str, where: str) -> None:
    """``path`` must be a file: a missing one or a directory is an error naming it."""
    if path.is_dir():
        raise ConfigError(f"{where}: {what} {path} is a directory; name a YAML or JSON file")
    if not path.is_file():
        raise ConfigError(f"{where}: {what} {path} not found")


def _schema(value: dict[str, Any] | str | None, base: Path, where: str) -> JsonDict | None:
    if value is None or isinstance(value, dict):
        return value
    path = base / value
    _require_file(path, "schema file", where)
    return load_yaml(path, "schema file")


def _model(value: str | dict[str, Any] | None, where: str) -> ModelSpec | None:
    return None if value is None else parse_model(value, f"{where}: 'model'")


def _load_agent(entry: str | dict[str, Any], project_dir: Path, where: str) -> Agent:
    if isinstance(entry, dict):
        data, source, base = entry, where, project_dir
    else:
        _refuse_foreign(entry, where)
        path = project_dir / entry
        _require_file(path, "agent file", where)
        data, source, base = load_yaml(path, "agent file"), str(path), path.parent
    spec = validate_file(AgentFile, dict(data), Path(source))
    if spec.type in ("mcp", "mcp-server") or "mcp" in (spec.type or ""):
        raise ConfigError(f"{source}: MCP server agents are not supported by agentledger")
    skills = (*spec.skills, *spec.tools)
    for skill in skills:
        _refuse_foreign(skill, source)
        if ":" not in skill:
            raise ConfigError(f"{source}: skill {skill!r} must be a Python module:function")
    if spec.target is None and spec.instructions is None:
        raise ConfigError(f"{source}: an agent needs 'instructions' (an AI agent) or 'target'")
    instructions = spec.instructions or ""
    if isinstance(instructions, list):
        instructions = "\n".join(instructions)
    name = spec.name or (Path(entry).stem if isinstance(entry, str) else "agent")
    return Agent(
        name=name,
        source=source,
        description=spec.description,
        instructions=instructions,
        input_key=spec.input_key,
        output_key=spec.output_key,
        input_schema=_schema(spec.input_schema, base, source),
        output_schema=_schema(spec.output_schema, base, source),
        model=_model(spec.model, source),
        memory=bool(spec.memory),
        skills=skills,
        target=spec.target,
        max_iterations=spec.max_iterations,
    )


def load_project(directory: Path) -> AgentProject:
    """Read ``agentledger.yaml`` (or ``aigne.yaml``) in ``directory`` and its agents."""
    for name in PROJECT_FILES:
        if (directory / name).is_dir():
            raise ConfigError(
                f"{directory / name} is a directory; the project file must be a YAML file"
            )
    path = next((directory / f for f in PROJECT_FILES if (directory / f).is_file()), None)
    if path is None:
        raise ConfigError(
            f"{directory} has no agentledger.yaml or aigne.yaml; pass the project directory "
            "(agentledger init DIR --template agent makes one)"
        )
    project = validate_file(ProjectFile, load_yaml(path, "project file"), path)
    if project.mcp_server:
        raise ConfigError(f"{path}: MCP servers are not supported by agentledger")
    for skill in project.skills:
        _refuse_foreign(skill, str(path))
    agents = [_load_agent(entry, directory, str(path)) for entry in project.agents]
    # AIGNE's cli.agents: the agents the command line offers, the first its default; an
    # entry not among ``agents`` is loaded too.
    listed = {a.source for a in agents}
    for entry in project.cli.agents:
        if isinstance(entry, str) and not any(source.endswith(entry) for source in listed):
            agents.append(_load_agent(entry, directory, f"{path} (cli.agents)"))
            listed.add(agents[-1].source)
    if project.skills:
        agents = [a.model_copy(update={"skills": (*project.skills, *a.skills)}) for a in agents]
    if not agents:
        raise ConfigError(f"{path}: 'agents' is empty; list at least one agent file")
    chat = project.cli.chat or (project.cli.agents[0] if project.cli.agents else None)
    if chat is not None and chat.endswith((".yaml", ".yml")):
        chat = next((a.name for a in agents if a.source.endswith(chat)), chat)
    return AgentProject(
        directory=str(directory),
        name=project.name or directory.name,
        model=_model(project.model or project.chat_model, str(path)),
        agents=agents,
        chat_agent=chat,
    )


def render(template: str, values: JsonDict) -> str:
    """``{{field}}`` placeholders filled from ``values`` (dotted paths allowed; a missing
    field renders empty), each value written as AIGNE's JavaScript renders it (see
    ``agentledger.agents.rendering``)."""
    from agentledger.agents.rendering import js_text

    def value(match: re.Match[str]) -> str:
        current: Any = values
        for part in match.group(1).split("."):
            current = current.get(part) if isinstance(current, dict) else None
        return js_text(current)

    return _TEMPLATE.sub(value, template)


_JSON_TYPES = {"str": "string", "int": "integer", "float": "number", "bool": "boolean"}


def _json_type(annotation: Any) -> str:
    name = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", "")
    return _JSON_TYPES.get(name, "string")


def tool_schema(target: Target) -> JsonDict:
    """An OpenAI tool definition for a Python skill, its JSON schema from the signature."""
    properties: JsonDict = {}
    required = []
    for param in inspect.signature(target.fn).parameters.values():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD) or param.name == "ctx":
            continue
        properties[param.name] = {"type": _json_type(param.annotation)}
        if param.default is param.empty:
            required.append(param.name)
    name = target.spec.rsplit(":", 1)[1]
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": (inspect.getdoc(target.fn) or name).splitlines()[0],
            "parameters": {"type": "object", "properties": properties, "required": required},
        },
    }


def load_skill(spec: str, project_dir: Path) -> Target:
    """Import a skill (``module:function``) from the project directory."""
    return load_target(spec, [str(project_dir)], from_args=True)
