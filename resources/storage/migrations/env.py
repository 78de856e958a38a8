"""Alembic environment: runs migrations on the connection or URL given in the config."""

from __future__ import annotations

from alembic import context

import resources.audit  # noqa: F401  (registers audit_event on metadata)
import resources.auth.key_store  # noqa: F401  (registers auth_key on metadata)
import resources.auth.store  # noqa: F401  (registers the auth tables on metadata)
import resources.forum  # noqa: F401  (registers the forum tables on metadata)
import resources.jobs.queue  # noqa: F401  (registers work_queue on metadata)
import resources.jobs.reindex  # noqa: F401  (registers reindex_job on metadata)
import resources.search.tables  # noqa: F401  (registers the index tables on metadata)
import resources.subscriptions.tables  # noqa: F401  (registers the subscription tables)
from resources.storage.db import create_engine
from resources.storage.schema import metadata

config = context.config
target_metadata = metadata


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        context.configure(connection=connection, target_metadata=target_metadata)
        with context.begin_transaction():
            context.run_migrations()
        return
    url = config.get_main_option("sqlalchemy.url")
    if url is None:
        raise RuntimeError("alembic: no connection given and no sqlalchemy.url configured")
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            context.configure(connection=conn, target_metadata=target_metadata)
            with context.begin_transaction():
                context.run_migrations()
            conn.commit()
    finally:
        engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline (SQL script) migrations are not supported; run `hearth db upgrade`")
run_migrations_online()
