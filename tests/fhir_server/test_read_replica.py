"""A PostgreSQL streaming replica for reads (HEARTH_DATABASE_REPLICA_URL), with read-your-writes.

The test builds its own pair the way Debian's PostgreSQL 15 makes one on one machine: a primary
cluster (initdb, replication allowed from 127.0.0.1) and a replica of it (pg_basebackup -R,
streaming), each on a free port, run as the postgres user. With the replica's replay paused, a
search without the client's LSN is answered by the replica (the new write is not there yet:
the proof that reads go to it), while the writer's next search — carrying the LSN Hearth handed
back, as header or cookie — sees its write from the primary. Once replay resumes, the replica
answers it too. A replica that is down costs nothing but its speed."""

from __future__ import annotations

import httpx
import pytest

from resources.storage.migrate import upgrade
from tests.pgpair import Pair
from tests.servers import start_server


@pytest.fixture(scope="module")
def pair():  # type: ignore[no-untyped-def]
    p = Pair()
    try:
        p.build()
        upgrade(p.url(p.primary_port))
        yield p
    finally:
        p.close()


@pytest.fixture(scope="module")
def server(pair):  # type: ignore[no-untyped-def]
    s = start_server("postgresql", pair.url(pair.primary_port), database_replica_url=pair.url(pair.replica_port))  # fmt: skip
    yield s
    s.stop()


def names(bundle: dict) -> list[str]:
    return [e["resource"]["name"][0]["family"] for e in bundle.get("entry", []) if e["search"]["mode"] == "match"]  # fmt: skip


def wait_replayed(pair: Pair) -> None:
    pair.wait_replayed()


def test_reads_go_to_the_replica_and_writers_read_their_writes(pair, server):  # type: ignore[no-untyped-def]
    h = server.headers
    wait_replayed(pair)
    pair.sql(pair.replica_port, "SELECT pg_wal_replay_pause()")
    try:
        made = httpx.post(f"{server.fhir}/Patient", json={"resourceType": "Patient", "name": [{"family": "Lagtest"}]}, headers=h)  # fmt: skip
        assert made.status_code == 201, made.text
        lsn = made.headers["x-hearth-lsn"]
        assert "hearth_lsn=" + lsn in made.headers["set-cookie"] and "HttpOnly" in made.headers["set-cookie"]  # fmt: skip
        query = f"{server.fhir}/Patient?family=Lagtest"
        # Without the LSN: the paused replica answers, and it has not seen the write.
        assert names(httpx.get(query, headers=h).json()) == []
        # With it, as a header or as the cookie: the primary answers.
        assert names(httpx.get(query, headers={**h, "X-Hearth-LSN": lsn}).json()) == ["Lagtest"]
        assert names(httpx.get(query, headers={**h, "Cookie": f"hearth_lsn={lsn}"}).json()) == ["Lagtest"]  # fmt: skip
        # A client that keeps its cookies (httpx.Client) reads its writes without trying.
        with httpx.Client(headers=h) as client:
            client.post(f"{server.fhir}/Patient", json={"resourceType": "Patient", "name": [{"family": "Cookietest"}]})  # fmt: skip
            assert names(client.get(f"{server.fhir}/Patient?family=Cookietest").json()) == ["Cookietest"]  # fmt: skip
        # A malformed LSN is ignored, not an error.
        bad = httpx.get(query, headers={**h, "X-Hearth-LSN": "'; drop table resource"})
        assert bad.status_code == 200
    finally:
        pair.sql(pair.replica_port, "SELECT pg_wal_replay_resume()")
    wait_replayed(pair)
    assert names(httpx.get(f"{server.fhir}/Patient?family=Lagtest", headers=h).json()) == [
        "Lagtest"
    ]


def test_a_replica_that_is_down_costs_only_speed(pair, server):  # type: ignore[no-untyped-def]
    h = server.headers
    pair.stop(pair.replica)
    try:
        made = httpx.post(f"{server.fhir}/Patient", json={"resourceType": "Patient", "name": [{"family": "Downtest"}]}, headers=h)  # fmt: skip
        assert made.status_code == 201
        got = httpx.get(f"{server.fhir}/Patient?family=Downtest", headers=h)
        assert got.status_code == 200 and names(got.json()) == ["Downtest"]
    finally:
        pair.start(pair.replica, pair.replica_port)
    wait_replayed(pair)


def test_a_replica_needs_postgresql(tmp_path):  # type: ignore[no-untyped-def]
    from fhir_server.runtime.settings import Settings

    with pytest.raises(ValueError, match="REPLICA"):
        Settings(database_url=f"sqlite:///{tmp_path}/x.db", database_replica_url="postgresql://x/y")
