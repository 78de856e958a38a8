"""Concurrent writers never lose a write; a transaction is all-or-nothing even when the server
process dies in the middle of it (PostgreSQL)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import psycopg
import pytest

from resources.storage.migrate import upgrade
from tests.fhir_server.test_rest import patient
from tests.servers import create_pg_database, drop_pg_database, free_port, system_token


def test_parallel_if_match_updates_one_winner_per_version(server):
    with httpx.Client(base_url=server.fhir, headers=server.headers, timeout=60) as c:
        created = c.post("/Patient", json=patient()).json()
    pid = created["id"]

    def attempt(n: int) -> int:
        with httpx.Client(base_url=server.fhir, headers=server.headers, timeout=60) as c:
            body = {**created, "name": [{"family": f"Writer{n}"}]}
            return c.put(f"/Patient/{pid}", json=body, headers={"If-Match": 'W/"1"'}).status_code

    with ThreadPoolExecutor(20) as pool:
        codes = list(pool.map(attempt, range(20)))
    assert sorted(codes) == [200] + [412] * 19, codes
    with httpx.Client(base_url=server.fhir, headers=server.headers, timeout=60) as c:
        history = c.get(f"/Patient/{pid}/_history").json()
    assert history["total"] == 2


def test_parallel_blind_updates_all_kept(server):
    with httpx.Client(base_url=server.fhir, headers=server.headers, timeout=60) as c:
        created = c.post("/Patient", json=patient()).json()
    pid = created["id"]

    def attempt(n: int) -> int:
        with httpx.Client(base_url=server.fhir, headers=server.headers, timeout=60) as c:
            body = {**created, "name": [{"family": f"Writer{n}"}]}
            return c.put(f"/Patient/{pid}", json=body).status_code

    with ThreadPoolExecutor(20) as pool:
        codes = list(pool.map(attempt, range(20)))
    assert codes == [200] * 20
    with httpx.Client(base_url=server.fhir, headers=server.headers, timeout=60) as c:
        history = c.get(f"/Patient/{pid}/_history", params={"_count": 100}).json()
    assert history["total"] == 21
    families = {e["resource"]["name"][0]["family"] for e in history["entry"][:-1]}
    assert families == {f"Writer{n}" for n in range(20)}
    versions = [int(e["resource"]["meta"]["versionId"]) for e in history["entry"]]
    assert versions == list(range(21, 0, -1))


def test_parallel_conditional_creates_make_one_resource(server):
    body = patient()
    ident = body["identifier"][0]
    header = {"If-None-Exist": f"identifier={ident['system']}|{ident['value']}"}

    def attempt(_: int) -> tuple[int, str]:
        with httpx.Client(base_url=server.fhir, headers=server.headers, timeout=60) as c:
            resp = c.post("/Patient", json=body, headers=header)
            return resp.status_code, resp.json()["id"]

    with ThreadPoolExecutor(10) as pool:
        results = list(pool.map(attempt, range(10)))
    assert sorted(code for code, _ in results) == [200] * 9 + [201]
    assert len({rid for _, rid in results}) == 1


def test_parallel_conditional_updates_of_a_new_resource_make_one(server):
    """Ten senders PUT the same new patient by identifier at once (HL7 v2 over HTTP does this):
    one creates it, the other nine update it; no second Patient, no write lost."""
    body = patient()
    ident = body["identifier"][0]
    criteria = {"identifier": f"{ident['system']}|{ident['value']}"}

    def attempt(n: int) -> tuple[int, str]:
        with httpx.Client(base_url=server.fhir, headers=server.headers, timeout=60) as c:
            sent = {**body, "name": [{"family": f"Sender{n}"}]}
            resp = c.put("/Patient", params=criteria, json=sent)
            return resp.status_code, resp.json()["id"]

    with ThreadPoolExecutor(10) as pool:
        results = list(pool.map(attempt, range(10)))
    assert sorted(code for code, _ in results) == [200] * 9 + [201], results
    assert len({rid for _, rid in results}) == 1
    with httpx.Client(base_url=server.fhir, headers=server.headers, timeout=60) as c:
        found = c.get("/Patient", params=criteria).json()
        assert len(found.get("entry", [])) == 1
        history = c.get(f"/Patient/{results[0][1]}/_history", params={"_count": 100}).json()
    assert history["total"] == 10


def test_conditional_create_after_the_claimed_resource_changed_creates(server):
    """The criteria a conditional create claimed stop matching its resource (the identifier is
    corrected); the same conditional create then creates a new resource, it does not collide
    with the stale claim."""
    body = patient()
    ident = body["identifier"][0]
    header = {"If-None-Exist": f"identifier={ident['system']}|{ident['value']}"}
    with httpx.Client(base_url=server.fhir, headers=server.headers, timeout=60) as c:
        first = c.post("/Patient", json=body, headers=header)
        assert first.status_code == 201
        moved = {**first.json(), "identifier": [{**ident, "value": ident["value"] + "-fixed"}]}
        assert c.put(f"/Patient/{moved['id']}", json=moved).status_code == 200
        again = c.post("/Patient", json=body, headers=header)
        assert again.status_code == 201, again.text
        assert again.json()["id"] != moved["id"]
        assert c.post("/Patient", json=body, headers=header).status_code == 200


@pytest.mark.slow
def test_killed_mid_transaction_leaves_nothing(tmp_path):
    """SIGKILL the server process while it processes a large transaction: nothing is stored."""
    name, url = create_pg_database()
    try:
        upgrade(url)
        port = free_port()
        env = {
            **os.environ,
            "HEARTH_DATABASE_URL": url,
            "HEARTH_PORT": str(port),
            "HEARTH_BASE_URL": f"http://127.0.0.1:{port}",
            "HEARTH_LOG_LEVEL": "warning",
        }
        proc = subprocess.Popen(
            [sys.executable, "-m", "fhir_server.cli", "serve"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        base = f"http://127.0.0.1:{port}/fhir"
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    if httpx.get(f"{base}/metadata", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "server did not start"
                time.sleep(0.2)
            auth = {"Authorization": f"Bearer {system_token(url, f'http://127.0.0.1:{port}')}"}
            tag = uuid.uuid4().hex
            entries = [
                {
                    "resource": patient(
                        identifier=[{"system": "urn:test:kill", "value": f"{tag}-{n}"}]
                    ),
                    "request": {"method": "POST", "url": "Patient"},
                }
                for n in range(3000)
            ]
            bundle = {"resourceType": "Bundle", "type": "transaction", "entry": entries}

            def send() -> str:
                try:
                    return str(
                        httpx.post(base + "/", json=bundle, headers=auth, timeout=120).status_code
                    )
                except httpx.TransportError:
                    return "connection lost"

            with ThreadPoolExecutor(1) as pool:
                fut = pool.submit(send)
                with psycopg.connect(url.replace("+psycopg", ""), autocommit=True) as conn:
                    # Wait until the server has a write transaction open, then kill it.
                    deadline = time.monotonic() + 60
                    while not conn.execute(
                        "select count(*) from pg_stat_activity where datname = current_database()"
                        " and pid <> pg_backend_pid() and xact_start is not null"
                        " and backend_xid is not null"
                    ).fetchone()[0]:
                        assert time.monotonic() < deadline, "the transaction never started writing"
                        time.sleep(0.005)
                    time.sleep(0.3)
                    os.killpg(proc.pid, signal.SIGKILL)
                    assert fut.result() == "connection lost", (
                        "the transaction finished before the kill"
                    )
                    proc.wait(10)
                    time.sleep(0.5)
                    count = conn.execute(
                        "select count(*) from resource where res_type = 'Patient'"
                    ).fetchone()[0]
            assert count == 0
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
    finally:
        drop_pg_database(name)
