"""The community forum (``resources/forum``, docs/community.md): ``forum_member`` (pseudonym,
e-mail opt-in, blocked), ``forum_post`` (threads and replies; the real author kept only here)
and ``forum_report`` (members' reports, the moderators' queue).

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

from resources.storage.schema import UtcDateTime

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "forum_member",
        sa.Column("username", sa.String(128), nullable=False),
        sa.Column("pseudonym", sa.String(40), nullable=False),
        sa.Column("pseudonym_key", sa.String(40), nullable=False),
        sa.Column("notify", sa.Boolean, nullable=False),
        sa.Column("blocked", sa.Boolean, nullable=False),
        sa.Column("blocked_reason", sa.Text),
        sa.Column("created", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("username", name="pk_forum_member"),
        sa.UniqueConstraint("pseudonym_key", name="uq_forum_member_pseudonym_key"),
    )
    op.create_table(
        "forum_post",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("thread_id", sa.String(64), nullable=False),
        sa.Column("author", sa.String(128), nullable=False),
        sa.Column("shown_name", sa.String(200)),
        sa.Column("author_role", sa.String(32)),
        sa.Column("topic", sa.String(200)),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("created", UtcDateTime(), nullable=False),
        sa.Column("hidden", sa.Boolean, nullable=False),
        sa.Column("hidden_reason", sa.Text),
        sa.PrimaryKeyConstraint("id", name="pk_forum_post"),
    )
    op.create_index("ix_forum_post_thread_id", "forum_post", ["thread_id"])
    op.create_table(
        "forum_report",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("post_id", sa.String(64), nullable=False),
        sa.Column("reporter", sa.String(128), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("created", UtcDateTime(), nullable=False),
        sa.Column("resolved", UtcDateTime()),
        sa.Column("resolution", sa.String(32)),
        sa.PrimaryKeyConstraint("id", name="pk_forum_report"),
    )
    op.create_index("ix_forum_report_post_id", "forum_report", ["post_id"])


def downgrade() -> None:
    op.drop_index("ix_forum_report_post_id", "forum_report")
    op.drop_table("forum_report")
    op.drop_index("ix_forum_post_thread_id", "forum_post")
    op.drop_table("forum_post")
    op.drop_table("forum_member")
