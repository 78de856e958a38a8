"""A patient-context token on this stop's new endpoints, over HTTP on a running server: the
administrators' delivery problems and retry, a doctor's treatment plan and the development
mailbox answer 403 (or 404) with an OperationOutcome that names nothing of any patient, and bad
input to each is a 4xx, never a 500."""

from __future__ import annotations

import httpx
import pytest

from tests.fhir_server.auth.smart import client_token
from tests.servers import database_url, free_port, start_server


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def edge(request, tmp_path_factory):  # type: ignore[no-untyped-def]
    tmp = tmp_path_factory.mktemp(f"edges-{request.param}")
    url, cleanup = database_url(request.param, tmp)
    server = start_server(request.param, url, dev_mailbox=tmp / "mail", dev_mailbox_port=free_port())  # fmt: skip
    yield server
    server.stop()
    cleanup()  # type: ignore[operator]


def test_a_patient_token_gets_nothing_from_the_new_endpoints(edge):  # type: ignore[no-untyped-def]
    h = edge.headers
    mine = httpx.post(f"{edge.fhir}/Patient", json={"resourceType": "Patient", "name": [{"family": "Mine"}]}, headers=h).json()  # fmt: skip
    other = httpx.post(f"{edge.fhir}/Patient", json={"resourceType": "Patient", "name": [{"family": "Othername"}], "telecom": [{"system": "email", "value": "other@example.org"}]}, headers=h).json()  # fmt: skip
    case = httpx.post(f"{edge.fhir}/Task", json={"resourceType": "Task", "status": "requested", "intent": "order", "for": {"reference": f"Patient/{other['id']}"}}, headers=h).json()  # fmt: skip
    ph = client_token(edge, "patient/*.cruds", patient=mine["id"])
    target = {"resourceType": "Parameters", "parameter": [{"name": "target", "valueReference": {"reference": f"Task/{case['id']}"}}]}  # fmt: skip
    plan = {"resourceType": "Parameters", "parameter": [{"name": "title", "valueString": "x"}, {"name": "activity", "part": [{"name": "kind", "valueCode": "referral"}, {"name": "description", "valueString": "y"}]}]}  # fmt: skip
    calls = [
        ("GET", f"{edge.fhir}/$delivery-problems", None),
        ("POST", f"{edge.fhir}/$retry-delivery", target),
        ("POST", f"{edge.fhir}/Task/{case['id']}/$plan-treatment", plan),
        ("GET", f"{edge.root}/dev/mailbox", None),
    ]
    for method, url, body in calls:
        r = httpx.request(method, url, json=body, headers=ph)
        assert r.status_code in (403, 404), (url, r.status_code, r.text)
        assert r.json()["resourceType"] == "OperationOutcome"
        assert "Othername" not in r.text and "other@example.org" not in r.text, url


def test_bad_input_to_the_new_endpoints_is_a_4xx(edge):  # type: ignore[no-untyped-def]
    h = edge.headers
    bad = [
        ("POST", f"{edge.fhir}/$retry-delivery", {"resourceType": "Parameters"}),
        (
            "POST",
            f"{edge.fhir}/$retry-delivery",
            {"resourceType": "Parameters", "parameter": [{"name": "target", "valueString": 7}]},
        ),  # fmt: skip
        ("POST", f"{edge.fhir}/$retry-delivery", {"resourceType": "Patient"}),
        (
            "POST",
            f"{edge.fhir}/$retry-delivery",
            {
                "resourceType": "Parameters",
                "parameter": [{"name": "target", "valueReference": {"reference": "Task/nope"}}],
            },
        ),  # fmt: skip
        (
            "POST",
            f"{edge.fhir}/Task/nope/$plan-treatment",
            {
                "resourceType": "Parameters",
                "parameter": [
                    {"name": "title", "valueString": "x"},
                    {
                        "name": "activity",
                        "part": [
                            {"name": "kind", "valueCode": "referral"},
                            {"name": "description", "valueString": "y"},
                        ],
                    },
                ],
            },
        ),  # fmt: skip
        (
            "POST",
            f"{edge.fhir}/Task/nope/$plan-treatment",
            {
                "resourceType": "Parameters",
                "parameter": [{"name": "activity", "part": "not a list"}],
            },
        ),  # fmt: skip
        ("GET", f"{edge.root}/dev/mailbox/..%2F..%2Fetc", None),
        ("GET", f"{edge.root}/dev/mailbox/x/attachments/notanumber", None),
    ]
    for method, url, body in bad:
        r = httpx.request(method, url, json=body, headers={**h, "X-Hearth-Role": "doctor", "X-Hearth-Actor": "Practitioner/x"})  # fmt: skip
        assert 400 <= r.status_code < 500, (url, body, r.status_code, r.text)
        assert r.json()["resourceType"] == "OperationOutcome", (url, r.text)
