"""Bulk Data export jobs (``$export``): one row per kick-off, run through the work queue; and
an index on ``resource (res_type, pk)`` so that reading one type in pk order (the export's keyset
pages) is a range scan even for a type that is a small share of the table.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

from resources.storage.schema import UtcDateTime

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

Document = sa.JSON().with_variant(JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "bulk_export",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("client_id", sa.String(128), nullable=False),
        sa.Column("request", sa.Text, nullable=False),
        sa.Column("level", sa.String(16), nullable=False),
        sa.Column("spec", Document, nullable=False),
        sa.Column("transaction_time", UtcDateTime(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("progress", sa.Text, nullable=True),
        sa.Column("output", Document, nullable=True),
        sa.Column("error", Document, nullable=True),
        sa.Column("failure", sa.Text, nullable=True),
        sa.Column("created", UtcDateTime(), nullable=False),
        sa.Column("updated", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_bulk_export"),
    )
    op.create_index("ix_resource_res_type_pk", "resource", ["res_type", "pk"])


def downgrade() -> None:
    op.drop_index("ix_resource_res_type_pk", table_name="resource")
    op.drop_table("bulk_export")
