"""TOTP seeds encrypted at rest: ``auth_user.totp_secret`` widens from 64 to 512 characters to
hold a Fernet token (a 32-character seed encrypts to 140).

The seeds themselves cannot be encrypted here: the key is Hearth's (``HEARTH_SECRET_KEYS`` or
``HEARTH_DATA_DIR/keys/secret-keys``), not the migration's. Seeds still in clear keep working
and are encrypted by the first ``hearth serve`` after the upgrade, by the first read of the
account, or by ``hearth users rotate-secrets`` (docs/security.md).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":  # SQLite does not enforce VARCHAR lengths
        op.alter_column(
            "auth_user",
            "totp_secret",
            type_=sa.String(512),
            existing_type=sa.String(64),
            existing_nullable=True,
        )


def downgrade() -> None:
    # Encrypted seeds do not fit 64 characters: decrypt them first (not done here).
    if op.get_bind().dialect.name == "postgresql":
        op.alter_column(
            "auth_user",
            "totp_secret",
            type_=sa.String(64),
            existing_type=sa.String(512),
            existing_nullable=True,
        )
