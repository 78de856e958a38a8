"""Bulk Data import jobs (``$import``): one row per kick-off, run through the work queue, with
the job's cursor (input, last line done, counts); and the OperationOutcome of each bad line
(``bulk_import_error``), written in the same transaction as the batch it belonged to.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

from resources.storage.schema import Document, PrimaryKey, UtcDateTime

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "bulk_import",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("client_id", sa.String(128), nullable=False),
        sa.Column("who", Document, nullable=False),
        sa.Column("request", sa.Text, nullable=False),
        sa.Column("spec", Document, nullable=False),
        sa.Column("transaction_time", UtcDateTime(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("progress", sa.Text, nullable=True),
        sa.Column("cursor", Document, nullable=False),
        sa.Column("failure", sa.Text, nullable=True),
        sa.Column("created", UtcDateTime(), nullable=False),
        sa.Column("updated", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_bulk_import"),
    )
    op.create_table(
        "bulk_import_error",
        sa.Column("pk", PrimaryKey, nullable=False, autoincrement=True),
        sa.Column("job_id", sa.String(64), nullable=False),
        sa.Column("input", sa.Integer, nullable=False),
        sa.Column("line", sa.Integer, nullable=False),
        sa.Column("outcome", Document, nullable=False),
        sa.PrimaryKeyConstraint("pk", name="pk_bulk_import_error"),
    )
    op.create_index("ix_bulk_import_error_job_id_input", "bulk_import_error", ["job_id", "input"])


def downgrade() -> None:
    op.drop_index("ix_bulk_import_error_job_id_input", table_name="bulk_import_error")
    op.drop_table("bulk_import_error")
    op.drop_table("bulk_import")
