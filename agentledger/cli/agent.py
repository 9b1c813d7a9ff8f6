"""``agentledger run agent``: one agent of an AIGNE-style project, once or as a chat."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from agentledger.cli.errors import EXIT_FAILED_BAR, EXIT_INTERRUPTED, UserError
from agentledger.cli.options import LOG_LEVELS, AppState, configure_logging, pass_state
from agentledger.cli.output import escaped
from agentledger.errors import AgentLedgerError
from agentledger.eventstore.redaction import scrub_known

if TYPE_CHECKING:
    from agentledger.agents.project import Agent, AgentProject
    from agentledger.models.specs import ModelSpec


@click.command("agent", context_settings={"ignore_unknown_options": True})
@click.argument(
    "arguments", nargs=-1, type=click.UNPROCESSED, metavar="[PATH|URL] [AGENT] [--FIELD VALUE]..."
)
@click.option(
    "--entry-agent", metavar="NAME", help="The agent to run [default: cli.chat, else the first]."
)
@click.option(
    "--model", "model_flag", metavar="PROVIDER:MODEL", help="Override the project's model."
)
@click.option("--base-url", metavar="URL", help="An OpenAI-compatible endpoint for the model.")
@click.option("--temperature", type=float, help="Sampling temperature (0-2).")
@click.option("--top-p", type=float, help="Nucleus sampling (0-1).")
@click.option("--presence-penalty", type=float, help="Presence penalty (-2..2).")
@click.option("--frequency-penalty", type=float, help="Frequency penalty (-2..2).")
@click.option(
    "-i",
    "--input",
    "inputs",
    multiple=True,
    metavar="TEXT|@FILE|JSON",
    help="Input (repeatable): text, @file, or a JSON object merged into the input.",
)
@click.option(
    "--format",
    "input_format",
    type=click.Choice(["text", "json", "yaml"]),
    help="How to read @file and stdin [default: by extension; stdin text].",
)
@click.option("-o", "--output", "output_file", metavar="FILE", help="Write the result here.")
@click.option(
    "--output-key",
    metavar="KEY",
    help="The field of the result to output; a key the result lacks is an error "
    "[default: the agent's output_key, else the whole result].",
)
@click.option("--force", is_flag=True, help="Overwrite --output, creating its folders.")
@click.option(
    "--cache-dir",
    metavar="DIR",
    help="Where projects from URLs are kept [default: ~/.agentledger/cache].",
)
@click.option("--refresh", is_flag=True, help="Download a URL project again.")
@click.option(
    "--chat",
    "--interactive",
    "chat",
    is_flag=True,
    help="Talk to the agent: one message per line (/help for commands) [default when "
    "cli.chat names the agent and none is given]. --interactive is AIGNE's name for it.",
)
@click.option(
    "--log-level",
    type=click.Choice(list(LOG_LEVELS), case_sensitive=False),
    help="How much the library logs to stderr [default: the global --log-level].",
)
@click.option(
    "--aigne-hub-url",
    metavar="URL",
    hidden=True,
    help="AIGNE Hub: refused (agentledger calls providers directly).",
)
@pass_state
@click.pass_context
def agent(
    ctx: click.Context,
    state: AppState,
    arguments: tuple[str, ...],
    entry_agent: str | None,
    model_flag: str | None,
    base_url: str | None,
    temperature: float | None,
    top_p: float | None,
    presence_penalty: float | None,
    frequency_penalty: float | None,
    inputs: tuple[str, ...],
    input_format: str | None,
    output_file: str | None,
    output_key: str | None,
    force: bool,
    cache_dir: str | None,
    refresh: bool,
    chat: bool,
    log_level: str | None,
    aigne_hub_url: str | None,
) -> None:
    """Run one agent of an agentledger.yaml / aigne.yaml project once, recorded as a
    session. AGENT (or --entry-agent) picks the agent; input fields of its input_schema
    are flags too (--<field> VALUE).

    The result goes to stdout (text for a string, JSON otherwise) or to -o FILE.
    """
    from agentledger.agents.inputs import gather_input, schema_flags, split_arguments
    from agentledger.agents.project import load_project
    from agentledger.agents.remote import DEFAULT_CACHE, fetch_project, is_url
    from agentledger.agents.session import AgentRunError, run_agent, select_output
    from agentledger.api import load_env
    from agentledger.models.specs import provider_keys

    if aigne_hub_url is not None:
        raise UserError(
            "--aigne-hub-url: agentledger does not use AIGNE Hub; name the model with "
            "--model provider:model (and --base-url for an OpenAI-compatible endpoint)"
        )
    if log_level is not None:
        configure_logging(log_level.lower())
        state.log_level = log_level.lower()
    path, agent_name, extra = split_arguments(list(arguments))
    if agent_name and entry_agent and agent_name != entry_agent:
        raise UserError(
            f"AGENT {agent_name!r} and --entry-agent {entry_agent!r} disagree; give one"
        )
    store_dir = None
    if is_url(path):
        cache = Path(cache_dir).expanduser() if cache_dir else DEFAULT_CACHE
        directory = fetch_project(path, cache, refresh=refresh)
        store_dir = Path.cwd()  # sessions of a cached project are kept where you run it
    else:
        if refresh:
            raise UserError("--refresh re-downloads a project from a URL; PATH is a directory")
        directory = Path(path).resolve()
        if not directory.is_dir():
            raise UserError(f"{path}: not a directory; pass an agent project directory")
    target = _output_target(output_file, force)
    env = load_env(directory)
    project = load_project(directory)
    chosen = project.agent(agent_name or entry_agent)
    chat = chat or (agent_name is None and entry_agent is None and project.chat_agent is not None)
    if chat and output_file:
        raise UserError("--output writes one result; it does not go with --chat")
    model = _agent_model(
        chosen,
        project,
        env,
        model_flag,
        base_url,
        temperature,
        top_p,
        presence_penalty,
        frequency_penalty,
    )
    # In a chat every line is a message: stdin is not input, required fields are checked
    # per turn.
    stdin_text = None if chat or sys.stdin.isatty() else _read_stdin()
    values = gather_input(
        chosen,
        list(inputs),
        input_format,
        stdin_text,
        schema_flags(chosen, extra, _option_names(ctx)),
        Path.cwd(),
        check_required=not chat,
    )
    if chat:
        _chat(state, store_dir or directory, project, chosen, model, env, values, output_key)
        return
    store = state.open_store(store_dir or directory)
    try:
        for key in provider_keys(env):
            store.redactor.add_secret(key)
        outcome = run_agent(store, project, chosen, values, model, env)
    except AgentRunError as exc:
        # The run happened and failed (the session records it): like a failed run, exit 1.
        click.echo(f"Error: {scrub_known(str(exc))}", err=True)
        ctx.exit(EXIT_FAILED_BAR)
    finally:
        store.close()
    try:
        result = select_output(chosen, outcome.result, output_key)
    except AgentLedgerError as exc:
        raise UserError(f"{escaped(str(exc))} (recorded as session {outcome.session_id})") from None
    text = result if isinstance(result, str) else _json_text(result)
    if target is not None:
        _write_output(target, text)
        click.echo(f"Wrote {target}", err=True)
    else:
        click.echo(text)
    # stdout carries the result alone; where it is recorded goes to stderr.
    click.echo(f"Session: {outcome.session_id}", err=True)


def _option_names(ctx: click.Context) -> list[str]:
    """The command's own long option names, for suggestions."""
    return [
        name
        for param in ctx.command.params
        if isinstance(param, click.Option) and not param.hidden
        for name in param.opts
        if name.startswith("--")
    ]


