"""Case definitions load and are checked; the operations appear in the CapabilityStatement."""

from __future__ import annotations

import pytest

from workflow.definitions import DefinitionError, definitions, parse


def test_shipped_definitions():
    cases = definitions()
    assert set(cases) == {"skin-screening", "imaging-review", "lung-risk"}
    imaging = cases["imaging-review"]
    assert [s.done_status for s in imaging.steps][:4] == [
        "AI_ANALYZED",
        "DOCTOR_VERIFIED",
        "PHARMACIST_COMPLETED",
        "REPORT_READY",
    ]
    assert imaging.start_status == "PENDING_AI"
    assert cases["skin-screening"].step("pharmacist-review").when == "medication-prescribed"


@pytest.mark.parametrize(
    "change, message",
    [
        (
            {"steps": [{"id": "a", "title": "A", "performer": ["surgeon"], "doneStatus": "X"}]},
            "unknown roles",
        ),
        (
            {
                "steps": [
                    {
                        "id": "a",
                        "title": "A",
                        "performer": ["doctor"],
                        "doneStatus": "X",
                        "when": "always",
                    }
                ]
            },
            "condition",
        ),
        (
            {
                "steps": [
                    {
                        "id": "a",
                        "title": "A",
                        "performer": ["doctor"],
                        "doneStatus": "X",
                        "effects": ["email"],
                    }
                ]
            },
            "effects",
        ),
        ({"steps": [{"id": "a", "title": "A", "performer": ["doctor"]}]}, "doneStatus is required"),
        ({"colour": "blue"}, "unknown keys"),
    ],
)
def test_malformed_definitions_are_refused(change, message):
    raw = {
        "id": "x",
        "title": "X",
        "focus": ["Patient"],
        "startedBy": ["doctor"],
        "reportCode": {"code": "x"},
        "startStatus": "NEW",
        "steps": [{"id": "a", "title": "A", "performer": ["doctor"], "doneStatus": "DONE"}],
        **change,
    }
    with pytest.raises(DefinitionError, match=message):
        parse(raw)


def test_capability_statement_lists_the_workflow_operations(fhir):
    cap = fhir.get("/metadata")
    resources = {r["type"]: r for r in cap["rest"][0]["resource"]}
    task_ops = {o["name"] for o in resources["Task"].get("operation", [])}
    assert {"start-case", "claim", "release", "complete", "deliver-report"} <= task_ops
    appt_ops = {o["name"] for o in resources["Appointment"].get("operation", [])}
    assert {"book", "cancel", "reschedule"} <= appt_ops
    assert "performer-type" in {p["name"] for p in resources["Task"]["searchParam"]}
    assert "claim" not in {o["name"] for o in resources["Patient"].get("operation", [])}
