"""Work queue: jobs that ``hearth worker`` processes claim (inference Tasks and later others).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

from resources.storage.schema import UtcDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "work_queue",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("key", sa.String(256), nullable=False),
        sa.Column("task_ref", sa.String(128), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("max_attempts", sa.Integer, nullable=False),
        sa.Column("not_before", UtcDateTime(), nullable=False),
        sa.Column("lease_until", UtcDateTime(), nullable=True),
        sa.Column("worker", sa.String(128), nullable=True),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Column("created", UtcDateTime(), nullable=False),
        sa.Column("updated", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_work_queue"),
        sa.UniqueConstraint("kind", "key", name="uq_work_queue_kind_key"),
    )
    op.create_index("ix_work_queue_claim", "work_queue", ["state", "not_before"])


def downgrade() -> None:
    op.drop_index("ix_work_queue_claim", table_name="work_queue")
    op.drop_table("work_queue")
