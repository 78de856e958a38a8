"""Hearth's own private keys in the database (``auth_key``), shared by every node: the id_token /
audit-checkpoint signing key and the generated report signing key, each encrypted with
``HEARTH_SECRET_KEYS`` (``resources/auth/key_store.py``).

The keys are not moved here: encrypting needs Hearth's secret keys, not the migration's. The
first ``hearth serve`` (or worker, or ``hearth audit checkpoint``) after the upgrade imports the
key files of its data directory (``keys/signing-key.json``, ``keys/report-signing.pem``) once,
when the table has none yet (docs/deployment.md).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

from resources.storage.schema import UtcDateTime

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "auth_key",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("material", sa.Text, nullable=False),
        sa.Column("created", UtcDateTime(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("auth_key")
