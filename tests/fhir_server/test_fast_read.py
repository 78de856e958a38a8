"""The read by id in the event loop (fhir_server/rest/fast_read.py), over HTTP on SQLite and
PostgreSQL (where it runs; SQLite goes the full way, with the same answers): which requests it
takes, the headers and the 304s, 401/403 decided from the token as the full path decides them
(a revocation seen at once), XML still negotiated, and an audit record for every outcome, the
chain still verifiable."""

from __future__ import annotations

import time
import uuid

import httpx

from fhir_server.rest.fast_read import target_of
from resources import audit
from resources.storage.db import create_engine
from tests.fhir_server.auth.smart import bearer, client_token, store_of


def _scope(path: str, method: str = "GET", qs: bytes = b"") -> dict:
    return {"type": "http", "method": method, "path": path, "query_string": qs, "headers": []}


def test_takes_only_plain_reads_by_id():
    assert target_of(_scope("/fhir/Patient/abc-1.2")) == ("Patient", "abc-1.2")
    for scope in (
        _scope("/fhir/Patient/abc", qs=b"_format=xml"),
        _scope("/fhir/Patient/abc", qs=b"_summary=true"),
        _scope("/fhir/Patient/abc", method="HEAD"),
        _scope("/fhir/Patient/abc", method="DELETE"),
        _scope("/fhir/Binary/abc"),  # its own content negotiation
        _scope("/fhir/Patient/abc/_history"),
        _scope("/fhir/Patient/abc/_history/1"),
        _scope("/fhir/Patient/$everything"),
        _scope("/fhir/Patient/_history"),
        _scope("/fhir/Patient/abc/Observation"),
        _scope("/fhir/NotAType/abc"),
        _scope("/fhir/metadata"),
        _scope("/fhir/Patient/" + "a" * 65),
        _scope("/dicomweb/Patient/abc"),
        {**_scope("/fhir/Patient/abc"), "root_path": "/hearth"},
    ):
        assert target_of(scope) is None, scope


SECURITY = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "content-security-policy": "default-src 'none'; frame-ancestors 'none'",
}


def _secure(response: httpx.Response) -> None:
    for name, value in SECURITY.items():
        assert response.headers[name] == value, name
    assert response.headers["x-request-id"]


def _read_events(client: httpx.Client, ref: str, n: int) -> list[dict]:
    """The read records naming ``ref``, once the background writer has stored ``n`` of them."""
    found: list[dict] = []
    for _ in range(100):
        bundle = client.get("/AuditEvent", params={"entity": ref, "_count": "50"}).json()
        found = [
            e["resource"]
            for e in bundle.get("entry", [])
            if e["resource"].get("subtype", [{}])[0].get("code") == "read"
        ]
        if len(found) >= n:
            break
        time.sleep(0.1)
    return found


def test_outcomes_headers_and_an_audit_record_for_each(server, client):
    app = server.server.config.app
    assert (app.fast_read is not None) == (server.backend == "postgresql")
    pid = client.post("/Patient", json={"resourceType": "Patient", "active": True}).json()["id"]
    ok = client.get(f"/Patient/{pid}", headers={"X-Request-ID": "fast-read-1"})
    assert ok.status_code == 200, ok.text
    _secure(ok)
    assert ok.headers["x-request-id"] == "fast-read-1"
    assert ok.headers["cache-control"] == "no-store"
    assert ok.headers["content-type"] == "application/fhir+json; charset=utf-8"
    assert ok.headers["etag"] == 'W/"1"'
    assert ok.json()["id"] == pid and ok.json()["meta"]["versionId"] == "1"
    same = client.get(f"/Patient/{pid}", headers={"If-None-Match": 'W/"1"'})
    assert same.status_code == 304 and same.content == b""
    assert same.headers["etag"] == 'W/"1"'
    _secure(same)
    since = client.get(
        f"/Patient/{pid}", headers={"If-Modified-Since": ok.headers["last-modified"]}
    )
    assert since.status_code == 304
    assert client.get(f"/Patient/{pid}", headers={"If-None-Match": 'W/"0"'}).status_code == 200
    xml = client.get(f"/Patient/{pid}", headers={"Accept": "application/fhir+xml"})
    assert xml.status_code == 200 and xml.headers["content-type"].startswith("application/fhir+xml")
    assert '<Patient xmlns="http://hl7.org/fhir">' in xml.text
    # the token decides: none, a bad one, one without read access to the type
    bare = httpx.Client(base_url=server.fhir, timeout=60)  # one client: no SSL setup per call
    missing = bare.get(f"/Patient/{pid}")
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"].startswith("Bearer")
    bad = bare.get(f"/Patient/{pid}", headers=bearer("not-a-token"))
    assert bad.status_code == 401 and bad.json()["resourceType"] == "OperationOutcome"
    _secure(bad)
    observations_only = client_token(server, "system/Observation.rs")
    denied = bare.get(f"/Patient/{pid}", headers=observations_only)
    assert denied.status_code == 403, denied.text
    _secure(denied)
    reader = client_token(server, "system/*.rs")  # reads everything, but is no administrator
    assert bare.get(f"/Patient/{pid}", headers=reader).status_code == 200
    assert bare.get("/AuditEvent/audit-1", headers=reader).status_code == 403
    bare.close()
    # every read above that named the patient was audited, with its outcome
    events = _read_events(client, f"Patient/{pid}", 7)
    outcomes = sorted(e["outcome"] for e in events)
    assert outcomes == ["0"] * 6 + ["4"], outcomes
    engine = create_engine(server.database_url)
    try:
        checked, broken = audit.verify(engine)
    finally:
        engine.dispose()
    assert broken is None and checked > 0


def test_revoked_token_is_refused_at_the_next_read(server, client):
    pid = client.post("/Patient", json={"resourceType": "Patient"}).json()["id"]
    headers = client_token(server, "system/*.rs")
    assert client.get(f"/Patient/{pid}", headers=headers).status_code == 200
    store = store_of(server)
    try:
        store.revoke(headers["Authorization"].removeprefix("Bearer "))
    finally:
        store.engine.dispose()
    assert client.get(f"/Patient/{pid}", headers=headers).status_code == 401
    # and an unknown id reads as unknown to a valid token (no trace of the revoked one)
    assert client.get(f"/Patient/{uuid.uuid4()}").status_code == 404


def test_patient_token_still_reads_only_its_compartment(server, client):
    mine = client.post("/Patient", json={"resourceType": "Patient"}).json()["id"]
    other = client.post("/Patient", json={"resourceType": "Patient"}).json()["id"]
    headers = client_token(server, "patient/*.rs", patient=mine)
    with httpx.Client(base_url=server.fhir, headers=headers, timeout=60) as app:
        assert app.get(f"/Patient/{mine}").status_code == 200
        assert app.get(f"/Patient/{mine}", headers={"If-None-Match": 'W/"1"'}).status_code == 304
        assert app.get(f"/Patient/{other}").status_code == 404
