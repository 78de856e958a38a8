"""The blob store's database backend (``resources/storage/blobs.py``): ``blob`` names each blob
and its current generation, ``blob_chunk`` holds the bytes in rows of at most 1 MiB. Used when
``HEARTH_BLOB_STORE=database``; empty otherwise (docs/deployment.md).

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

from resources.storage.schema import UtcDateTime

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "blob",
        sa.Column("key", sa.String(512), nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("chunks", sa.Integer, nullable=False),
        sa.Column("generation", sa.String(32), nullable=False),
        sa.Column("created", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("key", name="pk_blob"),
    )
    op.create_table(
        "blob_chunk",
        sa.Column("key", sa.String(512), nullable=False),
        sa.Column("generation", sa.String(32), nullable=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("data", sa.LargeBinary, nullable=False),
        sa.PrimaryKeyConstraint("key", "generation", "seq", name="pk_blob_chunk"),
    )


def downgrade() -> None:
    op.drop_table("blob_chunk")
    op.drop_table("blob")
