"""Allergy and interaction checks over HTTP on SQLite and PostgreSQL: the doctor prescribes at
``$complete`` (and in a treatment plan) with RxNorm codes from the formulary; each finding is a
DetectedIssue written in the same transaction as the MedicationRequest, which names it; the
pharmacist finds them by the patient; a patient token sees its own and never another patient's;
checking again writes nothing (idempotent on retry)."""

from __future__ import annotations

from resources.search import SearchEngine
from resources.storage.db import create_engine
from resources.storage.repository import Repository
from terminology.formulary import RXNORM
from tests.fhir_server.auth.smart import client_token
from tests.security.compartment_helpers import user_token
from tests.workflow.conftest import photo_media, ref
from tests.workflow.test_cases_http import ai_observation, start, step
from workflow import medchecks

ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"


def coded(code: str, display: str) -> dict:
    return {"coding": [{"system": RXNORM, "code": code, "display": display}], "text": display}


def prescription(code: str, display: str) -> dict:
    return {"resource": {"resourceType": "MedicationRequest", "status": "active", "intent": "order",
                         "medicationCodeableConcept": coded(code, display),
                         "dosageInstruction": [{"text": "as directed"}]}}  # fmt: skip


def doctor_step(fhir, team, patient: str) -> tuple[dict, dict]:  # type: ignore[no-untyped-def]
    media = photo_media(fhir, patient)
    case = start(fhir, team["cadre"], "skin-screening", patient, ref(media), team["doctor"][1]).json()  # fmt: skip
    ai = step(fhir, case["id"], "ai-analysis")
    obs = ai_observation(fhir, case, team, ref(media))
    done = fhir.op(f"/Task/{ai['id']}/$complete", team["ai"], {"result": {"valueReference": {"reference": ref(obs)}}})  # fmt: skip
    assert done.status_code == 200, done.text
    review = step(fhir, case["id"], "doctor-review")
    assert fhir.op(f"/Task/{review['id']}/$claim", team["doctor"]).status_code == 200
    return case, review


def ids(resp) -> set[str]:  # type: ignore[no-untyped-def]
    assert resp.status_code == 200, resp.text
    return {e["resource"]["id"] for e in resp.json().get("entry", []) if e["resource"]["resourceType"] == "DetectedIssue"}  # fmt: skip


def test_prescribing_records_allergy_and_interaction_issues(fhir, team, wf_server):  # type: ignore[no-untyped-def]
    patient = team["patient"][1]
    aspirin_allergy = fhir.create({
        "resourceType": "AllergyIntolerance", "patient": {"reference": patient}, "criticality": "high",
        "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical", "code": "active"}]},
        "code": coded("1191", "aspirin")})  # fmt: skip
    warfarin = fhir.create({"resourceType": "MedicationRequest", "status": "active", "intent": "order",
                            "subject": {"reference": patient}, "medicationCodeableConcept": coded("11289", "warfarin")})  # fmt: skip
    before = {i["id"] for i in fhir.search("DetectedIssue", patient=patient)}
    assert before == set()

    case, review = doctor_step(fhir, team, patient)
    resp = fhir.op(f"/Task/{review['id']}/$complete", team["doctor"], {"output": [
        {"resource": {"resourceType": "Observation", "status": "final", "code": {"text": "Doctor's finding"}, "valueString": "Naevus"}},
        prescription("5640", "ibuprofen"), prescription("161", "acetaminophen")]})  # fmt: skip
    assert resp.status_code == 200, resp.text
    made = [o["valueReference"]["reference"] for o in resp.json()["output"] if o["valueReference"]["reference"].startswith("MedicationRequest/")]  # fmt: skip
    ibuprofen, acetaminophen = (fhir.get(f"/{r}") for r in made)
    assert "detectedIssue" not in acetaminophen  # no false hit
    issues = [fhir.get(f"/{d['reference']}") for d in ibuprofen["detectedIssue"]]
    by_code = {i["code"]["coding"][0]["code"]: i for i in issues}
    assert set(by_code) == {"ALGY", "DRG"}
    for i in issues:
        assert i["code"]["coding"][0]["system"] == ACT_CODE and i["status"] == "final"
        assert i["patient"] == {"reference": patient}
        assert i["implicated"][0]["reference"] == ref(ibuprofen)
    allergy, interaction = by_code["ALGY"], by_code["DRG"]
    assert allergy["severity"] == "high"  # class match, the allergy is critical
    assert allergy["implicated"][1]["reference"] == ref(aspirin_allergy)
    assert "Non-steroidal" in allergy["detail"]
    assert interaction["severity"] == "high"
    assert interaction["implicated"][1]["reference"] == ref(warfarin)
    assert "Source: Coumadin" in interaction["detail"]

    # Checking again (a retry) finds the issues already recorded and writes nothing.
    repo = Repository(
        create_engine(wf_server.database_url), SearchEngine(base_urls=(wf_server.fhir,))
    )
    try:
        again = repo.run(lambda u: medchecks.check(u, ref(ibuprofen), patient))
    finally:
        repo.engine.dispose()
    assert sorted(again) == sorted(d["reference"] for d in ibuprofen["detectedIssue"])
    assert {i["id"] for i in fhir.search("DetectedIssue", patient=patient)} == {
        i["id"] for i in issues
    }
    assert fhir.get(f"/{ref(ibuprofen)}")["meta"]["versionId"] == ibuprofen["meta"]["versionId"]

    # A treatment plan's coded medication is checked the same way: methotrexate with ibuprofen.
    plan = fhir.op(f"/Task/{case['id']}/$plan-treatment", team["doctor"], {
        "title": {"valueString": "Psoriasis"},
        "activity": [{"part": [{"name": "kind", "valueCode": "medication"}, {"name": "description", "valueString": "weekly"},
                               {"name": "medication", "valueString": "methotrexate"}, {"name": "dosage", "valueString": "7.5 mg weekly"},
                               {"name": "medicationCode", "valueCoding": {"system": RXNORM, "code": "6851", "display": "methotrexate"}}]}]})  # fmt: skip
    assert plan.status_code == 201, plan.text
    mtx = fhir.get(f"/{plan.json()['activity'][0]['reference']['reference']}")
    assert mtx["medicationCodeableConcept"]["coding"][0]["code"] == "6851"
    mtx_issues = [fhir.get(f"/{d['reference']}") for d in mtx["detectedIssue"]]
    assert [(i["code"]["coding"][0]["code"], i["severity"], i["implicated"][1]["reference"]) for i in mtx_issues] == [
        ("DRG", "moderate", ref(ibuprofen))]  # fmt: skip

    all_ids = {i["id"] for i in fhir.search("DetectedIssue", patient=patient)}
    assert all_ids == {i["id"] for i in issues + mtx_issues}

    # The pharmacist finds them by the patient.
    pharmacist = user_token(wf_server, "pharmacist", team["pharmacist"][1], "openid fhirUser user/*.rs", None)  # fmt: skip
    assert (
        ids(fhir.http.get("/DetectedIssue", params={"patient": patient}, headers=pharmacist))
        == all_ids
    )

    # The patient sees their own; another patient's token sees none of them, by any route.
    pid = patient.split("/")[1]
    own = user_token(wf_server, "patient", patient, "patient/*.rs", pid)
    assert ids(fhir.http.get("/DetectedIssue", headers=own)) == all_ids
    other = fhir.create({"resourceType": "Patient", "name": [{"family": "Elsewhere"}]})
    for headers in (user_token(wf_server, "patient", ref(other), "patient/*.rs", other["id"]),
                    client_token(wf_server, "patient/*.rs", patient=other["id"])):  # fmt: skip
        assert ids(fhir.http.get("/DetectedIssue", headers=headers)) == set()
        assert ids(fhir.http.get("/DetectedIssue", params={"patient": patient}, headers=headers)) == set()  # fmt: skip
        assert ids(fhir.http.get("/DetectedIssue", params={"_id": interaction["id"]}, headers=headers)) == set()  # fmt: skip
        assert (
            fhir.http.get(f"/DetectedIssue/{interaction['id']}", headers=headers).status_code == 404
        )


