"""The connection budget (issue 22): each process's PostgreSQL pools are sized from settings
(``HEARTH_DB_POOL_SIZE``, ``HEARTH_DB_MAX_OVERFLOW``, ``HEARTH_DB_POOL_TIMEOUT``,
``HEARTH_DB_LOOKUP_POOL_SIZE``), and a request that finds no connection — its pool exhausted, or
PostgreSQL refusing one more (``too many connections``, SQLSTATE 53300) — is a 503 with
``Retry-After`` and a ``transient`` OperationOutcome, never a 500, and writes nothing."""

from __future__ import annotations

import asyncio
import tempfile
import uuid
from pathlib import Path

import httpx
import psycopg
import pytest

from resources.storage.migrate import upgrade
from tests.servers import PG_ADMIN, database_url, start_server


def _assert_unavailable(resp: httpx.Response) -> None:
    assert resp.status_code == 503, resp.text
    assert int(resp.headers["retry-after"]) > 0
    body = resp.json()
    assert body["resourceType"] == "OperationOutcome"
    assert body["issue"][0]["code"] == "transient"


def _patient(tag: str) -> dict:
    return {"resourceType": "Patient", "identifier": [{"system": "urn:test:budget", "value": tag}]}


def _count(client: httpx.Client, tag: str) -> int:
    bundle = client.get("/Patient", params={"identifier": f"urn:test:budget|{tag}"})
    assert bundle.status_code == 200, bundle.text
    return len(bundle.json().get("entry", []))


@pytest.fixture
def small_pools():  # type: ignore[no-untyped-def]
    url, cleanup = database_url("postgresql", Path(tempfile.mkdtemp(prefix="hearth-budget-")))
    running = start_server(
        "postgresql",
        url,
        db_pool_size=1,
        db_max_overflow=0,
        db_pool_timeout=0.5,
        db_lookup_pool_size=1,
    )
    yield running
    running.stop()
    cleanup()


def test_settings_size_the_pools(small_pools):
    app = small_pools.server.config.app
    ctx = app.state.context
    pool = ctx.repo.engine.pool
    assert pool.size() == 1
    assert pool._max_overflow == 0  # SQLAlchemy QueuePool keeps no public accessor
    assert pool._timeout == 0.5
    assert small_pools.settings.db_connections_per_process == 1 + 0 + 3 * 1


def test_exhausted_pools_answer_503_and_write_nothing(small_pools):
    server = small_pools
    ctx = server.server.config.app.state.context
    with httpx.Client(base_url=server.fhir, headers=server.headers, timeout=60) as client:
        pid = client.post("/Patient", json=_patient("seed")).json()["id"]
        # The main pool's one connection is held: a write and a search find none within 0.5 s.
        held = ctx.repo.engine.connect()
        try:
            tag = uuid.uuid4().hex
            _assert_unavailable(client.post("/Patient", json=_patient(tag)))
            _assert_unavailable(client.get("/Patient", params={"_id": pid}))
        finally:
            held.close()
        assert _count(client, tag) == 0  # the refused create left nothing behind
        # The read-by-id pool's one connection is held (the pool's own checkout, as a read
        # takes it): the read finds none within 0.5 s (``_format`` sends it through the thread
        # pool, fhir_server/rest/fast_read.py).
        reader = ctx.services["point_read"]
        conn = reader._take()
        try:
            _assert_unavailable(client.get(f"/Patient/{pid}", params={"_format": "json"}))
        finally:
            reader._give(conn)
        # The event loop's read-by-id pool has no connection to give: 503 as well.
        fast = server.server.config.app.fast_read.reader
        slots, fast._slots = fast._slots, asyncio.Semaphore(0)
        try:
            _assert_unavailable(client.get(f"/Patient/{pid}"))
        finally:
            fast._slots = slots
        # All back: the same requests succeed.
        assert client.get(f"/Patient/{pid}").status_code == 200
        assert client.post("/Patient", json=_patient(tag)).status_code == 201
        assert _count(client, tag) == 1
        # The audit writer lived through its own pool timeouts: the refused requests (outcome
        # 8, serious failure) and the requests after them are in the log.
        server.server.config.app.state.auth.writer.flush()
        events = client.get("/AuditEvent", params={"_count": "200"})
        assert events.status_code == 200, events.text
        outcomes = {
            (e["resource"]["subtype"][0]["code"], e["resource"]["outcome"])
            for e in events.json().get("entry", [])
        }
        for seen in (("create", "8"), ("search-type", "8"), ("read", "8"), ("read", "0")):
            assert seen in outcomes, outcomes


