"""Subscriptions: ``subscription_cursor.pruned_seq``, the newest event number deleted by the
retention pruning (``resources/subscriptions/delivery.py``, ``prune``): events up to it are gone,
so ``$events`` and ``$resend`` can tell a pruned event from one that never was.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("subscription_cursor") as batch:
        batch.add_column(sa.Column("pruned_seq", sa.BigInteger, nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("subscription_cursor") as batch:
        batch.drop_column("pruned_seq")