def _agent_model(
    chosen: Agent,
    project: AgentProject,
    env: Mapping[str, str],
    model_flag: str | None,
    base_url: str | None,
    temperature: float | None,
    top_p: float | None,
    presence_penalty: float | None,
    frequency_penalty: float | None,
) -> ModelSpec:
    """The agent's model, else the project's, else the default; flags override it."""
    from agentledger.models.specs import DEFAULT_OPENAI_MODEL, default_model, parse_model

    # AIGNE's --model takes a provider alone, meaning its default model (anthropic has
    # none: it is refused asking for provider:model).
    defaults = {"openai": DEFAULT_OPENAI_MODEL, "mock": "echo"}
    if model_flag and model_flag.strip() in defaults:
        model_flag = f"{model_flag.strip()}:{defaults[model_flag.strip()]}"
    model = (
        parse_model(model_flag)
        if model_flag
        else chosen.model or project.model or default_model(env)
    )
    return model.with_overrides(
        base_url=base_url,
        temperature=temperature,
        top_p=top_p,
        presence_penalty=presence_penalty,
        frequency_penalty=frequency_penalty,
    )


CHAT_HELP = """Commands:
  /help      this help
  /history   the conversation so far
  /clear     forget the conversation (the log keeps it)
  /exit      end the session
A message that starts with / is a command; start it with // to send a message that
starts with /. End a line with \\ to continue the message on the next line."""


