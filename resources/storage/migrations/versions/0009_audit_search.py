"""AuditEvents searched by the search engine: each event of the hash-chained ``audit_event`` log is
shown as an ordinary ``resource`` row, ``AuditEvent/audit-SEQ``, indexed in the ordinary index
tables (``resources.audit.project``); ``audit_index`` (0006) goes.

The chain is not touched: no chained row or hash changes. The projections are append-only like the
chain (triggers refuse UPDATE and DELETE of AuditEvent rows in ``resource``), and ``hearth audit
verify`` checks each against its chained row. AuditEvent rows the resource table held before
(written as ordinary resources, outside the log) are moved into the log: appended to the chain
in their order with their ``lastUpdated`` as the time of the append, under new ``audit-SEQ`` ids.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

BATCH = 2000
NO_CHANGE = "AuditEvent rows are append-only: they show the audit log"

PG_GUARD = f"""
CREATE FUNCTION audit_resource_append_only() RETURNS trigger AS $$
BEGIN
  RAISE EXCEPTION '{NO_CHANGE}';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER audit_resource_append_only BEFORE UPDATE OR DELETE ON resource
  FOR EACH ROW WHEN (OLD.res_type = 'AuditEvent') EXECUTE FUNCTION audit_resource_append_only();
"""
PG_UNGUARD = """
DROP TRIGGER audit_resource_append_only ON resource;
DROP FUNCTION audit_resource_append_only();
"""

SQLITE_GUARD = [
    "CREATE TRIGGER audit_resource_no_update BEFORE UPDATE ON resource "
    f"WHEN OLD.res_type = 'AuditEvent' BEGIN SELECT RAISE(ABORT, '{NO_CHANGE}'); END",
    "CREATE TRIGGER audit_resource_no_delete BEFORE DELETE ON resource "
    f"WHEN OLD.res_type = 'AuditEvent' BEGIN SELECT RAISE(ABORT, '{NO_CHANGE}'); END",
]
SQLITE_UNGUARD = [
    "DROP TRIGGER audit_resource_no_update",
    "DROP TRIGGER audit_resource_no_delete",
]


def upgrade() -> None:
    from resources import audit

    conn = op.get_bind()
    if conn.dialect.name == "postgresql":
        op.execute("DROP TABLE audit_index")  # its triggers go with it
    else:
        op.drop_table("audit_index")
    legacy = _take_legacy_rows(conn)
    after = 0
    while True:  # the chain's events, in chain order, a batch at a time
        batch = conn.execute(
            sa.select(
                audit.audit_event.c.seq, audit.audit_event.c.recorded, audit.audit_event.c.event
            )
            .where(audit.audit_event.c.seq > after)
            .order_by(audit.audit_event.c.seq)
            .limit(BATCH)
        ).all()
        if not batch:
            break
        audit.project(conn, [(seq, recorded, event) for seq, recorded, event in batch])
        after = batch[-1][0]
    for start in range(0, len(legacy), BATCH):
        audit.append_many(conn, legacy[start : start + BATCH], keep_recorded=True)
    if conn.dialect.name == "postgresql":
        op.execute(PG_GUARD)
    else:
        for stmt in SQLITE_GUARD:
            op.execute(stmt)


def _take_legacy_rows(conn: sa.Connection) -> list[tuple]:
    """The current AuditEvents of the resource table as ``(lastUpdated, event)``, in the order
    they were written, removed with their versions, index rows and conditional-create claims."""
    from resources.search.writer import delete_rows
    from resources.storage.schema import resource, resource_version, search_url

    rows = conn.execute(
        sa.select(resource.c.pk, resource.c.last_updated, resource.c.content, resource.c.deleted)
        .where(resource.c.res_type == "AuditEvent")
        .order_by(resource.c.pk)
    ).all()
    if not rows:
        return []
    pks = [r.pk for r in rows]
    for start in range(0, len(pks), BATCH):
        chunk = pks[start : start + BATCH]
        delete_rows(conn, chunk)
        conn.execute(sa.delete(search_url).where(search_url.c.res_pk.in_(chunk)))
    conn.execute(sa.delete(resource_version).where(resource_version.c.res_type == "AuditEvent"))
    conn.execute(sa.delete(resource).where(resource.c.res_type == "AuditEvent"))
    out = []
    for r in rows:
        if r.deleted or not isinstance(r.content, dict):
            continue
        event = {k: v for k, v in r.content.items() if k != "id"}
        meta = {
            k: v
            for k, v in (event.get("meta") or {}).items()
            if k not in ("versionId", "lastUpdated")
        }
        event.pop("meta", None)
        if meta:
            event["meta"] = meta
        out.append((r.last_updated, event))
    return out


def downgrade() -> None:
    """Back to 0006's ``audit_index``, refilled from the chain; the AuditEvent resource rows (the
    chain's projections) go. AuditEvents moved into the log by the upgrade stay in the log."""
    from resources import audit
    from resources.search.writer import delete_rows
    from resources.storage.migrations.audit_terms_0006 import index_rows
    from resources.storage.schema import resource

    conn = op.get_bind()
    if conn.dialect.name == "postgresql":
        op.execute(PG_UNGUARD)
    else:
        for stmt in SQLITE_UNGUARD:
            op.execute(stmt)
    pks = list(
        conn.execute(sa.select(resource.c.pk).where(resource.c.res_type == "AuditEvent")).scalars()
    )
    for start in range(0, len(pks), BATCH):
        delete_rows(conn, pks[start : start + BATCH])
    conn.execute(sa.delete(resource).where(resource.c.res_type == "AuditEvent"))
    op.create_table(
        "audit_index",
        sa.Column("seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("name", sa.String(32), nullable=False),
        sa.Column("system", sa.String(255)),
        sa.Column("value", sa.String(512), nullable=False),
    )
    after = 0
    while True:
        batch = conn.execute(
            sa.select(audit.audit_event.c.seq, audit.audit_event.c.event)
            .where(audit.audit_event.c.seq > after)
            .order_by(audit.audit_event.c.seq)
            .limit(BATCH)
        ).all()
        if not batch:
            break
        index_rows(conn, [(seq, event) for seq, event in batch])
        after = batch[-1][0]
    op.create_index("ix_audit_index_lookup", "audit_index", ["name", "value", "seq"])
    if conn.dialect.name == "postgresql":
        op.execute(
            "CREATE TRIGGER audit_index_append_only BEFORE UPDATE OR DELETE ON audit_index "
            "FOR EACH ROW EXECUTE FUNCTION audit_event_append_only();"
            "CREATE TRIGGER audit_index_no_truncate BEFORE TRUNCATE ON audit_index "
            "FOR EACH STATEMENT EXECUTE FUNCTION audit_event_append_only();"
        )
    else:
        for stmt in (
            "CREATE TRIGGER audit_index_no_update BEFORE UPDATE ON audit_index "
            "BEGIN SELECT RAISE(ABORT, 'audit_index rows are append-only'); END",
            "CREATE TRIGGER audit_index_no_delete BEFORE DELETE ON audit_index "
            "BEGIN SELECT RAISE(ABORT, 'audit_index rows are append-only'); END",
        ):
            op.execute(stmt)
