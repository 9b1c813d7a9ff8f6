"""``agentledger report``: rebuild an experiment folder from the log, show its summary."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from agentledger.cli.options import AppState, pass_state
from agentledger.cli.output import echo

if TYPE_CHECKING:
    from agentledger.projections.folds import ExperimentFold


IGNORE_INTEGRITY = click.option(
    "--ignore-integrity",
    is_flag=True,
    help="Build the report even though the experiment's log fails verify (the summary "
    "then says so in integrity_warning).",
)


def _check_integrity(store: Any, experiment: ExperimentFold, ignore: bool) -> None:
    """A report is only as good as its log: refuse one over streams that fail verify."""
    from agentledger.eventstore.integrity import verify
    from agentledger.projections.errors import ProjectionError

    checked = verify(store, experiment.experiment_id, database=False)
    if checked.ok:
        return
    found = [p.describe() for p in checked.problems] + checked.damage
    first, count = found[0], len(found)
    if not ignore:
        raise ProjectionError(
            f"experiment {experiment.experiment_id}'s log fails verify ({count} problem(s); "
            f"first: {first}); run `agentledger verify {experiment.experiment_id}`, or pass "
            "--ignore-integrity to build the report anyway"
        )
    experiment.integrity_warning = (
        f"built over a log that fails verify: {count} problem(s); first: {first}"
    )
    echo(f"Warning: {experiment.integrity_warning}", err=True)


@click.group()
def report() -> None:
    """Experiment reports, derived from the event log."""


@report.command("rebuild")
@click.argument("experiment")
@click.option(
    "--as-of",
    metavar="POSITION|ISO-TIME",
    help="Rebuild the report as the log stood at this position or UTC time.",
)
@click.option(
    "--output-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Write here instead of the experiment's own folder (by default the folder it was "
    "recorded with, taken relative to the project this is run from).",
)
@click.option(
    "--force",
    is_flag=True,
    help="Overwrite a folder that holds another experiment's report or other files.",
)
@IGNORE_INTEGRITY
@click.option(
    "--jobs",
    type=click.IntRange(min=1),
    metavar="N",
    help="Write the report with at most N processes, each taking a run of the traces "
    "of 50,000 events or more [default: one per available CPU].",
)
@pass_state
def rebuild(
    state: AppState,
    experiment: str,
    as_of: str | None,
    output_dir: Path | None,
    jobs: int | None,
    force: bool,
    ignore_integrity: bool,
) -> None:
    """Regenerate every file of EXPERIMENT's folder from the log, byte for byte.

    EXPERIMENT is an experiment id, its unique name or its output folder. The files are
    the same whatever --jobs is. A folder holding another experiment's report (a copy of
    the store run elsewhere, say) is never overwritten without --force.
    """
    import os

    from agentledger.eventstore.envelope import utc_now
    from agentledger.projections.catalog import resolve_experiment
    from agentledger.projections.report import load_report, resolve_as_of
    from agentledger.projections.writers import write_report

    usable = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    parts = jobs or (len(usable) if usable else os.cpu_count() or 1)
    with state.read_store() as store:
        ref = resolve_experiment(store, experiment)
        until = resolve_as_of(store, ref.experiment_id, as_of, utc_now())
        loaded = load_report(store, ref.experiment_id, until, parts=parts)
        _check_integrity(store, loaded.experiment, ignore_integrity)
        folder = output_dir or _recorded_folder(loaded.experiment, Path.cwd())
        _check_folder(folder, ref.experiment_id, force)
        written = write_report(loaded, folder)
    point = f" as of position {until}" if until is not None else ""
    echo(
        f"Rebuilt {written.traces} traces of experiment {ref.experiment_id}{point} "
        f"into {folder} ({loaded.experiment.status}"
        f"{f'; {written.processes} processes' if written.processes > 1 else ''})"
    )


def _recorded_folder(experiment: ExperimentFold, project: Path) -> Path:
    """The output folder the experiment was recorded with, taken relative to ``project``
    (where the command runs) when it lay inside the recorded project: a copy of the store
    rebuilds into its own project, never into the original's."""
    from agentledger.projections.errors import ProjectionError

    if not experiment.output_dir:
        raise ProjectionError(
            f"experiment {experiment.experiment_id} recorded no output folder; pass --output-dir"
        )
    recorded = Path(experiment.output_dir)
    recorded_project = experiment.config.get("project_dir")
    if recorded_project and recorded.is_relative_to(recorded_project):
        return project / recorded.relative_to(recorded_project)
    return recorded


