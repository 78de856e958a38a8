"""Conditional patch inside a transaction (FHIR R4 http.html#patch, ``PATCH [type]?criteria``):
exactly one match is patched; none or several fail the whole transaction."""

from __future__ import annotations

import uuid

import httpx


def _patch_entry(query: str, family: str) -> dict:
    return {
        "resource": {
            "resourceType": "Parameters",
            "parameter": [
                {
                    "name": "operation",
                    "part": [
                        {"name": "type", "valueCode": "add"},
                        {"name": "path", "valueString": "Patient"},
                        {"name": "name", "valueString": "name"},
                        {"name": "value", "part": [{"name": "family", "valueString": family}]},
                    ],
                }
            ],
        },
        "request": {"method": "PATCH", "url": f"Patient?{query}"},
    }


def test_conditional_patch_in_a_transaction(client: httpx.Client) -> None:
    tag = uuid.uuid4().hex
    created = client.post(
        "/Patient",
        json={"resourceType": "Patient", "identifier": [{"system": "urn:t", "value": tag}]},
    ).json()
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [_patch_entry(f"identifier=urn:t|{tag}", "Patched")],
    }
    r = client.post("", json=bundle)
    assert r.status_code == 200, r.text
    stored = client.get(f"/Patient/{created['id']}").json()
    assert stored["name"] == [{"family": "Patched"}]
    assert stored["meta"]["versionId"] == "2"

    # no match: the transaction fails and its other entries are not written
    other = uuid.uuid4().hex
    bundle["entry"] = [
        {
            "resource": {
                "resourceType": "Patient",
                "identifier": [{"system": "urn:t", "value": other}],
            },
            "request": {"method": "POST", "url": "Patient"},
        },
        _patch_entry(f"identifier=urn:t|{uuid.uuid4().hex}", "Nobody"),
    ]
    r = client.post("", json=bundle)
    assert r.status_code == 404, r.text
    assert r.json()["resourceType"] == "OperationOutcome"
    assert client.get(f"/Patient?identifier=urn:t|{other}").json().get("entry", []) == []

    # several matches: 412
    client.post(
        "/Patient",
        json={"resourceType": "Patient", "identifier": [{"system": "urn:t", "value": tag}]},
    )
    bundle["entry"] = [_patch_entry(f"identifier=urn:t|{tag}", "Twice")]
    assert client.post("", json=bundle).status_code == 412
