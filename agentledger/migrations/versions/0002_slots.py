"""Slots of experiments shared by workers: who holds each slot, and until when.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "slots",
        sa.Column("experiment_id", sa.String(200), primary_key=True),
        sa.Column("slot", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("owner", sa.String(200), nullable=True),
        sa.Column("lease_until", sa.Float, nullable=True),
        sa.Column("claims", sa.Integer, nullable=False, server_default="0"),
    )
    op.create_index("ix_slots_state", "slots", ["experiment_id", "state", "slot"])


def downgrade() -> None:
    op.drop_index("ix_slots_state", table_name="slots")
    op.drop_table("slots")