def _check_folder(folder: Path, experiment_id: str, force: bool) -> None:
    """Refuse to write over another experiment's report or a folder of other files."""
    import orjson

    from agentledger.projections.errors import ProjectionError

    if force or not folder.is_dir():
        return
    summary = folder / "summary.json"
    try:
        other = orjson.loads(summary.read_bytes()).get("experiment_id")
    except FileNotFoundError:
        other = None
    except (OSError, orjson.JSONDecodeError, AttributeError):
        other = "(unreadable)"
    if other == experiment_id:
        return
    if other is None and not [p for p in folder.iterdir() if not p.name.startswith(".")]:
        return  # an empty folder
    what = f"the report of experiment {other}" if other else "files that are not its report"
    raise ProjectionError(
        f"{folder} holds {what}; pass --force to overwrite it, or --output-dir elsewhere"
    )


@report.command("show")
@click.argument("experiment")
@click.option("--json", "as_json", is_flag=True, help="Print summary.json instead of a table.")
@IGNORE_INTEGRITY
@pass_state
def show(state: AppState, experiment: str, as_json: bool, ignore_integrity: bool) -> None:
    """Print EXPERIMENT's summary as a table (computed from the log)."""
    import orjson

    from agentledger.projections.catalog import resolve_experiment
    from agentledger.projections.report import load_report
    from agentledger.projections.rows import SummaryAccumulator, summary_document

    with state.read_store() as store:
        ref = resolve_experiment(store, experiment)
        loaded = load_report(store, ref.experiment_id)
        _check_integrity(store, loaded.experiment, ignore_integrity)
        acc = SummaryAccumulator()
        for trace in loaded.traces:
            acc.add(trace)
    summary = summary_document(loaded.experiment, acc)
    if as_json:
        echo(orjson.dumps(summary, option=orjson.OPT_INDENT_2).decode())
        return
    print_summary(summary)


def print_summary(summary: dict[str, Any]) -> None:
    """The summary as aligned text tables (stdout)."""
    rows = [
        ("experiment", f"{summary['experiment_name']} ({summary['experiment_id']})"),
        ("status", summary["status"]),
        ("runs", f"{summary['total_traces']} of {summary['planned_runs']} planned"),
        ("successful", str(summary["successful"])),
        ("failed", str(summary["failed"])),
        ("success rate", f"{summary['success_rate']:.1%}"),
        ("avg duration ms", str(summary["avg_duration_ms"])),
        (
            "p50 / p95 / max ms",
            f"{summary['duration_ms']['p50']} / {summary['duration_ms']['p95']} / "
            f"{summary['duration_ms']['max']}",
        ),
        ("model calls", str(summary["model_calls"]["total"])),
        ("tokens", str(summary["model_calls"]["total_tokens"])),
        ("started", str(summary["started_at"])),
        ("completed", str(summary["completed_at"] or "-")),
    ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        echo(f"{key:<{width}}  {value}")
    if summary["by_persona"]:
        echo("")
        echo(f"{'persona':<20} {'runs':>6} {'ok':>6} {'failed':>6} {'rate':>7} {'avg ms':>10}")
        for name, group in summary["by_persona"].items():
            echo(
                f"{name:<20} {group['total']:>6} {group['successful']:>6} {group['failed']:>6} "
                f"{group['success_rate']:>7.1%} {group['avg_duration_ms']:>10}"
            )
    failures = summary["failures"]["by_error_type"]
    if failures:
        echo("")
        echo("failures: " + ", ".join(f"{k} x{v}" for k, v in failures.items()))
