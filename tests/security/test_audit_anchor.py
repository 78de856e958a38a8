"""The audit chain is anchored outside the database: signed checkpoints of its head, written by
`hearth audit checkpoint` and by the running server (periodically and at shutdown) to files, and
`hearth audit verify` checks the chain against them. An attacker with the database owner's rights
(triggers off) who removes the newest rows, or edits the last row and recomputes its hash -- and
does the same to their searchable ``AuditEvent/audit-SEQ`` rows -- leaves a whole but
shorter/different chain: the plain chain check passes, the checkpoints catch it."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from resources import audit
from resources.storage.db import create_engine
from resources.storage.schema import resource
from tests.servers import database_url, start_server
from tests.shared import ROOT

BACKENDS = ["sqlite", "postgresql"]


def _hearth(*args: str, url: str, data_dir: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "fhir_server.cli", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "HEARTH_DATABASE_URL": url, "HEARTH_DATA_DIR": str(data_dir)},
        timeout=120,
    )


@contextmanager
def _owner(engine: sa.Engine) -> Iterator[sa.Connection]:
    """A transaction with the append-only triggers switched off, as a database owner can."""
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.exec_driver_sql("ALTER TABLE audit_event DISABLE TRIGGER USER")
            conn.exec_driver_sql("ALTER TABLE resource DISABLE TRIGGER audit_resource_append_only")
        else:
            for trigger in ("audit_event_no_update", "audit_event_no_delete"):
                conn.exec_driver_sql(f"DROP TRIGGER IF EXISTS {trigger}")
            for trigger in ("audit_resource_no_update", "audit_resource_no_delete"):
                conn.exec_driver_sql(f"DROP TRIGGER IF EXISTS {trigger}")
        yield conn


def _shown(seq: object) -> sa.ColumnElement[bool]:
    """The searchable resource row of chained row ``seq``."""
    return (resource.c.res_type == "AuditEvent") & (resource.c.res_id == f"audit-{seq}")


def _delete_newest(engine: sa.Engine, n: int) -> None:
    with _owner(engine) as conn:
        top = conn.execute(sa.select(sa.func.max(audit.audit_event.c.seq))).scalar_one()
        conn.execute(sa.delete(audit.audit_event).where(audit.audit_event.c.seq > top - n))
        for seq in range(top - n + 1, top + 1):
            conn.execute(sa.delete(resource).where(_shown(seq)))


def _rewrite_last(engine: sa.Engine) -> None:
    """Edit the newest row and recompute its hash so the chain stays whole."""
    with _owner(engine) as conn:
        seq, recorded, prev = conn.execute(
            sa.select(
                audit.audit_event.c.seq, audit.audit_event.c.recorded, audit.audit_event.c.prev_hash
            )
            .order_by(audit.audit_event.c.seq.desc())
            .limit(1)
        ).one()
        forged = {"resourceType": "AuditEvent", "forged": True}
        conn.execute(
            sa.update(audit.audit_event)
            .where(audit.audit_event.c.seq == seq)
            .values(event=forged, hash=audit.chain_hash(prev, recorded, forged))
        )
        content = audit.as_resource(seq, recorded, forged)
        conn.execute(sa.update(resource).where(_shown(seq)).values(content=content))


def _fill(engine: sa.Engine, n: int) -> None:
    for i in range(n):
        audit.append_alone(engine, {"resourceType": "AuditEvent", "n": i, "tag": uuid.uuid4().hex})


@pytest.fixture(params=BACKENDS)
def db(request, tmp_path):  # type: ignore[no-untyped-def]
    url, cleanup = database_url(request.param, tmp_path)
    engine = create_engine(url)
    yield url, engine
    engine.dispose()
    cleanup()  # type: ignore[operator]


@pytest.mark.parametrize("attack", ["delete-newest", "rewrite-last"])
def test_checkpoint_catches_what_the_chain_alone_cannot(db, tmp_path, attack):
    url, engine = db
    data = tmp_path / "data"
    _fill(engine, 6)
    made = _hearth("audit", "checkpoint", url=url, data_dir=data)
    assert made.returncode == 0, made.stdout + made.stderr
    printed = json.loads(made.stdout)
    assert printed["count"] == 6 and printed["jws"]
    stored = (data / "audit" / "checkpoints.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in stored] == [printed]

    ok = _hearth("audit", "verify", url=url, data_dir=data)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "intact: 6 events; 1 checkpoints hold" in ok.stdout

    _fill(engine, 2)  # growth after a checkpoint is fine
    assert _hearth("audit", "verify", url=url, data_dir=data).returncode == 0

    if attack == "delete-newest":
        _delete_newest(engine, 4)  # the two unanchored rows and two anchored ones
    else:
        _delete_newest(engine, 2)  # back to the checkpointed head ...
        _rewrite_last(engine)  # ... which is then forged and re-hashed
    # the chain by itself is still whole: this is what went undetected before
    assert audit.verify(engine) == (4 if attack == "delete-newest" else 6, None)
    empty = tmp_path / "none.jsonl"
    empty.touch()
    blind = _hearth("audit", "verify", "--checkpoints", str(empty), url=url, data_dir=data)
    assert blind.returncode == 0, blind.stdout

    bad = _hearth("audit", "verify", url=url, data_dir=data)
    assert bad.returncode == 1, bad.stdout + bad.stderr
    seq = printed["seq"]
    assert f"BROKEN at audit event {seq}" in bad.stdout
    assert ("truncated" if attack == "delete-newest" else "edited and re-hashed") in bad.stdout


def test_a_forged_checkpoint_is_refused(db, tmp_path):
    url, engine = db
    data = tmp_path / "data"
    _fill(engine, 3)
    assert _hearth("audit", "checkpoint", url=url, data_dir=data).returncode == 0
    _rewrite_last(engine)
    # the attacker also rewrites the checkpoint file to match, but cannot sign it
    path = data / "audit" / "checkpoints.jsonl"
    line = json.loads(path.read_text())
    head = audit.head(engine)
    header, payload, sig = line["jws"].split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["hash"] = head.hash
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    path.write_text(json.dumps({**line, "hash": head.hash, "jws": f"{header}.{forged}.{sig}"}))
    bad = _hearth("audit", "verify", url=url, data_dir=data)
    assert bad.returncode == 1
    assert "BAD CHECKPOINT" in bad.stdout and "line 1" in bad.stdout
    # a checkpoint signed by some other key (another deployment's: the key is the database's)
    # is refused as well
    other = tmp_path / "other"
    other_url, other_cleanup = database_url("sqlite", tmp_path / "other-db")
    other_engine = create_engine(other_url)
    try:
        _fill(other_engine, 3)
        made = _hearth("audit", "checkpoint", url=other_url, data_dir=other)
        assert made.returncode == 0, made.stdout + made.stderr
    finally:
        other_engine.dispose()
        other_cleanup()  # type: ignore[operator]
    foreign = _hearth(
        "audit",
        "verify",
        "--checkpoints",
        str(other / "audit" / "checkpoints.jsonl"),
        url=url,
        data_dir=data,
    )
    assert foreign.returncode == 1 and "BAD CHECKPOINT" in foreign.stdout


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_server_anchors_its_log(backend, tmp_path):
    url, cleanup = database_url(backend, tmp_path)
    data, export = tmp_path / "data", tmp_path / "auditor" / "hearth-checkpoints.jsonl"
    running = start_server(
        backend,
        url,
        data_dir=str(data),
        audit_checkpoint_seconds=0.2,
        audit_checkpoint_export=str(export),
    )
    engine = create_engine(url)
    try:
        with httpx.Client(base_url=running.fhir, headers=running.headers, timeout=30) as c:
            assert c.post("/Patient", json={"resourceType": "Patient"}).status_code == 201
            assert c.get("/Patient").status_code == 200
            jwks = httpx.get(f"{running.root}/auth/jwks").json()
            # a periodic checkpoint appears while the server runs (waits, asserts no duration)
            while not export.exists() or not export.read_text().strip():
                running.thread.join(timeout=0.1)
                assert running.thread.is_alive()
            assert c.get("/Patient").status_code == 200  # one more event after it
        running.stop()
        # the shutdown checkpoint holds the final head, in both files
        final = audit.head(engine)
        lines = [json.loads(x) for x in export.read_text().splitlines()]
        assert lines[-1]["seq"] == final.seq and lines[-1]["count"] == final.count
        assert (data / "audit" / "checkpoints.jsonl").read_text() == export.read_text()
        keys = tmp_path / "jwks.json"
        keys.write_text(json.dumps(jwks))
        # an auditor with only the exported file and the public keys
        args = ("audit", "verify", "--checkpoints", str(export), "--jwks", str(keys))
        elsewhere = tmp_path / "auditor-data"  # holds no key: the JWKS is all it has
        ok = _hearth(*args, url=url, data_dir=elsewhere)
        assert ok.returncode == 0, ok.stdout + ok.stderr
        _delete_newest(engine, 1)
        bad = _hearth(*args, url=url, data_dir=elsewhere)
        assert bad.returncode == 1 and f"BROKEN at audit event {final.seq}" in bad.stdout
    finally:
        running.stop()
        engine.dispose()
        cleanup()  # type: ignore[operator]
