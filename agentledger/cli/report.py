"""``agentledger report``: rebuild an experiment folder from the log, show its summary."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from agentledger.cli.options import AppState, pass_state
from agentledger.cli.output import echo

if TYPE_CHECKING:
    pass


IGNORE_INTEGRITY = click.option(
    "--ignore-integrity",
    is_flag=True,
    help="Build the report even though the experiment's log fails verify (the summary "
    "then says so in integrity_warning).",
)


def _warn(warning: str | None) -> None:
    if warning is not None:
        echo(f"Warning: {warning}", err=True)


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
    from agentledger.projections.report import check_integrity, load_report, resolve_as_of
    from agentledger.projections.writers import check_folder, recorded_folder, write_report

    usable = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    parts = jobs or (len(usable) if usable else os.cpu_count() or 1)
    with state.read_store() as store:
        ref = resolve_experiment(store, experiment)
        until = resolve_as_of(store, ref.experiment_id, as_of, utc_now())
        loaded = load_report(store, ref.experiment_id, until, parts=parts)
        _warn(check_integrity(store, loaded.experiment, ignore=ignore_integrity))
        folder = output_dir or recorded_folder(loaded.experiment, Path.cwd())
        check_folder(folder, ref.experiment_id, force=force)
        written = write_report(loaded, folder)
    point = f" as of position {until}" if until is not None else ""
    echo(
        f"Rebuilt {written.traces} traces of experiment {ref.experiment_id}{point} "
        f"into {folder} ({loaded.experiment.status}"
        f"{f'; {written.processes} processes' if written.processes > 1 else ''})"
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
    from agentledger.projections.report import check_integrity, load_report
    from agentledger.projections.rows import SummaryAccumulator, summary_document

    with state.read_store() as store:
        ref = resolve_experiment(store, experiment)
        loaded = load_report(store, ref.experiment_id)
        _warn(check_integrity(store, loaded.experiment, ignore=ignore_integrity))
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
