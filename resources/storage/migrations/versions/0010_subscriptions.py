"""Subscriptions: the registration of each Subscription and the outbox of its events
(``resources/subscriptions/tables.py``).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

from resources.storage.schema import Document, UtcDateTime

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "subscription_reg",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("res_type", sa.String(64), nullable=False),
        sa.Column("query", sa.Text, nullable=False),
        sa.Column("topic", sa.String(256), nullable=True),
        sa.Column("owner", Document, nullable=True),
        sa.Column("owner_hash", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("endpoint", sa.Text, nullable=False),
        sa.Column("payload", sa.String(64), nullable=False),
        sa.Column("headers", Document, nullable=False),
        sa.Column("last_seq", sa.BigInteger, nullable=False),
        sa.Column("delivered_seq", sa.BigInteger, nullable=False),
        sa.Column("failures", sa.Integer, nullable=False),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("created", UtcDateTime(), nullable=False),
        sa.Column("updated", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_subscription_reg"),
    )
    op.create_index("ix_subscription_reg_type", "subscription_reg", ["res_type", "status"])
    op.create_table(
        "subscription_event",
        sa.Column("sub_id", sa.String(64), nullable=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("res_type", sa.String(64), nullable=False),
        sa.Column("res_id", sa.String(64), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("created", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("sub_id", "seq", name="pk_subscription_event"),
    )


def downgrade() -> None:
    op.drop_table("subscription_event")
    op.drop_index("ix_subscription_reg_type", table_name="subscription_reg")
    op.drop_table("subscription_reg")
