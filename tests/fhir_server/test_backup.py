"""Backups that restore: `hearth backup create` while a client keeps writing over HTTP, then
`hearth restore` into a second, empty database, on SQLite and PostgreSQL. The restored database
is one consistent snapshot — every resource it holds is the source's, version for version, with
its whole history; nothing acknowledged before the backup began is missing — its blobs are the
source's byte for byte, its audit chain verifies, and a server started on it serves it (stored
secrets readable with the restored key file). A tampered file, a wrong identity and a non-empty
target are refused with a message."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import threading

import httpx
import pytest
import sqlalchemy as sa

from resources.storage.blobs import blob_store
from tests.servers import create_pg_database, database_url, drop_pg_database, start_server
from tests.shared import ROOT


def hearth(*args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "fhir_server.cli", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, **env},
        timeout=600,
    )


def rows(url: str) -> dict[tuple[str, str], list[tuple[int, str]]]:
    """Every resource's stored versions: (type, id) -> [(version, content hash)]."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            found: dict[tuple[str, str], list[tuple[int, str]]] = {}
            for t, i, v, h in conn.execute(
                sa.text(
                    "SELECT res_type, res_id, version, content_hash FROM resource_version ORDER BY version"
                )  # fmt: skip
            ):
                found.setdefault((t, i), []).append((v, h))
            return found
    finally:
        engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request):  # type: ignore[no-untyped-def]
    return request.param


def test_restore_drill_under_write_load(backend, tmp_path):  # type: ignore[no-untyped-def]
    url, cleanup = database_url(backend, tmp_path)
    data = tmp_path / "data"
    server = start_server(backend, url, data_dir=str(data), blob_store="files")
    ident = tmp_path / "backup-identity.txt"
    made = hearth("backup", "keygen", str(ident), env={})
    assert made.returncode == 0, made.stderr
    env = {
        "HEARTH_DATABASE_URL": url,
        "HEARTH_DATA_DIR": str(data),
        "HEARTH_BACKUP_RECIPIENTS": made.stdout.strip(),
        "HEARTH_BACKUP_IDENTITY_FILE": str(ident),
    }
    target_name = None
    try:
        client = httpx.Client(base_url=server.fhir, headers=server.headers, timeout=30)
        # Before the backup: patients (one updated twice) and blobs in the store.
        before = [client.post("/Patient", json={"resourceType": "Patient", "name": [{"family": f"Before{i}"}]}).json()["id"] for i in range(20)]  # fmt: skip
        for n in range(2):
            r = client.put(f"/Patient/{before[0]}", json={"resourceType": "Patient", "id": before[0], "gender": ["male", "female"][n]})  # fmt: skip
            assert r.status_code == 200
        store = blob_store("files", data, None)  # type: ignore[arg-type]
        blobs = {f"dicom/ab/cd/1.2.3.{i}.dcm": os.urandom(50_000 + i) for i in range(5)}
        for key, content in blobs.items():
            store.put(key, content)
        # During the backup: a writer that keeps creating and updating.
        stop = threading.Event()
        written: list[str] = []

        def write() -> None:
            with httpx.Client(base_url=server.fhir, headers=server.headers, timeout=30) as c:
                n = 0
                while not stop.is_set():
                    r = c.post("/Observation", json={"resourceType": "Observation", "status": "final", "code": {"text": f"load {n}"}})  # fmt: skip
                    if r.status_code == 201:
                        written.append(r.json()["id"])
                    n += 1

        writer = threading.Thread(target=write)
        writer.start()
        try:
            while len(written) < 5:
                threading.Event().wait(0.05)
            out = hearth("backup", "create", str(tmp_path / "hearth.backup"), env=env)
        finally:
            stop.set()
            writer.join()
        assert out.returncode == 0, out.stdout + out.stderr
        assert len(written) > 5  # the load ran through the backup
        verified = hearth("backup", "verify", str(tmp_path / "hearth.backup"), env=env)
        assert verified.returncode == 0 and "OK" in verified.stdout, verified.stderr

        # Restore into a second, empty database and data directory.
        if backend == "postgresql":
            target_name, target_url = create_pg_database()
        else:
            target_url = f"sqlite:///{tmp_path / 'restored.db'}"
        restored_data = tmp_path / "restored"
        renv = {**env, "HEARTH_DATABASE_URL": target_url, "HEARTH_DATA_DIR": str(restored_data)}
        done = hearth("restore", str(tmp_path / "hearth.backup"), env=renv)
        assert done.returncode == 0, done.stdout + done.stderr
        source, copy = rows(url), rows(target_url)
        # A consistent snapshot: each restored resource is the source's, versions and all ...
        for key, versions in copy.items():
            assert source[key][: len(versions)] == versions, key
        # ... and everything acknowledged before the backup began is there, whole.
        for pid in before:
            assert copy[("Patient", pid)] == source[("Patient", pid)]
        assert [v for v, _ in copy[("Patient", before[0])]] == [1, 2, 3]
        restored_store = blob_store("files", restored_data, None)  # type: ignore[arg-type]
        for key, content in blobs.items():
            with restored_store.open(key) as f:
                assert hashlib.sha256(f.read()).digest() == hashlib.sha256(content).digest()
        audit = hearth("audit", "verify", env={**renv, "HEARTH_DATA_DIR": str(restored_data)})
        assert audit.returncode == 0 and "intact" in audit.stdout, audit.stdout + audit.stderr
        # A server on the restored database serves it.
        again = start_server(backend, target_url, data_dir=str(restored_data))
        try:
            got = httpx.get(f"{again.fhir}/Patient/{before[0]}", headers=again.headers)
            assert got.status_code == 200 and got.json()["meta"]["versionId"] == "3"
        finally:
            again.stop()

        # Refusals: into a database that is not empty; with the wrong identity; a damaged file.
        twice = hearth("restore", str(tmp_path / "hearth.backup"), env=renv)
        assert twice.returncode != 0 and ("not empty" in twice.stderr or "exists" in twice.stderr)
        other = tmp_path / "other-identity.txt"
        assert hearth("backup", "keygen", str(other), env={}).returncode == 0
        wrong = hearth("backup", "verify", str(tmp_path / "hearth.backup"), env={**env, "HEARTH_BACKUP_IDENTITY_FILE": str(other)})  # fmt: skip
        assert wrong.returncode != 0 and "cannot be decrypted" in wrong.stderr
        damaged = tmp_path / "damaged.backup"
        raw = bytearray((tmp_path / "hearth.backup").read_bytes())
        raw[len(raw) // 2] ^= 0x01
        damaged.write_bytes(bytes(raw))
        bad = hearth("backup", "verify", str(damaged), env=env)
        assert bad.returncode != 0 and "Error" in bad.stderr and "Traceback" not in bad.stderr
        client.close()
    finally:
        server.stop()
        if target_name:
            drop_pg_database(target_name)
        cleanup()  # type: ignore[operator]


def test_backup_needs_a_recipient(tmp_path):  # type: ignore[no-untyped-def]
    url, cleanup = database_url("sqlite", tmp_path)
    try:
        out = hearth("backup", "create", str(tmp_path / "x"), env={"HEARTH_DATABASE_URL": url, "HEARTH_BACKUP_RECIPIENTS": ""})  # fmt: skip
        assert out.returncode != 0 and "HEARTH_BACKUP_RECIPIENTS" in out.stderr
        assert not (tmp_path / "x").exists()
    finally:
        cleanup()  # type: ignore[operator]
