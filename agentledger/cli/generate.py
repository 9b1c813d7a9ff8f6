"""``agentledger generate inputs``: FluxLoop's input generation, recorded in the log."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

import click

from agentledger.cli.errors import EXIT_FAILED_BAR, UserError
from agentledger.cli.options import PROJECT_OPTIONS, AppState, pass_state
from agentledger.cli.output import echo

if TYPE_CHECKING:
    from agentledger.generation import GenerationResult, GenerationSettings

PLAIN_EVERY_SECONDS = 5.0
QUIET_SECONDS = 2.0
"""No progress lines before this (a generation done by then needs none)."""


@click.group()
def generate() -> None:
    """Generate experiment inputs, every model call recorded in the log."""


@generate.command("inputs")
@click.option(
    "-c",
    "--config",
    "config_file",
    metavar="FILE",
    help="Input config, relative to the project [default: configs/input.yaml].",
)
@PROJECT_OPTIONS
@click.option(
    "-o",
    "--output",
    metavar="FILE",
    help="Inputs file to write, relative to the project [default: inputs_file, else "
    "inputs/generated.yaml].",
)
@click.option(
    "-l", "--limit", type=click.IntRange(min=1), help="Make only the first N planned calls."
)
@click.option("--dry-run", is_flag=True, help="Print the plan and every prompt; call nothing.")
@click.option("--overwrite", is_flag=True, help="Replace the inputs file if it exists.")
@click.option(
    "--mode",
    type=click.Choice(["deterministic", "llm"], case_sensitive=False),
    help="deterministic: variations computed offline, no model; llm: ask the model "
    "[default: input_generation.mode, else llm when input_generation.llm.enabled].",
)
@click.option(
    "-s",
    "--strategy",
    "strategies",
    multiple=True,
    metavar="NAME",
    help="Variation strategy (repeatable): rephrase, error_prone, typo, verbose, concise, "
    "persona_based, adversarial, multilingual, custom [default: variation_strategies, "
    "else rephrase, verbose, concise].",
)
@click.option(
    "--llm-provider", metavar="openai|anthropic|mock", help="Model provider (implies llm)."
)
@click.option("--llm-model", metavar="MODEL", help="Model name (implies llm).")
@click.option(
    "--llm-api-key",
    metavar="KEY",
    help="API key of the provider (used, never stored) [default: api_key, "
    "FLUXLOOP_LLM_API_KEY, then OPENAI_API_KEY / ANTHROPIC_API_KEY].",
)
@click.option(
    "--base-url",
    metavar="URL",
    help="An OpenAI-compatible endpoint to call instead of the provider's (implies llm).",
)
@click.option(
    "--parallel",
    type=click.IntRange(1, 1024),
    help="Calls in flight at once at most [default: 8].",
)
@click.option(
    "--allow-partial",
    is_flag=True,
    help="Exit 0 when some calls failed but inputs were written.",
)
@click.option(
    "--replay",
    metavar="GENERATION",
    help="Write a recorded generation's file again from the log, offline, byte for byte "
    "(a generation id, or an inputs file naming one).",
)
@pass_state
def inputs(
    state: AppState,
    config_file: str | None,
    project: str | None,
    root: str | None,
    output: str | None,
    limit: int | None,
    dry_run: bool,
    overwrite: bool,
    mode: str | None,
    strategies: tuple[str, ...],
    llm_provider: str | None,
    llm_model: str | None,
    llm_api_key: str | None,
    base_url: str | None,
    parallel: int | None,
    allow_partial: bool,
    replay: str | None,
) -> None:
    """Generate variations of the base inputs in configs/input.yaml: one model call per
    base input x persona x strategy x variation (variation_count), in plan order, and
    write them as an inputs file (inputs/generated.yaml) that run experiment and
    FluxLoop read. Every call is recorded in the store under generation-<id>; the file is
    a projection of those events, and --replay GENERATION writes it again offline.

    Offline by default: without input_generation.llm.enabled (or --mode llm, or an
    --llm-* flag) the mock provider computes deterministic variations per strategy.
    Exit 0 when every call gave an input; 1 when calls failed (the file keeps what
    succeeded; exit 0 with --allow-partial) or none did (no file); 2 on bad input.
    """
    from agentledger.experiments.config import find_project_dir
    from agentledger.generation import Flags, resolve_settings

    if replay is not None:
        given = {
            "-c/--config": config_file,
            "-l/--limit": limit,
            "--dry-run": dry_run or None,
            "--mode": mode,
            "-s/--strategy": strategies or None,
            "--llm-provider": llm_provider,
            "--llm-model": llm_model,
            "--llm-api-key": llm_api_key,
            "--base-url": base_url,
            "--parallel": parallel,
            "--allow-partial": allow_partial or None,
        }
        clash = [flag for flag, value in given.items() if value is not None]
        if clash:
            raise UserError(
                f"--replay writes the recorded generation again and calls no model; drop {clash[0]}"
            )
    project_dir = find_project_dir(project, root, Path.cwd())
    if replay is not None:
        _replay(state, project_dir, replay, output, overwrite)
        return
    settings = resolve_settings(
        project_dir,
        Flags(
            config_file=config_file,
            output=output,
            limit=limit,
            mode=mode.lower() if mode else None,
            strategies=list(strategies) or None,
            llm_provider=llm_provider,
            llm_model=llm_model,
            base_url=base_url,
            parallel=parallel,
            llm_api_key_given=bool(llm_api_key),
        ),
    )
    if dry_run:
        _print_plan(settings)
        return
    result = _generate(state, project_dir, settings, llm_api_key, overwrite)
    _report(result, allow_partial)


def _replay(
    state: AppState, project_dir: Path, reference: str, output: str | None, overwrite: bool
) -> None:
    from agentledger.generation import rewrite

    target = (project_dir / output).resolve() if output else None
    with state.read_store(project_dir) as store:
        result = rewrite(store, reference, output=target, overwrite=overwrite)
    click.echo(
        f"Rewrote {result.output} from generation {result.generation_id} "
        f"({len(result.view.entries)} inputs)"
    )


def _print_plan(settings: GenerationSettings) -> None:
    from agentledger.generation import plan_items
    from agentledger.generation.plan import messages

    items = plan_items(settings)
    full = (
        len(settings.base_inputs)
        * max(1, len(settings.personas))
        * len(settings.strategies)
        * settings.variation_count
    )
    cut = f" (--limit {settings.limit}: {len(items)})" if len(items) < full else ""
    echo(
        f"Plan: {len(settings.base_inputs)} base inputs x "
        f"{f'{len(settings.personas)} personas' if settings.personas else 'a generic user'} "
        f"x {len(settings.strategies)} strategies x {settings.variation_count} "
        f"variations = {full} calls{cut}, model {settings.model.label} ({settings.mode}), "
        f"parallel {settings.parallel}"
    )
    exists = " (exists: writing it needs --overwrite)" if Path(settings.output).exists() else ""
    echo(f"Output: {settings.output}{exists}")
    if settings.system_prompt:
        echo("System prompt:")
        echo(_indent(settings.system_prompt))
    for item in items:
        planned = item.planned
        persona = f", persona {planned.persona}" if planned.persona else ""
        variation = f", variation {planned.variation + 1}" if settings.variation_count > 1 else ""
        echo(
            f"#{planned.index} base {planned.base_index}{persona}, strategy "
            f"{planned.strategy}{variation}, prompt_hash {planned.prompt_hash}"
        )
        echo(_indent(messages(settings, item)[-1]["content"]))
    echo("Dry run: no model called, no event recorded, no file written.")


def _indent(text: str) -> str:
    return "\n".join(f"    {line}" for line in text.splitlines() or [""])


class _Progress:
    """Plain progress lines on stderr: every 10% of the calls or every few seconds."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.total = self.done = self.failed = 0
        self._step = 1
        self._next = 0
        self._last = self._started = time.monotonic()

    def start(self, generation_id: str, total: int) -> None:
        self.total, self._step = total, max(1, total // 10)
        self._next = self._step
        self._started = time.monotonic()
        click.echo(f"Generation {generation_id}: {total} calls", err=True)

    def finished(self, index: int, ok: bool) -> None:
        with self._lock:
            self.done += 1
            self.failed += not ok
            now = time.monotonic()
            if now - self._started < QUIET_SECONDS:
                return
            if self.done >= self._next or now - self._last >= PLAIN_EVERY_SECONDS:
                self._next = self.done + self._step
                self._last = now
                click.echo(f"[progress] {self.done}/{self.total} failed {self.failed}", err=True)


def _generate(
    state: AppState,
    project_dir: Path,
    settings: GenerationSettings,
    llm_api_key: str | None,
    overwrite: bool,
) -> GenerationResult:
    from agentledger.generation import generate
    from agentledger.generation.config import api_key_for
    from agentledger.generation.output import check_output
    from agentledger.generation.runner import model_endpoint
    from agentledger.workspace import Workspace

    check_output(Path(settings.output), overwrite)
    with Workspace(project_dir, state.store_location(project_dir), live_refresh=None) as space:
        key = api_key_for(settings, space.env, llm_api_key)
        space.redactor.add_secret(key)
        model_endpoint(settings, space.env, key)  # a missing key fails before the store opens
        progress = _Progress()
        return generate(
            settings,
            space.store,
            space.env,
            api_key=key,
            overwrite=overwrite,
            on_start=progress.start,
            on_done=progress.finished,
        )


def _report(result: GenerationResult, allow_partial: bool) -> None:
    view = result.view
    click.echo(
        f"Generated {len(view.entries)} inputs from {view.planned} calls: "
        f"failed {view.failed}, duplicates dropped {view.duplicates}, "
        f"empty dropped {view.empty}"
    )
    if result.written:
        click.echo(f"Output: {result.output}")
    click.echo(f"Generation: {result.generation_id}")
    if not result.written:
        reason = (
            f"every call failed (first: {view.first_failure})"
            if view.failed == view.planned
            else "no input left after dropping empty and duplicate replies"
        )
        echo(f"No file written: {reason}", err=True)
        click.get_current_context().exit(EXIT_FAILED_BAR)
    if view.failed and not allow_partial:
        echo(
            f"{view.failed} of {view.planned} calls failed (first: {view.first_failure}); "
            "the file holds the inputs that succeeded; pass --allow-partial to accept that",
            err=True,
        )
        click.get_current_context().exit(EXIT_FAILED_BAR)
