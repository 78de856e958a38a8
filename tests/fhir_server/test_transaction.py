"""Batch and transaction Bundles over HTTP (FHIR R4 http.html#transaction)."""

from __future__ import annotations

import uuid

from tests.fhir_server.test_rest import assert_outcome, patient


def _txn(entries: list[dict], kind: str = "transaction") -> dict:
    return {"resourceType": "Bundle", "type": kind, "entry": entries}


def test_transaction_resolves_urn_uuid_references(client):
    pat_url = f"urn:uuid:{uuid.uuid4()}"
    body = patient()
    bundle = _txn(
        [
            {
                "fullUrl": f"urn:uuid:{uuid.uuid4()}",
                "resource": {
                    "resourceType": "Observation",
                    "status": "final",
                    "code": {"text": "weight"},
                    "subject": {"reference": pat_url},
                    "valueQuantity": {"value": 70, "unit": "kg"},
                },
                "request": {"method": "POST", "url": "Observation"},
            },
            {"fullUrl": pat_url, "resource": body, "request": {"method": "POST", "url": "Patient"}},
        ]
    )
    resp = client.post("/", json=bundle)
    assert resp.status_code == 200, resp.text
    out = resp.json()
    assert out["type"] == "transaction-response"
    assert [e["response"]["status"] for e in out["entry"]] == ["201 Created", "201 Created"]
    obs_loc = out["entry"][0]["response"]["location"]
    pat_loc = out["entry"][1]["response"]["location"]
    obs = client.get("/" + obs_loc.split("/_history")[0]).json()
    assert obs["subject"]["reference"] == pat_loc.split("/_history")[0]


def test_transaction_is_all_or_nothing(client):
    tag = uuid.uuid4().hex
    good = patient(identifier=[{"system": "urn:test:txn", "value": tag}])
    bad = patient(gender="robot")
    bundle = _txn(
        [
            {"resource": good, "request": {"method": "POST", "url": "Patient"}},
            {"resource": bad, "request": {"method": "POST", "url": "Patient"}},
        ]
    )
    body = assert_outcome(client.post("/", json=bundle), 400)
    assert "entry 1" in body["issue"][0]["diagnostics"]
    found = client.get("/Patient", params={"identifier": f"urn:test:txn|{tag}"}).json()
    assert found.get("entry", []) == []


def test_transaction_conditional_create_and_reference(client):
    body = patient()
    ident = body["identifier"][0]
    crit = f"identifier={ident['system']}|{ident['value']}"
    existing = client.post("/Patient", json=body).json()
    bundle = _txn(
        [
            {
                "fullUrl": "urn:uuid:11111111-1111-1111-1111-111111111111",
                "resource": body,
                "request": {"method": "POST", "url": "Patient", "ifNoneExist": crit},
            },
            {
                "resource": {
                    "resourceType": "Observation",
                    "status": "final",
                    "code": {"text": "x"},
                    "subject": {"reference": "urn:uuid:11111111-1111-1111-1111-111111111111"},
                },
                "request": {"method": "POST", "url": "Observation"},
            },
            {
                "resource": {
                    "resourceType": "Observation",
                    "status": "final",
                    "code": {"text": "y"},
                    "subject": {"reference": f"Patient?{crit}"},
                },
                "request": {"method": "POST", "url": "Observation"},
            },
        ]
    )
    out = client.post("/", json=bundle).json()
    assert out["entry"][0]["response"]["status"] == "200 OK"
    for n in (1, 2):
        obs_ref = out["entry"][n]["response"]["location"].split("/_history")[0]
        assert (
            client.get("/" + obs_ref).json()["subject"]["reference"] == f"Patient/{existing['id']}"
        )


def test_transaction_processing_order(client):
    """DELETE runs before POST, PUT, and GET runs last (it sees the writes)."""
    pid = f"ord-{uuid.uuid4().hex[:8]}"
    client.put(f"/Patient/{pid}", json=patient(id=pid))
    bundle = _txn(
        [
            {"request": {"method": "GET", "url": f"Patient/{pid}"}},
            {
                "resource": patient(id=pid, gender="male"),
                "request": {"method": "PUT", "url": f"Patient/{pid}"},
            },
        ]
    )
    out = client.post("/", json=bundle).json()
    assert out["entry"][0]["resource"]["gender"] == "male"
    assert out["entry"][1]["response"]["status"] == "200 OK"


def test_batch_entries_fail_independently(client):
    bundle = _txn(
        [
            {"resource": patient(), "request": {"method": "POST", "url": "Patient"}},
            {"resource": patient(gender="robot"), "request": {"method": "POST", "url": "Patient"}},
            {"request": {"method": "GET", "url": f"Patient/{uuid.uuid4()}"}},
        ],
        kind="batch",
    )
    out = client.post("/", json=bundle).json()
    assert out["type"] == "batch-response"
    statuses = [e["response"]["status"] for e in out["entry"]]
    assert statuses == ["201 Created", "400 Bad Request", "404 Not Found"]
    assert out["entry"][1]["response"]["outcome"]["resourceType"] == "OperationOutcome"


def test_bad_bundles(client):
    assert_outcome(client.post("/", json={"resourceType": "Bundle", "type": "collection"}), 400)
    assert_outcome(client.post("/", json={"resourceType": "Patient"}), 400)
    no_request = _txn([{"resource": patient()}])
    assert_outcome(client.post("/", json=no_request), 400)
    bad_method = _txn([{"resource": patient(), "request": {"method": "FETCH", "url": "Patient"}}])
    assert_outcome(client.post("/", json=bad_method), 400)
    dup = _txn(
        [
            {
                "fullUrl": "urn:uuid:a",
                "resource": patient(),
                "request": {"method": "POST", "url": "Patient"},
            },
            {
                "fullUrl": "urn:uuid:a",
                "resource": patient(),
                "request": {"method": "POST", "url": "Patient"},
            },
        ]
    )
    assert_outcome(client.post("/", json=dup), 400)
    unresolved = _txn(
        [
            {
                "resource": {
                    "resourceType": "Observation",
                    "status": "final",
                    "code": {"text": "x"},
                    "subject": {"reference": "Patient?identifier=urn:none|nothing"},
                },
                "request": {"method": "POST", "url": "Observation"},
            }
        ]
    )
    assert_outcome(client.post("/", json=unresolved), 412)