def _read_message(interactive: bool) -> str | None:
    """The next message: a line (continued by a trailing backslash on a terminal), or None
    at the end of input."""
    parts: list[str] = []
    while True:
        if interactive:
            try:
                line = input("> " if not parts else ". ")
            except EOFError:
                return "\n".join(parts) if parts else None
        else:
            raw = sys.stdin.readline()
            if not raw:
                return "\n".join(parts) if parts else None
            line = raw.rstrip("\n")
        if interactive and line.endswith("\\"):
            parts.append(line[:-1])
            continue
        parts.append(line)
        return "\n".join(parts)


def _chat(
    state: AppState,
    directory: Path,
    project: AgentProject,
    chosen: Agent,
    model: ModelSpec,
    env: Mapping[str, str],
    base_values: dict[str, Any],
    output_key: str | None,
) -> None:
    """The chat loop: each message is one recorded turn of the session."""
    from agentledger.agents.inputs import message_key, missing_fields
    from agentledger.agents.session import AgentSession, select_output
    from agentledger.models.specs import provider_keys

    interactive = sys.stdin.isatty()
    store = state.open_store(directory)
    for key in provider_keys(env):
        store.redactor.add_secret(key)
    session = AgentSession(store, project, chosen, model, env, chat=True)
    shown: list[tuple[str, str]] = []
    reason = "completed"
    if interactive:
        click.echo(f"Chatting with {chosen.name} ({model.label}); /help for commands.", err=True)
    try:
        while True:
            message = _read_message(interactive)
            if message is None:
                break
            text = message.strip()
            if not text:
                continue
            if text in ("/exit", "/quit"):
                break
            if text == "/help":
                click.echo(CHAT_HELP)
                continue
            if text == "/history":
                for user, reply in shown:
                    click.echo(f"you: {user}\n{chosen.name}: {reply}")
                continue
            if text == "/clear":
                session.clear()
                shown.clear()
                click.echo("(conversation cleared)", err=True)
                continue
            if text.startswith("//"):
                message = message.lstrip()[1:]  # a message that starts with '/'
            elif text.startswith("/"):
                # Never sent to the model: a mistyped command is answered here.
                command = text.split()[0]
                click.echo(f"unknown command {escaped(command)}; /help lists them", err=True)
                continue
            values = {**base_values, message_key(chosen): message}
            missing = missing_fields(chosen, values)
            if missing:
                click.echo(
                    f"needs input field(s) {', '.join(missing)}: pass them with -i", err=True
                )
                continue
            try:
                result = session.turn(values)
            except AgentLedgerError as exc:
                click.echo(f"Error: {scrub_known(str(exc))}", err=True)
                continue
            try:
                result = select_output(chosen, result, output_key)
            except AgentLedgerError as exc:
                click.echo(f"Error: {escaped(str(exc))}", err=True)
                continue
            reply = result if isinstance(result, str) else _json_text(result)
            shown.append((message, reply))
            click.echo(reply)
    except KeyboardInterrupt:
        reason = "interrupted"
        click.echo("", err=True)
    finally:
        session.end(reason)
        store.close()
        click.echo(f"Session: {session.session_id} ({session.turns} turns)", err=True)
    if reason == "interrupted":
        click.get_current_context().exit(EXIT_INTERRUPTED)


def _read_stdin() -> str:
    """Standard input as UTF-8 text, within the document size limit."""
    from agentledger.documents import MAX_DOCUMENT_BYTES, decode_utf8

    data = sys.stdin.buffer.read(MAX_DOCUMENT_BYTES + 1)
    if len(data) > MAX_DOCUMENT_BYTES:
        raise UserError(
            f"stdin is larger than {MAX_DOCUMENT_BYTES // (1024 * 1024)} MiB; pass a smaller input"
        )
    return decode_utf8(data, "stdin")


def _json_text(value: Any) -> str:
    import orjson

    return orjson.dumps(value, option=orjson.OPT_INDENT_2).decode()


def _output_target(output_file: str | None, force: bool) -> Path | None:
    """Check -o before running: an existing non-empty file needs --force, and so does a
    missing folder."""
    if output_file is None:
        return None
    target = Path(output_file)
    if target.is_dir():
        raise UserError(f"--output {output_file} is a directory; name a file")
    if target.exists() and target.stat().st_size > 0 and not force:
        raise UserError(
            f"--output {output_file} exists and is not empty; pass --force to overwrite"
        )
    if not target.parent.exists() and not force:
        raise UserError(
            f"--output {output_file}: folder {target.parent} does not exist; pass --force to "
            "create it"
        )
    return target


def _write_output(target: Path, text: str) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    temporary.write_text(text if text.endswith("\n") else text + "\n", encoding="utf-8")
    os.replace(temporary, target)
