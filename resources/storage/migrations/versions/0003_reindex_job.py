"""Reindex jobs: the saved position of each ``hearth reindex`` / ``$reindex`` run.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op

from resources.storage.schema import UtcDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "reindex_job",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("res_type", sa.String(64), nullable=True),
        sa.Column("last_pk", sa.BigInteger, nullable=False),
        sa.Column("done_count", sa.BigInteger, nullable=False),
        sa.Column("total", sa.BigInteger, nullable=False),
        sa.Column("finished", sa.Boolean, nullable=False),
        sa.Column("started", UtcDateTime(), nullable=False),
        sa.Column("updated", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_reindex_job"),
    )


def downgrade() -> None:
    op.drop_table("reindex_job")
