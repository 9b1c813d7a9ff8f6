"""``agentledger run experiment``: FluxLoop-compatible simulation experiments."""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from cli.errors import EXIT_FAILED_BAR, EXIT_INTERRUPTED, UserError
from cli.options import AppState, pass_state
from cli.progress import ProgressDisplay
from eventstore.errors import AgentLedgerError

if TYPE_CHECKING:
    from eventstore.payloads import ExperimentPlan
    from eventstore.store import EventStore
    from runner.context import ToolApprover
    from runner.experiment import ExperimentResult, ExperimentRunner
    from runner.models import ModelSpec
    from runner.prepare import PreparedExperiment
    from runner.project import Agent, AgentProject
    from runner.replay import RecordMode, ReplaySource

LIVE_REFRESH_SECONDS = 5.0


@click.group()
def run() -> None:
    """Run experiments or agents, recording every event."""


@run.command("experiment")
@click.option(
    "-c",
    "--config",
    "config_file",
    metavar="FILE",
    help="Simulation config, relative to the project [default: configs/simulation.yaml].",
)
@click.option("--project", metavar="NAME", help="Project folder under --root.")
@click.option(
    "--root", metavar="DIR", help="Folder holding projects [default: ./fluxloop with --project]."
)
@click.option("--inputs", "inputs_file", metavar="FILE", help="Inputs file to use instead.")
@click.option(
    "-i", "--iterations", type=click.IntRange(min=1), help="Runs per input [default: config]."
)
@click.option("-p", "--personas", metavar="A,B", help="Only inputs of these personas.")
@click.option("--output-dir", metavar="DIR", help="Where experiment folders go [experiments].")
@click.option(
    "--experiment-name", "--name", "experiment_name", metavar="NAME", help="Experiment name."
)
@click.option(
    "--parallel",
    type=click.IntRange(min=1, max=4096),
    help="Runs in flight at once [default: parallel_runs, else 1].",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    metavar="SECONDS",
    help="Per-run timeout [default: runner.timeout_seconds, else none].",
)
@click.option(
    "--resume",
    metavar="EXPERIMENT",
    help="Finish an interrupted experiment: run only its slots without a finished trace.",
)
@click.option(
    "--max-failures",
    metavar="N|P%",
    help="Failed runs tolerated before exit status 1 [default: 0].",
)
@click.option(
    "--multi-turn/--no-multi-turn",
    "multi_turn",
    default=None,
    help="Continue each run as a conversation driven by the supervisor [default: config].",
)
@click.option("--max-turns", type=click.IntRange(1, 1000), help="Turns per conversation at most.")
@click.option(
    "--auto-approve-tools/--manual-approve-tools",
    "auto_approve_tools",
    default=None,
    help="Approve ctx.tool calls automatically, or ask on the terminal [default: config].",
)
@click.option("--persona-override", metavar="NAME", help="Persona the supervisor plays.")
@click.option(
    "--supervisor-provider",
    type=click.Choice(["openai", "anthropic", "mock"]),
    help="mock plays metadata.scripted_questions; openai/anthropic ask a model.",
)
@click.option("--supervisor-model", metavar="MODEL", help="Model of the LLM supervisor.")
@click.option(
    "--supervisor-temperature",
    type=float,
    metavar="T",
    help="Sampling temperature of the supervisor (0-2).",
)
@click.option(
    "--supervisor-api-key",
    metavar="KEY",
    help="API key of the supervisor's provider (used, never stored).",
)
@click.option(
    "--record-mode",
    default="live",
    show_default=True,
    metavar="live|replay|replay-or-live",
    help="live: call models; replay: answer every call from the last run of this "
    "experiment's name (a miss fails the run); replay-or-live: call live on a miss.",
)
@click.option(
    "--workers",
    type=click.IntRange(1, 256),
    help="Run the slots in N worker processes that claim them from the store; "
    "`agentledger worker EXPERIMENT` on other machines can join [default: this process].",
)
@click.option(
    "--lease-seconds",
    type=click.FloatRange(1, 3600),
    metavar="SECONDS",
    help="With --workers: how long a worker's claim on a slot holds if it stops "
    "renewing it (dies); then another worker takes the slot over [default: 30].",
)
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation (CI).")
@pass_state
def experiment(
    state: AppState,
    config_file: str | None,
    project: str | None,
    root: str | None,
    inputs_file: str | None,
    iterations: int | None,
    personas: str | None,
    output_dir: str | None,
    experiment_name: str | None,
    parallel: int | None,
    timeout: float | None,
    resume: str | None,
    max_failures: str | None,
    multi_turn: bool | None,
    max_turns: int | None,
    auto_approve_tools: bool | None,
    persona_override: str | None,
    supervisor_provider: str | None,
    supervisor_model: str | None,
    supervisor_temperature: float | None,
    supervisor_api_key: str | None,
    record_mode: str,
    workers: int | None,
    lease_seconds: float | None,
    yes: bool,
) -> None:
    """Run every input x iteration of a simulation experiment against the target.

    Reads configs/simulation.yaml (either FluxLoop layout) and the inputs file, records
    each run as a trace in the store, and writes the report folder
    experiments/<name>_<YYYYMMDD_HHMMSS>/. Exit 0 when every run succeeded, 1 when
    failed runs exceed --max-failures, 2 on bad input, 130 when interrupted.

    With --workers N, N worker processes claim the slots from the store under a lease
    (any `agentledger worker EXPERIMENT` sharing the store joins in); progress counts every
    worker's runs, from the log.
    """
    from runner.config import Overrides, find_project_dir, parse_max_failures, resolve_settings
    from runner.prepare import prepare
    from runner.replay import RecordMode

    if resume:
        given = {
            "--config": config_file,
            "--inputs": inputs_file,
            "--iterations": iterations,
            "--personas": personas,
            "--output-dir": output_dir,
            "--experiment-name": experiment_name,
            "--timeout": timeout,
            "--multi-turn": multi_turn,
            "--max-turns": max_turns,
            "--persona-override": persona_override,
            "--supervisor-provider": supervisor_provider,
            "--supervisor-model": supervisor_model,
            "--supervisor-temperature": supervisor_temperature,
            "--lease-seconds": lease_seconds,
        }
        clash = [flag for flag, value in given.items() if value is not None]
        if clash:
            raise UserError(f"--resume runs the plan recorded with the experiment; drop {clash[0]}")
    allowed = parse_max_failures(max_failures or "0")
    mode = RecordMode.parse(record_mode)
    if resume and mode is not RecordMode.LIVE:
        raise UserError(
            "--resume continues with the experiment's own record mode; drop --record-mode"
        )
    if lease_seconds is not None and workers is None:
        raise UserError("--lease-seconds is the lease of worker processes; add --workers N")
    project_dir = find_project_dir(project, root, Path.cwd())
    with RecordedRun(state, project_dir) as session:
        if resume:
            result = _resume(session, resume, parallel, workers)
        else:
            overrides = Overrides(
                iterations=iterations,
                parallel=parallel,
                timeout_seconds=timeout,
                inputs_file=inputs_file,
                personas=_split(personas),
                output_dir=output_dir,
                experiment_name=experiment_name,
                max_failures=allowed,
                multi_turn=multi_turn,
                max_turns=max_turns,
                auto_approve_tools=auto_approve_tools,
                persona_override=persona_override,
                supervisor_provider=supervisor_provider,
                supervisor_model=supervisor_model,
                supervisor_temperature=supervisor_temperature,
            )
            settings = resolve_settings(project_dir, config_file, overrides, session.env)
            source = None
            if mode is not RecordMode.LIVE:
                source = _recording_for(session.store, settings.name, mode)
            if supervisor_api_key:
                session.store.redactor.add_secret(supervisor_api_key)
            prepared = prepare(
                settings,
                session.env,
                offline=mode is RecordMode.REPLAY,
                store=session.store,
                supervisor_api_key=supervisor_api_key,
            )
            plan = prepared.plan
            persona_note = f" (personas: {', '.join(plan.personas)})" if plan.personas else ""
            replay_note = f", {mode.value} from {source.experiment_id}" if source else ""
            click.echo(
                f"Plan: {len(plan.inputs)} inputs x {plan.iterations} iterations{persona_note}"
                f" = {plan.total_runs} runs, parallel {prepared.settings.parallel},"
                f" model {prepared.settings.model.label}{replay_note}"
            )
            if not yes and sys.stdin.isatty() and sys.stdout.isatty():
                click.confirm("Start the experiment?", default=True, abort=True)
            approver = None
            if prepared.settings.multi_turn and not prepared.settings.multi_turn.auto_approve_tools:
                if not sys.stdin.isatty():
                    raise UserError(
                        "--manual-approve-tools asks about each tool call on a terminal, and "
                        "stdin is not one; use --auto-approve-tools"
                    )
                approver = TerminalApprover()
            if workers is not None:
                if approver is not None:
                    raise UserError(
                        "--workers runs in processes that cannot ask about tool calls; "
                        "use --auto-approve-tools"
                    )
                from runner.claims import LEASE_SECONDS

                result = session.run_shared(
                    prepared,
                    workers,
                    lease_seconds=lease_seconds or LEASE_SECONDS,
                    replay=source,
                    supervisor_api_key=supervisor_api_key,
                )
            else:
                result = session.run(
                    lambda runner: runner.start(prepared, replay=source), approver=approver
                )
        session.finish(result)
        _check_failures(result, allowed)


