"""Resource, version and conditional-create tables.

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

from resources.storage.schema import UtcDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

Document = sa.JSON().with_variant(JSONB(), "postgresql")
PrimaryKey = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "resource",
        sa.Column("pk", PrimaryKey, primary_key=True, autoincrement=True),
        sa.Column("res_type", sa.String(64), nullable=False),
        sa.Column("res_id", sa.String(64), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("last_updated", UtcDateTime(), nullable=False),
        sa.Column("deleted", sa.Boolean, nullable=False),
        sa.Column("content", Document, nullable=True),
        sa.Column("content_hash", sa.String(64), nullable=True),
        sa.PrimaryKeyConstraint("pk", name="pk_resource"),
        sa.UniqueConstraint("res_type", "res_id", name="uq_resource_res_type_res_id"),
    )
    op.create_index("ix_resource_res_type_last_updated", "resource", ["res_type", "last_updated"])
    op.create_table(
        "resource_version",
        sa.Column("res_pk", sa.BigInteger, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("res_type", sa.String(64), nullable=False),
        sa.Column("res_id", sa.String(64), nullable=False),
        sa.Column("last_updated", UtcDateTime(), nullable=False),
        sa.Column("method", sa.String(8), nullable=False),
        sa.Column("deleted", sa.Boolean, nullable=False),
        sa.Column("content", Document, nullable=True),
        sa.Column("content_hash", sa.String(64), nullable=True),
        sa.PrimaryKeyConstraint("res_pk", "version", name="pk_resource_version"),
    )
    op.create_index("ix_resource_version_last_updated", "resource_version", ["last_updated"])
    op.create_index(
        "ix_resource_version_res_type_last_updated",
        "resource_version",
        ["res_type", "last_updated"],
    )
    op.create_table(
        "search_url",
        sa.Column("res_type", sa.String(64), nullable=False),
        sa.Column("url_hash", sa.String(64), nullable=False),
        sa.Column("res_pk", sa.BigInteger, nullable=False),
        sa.Column("created", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("res_type", "url_hash", name="pk_search_url"),
    )
    op.create_index("ix_search_url_res_pk", "search_url", ["res_pk"])


def downgrade() -> None:
    op.drop_table("search_url")
    op.drop_table("resource_version")
    op.drop_table("resource")
