"""Resource tables: the current version of each resource, every version (history), and the
unique keys that make conditional create race-free.

Search index tables live in ``resources.search.tables`` on the same ``metadata``.

Design (after HAPI FHIR's HFJ_RESOURCE / HFJ_RES_VER and HFJ_RES_SEARCH_URL):
- ``resource`` holds one row per (type, id) with the current content, so a read or a search
  result fetch is a primary-key lookup with no join. ``deleted`` rows stay as tombstones.
- ``resource_version`` holds every version, the current one included, so history is one table.
- ``search_url`` holds the normalised criteria of each conditional create; its primary key makes
  two concurrent ``If-None-Exist`` creates collide in the database instead of both succeeding.
"""

from __future__ import annotations

from datetime import UTC

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "pk": "pk_%(table_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s",
    }
)

# JSON text on SQLite, JSONB on PostgreSQL.
Document = sa.JSON().with_variant(JSONB(), "postgresql")
# SQLite only auto-increments an INTEGER PRIMARY KEY.
PrimaryKey = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


class UtcDateTime(sa.TypeDecorator):
    """A timezone-aware UTC timestamp on both databases (SQLite stores it naive)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):  # type: ignore[no-untyped-def]
        if value is not None:
            if value.tzinfo is None:
                raise ValueError("naive datetime")
            value = value.astimezone(UTC)
            if dialect.name == "sqlite":
                value = value.replace(tzinfo=None)
        return value

    def process_result_value(self, value, dialect):  # type: ignore[no-untyped-def]
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


resource = sa.Table(
    "resource",
    metadata,
    sa.Column("pk", PrimaryKey, primary_key=True, autoincrement=True),
    sa.Column("res_type", sa.String(64), nullable=False),
    sa.Column("res_id", sa.String(64), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("last_updated", UtcDateTime(), nullable=False),
    sa.Column("deleted", sa.Boolean, nullable=False, default=False),
    sa.Column("content", Document, nullable=True),
    sa.Column("content_hash", sa.String(64), nullable=True),
    sa.UniqueConstraint("res_type", "res_id"),
    sa.Index(None, "res_type", "last_updated"),
    sa.Index(None, "res_type", "pk"),  # one type in pk order: Bulk Data export's keyset pages
)

resource_version = sa.Table(
    "resource_version",
    metadata,
    sa.Column("res_pk", sa.BigInteger, nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("res_type", sa.String(64), nullable=False),
    sa.Column("res_id", sa.String(64), nullable=False),
    sa.Column("last_updated", UtcDateTime(), nullable=False),
    # create | update | patch | delete (Bundle.entry.request.method in history is derived)
    sa.Column("method", sa.String(8), nullable=False),
    sa.Column("deleted", sa.Boolean, nullable=False, default=False),
    sa.Column("content", Document, nullable=True),
    sa.Column("content_hash", sa.String(64), nullable=True),
    sa.PrimaryKeyConstraint("res_pk", "version"),
    sa.Index(None, "last_updated"),
    sa.Index(None, "res_type", "last_updated"),
)

search_url = sa.Table(
    "search_url",
    metadata,
    sa.Column("res_type", sa.String(64), nullable=False),
    sa.Column("url_hash", sa.String(64), nullable=False),
    sa.Column("res_pk", sa.BigInteger, nullable=False),
    sa.Column("created", UtcDateTime(), nullable=False),
    sa.PrimaryKeyConstraint("res_type", "url_hash"),
    sa.Index(None, "res_pk"),
)
