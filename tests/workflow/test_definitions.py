"""Case definitions load and are checked; the operations appear in the CapabilityStatement."""

from __future__ import annotations

import pytest

from workflow import effects
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
    # A chest X-ray arrives from DICOM or is sent by its patient or a cadre ($upload-xray).
    assert set(imaging.started_by) == {"doctor", "admin", "system", "patient", "cadre"}
    assert set(imaging.focus) == {"ImagingStudy", "Media"}
    assert cases["skin-screening"].step("pharmacist-review").when == "medication-prescribed"
    assert {c.id: c.analysis for c in cases.values()} == {
        "skin-screening": "skin",
        "imaging-review": "pneumonia",
        "lung-risk": "plcom2012",
    }


def test_effects_and_conditions_are_the_registries_words():
    """A definition may use exactly the words registered with ``@effect`` / ``@condition``."""
    raw = {
        "id": "x",
        "title": "X",
        "focus": ["Patient"],
        "startedBy": ["doctor"],
        "reportCode": {"code": "x"},
        "startStatus": "NEW",
        "steps": [
            {"id": "a", "title": "A", "performer": ["doctor"], "doneStatus": "A"},
            {
                "id": "b",
                "title": "B",
                "performer": ["doctor"],
                "doneStatus": "B",
                "when": "second-opinion-wanted",
                "effects": ["notify-registry"],
            },
        ],
    }
    with pytest.raises(DefinitionError, match="condition"):
        parse(raw)
    try:
        effects.effect("notify-registry")(lambda done: None)
        effects.condition("second-opinion-wanted", unmet="no second opinion")(lambda steps: True)
        case = parse(raw)
        assert case.step("b").when == "second-opinion-wanted"
        assert case.step("b").effects == ("notify-registry",)
        with pytest.raises(ValueError, match="registered twice"):
            effects.effect("notify-registry")(lambda done: None)
    finally:
        effects.EFFECTS.pop("notify-registry", None)
        effects.CONDITIONS.pop("second-opinion-wanted", None)
    assert set(effects.EFFECTS) == {"final-report", "referral-if-high-risk"}
    assert set(effects.CONDITIONS) == {"medication-prescribed"}


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
        (
            {"steps": [{"id": "a", "title": "A", "performer": ["ai"], "doneStatus": "X"}]},
            "an AI step needs the case's analysis",
        ),
        ({"analysis": "skin"}, "but no AI step"),
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
