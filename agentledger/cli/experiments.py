"""``agentledger experiments``, ``traces`` and ``transcript``: look into recorded runs."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from agentledger.cli.errors import UserError
from agentledger.cli.options import AppState, pass_state
from agentledger.cli.output import echo

if TYPE_CHECKING:
    from agentledger.eventstore.store import EventStore
    from agentledger.projections.folds import ExperimentFold, TraceFold


@click.group()
def experiments() -> None:
    """Experiments recorded in the store."""


@experiments.command("list")
@pass_state
def list_experiments(state: AppState) -> None:
    """Every experiment, oldest first: id, name, status, runs, start time."""
    from agentledger.projections.folds import ExperimentFold, malformed

    with state.read_store() as store:
        folds: dict[str, ExperimentFold] = {}
        kinds = ["ExperimentStarted", "ExperimentCompleted", "ExperimentInterrupted"]
        for ev in store.read_all(types=[*kinds, "ExperimentResumed"]):
            experiment_id = ev.data.get("experiment_id") if isinstance(ev.data, dict) else None
            if not isinstance(experiment_id, str):  # a damaged or tampered log
                raise malformed(ev, KeyError("experiment_id"))
            folds.setdefault(experiment_id, ExperimentFold()).apply(ev)
    if not folds:
        echo("No experiments in the store yet.")
        return
    echo(f"{'experiment':<14} {'status':<12} {'runs':>7}  {'started':<27} name")
    for fold in folds.values():
        echo(
            f"{fold.experiment_id:<14} {fold.status:<12} {fold.total_runs:>7}  "
            f"{fold.started_at or '':<27} {fold.name}"
        )


@experiments.command("show")
@click.argument("experiment")
@pass_state
def show_experiment(state: AppState, experiment: str) -> None:
    """Progress and settings of one experiment, counted from the log (works while it runs,
    from any machine sharing the store)."""
    from agentledger.projections.catalog import resolve_experiment
    from agentledger.projections.report import ReportState

    with state.read_store() as store:
        ref = resolve_experiment(store, experiment)
        live = ReportState(ref.experiment_id, keep_traces=False)
        live.catch_up(store)
        fold = live.experiment
        workers = _workers_lines(store, fold) if fold.lease_seconds is not None else []
    acc = live.summary
    finished = acc.successful + acc.failed
    settings = fold.config
    echo(f"experiment  {fold.name} ({fold.experiment_id})")
    echo(f"status      {fold.status}")
    echo(f"progress    {finished}/{fold.total_runs} runs finished")
    echo(f"ok/failed   {acc.successful}/{acc.failed}")
    echo(f"started     {fold.started_at}")
    echo(f"completed   {fold.completed_at or '-'}")
    echo(f"target      {settings.get('target')}")
    echo(f"plan        {settings.get('inputs_file')} x {settings.get('iterations')}")
    echo(f"parallel    {settings.get('parallel')}")
    if fold.resumed:
        echo(f"resumed     {fold.resumed} time(s)")
    for line in workers:
        echo(line)


def _workers_lines(store: EventStore, fold: ExperimentFold) -> list[str]:
    """Where the slots of a shared experiment stand, and who holds them."""
    from agentledger.eventstore.slots import SlotBoard

    board = SlotBoard(store)
    counts = board.counts(fold.experiment_id)
    holders = board.holders(fold.experiment_id)
    lines = [
        f"slots       {counts.pending} pending, {counts.running} running, "
        f"{counts.expired} lease expired, {counts.done} done (lease {fold.lease_seconds:g}s)",
        "workers     "
        + (", ".join(f"{name} ({n})" for name, n in holders.items()) or "none holding a lease"),
    ]
    if fold.refused:
        lines.append(f"refused     {fold.refused} late result(s) of slots taken over")
    return lines


def _load_trace(store: EventStore, trace_id: str) -> tuple[ExperimentFold, TraceFold]:
    from agentledger.events.streams import experiment_stream, trace_stream
    from agentledger.projections.folds import ExperimentFold, TraceFold

    events = store.read_stream(trace_stream(trace_id))
    if not events:
        raise UserError(
            f"no trace {trace_id!r} in store {store.location.display()}; trace ids are listed "
            "in trace_summary.jsonl"
        )
    trace = TraceFold(trace_id)
    for ev in events:
        trace.apply(ev)
    experiment = ExperimentFold()
    if events[0].correlation_id:
        for ev in store.read_stream(experiment_stream(events[0].correlation_id)):
            experiment.apply(ev)
    return experiment, trace


@click.group()
def traces() -> None:
    """Traces (one run of one slot) recorded in the store."""


@traces.command("show")
@click.argument("trace")
@click.option("--json", "as_json", is_flag=True, help="Print the traces.jsonl row.")
@pass_state
def show_trace(state: AppState, trace: str, as_json: bool) -> None:
    """One trace: result, attempts, model and tool calls, and its observation tree."""
    import orjson

    from agentledger.projections.rows import trace_row

    with state.read_store() as store:
        _, fold = _load_trace(store, trace)
    row = trace_row(fold)
    if as_json:
        echo(orjson.dumps(row.model_dump(mode="json"), option=orjson.OPT_INDENT_2).decode())
        return
    echo(f"trace      {row.trace_id} ({row.status})")
    echo(
        f"slot       input #{row.input_index}, iteration {row.iteration}, "
        f"persona {row.persona or '-'}"
    )
    echo(f"input      {row.input}")
    echo(f"output     {orjson.dumps(row.output).decode()}")
    echo(f"duration   {row.duration_ms} ms, {row.attempt_count} attempt(s)")
    if row.error:
        echo(f"error      {row.error['type']} ({row.error['reason']}): {row.error['message']}")
    usage = row.usage
    echo(
        f"calls      {usage['model_calls']} model, {usage['tool_calls']} tool, "
        f"{usage['total_tokens']} tokens"
    )
    depth: dict[str | None, int] = {None: 0}
    if fold.observations:
        echo("observations")
    for obs in fold.observations:
        level = depth.get(obs.get("parent_id"), 0) + 1
        if obs["kind"] == "span_start":
            depth[obs["observation_id"]] = level
        data = orjson.dumps(obs.get("data") or {}).decode()
        echo(f"{'  ' * level}{obs['kind']:<10} {obs['name']} {data}")


@click.command()
@click.argument("trace_or_session")
@pass_state
def transcript(state: AppState, trace_or_session: str) -> None:
    """Print the chat transcript (Markdown) of a trace or of an agent session."""
    from agentledger.cli.sessions import WHERE_SESSIONS_ARE, read_sessions_store
    from agentledger.events.streams import session_stream, trace_stream
    from agentledger.projections.transcripts import session_transcript, trace_transcript

    with read_sessions_store(state) as store:
        session = store.read_stream(session_stream(trace_or_session))
        if session:
            echo(session_transcript(session), nl=False)
            return
        if not store.read_stream(trace_stream(trace_or_session)):
            raise UserError(
                f"no trace or agent session {trace_or_session!r} in store "
                f"{store.location.display()}; trace ids are listed in trace_summary.jsonl, "
                f"sessions by agentledger sessions list; {WHERE_SESSIONS_ARE}"
            )
        experiment, fold = _load_trace(store, trace_or_session)
    echo(trace_transcript(experiment, fold), nl=False)
