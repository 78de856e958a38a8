"""The connection budget checked at start (README "Connection budget"): `hearth serve` compares
what its processes may open with PostgreSQL's ``max_connections`` and says so when they could
exhaust it. It does not refuse to start: other programs' share is not known from here, and a
request that finds no connection is answered 503 with ``Retry-After``, not 500."""

from __future__ import annotations

import sqlalchemy as sa

from fhir_server.runtime.settings import Settings
from resources.storage.db import create_engine


def over_budget(workers: int, per_process: int, max_connections: int, reserved: int) -> str | None:
    """The warning when ``workers`` processes of ``per_process`` connections each could take
    more than PostgreSQL leaves to ordinary roles (``max_connections - reserved``), else None."""
    peak = workers * per_process
    available = max_connections - reserved
    if peak <= available:
        return None
    return (
        f"{workers} process(es) may open {peak} PostgreSQL connections "
        f"({per_process} each: HEARTH_DB_POOL_SIZE + HEARTH_DB_MAX_OVERFLOW + 3 x "
        f"HEARTH_DB_LOOKUP_POOL_SIZE) but the server allows {available} "
        f"(max_connections {max_connections} - {reserved} reserved); requests beyond get 503"
    )


def check(settings: Settings) -> str | None:
    """``over_budget`` for ``settings`` against the database's own limits (PostgreSQL only)."""
    if not settings.database_url.startswith(("postgresql", "postgres:")):
        return None
    engine = create_engine(settings.database_url, pool_size=1, max_overflow=0)
    try:
        with engine.connect() as conn:
            limit = int(conn.execute(sa.text("SHOW max_connections")).scalar_one())
            reserved = int(
                conn.execute(sa.text("SHOW superuser_reserved_connections")).scalar_one()
            )
    finally:
        engine.dispose()
    return over_budget(settings.workers, settings.db_connections_per_process, limit, reserved)
