"""Two Hearth nodes on one PostgreSQL database, each with its own data directory (nothing shared
on disk): exactly one runs the DICOM and MLLP listeners (a PostgreSQL advisory lock), and when
it is killed (SIGKILL: no clean-up) the other takes the listeners over. Real `hearth serve`
processes, real DICOM and MLLP peers (docs/deployment.md)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import psycopg
import pytest
from cryptography.fernet import Fernet

from resources.storage.advisory import lock_key
from tests.fhir_server.test_serve_workers import echo, mllp, wait_for
from tests.servers import database_url, free_port, system_token

LEADS = "runs the DICOM / MLLP listeners"


def leads(log: Path) -> bool:
    return LEADS in log.read_text()


def lock_holders(url: str) -> list[int]:
    """The server pids of the sessions holding the listener lock (pg_locks)."""
    key = lock_key("hearth:listeners")
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 1"
            " AND ((classid::bigint << 32) | objid::bigint) = %s"
            # pg_locks is the whole cluster's: other tests' Hearths hold the same key elsewhere
            " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
            (key,),
        ).fetchall()
    return [r[0] for r in rows]


@pytest.mark.parametrize("workers", [1, 2])
def test_one_node_runs_the_listeners_and_another_takes_over(workers, tmp_path):  # type: ignore[no-untyped-def]
    url, cleanup = database_url("postgresql", tmp_path)
    dicom_port, mllp_port = free_port(), free_port()
    secret = Fernet.generate_key().decode()  # every node's (docs/deployment.md)
    nodes: list[tuple[subprocess.Popen, Path, str]] = []
    try:
        for name in ("a", "b"):
            port = free_port()
            root = f"http://127.0.0.1:{port}"
            env = {
                **os.environ,
                "HEARTH_DATABASE_URL": url,
                "HEARTH_DATA_DIR": str(tmp_path / f"data-{name}"),
                "HEARTH_BASE_URL": root,
                "HEARTH_SECRET_KEYS": secret,
            }
            log = tmp_path / f"serve-{name}.log"
            cmd = [sys.executable, "-m", "fhir_server.cli", "serve", "--port", str(port)]
            cmd += ["--workers", str(workers)]
            cmd += ["--dicom-port", str(dicom_port), "--mllp-port", str(mllp_port)]
            proc = subprocess.Popen(
                cmd, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True
            )
            nodes.append((proc, log, root))
        for _, _, root in nodes:
            wait_for(lambda root=root: httpx.get(f"{root}/healthz").status_code == 200)
        wait_for(lambda: any(leads(log) for _, log, _ in nodes))
        wait_for(lambda: len(lock_holders(url)) == 1)
        assert echo(dicom_port)
        assert "MSA|AA|C1" in mllp(mllp_port, "C1")
        winners = [n for n in nodes if leads(n[1])]
        assert len(winners) == 1, [log.read_text()[-2000:] for _, log, _ in nodes]
        first = winners[0]
        survivor = next(n for n in nodes if n is not first)

        os.killpg(first[0].pid, signal.SIGKILL)  # the whole node: no lock released by hand
        first[0].wait(timeout=30)
        wait_for(lambda: leads(survivor[1]))
        assert wait_for(lambda: echo(dicom_port))
        assert "MSA|AA|C2" in mllp(mllp_port, "C2")
        assert len(lock_holders(url)) == 1

        headers = {"Authorization": f"Bearer {system_token(url, survivor[2])}"}
        found = httpx.get(
            f"{survivor[2]}/fhir/Patient",
            params={"_total": "accurate", "_count": 0},
            headers=headers,
        ).json()
        assert found["total"] == 2  # one Patient per ORU message, before and after the handover
        assert not (tmp_path / "data-a" / "listeners.lock").exists()
        assert not (tmp_path / "data-b" / "listeners.lock").exists()
    finally:
        for proc, log, _ in nodes:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    assert proc.wait(timeout=60) in (0, -signal.SIGTERM), log.read_text()[-3000:]
                finally:
                    if proc.poll() is None:
                        os.killpg(proc.pid, signal.SIGKILL)
        cleanup()


def test_a_lost_lock_stops_the_listeners(tmp_path):  # type: ignore[no-untyped-def]
    """A holder whose lock session is ended from outside (a network cut, a DBA's
    pg_terminate_backend) stops its listeners, and takes them back once it can relock."""
    url, cleanup = database_url("postgresql", tmp_path)
    dicom_port, port = free_port(), free_port()
    root = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "HEARTH_DATABASE_URL": url,
        "HEARTH_DATA_DIR": str(tmp_path / "data"),
        "HEARTH_BASE_URL": root,
    }
    log = tmp_path / "serve.log"
    cmd = [sys.executable, "-m", "fhir_server.cli", "serve", "--port", str(port)]
    cmd += ["--dicom-port", str(dicom_port)]
    proc = subprocess.Popen(cmd, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: httpx.get(f"{root}/healthz").status_code == 200)
        assert echo(dicom_port)
        (holder,) = wait_for(lambda: lock_holders(url))
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("SELECT pg_terminate_backend(%s)", (holder,))
        wait_for(lambda: "lost the listener lock" in log.read_text())
        # it relocks on a new session and serves again
        wait_for(lambda: len(re.findall(LEADS, log.read_text())) == 2)
        (again,) = wait_for(lambda: lock_holders(url))
        assert again != holder
        assert wait_for(lambda: echo(dicom_port))
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            assert proc.wait(timeout=60) in (0, -signal.SIGTERM), log.read_text()[-3000:]
        finally:
            if proc.poll() is None:
                proc.kill()
            cleanup()
