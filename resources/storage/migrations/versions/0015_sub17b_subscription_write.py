"""Subscriptions: one outbox row per matched write (``subscription_write``, with the ids of the
subscriptions it matched), numbered per subscription when it is spread into
``subscription_event`` rows (``resources/subscriptions/delivery.py``, ``spread``); the counters
(``last_seq``, ``delivered_seq``) move from ``subscription_reg`` to ``subscription_cursor``, with
the time of the last notification taken (``sent_at``); a registration keeps its heartbeat period.

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
    op.create_table(
        "subscription_cursor",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("last_seq", sa.BigInteger, nullable=False),
        sa.Column("delivered_seq", sa.BigInteger, nullable=False),
        sa.Column("sent_at", UtcDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_subscription_cursor"),
    )
    op.execute(
        "INSERT INTO subscription_cursor (id, last_seq, delivered_seq) "
        "SELECT id, last_seq, delivered_seq FROM subscription_reg"
    )
    with op.batch_alter_table("subscription_reg") as batch:
        batch.drop_column("last_seq")
        batch.drop_column("delivered_seq")
        batch.add_column(sa.Column("heartbeat", sa.Integer, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("subscription_reg") as batch:
        batch.drop_column("heartbeat")
        batch.add_column(sa.Column("last_seq", sa.BigInteger, nullable=False, server_default="0"))
        batch.add_column(
            sa.Column("delivered_seq", sa.BigInteger, nullable=False, server_default="0")
        )
    op.execute(
        "UPDATE subscription_reg SET last_seq = (SELECT last_seq FROM subscription_cursor k "
        "WHERE k.id = subscription_reg.id), delivered_seq = (SELECT delivered_seq FROM "
        "subscription_cursor k WHERE k.id = subscription_reg.id)"
    )
    op.drop_table("subscription_cursor")
    op.drop_table("subscription_write")