def _recording_for(store: EventStore, name: str, mode: RecordMode) -> ReplaySource:
    from runner.rerun import latest_named, load_source

    source_id = latest_named(store, name)
    if source_id is None:
        raise UserError(
            f"--record-mode {mode.value}: no earlier experiment named {name!r} in the store "
            "to answer from; run it once with --record-mode live"
        )
    return load_source(store, source_id, mode)


class TerminalApprover:
    """Asks on the terminal about each tool call: approve, reject, or approve all from now
    on. One question at a time, whatever the parallelism."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._all = False

    def approve(
        self, trace_id: str, tool: str, arguments: Mapping[str, Any]
    ) -> tuple[bool, str, str]:
        import orjson

        with self._lock:
            if self._all:
                return True, "user", ""
            shown = orjson.dumps(dict(arguments)).decode()
            shown = shown if len(shown) <= 300 else shown[:297] + "..."
            answer = click.prompt(
                f"Tool call in {trace_id}: {tool}({shown})\nApprove? [y]es, [n]o, [a]pprove all",
                type=click.Choice(["y", "n", "a"]),
                default="y",
                err=True,
            )
            if answer == "a":
                self._all = True
            if answer == "n":
                return False, "user", "rejected on the terminal"
            return True, "user", ""


def _resume(
    session: RecordedRun, experiment: str, parallel: int | None, workers: int | None
) -> ExperimentResult:
    """Go on with an unfinished experiment: in this process, or with workers if its slots
    are shared."""
    from projections.catalog import resolve_experiment
    from runner.rerun import recorded_start
    from runner.workers import recording_of

    experiment_id = resolve_experiment(session.store, experiment).experiment_id
    started = recorded_start(session.store, experiment_id)
    if started.lease_seconds is not None:
        return session.resume_shared(experiment_id, workers or started.workers or 1, parallel)
    if workers is not None:
        raise UserError(
            f"experiment {experiment_id} was started in one process; resume it without --workers"
        )
    source = recording_of(session.store, started)
    return session.run(
        lambda runner: runner.resume(experiment_id, session.env, parallel=parallel, replay=source)
    )


class RecordedRun:
    """The frame of every command that executes an experiment: the store (with the
    provider keys registered as secrets), the hook that records agents' own clients,
    progress, the live report, and the final report and exit on interruption."""

    def __init__(self, state: AppState, project_dir: Path) -> None:
        self.env = load_env(project_dir)
        self.store = state.open_store(project_dir)
        from runner.models import provider_keys

        for key in provider_keys(self.env):
            self.store.redactor.add_secret(key)
        self._live = _LiveRefresher(self.store)
        self._display = ProgressDisplay(
            interactive=sys.stderr.isatty(), on_started=self._live.attach
        )
        self._cleanup = contextlib.ExitStack()

    def __enter__(self) -> RecordedRun:
        from runner.client_hook import record_default_clients

        # Held from target import on, so clients an agent builds at module level record too.
        self._cleanup.enter_context(record_default_clients(self.store.redactor))
        return self

    def __exit__(self, *exc: object) -> None:
        self._cleanup.close()
        self.store.close()

    def run(
        self,
        execute: Callable[[ExperimentRunner], ExperimentResult],
        approver: ToolApprover | None = None,
    ) -> ExperimentResult:
        """Execute with a runner that draws progress and keeps the output folder current."""
        from runner.experiment import ExperimentRunner

        runner = ExperimentRunner(
            self.store,
            self._display,
            handle_signals=True,
            on_second_interrupt=hard_exit,
            approver=approver,
        )
        with self._live:
            return execute(runner)

    def run_shared(
        self,
        prepared: PreparedExperiment,
        workers: int,
        *,
        lease_seconds: float,
        replay: ReplaySource | None,
        supervisor_api_key: str | None,
    ) -> ExperimentResult:
        """Start the experiment with its slots on the board, start ``workers`` local
        worker processes, and watch its progress in the log until it ends."""
        from runner.experiment import ExperimentRunner

        runner = ExperimentRunner(self.store)
        result = runner.begin(prepared, replay=replay, workers=workers, lease_seconds=lease_seconds)
        return self._watch(
            result, prepared.plan, workers, prepared.settings.parallel, supervisor_api_key
        )

    def resume_shared(
        self, experiment_id: str, workers: int, parallel: int | None
    ) -> ExperimentResult:
        """Start local workers again on the unfinished slots of a shared experiment."""
        from runner.experiment import ExperimentResult
        from runner.workers import resume_shared

        started = resume_shared(self.store, experiment_id)
        output_dir = Path(started.output_dir or ".")
        output_dir.mkdir(parents=True, exist_ok=True)
        result = ExperimentResult(experiment_id, started.name, output_dir, started.plan.total_runs)
        return self._watch(result, started.plan, workers, parallel, None)

    def _watch(
        self,
        result: ExperimentResult,
        plan: ExperimentPlan,
        workers: int,
        parallel: int | None,
        supervisor_api_key: str | None,
    ) -> ExperimentResult:
        from runner.workers import LogProgress, coordinate, start_local_workers

        # Forked before this process starts any thread of its own (the live report's).
        processes = start_local_workers(
            self.store,
            result.experiment_id,
            workers,
            parallel=parallel,
            env=self.env,
            supervisor_api_key=supervisor_api_key,
        )
        with self._live:
            progress = LogProgress(self.store, result.experiment_id, plan, self._display)
            progress.start(result.output_dir)
            return coordinate(self.store, result, processes, progress)

    def finish(self, result: ExperimentResult) -> None:
        """Write the final report from the log and print where it is; exit 130 if the
        experiment was interrupted."""
        from projections.report import load_report
        from projections.writers import write_report

        self._display.close()
        write_report(load_report(self.store, result.experiment_id), result.output_dir)
        finished = result.successful + result.failed
        rate = f"{result.successful / finished:.1%}" if finished else "n/a"
        click.echo(
            f"Runs: {finished}/{result.total}  ok: {result.successful}  failed: {result.failed}"
            f"  success rate: {rate}"
        )
        click.echo(f"Output: {result.output_dir}")
        click.echo(f"Experiment: {result.experiment_id}")
        if result.interrupted:
            click.echo(
                "Interrupted: resume with agentledger run experiment --resume "
                f"{result.experiment_id}",
                err=True,
            )
            sys.stdout.flush()
            sys.stderr.flush()
            if any(t.is_alive() and not t.daemon for t in threading.enumerate()[1:]):
                # A sync agent thread that cannot be stopped would hold the exit open.
                os._exit(EXIT_INTERRUPTED)
            click.get_current_context().exit(EXIT_INTERRUPTED)


def load_env(project_dir: Path) -> dict[str, str]:
    """The environment, with the project's ``.env.local`` and ``.env`` files (if any)
    loaded under it: variables already set win. Loaded into ``os.environ`` too, for the
    clients agents build themselves."""
    from dotenv import load_dotenv

    load_dotenv(project_dir / ".env.local", override=False)
    load_dotenv(project_dir / ".env", override=False)
    return dict(os.environ)


def _split(value: str | None) -> list[str] | None:
    if value is None:
        return None
    names = [v.strip() for v in value.split(",") if v.strip()]
    if not names:
        raise UserError("--personas needs at least one persona name, e.g. -p novice,expert")
    return names


def hard_exit() -> None:
    """Second Ctrl-C: leave at once; every committed event is already safe in the store."""
    sys.stderr.write("\nInterrupted again: exiting now.\n")
    sys.stderr.flush()
    os._exit(EXIT_INTERRUPTED)


class _LiveRefresher:
    """While an experiment runs, a thread keeps its output folder's files current."""

    def __init__(self, store: EventStore) -> None:
        self._store = store
        self._stop = threading.Event()
        self._report: Any = None
        self._thread = threading.Thread(target=self._loop, name="agentledger-live", daemon=True)

    def attach(self, experiment_id: str, folder: Path, total: int) -> None:
        from projections.live import LiveReport

        self._report = LiveReport(self._store, experiment_id, folder, total)

    def _loop(self) -> None:
        while not self._stop.wait(LIVE_REFRESH_SECONDS):
            if self._report is not None:
                self._report.refresh()

    def __enter__(self) -> _LiveRefresher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _check_failures(result: ExperimentResult, max_failures: str) -> None:
    """Exit 1 when more runs failed than ``--max-failures`` allows."""
    from runner.config import failures_allowed

    allowed = failures_allowed(max_failures, result.total)
    if result.failed > allowed:
        click.echo(
            f"{result.failed} run(s) failed, more than --max-failures {max_failures} allows",
            err=True,
        )
        click.get_current_context().exit(EXIT_FAILED_BAR)


