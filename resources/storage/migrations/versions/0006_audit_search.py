"""AuditEvent search: an index of the audit log's searchable values beside the hash chain, and an
index on the recorded time. Existing events are indexed from their stored JSON (the backfill
only reads ``audit_event``: no chained row or hash changes); the index is append-only like the
log.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

PrimaryKey = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
BATCH = 2000

PG_GUARD = """
CREATE TRIGGER audit_index_append_only BEFORE UPDATE OR DELETE ON audit_index
  FOR EACH ROW EXECUTE FUNCTION audit_event_append_only();
CREATE TRIGGER audit_index_no_truncate BEFORE TRUNCATE ON audit_index
  FOR EACH STATEMENT EXECUTE FUNCTION audit_event_append_only();
"""

SQLITE_GUARD = [
    "CREATE TRIGGER audit_index_no_update BEFORE UPDATE ON audit_index "
    "BEGIN SELECT RAISE(ABORT, 'audit_index rows are append-only'); END",
    "CREATE TRIGGER audit_index_no_delete BEFORE DELETE ON audit_index "
    "BEGIN SELECT RAISE(ABORT, 'audit_index rows are append-only'); END",
]


def upgrade() -> None:
    op.create_index("ix_audit_event_recorded", "audit_event", ["recorded", "seq"])
    op.create_table(
        "audit_index",
        sa.Column("seq", PrimaryKey, nullable=False),
        sa.Column("name", sa.String(32), nullable=False),
        sa.Column("system", sa.String(255)),
        sa.Column("value", sa.String(512), nullable=False),
    )
    _backfill()
    op.create_index("ix_audit_index_lookup", "audit_index", ["name", "value", "seq"])
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        op.execute(PG_GUARD)
    else:
        for stmt in SQLITE_GUARD:
            op.execute(stmt)


def _backfill() -> None:
    """Index the events already in the log, in chain order, a batch at a time."""
    from resources.audit import audit_event
    from resources.storage.migrations.audit_terms_0006 import index_rows

    conn = op.get_bind()
    after = 0
    while True:
        batch = conn.execute(
            sa.select(audit_event.c.seq, audit_event.c.event)
            .where(audit_event.c.seq > after)
            .order_by(audit_event.c.seq)
            .limit(BATCH)
        ).all()
        if not batch:
            return
        index_rows(conn, [(seq, event) for seq, event in batch])
        after = batch[-1][0]


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        op.execute("DROP TABLE audit_index")
    else:
        op.drop_table("audit_index")
    op.drop_index("ix_audit_event_recorded", "audit_event")
