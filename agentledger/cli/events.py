"""``agentledger events``: read the raw log."""

from __future__ import annotations

import click

from agentledger.cli.errors import UserError
from agentledger.cli.options import AppState, pass_state
from agentledger.cli.output import echo


@click.group()
def events() -> None:
    """Inspect the event log."""


@events.command("list")
@click.option("--stream", "stream_id", metavar="STREAM", help="Only this stream.")
@click.option("--type", "types", metavar="TYPE", multiple=True, help="Only this type (repeatable).")
@click.option("--after", type=int, default=0, show_default=True, help="Start after this position.")
@click.option("--limit", type=click.IntRange(min=1), help="Stop after this many events.")
@click.option("--json", "as_json", is_flag=True, help="One JSON envelope per line.")
@click.option("--follow", is_flag=True, help="Keep printing new events until Ctrl-C.")
@pass_state
def list_events(
    state: AppState,
    stream_id: str | None,
    types: tuple[str, ...],
    after: int,
    limit: int | None,
    as_json: bool,
    follow: bool,
) -> None:
    """List events in position order."""
    import orjson

    from agentledger.events.payloads import known_types

    unknown = [t for t in types if t not in known_types()]
    if unknown:
        raise UserError(
            f"--type {unknown[0]!r} is not an event type; known: {', '.join(known_types())}"
        )
    if after < 0:
        raise UserError("--after must be a position >= 0")
    with state.read_store() as store:
        filters = {"stream_id": stream_id, "types": list(types) or None}
        source = (
            store.subscribe(after, poll_interval=0.2, **filters)
            if follow
            else store.read_all(after, **filters)
        )
        for count, event in enumerate(source, start=1):
            if as_json:
                line = orjson.dumps(event.to_dict(), option=orjson.OPT_SORT_KEYS).decode()
            else:
                line = (
                    f"{event.position:>8}  {event.recorded_at}  "
                    f"{event.stream_id} v{event.stream_version}  {event.type}"
                )
            echo(line)
            if limit is not None and count >= limit:
                break
