"""Bad workflow requests get a clear OperationOutcome with the right status, never a 500."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize(
    "method, path, body, headers, status",
    [
        ("POST", "/Task/$start-case", {"resourceType": "Patient"}, True, 400),
        ("POST", "/Task/$start-case", {"resourceType": "Parameters"}, True, 400),
        (
            "POST",
            "/Task/$start-case",
            {
                "resourceType": "Parameters",
                "parameter": [
                    {"name": "caseType", "valueCode": "lung-risk"},
                    {"name": "patient", "valueReference": {"reference": "Patient/does-not-exist"}},
                ],
            },
            True,
            404,
        ),
        (
            "POST",
            "/Task/$start-case",
            {
                "resourceType": "Parameters",
                "parameter": [{"name": "caseType", "valueString": "lung-risk"}],
            },
            True,
            400,
        ),
        ("POST", "/Task/no-such-task/$claim", None, True, 404),
        ("GET", "/Task/no-such-task/$claim", None, True, 405),
        ("POST", "/Patient/x/$claim", None, True, 404),
        (
            "POST",
            "/Appointment/$book",
            {
                "resourceType": "Parameters",
                "parameter": [
                    {"name": "slot", "valueReference": {"reference": "Patient/1"}},
                    {"name": "patient", "valueReference": {"reference": "Patient/1"}},
                ],
            },
            True,
            400,
        ),
        ("POST", "/Task/$start-case", None, False, 401),
    ],
)
def test_bad_requests(fhir, team, method, path, body, headers, status):
    hdrs = {"X-Hearth-Role": "doctor", "X-Hearth-Actor": team["doctor"][1]} if headers else {}
    resp = fhir.http.request(method, path, json=body, headers=hdrs)
    assert resp.status_code == status, resp.text
    assert resp.json()["resourceType"] == "OperationOutcome"


def test_a_plain_task_is_not_a_workflow_step(fhir, team):
    task = fhir.create({"resourceType": "Task", "status": "requested", "intent": "order"})
    resp = fhir.op(f"/Task/{task['id']}/$claim", team["doctor"])
    assert resp.status_code == 400 and "not a step" in resp.text


def test_the_system_role_cannot_be_claimed_by_a_request(fhir, team):
    resp = fhir.op("/Task/$start-case", ("system", "Device/hearth-workflow"), {})
    assert resp.status_code == 400
