"""SQLAlchemy Core tables the store queries. The DDL itself lives in the alembic migrations."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()

# On SQLite, ``INTEGER PRIMARY KEY`` makes ``position`` the rowid.
PositionType = BigInteger().with_variant(Integer(), "sqlite")

events = Table(
    "events",
    metadata,
    Column("position", PositionType, primary_key=True, autoincrement=False),
    Column("event_id", String(36), nullable=False, unique=True),
    Column("stream_id", String(200), nullable=False),
    Column("stream_version", Integer, nullable=False),
    Column("type", String(100), nullable=False),
    Column("schema_version", Integer, nullable=False),
    Column("correlation_id", String(200), nullable=True),
    Column("data", Text, nullable=False),
    Column("metadata", Text, nullable=False),
    Column("recorded_at", String(32), nullable=False),
    Column("hash", String(64), nullable=False),
    UniqueConstraint("stream_id", "stream_version", name="uq_events_stream_version"),
    Index("ix_events_correlation", "correlation_id", "position"),
)

checkpoints = Table(
    "checkpoints",
    metadata,
    Column("name", String(200), primary_key=True),
    Column("position", BigInteger().with_variant(Integer(), "sqlite"), nullable=False),
    Column("updated_at", String(32), nullable=False),
)

slots = Table(
    "slots",
    metadata,
    Column("experiment_id", String(200), primary_key=True),
    Column("slot", Integer, primary_key=True, autoincrement=False),
    Column("state", String(16), nullable=False),
    Column("owner", String(200), nullable=True),
    Column("lease_until", Float, nullable=True),
    Column("claims", Integer, nullable=False, server_default="0"),
    Index("ix_slots_state", "experiment_id", "state", "slot"),
)
"""Coordination state of experiments shared by workers (not part of the log: it is never
exported, and a slot's outcome is read from its trace stream, not from here)."""
