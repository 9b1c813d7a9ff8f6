"""``agentledger sessions``: the agent sessions (``run agent`` runs and chats) in a store."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from agentledger.cli.errors import UserError
from agentledger.cli.options import AppState, pass_state
from agentledger.cli.output import echo

if TYPE_CHECKING:
    from agentledger.agents.catalog import SessionSummary
    from agentledger.eventstore.store import EventStore

WHERE_SESSIONS_ARE = (
    "an agent session is recorded in its project folder's store (a URL project's in the "
    "folder it ran from): run this there or pass --store FOLDER/.agentledger/ledger.db"
)
"""Said when a session is not found, after where the command looked."""


@click.group()
def sessions() -> None:
    """Agent sessions (run agent runs, chats and their replays) recorded in the store."""


@sessions.command("list")
@pass_state
def list_sessions(state: AppState) -> None:
    """Every session, oldest first: id, kind, how it ended, turns, start, agent, project."""
    from agentledger.agents.catalog import list_sessions as read_sessions

    with read_sessions_store(state) as store:
        where = store.location.display()
        found = read_sessions(store)
    if not found:
        echo(f"No agent sessions in store {where} yet.")
        return
    echo(f"Sessions in store {where}:")
    width = max(len(s.status) for s in found)
    echo(f"{'session':<12}  {'kind':<4}  {'status':<{width}}  {'turns':>5}  {'started':<27}  agent")
    for summary in found:
        turns = "-" if summary.turns is None else str(summary.turns)
        echo(
            f"{summary.session_id:<12}  {summary.kind:<4}  {summary.status:<{width}}  "
            f"{turns:>5}  {summary.started_at:<27}  {summary.agent} ({_project(summary)})"
            + (f", replay of {summary.replay_of}" if summary.replay_of else "")
        )


@sessions.command("show")
@click.argument("session")
@pass_state
def show_session(state: AppState, session: str) -> None:
    """One session: its project and folder, agent, model, store, how it ended, its turns,
    calls and replays. `agentledger transcript SESSION` prints the conversation."""
    from agentledger.agents.catalog import session_details

    with read_sessions_store(state) as store:
        where = store.location.display()
        details = session_details(store, session)
    if details is None:
        raise UserError(f"no agent session {session!r} in store {where}; {WHERE_SESSIONS_ARE}")
    summary = details.summary
    echo(f"session     {summary.session_id} ({summary.kind})")
    echo(f"project     {_project(summary)}")
    echo(f"agent       {summary.agent}")
    echo(f"model       {summary.model or '-'}")
    echo(f"store       {where}")
    echo(f"started     {summary.started_at}")
    ended = f"{summary.ended_at}, {summary.status}" if summary.ended_at else summary.status
    echo(f"ended       {ended}")
    failed = f", {details.turns_failed} failed" if details.turns_failed else ""
    echo(f"turns       {details.turns_completed} completed{failed}")
    echo(
        f"calls       {details.model_calls} model, {details.tool_calls} tool, "
        f"{details.tokens} tokens"
    )
    if summary.replay_of:
        echo(f"replay of   {summary.replay_of} (mode {summary.record_mode})")
    if details.replays:
        echo(f"replays     {', '.join(details.replays)}")


def read_sessions_store(state: AppState) -> EventStore:
    """The store, for reading; a missing one is an error saying where sessions are kept."""
    from agentledger.eventstore.errors import StoreUnavailableError

    try:
        return state.read_store()
    except StoreUnavailableError as exc:
        raise UserError(missing_store(exc)) from None


def missing_store(exc: Exception, *, experiments: bool = False) -> str:
    """The message for a store that could not be opened, saying where sessions (and, for
    commands that take either, experiments) are kept when it does not exist."""
    text = str(exc)
    if not text.startswith("no store at "):
        return text
    if experiments:
        return (
            f"{text.split(';')[0]}; run an experiment first (an experiment is recorded in "
            f"its project's store), or: {WHERE_SESSIONS_ARE}"
        )
    return f"{text.split(';')[0]}; {WHERE_SESSIONS_ARE}"


def _project(summary: SessionSummary) -> str:
    return f"{summary.project}, {summary.project_dir}" if summary.project_dir else summary.project
