"""SMART authorization tables (clients, users, codes, tokens, launches, assertion ids) and the
append-only audit log, whose rows the database itself refuses to UPDATE or DELETE.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

from resources.storage.schema import UtcDateTime

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

Document = sa.JSON().with_variant(JSONB(), "postgresql")
PrimaryKey = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

PG_GUARD = """
CREATE FUNCTION audit_event_append_only() RETURNS trigger AS $$
BEGIN
  RAISE EXCEPTION 'audit_event rows are append-only';
END $$ LANGUAGE plpgsql;
CREATE TRIGGER audit_event_append_only BEFORE UPDATE OR DELETE ON audit_event
  FOR EACH ROW EXECUTE FUNCTION audit_event_append_only();
CREATE TRIGGER audit_event_no_truncate BEFORE TRUNCATE ON audit_event
  FOR EACH STATEMENT EXECUTE FUNCTION audit_event_append_only();
"""

SQLITE_GUARD = [
    "CREATE TRIGGER audit_event_no_update BEFORE UPDATE ON audit_event "
    "BEGIN SELECT RAISE(ABORT, 'audit_event rows are append-only'); END",
    "CREATE TRIGGER audit_event_no_delete BEFORE DELETE ON audit_event "
    "BEGIN SELECT RAISE(ABORT, 'audit_event rows are append-only'); END",
]


def upgrade() -> None:
    op.create_table(
        "auth_client",
        sa.Column("client_id", sa.String(128), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("secret_hash", sa.String(64)),
        sa.Column("jwks", Document),
        sa.Column("redirect_uris", Document, nullable=False),
        sa.Column("scope", sa.Text, nullable=False),
        sa.Column("created", UtcDateTime(), nullable=False),
    )
    op.create_table(
        "auth_user",
        sa.Column("username", sa.String(128), primary_key=True),
        sa.Column("password_hash", sa.String(200), nullable=False),
        sa.Column("fhir_user", sa.String(200)),
        sa.Column("role", sa.String(32), nullable=False),
        sa.Column("email", sa.String(320)),
        sa.Column("totp_secret", sa.String(64)),
        sa.Column("totp_last_step", sa.BigInteger),
        sa.Column("recovery_codes", Document, nullable=False),
        sa.Column("failed_count", sa.Integer, nullable=False),
        sa.Column("locked_until", UtcDateTime()),
        sa.Column("created", UtcDateTime(), nullable=False),
    )
    op.create_table(
        "auth_code",
        sa.Column("code_hash", sa.String(64), primary_key=True),
        sa.Column("client_id", sa.String(128), nullable=False),
        sa.Column("username", sa.String(128), nullable=False),
        sa.Column("redirect_uri", sa.Text, nullable=False),
        sa.Column("scope", sa.Text, nullable=False),
        sa.Column("code_challenge", sa.String(128), nullable=False),
        sa.Column("context", Document, nullable=False),
        sa.Column("expires", UtcDateTime(), nullable=False),
        sa.Column("used", sa.Boolean, nullable=False),
    )
    op.create_table(
        "auth_token",
        sa.Column("token_hash", sa.String(64), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("client_id", sa.String(128), nullable=False),
        sa.Column("username", sa.String(128)),
        sa.Column("scope", sa.Text, nullable=False),
        sa.Column("context", Document, nullable=False),
        sa.Column("audience", sa.Text, nullable=False),
        sa.Column("expires", UtcDateTime(), nullable=False),
        sa.Column("revoked", sa.Boolean, nullable=False),
        sa.Column("grant_id", sa.String(64), nullable=False),
        sa.Column("created", UtcDateTime(), nullable=False),
    )
    op.create_index("ix_auth_token_grant_id", "auth_token", ["grant_id"])
    op.create_table(
        "auth_launch",
        sa.Column("launch_hash", sa.String(64), primary_key=True),
        sa.Column("context", Document, nullable=False),
        sa.Column("expires", UtcDateTime(), nullable=False),
    )
    op.create_table(
        "auth_jti",
        sa.Column("client_id", sa.String(128), primary_key=True),
        sa.Column("jti", sa.String(200), primary_key=True),
        sa.Column("expires", UtcDateTime(), nullable=False),
    )
    op.create_table(
        "audit_event",
        sa.Column("seq", PrimaryKey, primary_key=True, autoincrement=True),
        sa.Column("recorded", UtcDateTime(), nullable=False),
        sa.Column("event", Document, nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
    )
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        op.execute(PG_GUARD)
    else:
        for stmt in SQLITE_GUARD:
            op.execute(stmt)


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        op.execute("DROP TABLE audit_event")
        op.execute("DROP FUNCTION audit_event_append_only()")
    else:
        op.drop_table("audit_event")
    for name in ("auth_jti", "auth_launch", "auth_token", "auth_code", "auth_user", "auth_client"):
        op.drop_table(name)
