"""PostgreSQL connections the server dropped while they sat in the pool (a restart, an idle
timeout): a read skips the pre-ping round trip and runs once more on a fresh connection; a
write's checkout is still pinged, so it never starts on a dead connection."""

from __future__ import annotations

import psycopg
import sqlalchemy as sa

from resources.search import SearchEngine
from resources.storage.db import create_engine
from resources.storage.migrate import upgrade
from resources.storage.repository import Repository
from tests.servers import PG_ADMIN, create_pg_database, drop_pg_database


def _drop_all(name: str) -> int:
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        row = admin.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()",
            (name,),
        ).fetchone()
    return row[0] if row else 0


def test_reads_and_writes_survive_dropped_connections():
    name, url = create_pg_database()
    upgrade(url)
    engine = create_engine(url)
    try:
        repo = Repository(engine, SearchEngine(base_urls=("http://x/fhir",)))
        pings: list[object] = []
        ping = engine.dialect.do_ping
        engine.dialect.do_ping = lambda conn: pings.append(conn) or ping(conn)  # type: ignore[method-assign]
        invalidated: list[object] = []
        sa.event.listen(engine, "invalidate", lambda *args: invalidated.append(args))
        made = repo.run(lambda u: u.create({"resourceType": "Patient", "gender": "female"}))
        rid = made.stored.res_id
        pings.clear()
        assert repo.read(lambda u: u.read("Patient", rid)).content["gender"] == "female"
        assert not pings  # a read checks its connection out without the ping round trip
        assert _drop_all(name) >= 1
        # the read meets the dropped connection, the pool is invalidated, it runs again
        assert repo.read(lambda u: u.read("Patient", rid)).content["gender"] == "female"
        assert invalidated
        assert _drop_all(name) >= 1
        invalidated.clear()
        # a write's checkout pings: the dead connection is replaced before the transaction
        repo.run(lambda u: u.update("Patient", rid, {"resourceType": "Patient", "id": rid}))
        assert pings and invalidated
        assert repo.read(lambda u: u.read("Patient", rid)).version == 2
    finally:
        engine.dispose()
        drop_pg_database(name)
