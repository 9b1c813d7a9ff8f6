"""``agentledger report``: rebuild an experiment folder from the log, show its summary."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from agentledger.cli.errors import UserError
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
    "of 50,000 events or more [default: one per available CPU, less the one the "
    "integrity check runs on].",
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
    from agentledger.projections.rebuild import rebuild_checked
    from agentledger.projections.report import check_integrity, load_report, resolve_as_of
    from agentledger.projections.writers import check_folder, recorded_folder, write_report

    usable = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    cpus = len(usable) if usable else os.cpu_count() or 1
    # The integrity check runs alongside the writers in a process of its own: one CPU is
    # left to it unless --ignore-integrity skips it.
    parts = jobs or (cpus if ignore_integrity else max(1, cpus - 1))
    with state.read_store() as store:
        ref = resolve_experiment(store, experiment)
        until = resolve_as_of(store, ref.experiment_id, as_of, utc_now())
        loaded = load_report(store, ref.experiment_id, until, parts=parts)
        folder = output_dir or recorded_folder(loaded.experiment, Path.cwd())
        check_folder(folder, ref.experiment_id, force=force)
        if ignore_integrity:
            _warn(check_integrity(store, loaded.experiment, ignore=True))
            written = write_report(loaded, folder)
        else:  # checked while it is written; nothing moves into the folder unless intact
            written = rebuild_checked(store, loaded, folder)
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
        entry = None
        if loaded.evaluations:
            from agentledger.evaluation.section import latest_entry

            entry = latest_entry(loaded.evaluations)
    summary = summary_document(loaded.experiment, acc)
    if entry is not None:
        summary["evaluation"] = entry  # last, as summary.json has it
    if as_json:
        echo(orjson.dumps(summary, option=orjson.OPT_INDENT_2).decode())
        return
    print_summary(summary)


@report.command("html")
@click.argument("experiment")
@click.option(
    "-o",
    "--output",
    "output",
    metavar="FILE",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the report here [default: report.html in the current directory; - for stdout].",
)
@click.option(
    "--as-of",
    metavar="POSITION|ISO-TIME",
    help="The report as the log stood at this position or UTC time.",
)
@click.option("--force", is_flag=True, help="Overwrite FILE if it exists.")
@IGNORE_INTEGRITY
@pass_state
def html(
    state: AppState,
    experiment: str,
    output: Path | None,
    as_of: str | None,
    force: bool,
    ignore_integrity: bool,
) -> None:
    """Write EXPERIMENT's report as one self-contained HTML file: figures, charts, failures,
    evaluation results when recorded, and every trace (the first 2,000 in full detail).

    Everything is inside the file (no network access at all), and its bytes depend only
    on the log: rebuilt later, or --as-of the same point, it is the same file.
    """
    import sys

    from agentledger.eventstore.envelope import utc_now
    from agentledger.projections.catalog import resolve_experiment
    from agentledger.projections.report import check_integrity, load_report, resolve_as_of
    from agentledger.projections.writers import atomic_file
    from agentledger.view.evaluation import evaluation_results
    from agentledger.view.report import REPORT_FILE, render_report

    target = output if output is not None else Path(REPORT_FILE)
    to_stdout = str(target) == "-"
    if not to_stdout and target.exists() and not force:
        raise UserError(f"--output {target} exists; pass --force to overwrite it")
    if not to_stdout and not target.parent.is_dir():
        raise UserError(f"--output {target}: folder {target.parent} does not exist")
    with state.read_store() as store:
        ref = resolve_experiment(store, experiment)
        until = resolve_as_of(store, ref.experiment_id, as_of, utc_now())
        loaded = load_report(store, ref.experiment_id, until)
        _warn(check_integrity(store, loaded.experiment, ignore=ignore_integrity))
        records = evaluation_results(store, ref.experiment_id, until)
        body = render_report(loaded.experiment, loaded.traces, records, as_of=until)
    if to_stdout:
        sys.stdout.buffer.write(body)
        sys.stdout.flush()
        return
    try:
        with atomic_file(target) as handle:
            handle.write(body)
    except OSError as exc:
        raise UserError(f"--output {target}: {exc.strerror}; choose a writable file") from None
    echo(f"Wrote {target} ({len(body):,} bytes) for experiment {ref.experiment_id}")


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