@run.command(
    "agent",
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
)
@click.argument("path", default=".", metavar="[PATH|URL]")
@click.argument("agent_name", required=False, metavar="[AGENT]")
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
@click.option("--output-key", default="message", show_default=True, help="Result field to output.")
@click.option("--force", is_flag=True, help="Overwrite --output, creating its folders.")
@click.option(
    "--cache-dir",
    metavar="DIR",
    help="Where projects from URLs are kept [default: ~/.agentledger/cache].",
)
@click.option("--refresh", is_flag=True, help="Download a URL project again.")
@click.option(
    "--chat",
    is_flag=True,
    help="Talk to the agent: one message per line (/help for commands) [default when "
    "cli.chat names the agent and none is given].",
)
@pass_state
@click.pass_context
def agent(
    ctx: click.Context,
    state: AppState,
    path: str,
    agent_name: str | None,
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
    output_key: str,
    force: bool,
    cache_dir: str | None,
    refresh: bool,
    chat: bool,
) -> None:
    """Run one agent of an agentledger.yaml / aigne.yaml project once, recorded as a
    session. Input fields of the agent's input_schema are flags too (--<field> VALUE).

    The result goes to stdout (text for a string, JSON otherwise) or to -o FILE.
    """
    from runner.agent_input import gather_input, schema_flags
    from runner.agent_run import AgentRunError, run_agent
    from runner.models import provider_keys
    from runner.project import load_project
    from runner.remote import DEFAULT_CACHE, fetch_project, is_url

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
    stdin_text = None if chat or sys.stdin.isatty() else sys.stdin.read()
    values = gather_input(
        chosen,
        list(inputs),
        input_format,
        stdin_text,
        schema_flags(chosen, list(ctx.args)),
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
        click.echo(f"Error: {exc}", err=True)
        ctx.exit(EXIT_FAILED_BAR)
    finally:
        store.close()
    result = outcome.result
    if isinstance(result, dict) and output_key in result:
        result = result[output_key]
    text = result if isinstance(result, str) else _json_text(result)
    if target is not None:
        _write_output(target, text)
        click.echo(f"Wrote {target}", err=True)
    else:
        click.echo(text)
    # stdout carries the result alone; where it is recorded goes to stderr.
    click.echo(f"Session: {outcome.session_id}", err=True)


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
    from runner.models import default_model, parse_model

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
End a line with \\ to continue the message on the next line."""


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
    output_key: str,
) -> None:
    """The chat loop: each message is one recorded turn of the session."""
    from runner.agent_input import message_key, missing_fields
    from runner.agent_run import AgentSession
    from runner.models import provider_keys

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
                click.echo(f"Error: {exc}", err=True)
                continue
            if isinstance(result, dict) and output_key in result:
                result = result[output_key]
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
