"""$plan-treatment over HTTP on both databases: a doctor's treatment plan for a case is a CarePlan
whose activities — a follow-up photo, an excision referral, a medication — are the Task,
ServiceRequest and MedicationRequest made with it, each based on the case's order; the case names
the plan, which is in the patient's compartment (its subject); the plan's
progress is the activities' own status. Other roles, steps, unknown cases and bad activities are
refused with OperationOutcomes, and a refused plan writes nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tests.workflow.conftest import photo_media, ref
from tests.workflow.test_cases_http import start, step


def activity(**parts: object) -> dict:
    values = []
    for name, v in parts.items():
        key = {"kind": "valueCode", "dueInDays": "valueInteger"}.get(name, "valueString")
        values.append({"name": name, key: v})
    return {"part": values}


PLAN = {
    "title": {"valueString": "Atypical naevus: watch and excise"},
    "activity": [
        activity(kind="follow-up-photo", description="Photo of the left forearm lesion", dueInDays=90),
        activity(kind="referral", description="Excision biopsy, skin clinic", dueInDays=30),
        activity(kind="medication", description="Until the biopsy", medication="Chlorhexidine 0.05% solution", dosage="Clean the area once daily"),
    ],
}  # fmt: skip


def test_a_doctor_plans_treatment_and_the_patient_follows_it(fhir, team):  # type: ignore[no-untyped-def]
    patient = team["patient"][1]
    media = photo_media(fhir, patient)
    case = start(
        fhir, team["cadre"], "skin-screening", patient, ref(media), team["doctor"][1]
    ).json()
    made = fhir.op(f"/Task/{case['id']}/$plan-treatment", team["doctor"], PLAN)
    assert made.status_code == 201, made.text
    plan = made.json()
    assert made.headers["location"].endswith(f"/CarePlan/{plan['id']}")
    assert plan["status"] == "active" and plan["intent"] == "plan"
    assert plan["subject"] == {"reference": patient}
    assert plan["author"] == {"reference": team["doctor"][1]}
    refs = [a["reference"]["reference"] for a in plan["activity"]]
    assert [r.split("/")[0] for r in refs] == ["Task", "ServiceRequest", "MedicationRequest"]
    order = case["basedOn"][0]["reference"]
    photo_task, referral, medication = (fhir.get(f"/{r}") for r in refs)
    for r in (photo_task, referral, medication):
        assert r["basedOn"] == [{"reference": order}]
    assert photo_task["for"] == {"reference": patient} and photo_task["status"] == "requested"
    due = datetime.fromisoformat(
        photo_task["restriction"]["period"]["start"].replace("Z", "+00:00")
    )
    assert abs(due - (datetime.now(UTC) + timedelta(days=90))) < timedelta(minutes=5)
    assert referral["code"]["text"] == "Excision biopsy, skin clinic"
    assert medication["dosageInstruction"] == [{"text": "Clean the area once daily"}]
    assert medication["requester"] == {"reference": team["doctor"][1]}
    # The case names its plan; the plan is found by the patient's CarePlan search.
    case_now = fhir.get(f"/Task/{case['id']}")
    outputs = [o["valueReference"]["reference"] for o in case_now.get("output", []) if o["type"]["coding"][0]["code"] == "CarePlan"]  # fmt: skip
    assert outputs == [f"CarePlan/{plan['id']}"]
    assert [p["id"] for p in fhir.search("CarePlan", subject=patient)] == [plan["id"]]
    # Progress is the activities' status: the follow-up photo done.
    done = {**photo_task, "status": "completed"}
    done.pop("meta", None)
    assert fhir.http.put(f"/{refs[0]}", json=done).status_code == 200
    statuses = [fhir.get(f"/{r}")["status"] for r in refs]
    assert statuses == ["completed", "active", "active"]


def test_plans_are_for_doctors_on_cases_with_valid_activities(fhir, team):  # type: ignore[no-untyped-def]
    patient = team["patient"][1]
    case = start(fhir, team["cadre"], "skin-screening", patient, ref(photo_media(fhir, patient))).json()  # fmt: skip
    before = len(fhir.search("CarePlan", subject=patient))
    url = f"/Task/{case['id']}/$plan-treatment"
    for who in ("cadre", "pharmacist", "admin"):
        r = fhir.op(url, team[who], PLAN)
        assert r.status_code == 403 and r.json()["resourceType"] == "OperationOutcome", (
            who,
            r.text,
        )
    bad_plans = [
        {"activity": PLAN["activity"]},  # no title
        {"title": PLAN["title"]},  # no activity
        {**PLAN, "activity": [activity(kind="surgery", description="x")]},
        {**PLAN, "activity": [activity(kind="follow-up-photo", description="no date")]},
        {
            **PLAN,
            "activity": [activity(kind="medication", description="no dosage", medication="X")],
        },
        {**PLAN, "activity": [activity(kind="referral", description="", dueInDays=3)]},
        {**PLAN, "activity": [activity(kind="referral", description="late", dueInDays=100000)]},
        {**PLAN, "activity": [{"valueString": "not parts"}]},
    ]
    for body in bad_plans:
        r = fhir.op(url, team["doctor"], body)
        assert r.status_code == 400 and r.json()["resourceType"] == "OperationOutcome", (
            body,
            r.text,
        )
    a_step = step(fhir, case["id"], "doctor-review")
    r = fhir.op(f"/Task/{a_step['id']}/$plan-treatment", team["doctor"], PLAN)
    assert r.status_code == 400, r.text
    assert fhir.op("/Task/no-such-case/$plan-treatment", team["doctor"], PLAN).status_code == 404
    assert len(fhir.search("CarePlan", subject=patient)) == before  # nothing half-written
