"""Subscriptions: ``subscription_cursor.pruned_seq``, the newest event number deleted by the
retention pruning (``resources/subscriptions/delivery.py``, ``prune``): events up to it are gone,
so ``$events`` and ``$resend`` can tell a pruned event from one that never was; and
``subscription_reg.content``, the payload content a Subscription asks for (Backport IG
``backport-payload-content``: empty | id-only | full-resource).

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("subscription_cursor") as batch:
        batch.add_column(sa.Column("pruned_seq", sa.BigInteger, nullable=False, server_default="0"))
    with op.batch_alter_table("subscription_reg") as batch:
        batch.add_column(
            sa.Column("content", sa.String(16), nullable=False, server_default="full-resource")
        )


def downgrade() -> None:
    with op.batch_alter_table("subscription_reg") as batch:
        batch.drop_column("content")
    with op.batch_alter_table("subscription_cursor") as batch:
        batch.drop_column("pruned_seq")
