"""Subscriptions: one outbox row per matched write (``subscription_write``, with the ids of the
subscriptions it matched), numbered per subscription when it is spread into
``subscription_event`` rows (``resources/subscriptions/delivery.py``, ``spread``).

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

from resources.storage.schema import Document, PrimaryKey, UtcDateTime

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "subscription_write",
        sa.Column("id", PrimaryKey, nullable=False, autoincrement=True),
        sa.Column("res_type", sa.String(64), nullable=False),
        sa.Column("res_id", sa.String(64), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("created", UtcDateTime(), nullable=False),
        sa.Column("subs", Document, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_subscription_write"),
    )


def downgrade() -> None:
    op.drop_table("subscription_write")
