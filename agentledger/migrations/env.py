"""Alembic environment: always runs on the connection handed over by ``migrations.upgrade``."""

from alembic import context

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("agentledger migrations run only through migrations.upgrade(connection)")

context.configure(
    connection=connection,
    # SQLite cannot ALTER most things in place; batch mode copies and swaps the table.
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
