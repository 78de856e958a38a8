"""Account administration (the admin API, docs/security.md "Administering accounts"):
``auth_user.active`` (a deactivated account cannot sign in; its tokens are revoked) and
``auth_user.last_sign_in`` (the time of the last good login). Existing accounts stay active.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

from resources.storage.schema import UtcDateTime

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "auth_user", sa.Column("active", sa.Boolean, nullable=False, server_default=sa.true())
    )
    op.add_column("auth_user", sa.Column("last_sign_in", UtcDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("auth_user") as batch:
        batch.drop_column("last_sign_in")
        batch.drop_column("active")