def test_a_planned_combination_product_is_checked_by_its_ingredient(fhir, team):  # type: ignore[no-untyped-def]
    patient = team["patient"][1]
    allergy = fhir.create({"resourceType": "AllergyIntolerance", "patient": {"reference": patient},
                           "code": coded("10180", "sulfamethoxazole")})  # fmt: skip
    mtx = fhir.create({"resourceType": "MedicationRequest", "status": "active", "intent": "order",
                       "subject": {"reference": patient}, "medicationCodeableConcept": coded("6851", "methotrexate")})  # fmt: skip
    stopped = fhir.create({"resourceType": "MedicationRequest", "status": "stopped", "intent": "order",
                           "subject": {"reference": patient}, "medicationCodeableConcept": coded("11289", "warfarin")})  # fmt: skip
    case = start(fhir, team["cadre"], "skin-screening", patient, ref(photo_media(fhir, patient))).json()  # fmt: skip
    plan = fhir.op(f"/Task/{case['id']}/$plan-treatment", team["doctor"], {
        "title": {"valueString": "Infected eczema"},
        "activity": [{"part": [{"name": "kind", "valueCode": "medication"}, {"name": "description", "valueString": "7 days"},
                               {"name": "medication", "valueString": "co-trimoxazole"}, {"name": "dosage", "valueString": "960 mg twice daily"},
                               {"name": "medicationCode", "valueCoding": {"system": RXNORM, "code": "10831"}}]}]})  # fmt: skip
    assert plan.status_code == 201, plan.text
    request = fhir.get(f"/{plan.json()['activity'][0]['reference']['reference']}")
    issues = {
        i["code"]["coding"][0]["code"]: i
        for i in (fhir.get(f"/{d['reference']}") for d in request["detectedIssue"])
    }
    assert set(issues) == {"ALGY", "DRG"}  # the stopped warfarin is not an active request
    assert issues["ALGY"]["severity"] == "high"  # an ingredient of the combination
    assert issues["ALGY"]["implicated"][1]["reference"] == ref(allergy)
    assert issues["DRG"]["severity"] == "high"
    assert issues["DRG"]["implicated"][1]["reference"] == ref(mtx)
    assert issues["DRG"]["reference"].startswith("https://medsafe.govt.nz/")
    assert ref(stopped) not in str(issues)
    # A bad coding is a 400 OperationOutcome, and nothing is written.
    bad = fhir.op(f"/Task/{case['id']}/$plan-treatment", team["doctor"], {
        "title": {"valueString": "x"},
        "activity": [{"part": [{"name": "kind", "valueCode": "medication"}, {"name": "description", "valueString": "x"},
                               {"name": "medication", "valueString": "x"}, {"name": "dosage", "valueString": "x"},
                               {"name": "medicationCode", "valueCoding": {"display": "no code"}}]}]})  # fmt: skip
    assert bad.status_code == 400 and bad.json()["resourceType"] == "OperationOutcome"
    assert len(fhir.search("CarePlan", subject=patient)) == 1