@pytest.fixture
def limited_role():  # type: ignore[no-untyped-def]
    """A database owned by a login role that PostgreSQL lets open at most 3 connections (a
    superuser is exempt from connection limits, so the server must not run as one here)."""
    role = f"hearth_budget_{uuid.uuid4().hex[:8]}"
    name = f"hearth_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE ROLE "{role}" LOGIN CONNECTION LIMIT 3')
        conn.execute(f'CREATE DATABASE "{name}" OWNER "{role}"')
    base = PG_ADMIN.rsplit("/", 1)[0]
    scheme, _, rest = base.partition("://")
    host = rest.split("@", 1)[-1]
    url = f"{scheme}://{role}@{host}/{name}"
    upgrade(url)
    running = start_server("postgresql", url)
    yield running, url
    running.stop()
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'DROP ROLE IF EXISTS "{role}"')


def _wait_for_backends_to_leave(role: str, keep: int, within: float = 30.0) -> None:
    import time

    deadline = time.monotonic() + within
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        while True:
            row = admin.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE usename = %s", (role,)
            ).fetchone()
            if row is not None and row[0] <= keep:
                return
            assert time.monotonic() < deadline, (
                f"{row[0] if row else '?'} backends of {role} linger"
            )
            time.sleep(0.05)


def test_too_many_connections_is_503(limited_role):
    server, url = limited_role
    dsn = url.replace("+psycopg", "")
    with httpx.Client(base_url=server.fhir, headers=server.headers, timeout=60) as client:
        pid = client.post("/Patient", json=_patient("seed")).json()["id"]
        # Close the server's idle connections, then take every connection the role may have.
        with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s",
                (url.split("://", 1)[1].split("@", 1)[0],),
            )
        _wait_for_backends_to_leave(url.split("://", 1)[1].split("@", 1)[0], keep=0)
        hogs: list[psycopg.Connection] = []
        try:
            for _ in range(3):
                hogs.append(psycopg.connect(dsn, autocommit=True))
            with pytest.raises(psycopg.OperationalError) as refused:
                psycopg.connect(dsn)  # PostgreSQL itself refuses one more
            assert "too many connections" in str(refused.value)
            tag = uuid.uuid4().hex
            _assert_unavailable(client.get(f"/Patient/{pid}"))
            _assert_unavailable(client.get("/Patient", params={"_id": pid}))
            _assert_unavailable(client.post("/Patient", json=_patient(tag)))
        finally:
            for hog in hogs:
                hog.close()
        # A closed connection's backend leaves PostgreSQL's process table a moment after the
        # client hangs up; until it has, PostgreSQL still counts it against the role's limit.
        role = url.split("://", 1)[1].split("@", 1)[0]
        _wait_for_backends_to_leave(role, keep=0)
        # Three connections were enough to refuse; serving needs more at once (the token
        # lookup, the read pool, the main pool and the audit writer catching up on the refused
        # requests' records), so the role gets room before the requests that must succeed.
        with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
            admin.execute(f'ALTER ROLE "{role}" CONNECTION LIMIT 20')
        assert client.get(f"/Patient/{pid}").status_code == 200
        assert _count(client, tag) == 0


def test_over_budget_is_named():
    from fhir_server.runtime.budget import over_budget

    assert over_budget(3, 24, 100, 3) is None  # 72 of 97
    warning = over_budget(4, 28, 100, 3)  # 112 of 97
    assert warning is not None and "112" in warning and "97" in warning


def test_serve_warns_when_the_processes_could_exhaust_postgresql(tmp_path):
    """`hearth serve` with 8 workers of 28 connections on a server of 100 says so at start."""
    import os
    import subprocess
    import sys

    from tests.servers import create_pg_database, drop_pg_database, free_port

    name, url = create_pg_database()
    try:
        upgrade(url)
        env = {
            **os.environ,
            "HEARTH_DATABASE_URL": url,
            "HEARTH_PORT": str(free_port()),
            "HEARTH_WORKERS": "8",
            "HEARTH_DICOM_ENABLED": "false",
            "HEARTH_DATA_DIR": str(tmp_path),
        }
        proc = subprocess.Popen(
            [sys.executable, "-m", "fhir_server.cli", "serve"],
            env=env,
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            text=True,
            start_new_session=True,
        )
        try:
            assert proc.stderr is not None
            line = proc.stderr.readline()
            while line and "WARNING" not in line and "connections" not in line:
                line = proc.stderr.readline()
            assert "may open 224 PostgreSQL connections" in line, line
        finally:
            os.killpg(proc.pid, 15)
            proc.wait(60)
    finally:
        drop_pg_database(name)
