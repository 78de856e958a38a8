"""The read by id served as the stored JSON text (resources/storage/point_read.py), over HTTP on SQLite and
PostgreSQL: the body is the stored resource, never a stale version, deleted is 410, the version
headers and ``_pretty`` still hold, a patient-context token still reads only its compartment, and
every read leaves its audit record."""

from __future__ import annotations

import time
import uuid

import httpx
import orjson

from tests.fhir_server.auth.smart import client_token


def _patient(family: str) -> dict:
    return {
        "resourceType": "Patient",
        "identifier": [{"system": "urn:test:read-path", "value": uuid.uuid4().hex}],
        "name": [{"family": family}],
    }


def test_read_is_the_stored_version_never_a_stale_one(client):
    created = client.post("/Patient", json=_patient("Before")).json()
    pid = created["id"]
    for n in range(2, 5):
        body = {**created, "name": [{"family": f"After{n}"}]}
        updated = client.put(f"/Patient/{pid}", json=body)
        assert updated.status_code == 200, updated.text
        read = client.get(f"/Patient/{pid}")  # right after the write: the new version
        assert read.status_code == 200, read.text
        assert read.headers["etag"] == f'W/"{n}"'
        assert read.headers["last-modified"]
        assert read.headers["content-type"].startswith("application/fhir+json")
        got = read.json()
        assert got == updated.json()
        assert got["meta"]["versionId"] == str(n)
        assert got["name"] == [{"family": f"After{n}"}]
    pretty = client.get(f"/Patient/{pid}", params={"_pretty": "true"})
    assert pretty.text.startswith("{\n  ")
    assert orjson.loads(pretty.content) == got
    assert client.get(f"/Patient/{pid}", headers={"If-None-Match": 'W/"4"'}).status_code == 304
    assert client.delete(f"/Patient/{pid}").status_code in (200, 204)
    gone = client.get(f"/Patient/{pid}")
    assert gone.status_code == 410, gone.text
    assert gone.json()["resourceType"] == "OperationOutcome"
    unknown = client.get(f"/Patient/{uuid.uuid4()}")
    assert unknown.status_code == 404, unknown.text


def test_patient_token_reads_only_its_compartment(server, client):
    mine = client.post("/Patient", json=_patient("Mine")).json()["id"]
    other = client.post("/Patient", json=_patient("Other")).json()["id"]
    headers = client_token(server, "patient/*.rs", patient=mine)
    with httpx.Client(base_url=server.fhir, headers=headers, timeout=60) as patient_app:
        assert patient_app.get(f"/Patient/{mine}").status_code == 200
        hidden = patient_app.get(f"/Patient/{other}")
        assert hidden.status_code == 404, hidden.text  # as if it did not exist
        unknown = patient_app.get(f"/Patient/{uuid.uuid4()}")
        assert unknown.status_code == 404
        assert hidden.json()["issue"][0]["code"] == unknown.json()["issue"][0]["code"]
    # a system token reads the other patient
    assert client.get(f"/Patient/{other}").status_code == 200


def test_every_read_is_audited(client):
    pid = client.post("/Patient", json=_patient("Audited")).json()["id"]
    reads = 3
    for _ in range(reads):
        assert client.get(f"/Patient/{pid}").status_code == 200
    found: list[dict] = []
    for _ in range(100):  # the background writer stores read records within a moment
        bundle = client.get(
            "/AuditEvent", params={"entity": f"Patient/{pid}", "_count": "50"}
        ).json()
        found = [
            e["resource"]
            for e in bundle.get("entry", [])
            if e["resource"].get("subtype", [{}])[0].get("code") == "read"
        ]
        if len(found) >= reads:
            break
        time.sleep(0.1)
    assert len(found) == reads, found
