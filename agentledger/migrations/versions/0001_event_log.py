"""Event log and projection checkpoints.

Revision ID: 0001
Revises:
Create Date: 2026-11-21
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

Position = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "events",
        sa.Column("position", Position, primary_key=True, autoincrement=False),
        sa.Column("event_id", sa.String(36), nullable=False, unique=True),
        sa.Column("stream_id", sa.String(200), nullable=False),
        sa.Column("stream_version", sa.Integer, nullable=False),
        sa.Column("type", sa.String(100), nullable=False),
        sa.Column("schema_version", sa.Integer, nullable=False),
        sa.Column("correlation_id", sa.String(200), nullable=True),
        sa.Column("data", sa.Text, nullable=False),
        sa.Column("metadata", sa.Text, nullable=False),
        sa.Column("recorded_at", sa.String(32), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.UniqueConstraint("stream_id", "stream_version", name="uq_events_stream_version"),
    )
    op.create_index("ix_events_correlation", "events", ["correlation_id", "position"])
    if op.get_bind().dialect.name == "postgresql":
        # Wake LISTENing subscribers on every commit that added events, whatever wrote them.
        # Identical notifications in one transaction are folded into one by PostgreSQL.
        op.execute(
            "CREATE FUNCTION agentledger_notify() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN PERFORM pg_notify('agentledger_events', ''); RETURN NULL; END $$"
        )
        op.execute(
            "CREATE TRIGGER events_notify AFTER INSERT ON events "
            "FOR EACH STATEMENT EXECUTE FUNCTION agentledger_notify()"
        )
        # One round trip to serialise an append and read where it starts. The head is read
        # by a later statement than the lock, so (READ COMMITTED, VOLATILE) it sees every
        # append committed before the lock was granted.
        op.execute(
            """
            CREATE FUNCTION agentledger_lock_head(p_key bigint, p_stream text)
            RETURNS TABLE (max_position bigint, head_version integer, head_hash text)
            LANGUAGE plpgsql VOLATILE AS $$
            BEGIN
                PERFORM pg_advisory_xact_lock(p_key);
                RETURN QUERY
                SELECT (SELECT coalesce(max(e.position), 0) FROM events e)::bigint,
                       h.stream_version, h.hash::text
                FROM (SELECT 1) AS o
                LEFT JOIN (SELECT e.stream_version, e.hash FROM events e
                           WHERE e.stream_id = p_stream
                           ORDER BY e.stream_version DESC LIMIT 1) AS h ON true;
            END $$
            """
        )
    op.create_table(
        "checkpoints",
        sa.Column("name", sa.String(200), primary_key=True),
        sa.Column("position", Position, nullable=False),
        sa.Column("updated_at", sa.String(32), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("checkpoints")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS events_notify ON events")
        op.execute("DROP FUNCTION IF EXISTS agentledger_notify()")
        op.execute("DROP FUNCTION IF EXISTS agentledger_lock_head(bigint, text)")
    op.drop_index("ix_events_correlation", table_name="events")
    op.drop_table("events")
