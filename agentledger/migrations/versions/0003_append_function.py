"""PostgreSQL: an append is one statement (one round trip, committed on its own).

``agentledger_append`` takes the append lock, checks the heads the caller computed its
hash chain from, numbers the rows after the highest position and inserts them. If a head
differs it inserts nothing and returns the actual heads, so the caller can check its
expected versions, re-hash and try again. SQLite needs nothing: its appends are in-process.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

# The head of each stream as the caller assumes it (version 0 and hash '' for a new stream;
# a NULL hash when the caller does not know it, which never matches).
_HEADS = """
    SELECT s.stream_id, s.version, s.hash,
           coalesce(h.stream_version, 0) AS head_version, coalesce(h.hash, '')::text AS head_hash
    FROM unnest(p_streams, p_versions, p_hashes) AS s(stream_id, version, hash)
    LEFT JOIN LATERAL (
        SELECT e.stream_version, e.hash FROM events e
        WHERE e.stream_id = s.stream_id ORDER BY e.stream_version DESC LIMIT 1
    ) AS h ON true
"""

_APPEND = f"""
CREATE FUNCTION agentledger_append(
    p_key bigint,
    p_streams text[], p_versions integer[], p_hashes text[],
    r_event_ids text[], r_streams text[], r_versions integer[], r_types text[],
    r_schema_versions integer[], r_correlation_ids text[], r_data text[], r_metadata text[],
    r_hashes text[], p_recorded_at text)
RETURNS TABLE (first_position bigint, stream_id text, head_version integer, head_hash text)
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
DECLARE
    v_max bigint;
BEGIN
    -- Held until the statement's transaction commits: positions become visible in order.
    -- Every later statement takes a new snapshot, so it sees each append committed before
    -- the lock was granted.
    PERFORM pg_advisory_xact_lock(p_key);
    IF EXISTS (SELECT 1 FROM ({_HEADS}) AS c
               WHERE c.head_version <> c.version OR c.head_hash IS DISTINCT FROM c.hash) THEN
        RETURN QUERY SELECT NULL::bigint, c.stream_id, c.head_version, c.head_hash
                     FROM ({_HEADS}) AS c;
        RETURN;
    END IF;
    SELECT coalesce(max(e.position), 0) INTO v_max FROM events e;
    INSERT INTO events (position, event_id, stream_id, stream_version, type, schema_version,
                        correlation_id, data, metadata, recorded_at, hash)
    SELECT v_max + r.n, r.event_id, r.stream_id, r.version, r.type, r.schema_version,
           r.correlation_id, r.data, r.metadata, p_recorded_at, r.hash
    FROM unnest(r_event_ids, r_streams, r_versions, r_types, r_schema_versions,
                r_correlation_ids, r_data, r_metadata, r_hashes)
         WITH ORDINALITY AS r(event_id, stream_id, version, type, schema_version,
                              correlation_id, data, metadata, hash, n);
    RETURN QUERY SELECT v_max + 1, NULL::text, NULL::integer, NULL::text;
END $$
"""

_LOCK_HEAD = """
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


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_APPEND)
        op.execute("DROP FUNCTION IF EXISTS agentledger_lock_head(bigint, text)")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "DROP FUNCTION IF EXISTS agentledger_append(bigint, text[], integer[], text[], "
            "text[], text[], integer[], text[], integer[], text[], text[], text[], text[], text)"
        )
        op.execute(_LOCK_HEAD)
