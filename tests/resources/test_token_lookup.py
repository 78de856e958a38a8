"""Bearer-token lookups on PostgreSQL use a pool without the pre-ping round trip; a connection
the server dropped is retried once on a fresh one, so a restart or an idle timeout never turns
into a failed request."""

from __future__ import annotations

from datetime import timedelta

import psycopg
import sqlalchemy as sa

from resources.auth_store import AuthStore
from resources.db import create_engine
from resources.migrate import upgrade
from resources.store import utcnow
from tests.servers import PG_ADMIN, create_pg_database, drop_pg_database


def test_lookup_survives_dropped_connections():
    name, url = create_pg_database()
    upgrade(url)
    engine = create_engine(url)
    lookup = create_engine(url, pool_size=2, pre_ping=False)
    try:
        store = AuthStore(engine, lookup)
        invalidated: list[object] = []
        sa.event.listen(lookup, "invalidate", lambda *args: invalidated.append(args))
        now = utcnow()
        store.add_token(
            "tok-1",
            kind="access",
            client_id="c",
            username=None,
            scope="system/*.rs",
            context={},
            audience="http://x/fhir",
            expires=now + timedelta(hours=1),
            grant_id="g",
            created=now,
        )
        assert store.token("tok-1").client_id == "c"  # type: ignore[union-attr]
        with psycopg.connect(PG_ADMIN, autocommit=True) as admin:  # the server drops them all
            killed = admin.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid()",
                (name,),
            ).fetchone()
        assert killed and killed[0] >= 1
        assert store.token("tok-1").client_id == "c"  # type: ignore[union-attr]
        assert invalidated  # the dropped connection was met, and the lookup retried
        assert store.token("unknown") is None
    finally:
        engine.dispose()
        lookup.dispose()
        drop_pg_database(name)
