"""``agentledger db``: schema migrations of the store."""

from __future__ import annotations

import click

from agentledger.cli.options import AppState, pass_state


@click.group()
def db() -> None:
    """Create, upgrade and inspect the store's schema."""


@db.command()
@pass_state
def upgrade(state: AppState) -> None:
    """Create the store if needed and migrate it to the newest schema."""
    with state.open_store(schema="skip") as store:
        before = store.schema_revision()
        after = store.upgrade()
    if before == after:
        click.echo(f"{store.location.display()}: already at revision {after} (head)")
    else:
        click.echo(f"{store.location.display()}: upgraded {before or 'empty'} -> {after} (head)")


@db.command()
@pass_state
def current(state: AppState) -> None:
    """Show the schema revision the store is at."""
    from agentledger import migrations

    with state.open_store(create=False, schema="skip") as store:
        revision = store.schema_revision()
    head = migrations.head_revision()
    if revision == head:
        status = "head"
    elif revision is None:
        status = "empty; run `agentledger db upgrade`"
    elif revision in migrations.known_revisions():
        status = f"behind {head}; run `agentledger db upgrade`"
    else:
        status = "newer than this agentledger; upgrade agentledger"
    click.echo(f"{revision or 'none'} ({status})")
