"""A database that refuses connections is a 503 with ``Retry-After`` and a ``transient``
OperationOutcome, never a 500, and the server recovers once the database is back (issue 14).

A real PostgreSQL refuses: the test's own database is set to ``ALLOW_CONNECTIONS false`` and the
server's pooled connections are terminated, so every new connection is refused by the server."""

from __future__ import annotations

import tempfile
from pathlib import Path

import httpx
import psycopg
import pytest

from tests.servers import PG_ADMIN, database_url, start_server


@pytest.fixture
def pg_hearth():  # type: ignore[no-untyped-def]
    url, cleanup = database_url("postgresql", Path(tempfile.mkdtemp(prefix="hearth-down-")))
    running = start_server("postgresql", url)
    yield running, url.rsplit("/", 1)[1]
    running.stop()
    cleanup()


def _refuse(name: str, refuse: bool) -> None:
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS {"false" if refuse else "true"}')
        if refuse:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                (name,),
            )


def _assert_unavailable(resp: httpx.Response) -> None:
    assert resp.status_code == 503, resp.text
    assert int(resp.headers["retry-after"]) > 0
    body = resp.json()
    assert body["resourceType"] == "OperationOutcome"
    assert body["issue"][0]["code"] == "transient"
    assert "SELECT" not in resp.text and "psycopg" not in resp.text


def test_refused_connections_are_503_then_recover(pg_hearth):
    server, name = pg_hearth
    with httpx.Client(base_url=server.fhir, headers=server.headers, timeout=60) as client:
        created = client.post("/Patient", json={"resourceType": "Patient"})
        assert created.status_code == 201, created.text
        pid = created.json()["id"]
        _refuse(name, True)
        try:
            _assert_unavailable(client.get(f"/Patient/{pid}"))
            _assert_unavailable(client.get("/Patient", params={"_id": pid}))
            _assert_unavailable(client.post("/Patient", json={"resourceType": "Patient"}))
            _assert_unavailable(client.get("/_history"))
            batch = {
                "resourceType": "Bundle",
                "type": "batch",
                "entry": [{"request": {"method": "GET", "url": f"Patient/{pid}"}}],
            }
            _assert_unavailable(client.post("/", json=batch))
            _assert_unavailable(client.post("/Patient/$validate", json={"resourceType": "Patient"}))
        finally:
            _refuse(name, False)
        back = client.get(f"/Patient/{pid}")
        assert back.status_code == 200, back.text


def test_only_connection_failures_count_as_unavailable(tmp_path):
    """A statement's own fault (an OperationalError on SQLite, a cancelled query on PostgreSQL)
    stays a fault (500, logged); a refused connection or a locked SQLite file is unavailable."""
    import sqlalchemy as sa

    from resources.storage.db import create_engine, unavailable
    from tests.servers import free_port

    engine = create_engine(f"sqlite:///{tmp_path / 'x.db'}")
    with pytest.raises(sa.exc.OperationalError) as fault, engine.connect() as conn:
        conn.execute(sa.text("SELECT no_such_column FROM no_such_table"))
    assert not unavailable(fault.value)
    engine.dispose()

    closed = create_engine(f"postgresql://postgres@127.0.0.1:{free_port()}/postgres")
    with pytest.raises(sa.exc.OperationalError) as refused:
        closed.connect()
    assert unavailable(refused.value)
    closed.dispose()

    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute("SET statement_timeout = 1")
        with pytest.raises(psycopg.errors.QueryCanceled) as cancelled:
            conn.execute("SELECT pg_sleep(1)")
    assert not unavailable(cancelled.value)
