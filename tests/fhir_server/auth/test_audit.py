"""The audit log: each interaction leaves the AuditEvents it should (BALP shape), writes are
audited in their own transaction, the database refuses UPDATE/DELETE of audit rows, and
`hearth audit verify` finds the first edited row."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import uuid

import httpx
import pytest
import sqlalchemy as sa

from resources import audit
from resources.storage.db import create_engine
from tests.fhir_server.auth.smart import bearer
from tests.servers import database_url, system_token
from tests.shared import ROOT


def _flush(server) -> None:  # type: ignore[no-untyped-def]
    """Wait until the server's audit writer has stored what it was given."""
    server.server.config.app.state.auth.writer.flush()


def _events(server, after: int) -> list[dict]:  # type: ignore[no-untyped-def]
    _flush(server)
    engine = create_engine(server.database_url)
    try:
        with engine.connect() as conn:
            return [e for _, e in audit.events(conn, after=after, limit=1000)]
    finally:
        engine.dispose()


def _last_seq(server) -> int:  # type: ignore[no-untyped-def]
    _flush(server)
    engine = create_engine(server.database_url)
    try:
        with engine.connect() as conn:
            return conn.execute(sa.select(sa.func.max(audit.audit_event.c.seq))).scalar() or 0
    finally:
        engine.dispose()


def test_each_interaction_leaves_its_audit_event(server):
    start = _last_seq(server)
    f, h = server.fhir, server.headers
    pid = httpx.post(f"{f}/Patient", json={"resourceType": "Patient"}, headers=h).json()["id"]
    for request in (
        lambda: httpx.get(f"{f}/Patient/{pid}", headers=h),
        lambda: httpx.get(f"{f}/Patient", params={"_id": pid}, headers=h),
        lambda: httpx.delete(f"{f}/Patient/{pid}", headers=h),
        lambda: httpx.get(f"{f}/Patient/{pid}", headers=h),  # 410
        lambda: httpx.get(f"{f}/Patient/{pid}"),  # no token: 401
        lambda: httpx.get(f"{f}/metadata"),  # open: not audited
    ):
        request()
        _flush(server)  # reads are recorded by a background writer; keep the order exact
    events = _events(server, start)
    got = [(e["subtype"][0]["code"], e["action"], e["outcome"]) for e in events]
    assert got == [
        ("create", "C", "0"),
        ("read", "R", "0"),
        ("search-type", "E", "0"),
        ("delete", "D", "0"),
        ("read", "R", "4"),
        ("read", "R", "4"),
    ]
    create = events[0]
    assert create["entity"][0]["what"]["reference"] == f"Patient/{pid}"
    assert create["source"]["site"] == f
    app = next(a for a in create["agent"] if a["who"].get("identifier"))
    assert app["who"]["identifier"]["system"] == "urn:hearth:client"
    search = events[2]
    assert any(e.get("query") for e in search["entity"])
    assert "agent" in events[5] and events[5]["agent"][0]["who"]["display"] == "anonymous"


def test_token_issue_is_audited(server):
    from tests.fhir_server.auth.smart import make_client

    client_id, secret = make_client(server, "confidential-symmetric", "system/*.rs", redirect=None)
    start = _last_seq(server)
    resp = httpx.post(
        f"{server.root}/auth/token",
        data={"grant_type": "client_credentials", "scope": "system/*.rs"},
        auth=(client_id, secret),
    )
    assert resp.status_code == 200
    events = _events(server, start)
    assert events[-1]["type"]["code"] == "110114"
    assert events[-1]["subtype"][0]["code"] == "token-issue"
    revoked = httpx.post(
        f"{server.root}/auth/revoke",
        data={"token": resp.json()["access_token"]},
        auth=(client_id, secret),
    )
    assert revoked.status_code == 200
    assert _events(server, start)[-1]["subtype"][0]["code"] == "token-revoke"
    resp = httpx.post(
        f"{server.root}/auth/token",
        data={"grant_type": "client_credentials", "scope": "system/*.rs"},
        auth=(client_id, secret),
    )
    # audit rows are for administrators only, through FHIR too
    user_token = bearer(resp.json()["access_token"])
    assert httpx.get(f"{server.fhir}/AuditEvent", headers=user_token).status_code == 403


def _hearth(*args: str, url: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "fhir_server.cli", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        # a data directory of its own: no checkpoint file of another database is found there
        env={**os.environ, "HEARTH_DATABASE_URL": url, "HEARTH_DATA_DIR": tempfile.mkdtemp()},
        timeout=120,
    )


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_append_only_and_tamper_detected(backend, tmp_path):
    url, cleanup = database_url(backend, tmp_path)
    engine = create_engine(url)
    try:
        for n in range(5):
            audit.append_alone(
                engine, {"resourceType": "AuditEvent", "n": n, "tag": uuid.uuid4().hex}
            )
        ok = _hearth("audit", "verify", url=url)
        assert ok.returncode == 0 and "intact: 5 events" in ok.stdout, ok.stdout + ok.stderr
        for stmt in (
            sa.update(audit.audit_event).values(event={"forged": True}),
            sa.delete(audit.audit_event),
        ):
            with pytest.raises(sa.exc.DBAPIError, match="append-only"):
                with engine.begin() as conn:
                    conn.execute(stmt)
        # an attacker with the database owner's rights switches the guard off and edits row 3
        with engine.begin() as conn:
            if backend == "postgresql":
                conn.exec_driver_sql("ALTER TABLE audit_event DISABLE TRIGGER USER")
            else:
                conn.exec_driver_sql("DROP TRIGGER audit_event_no_update")
            conn.execute(
                sa.update(audit.audit_event)
                .where(audit.audit_event.c.seq == 3)
                .values(event={"resourceType": "AuditEvent", "n": 99})
            )
        bad = _hearth("audit", "verify", url=url)
        assert bad.returncode == 1
        assert "BROKEN at audit event 3" in bad.stdout
    finally:
        engine.dispose()
        cleanup()  # type: ignore[operator]


def test_audit_log_operation_pages_the_chain_for_admins_only(server):
    start = _last_seq(server)
    with httpx.Client(base_url=server.fhir, headers=server.headers, timeout=30) as c:
        for _ in range(3):
            assert c.get("/metadata").status_code == 200
            assert c.get("/Patient", params={"_count": 1}).status_code == 200
        _flush(server)
        page = c.get("/$audit-log", params={"after": start, "_count": 2})
        assert page.status_code == 200, page.text
        bundle = page.json()
        assert bundle["resourceType"] == "Bundle" and bundle["type"] == "collection"
        events = [e["resource"] for e in bundle["entry"]]
        assert len(events) == 2 and all(e["resourceType"] == "AuditEvent" for e in events)
        assert (
            events == _events(server, start)[:2]
            or [{k: v for k, v in e.items() if k != "id"} for e in events]
            == _events(server, start)[:2]
        )
        following = next(link["url"] for link in bundle["link"] if link["relation"] == "next")
        second = c.get(following.split("/fhir", 1)[1]).json()
        assert second["entry"][0]["resource"]["id"] != bundle["entry"][-1]["resource"]["id"]
        assert c.get("/$audit-log", params={"after": "x"}).status_code == 400
    narrow = system_token(server.database_url, server.root, "system/Patient.rs")
    r = httpx.get(f"{server.fhir}/$audit-log", headers=bearer(narrow), timeout=30)
    assert r.status_code == 403
