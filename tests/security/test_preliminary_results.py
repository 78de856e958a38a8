"""A patient sees an AI result once a clinician has verified it (issue 14): an Observation or
RiskAssessment produced by a Device (the AI models name their model Device in
``Observation.device`` / ``RiskAssessment.performer``) with status ``registered`` or
``preliminary`` is, for a patient-context token not held by the care team, exactly as if it did
not exist -- read and history 404 like an unknown id, never matched, counted, included or reached
by a chain or ``_has``. The doctor's step of a case makes the case's AI results ``final``."""

from __future__ import annotations

import uuid

import httpx
import pytest

from tests.security.compartment_helpers import client_token, shape, user_token

HTTP = httpx.Client(timeout=120)  # a shared, busy test machine


@pytest.fixture(scope="module")
def ai(server):  # type: ignore[no-untyped-def]
    """A patient with an AI Observation and an AI RiskAssessment (both preliminary, produced by
    the model Device), a final AI Observation, and a preliminary lab Observation (no device)."""
    tag = uuid.uuid4().hex[:8]
    h = server.headers

    def post(body: dict) -> str:
        resp = HTTP.post(f"{server.fhir}/{body['resourceType']}", json=body, headers=h)
        assert resp.status_code == 201, resp.text
        return resp.json()["id"]

    patient = post({"resourceType": "Patient", "name": [{"family": f"ai{tag}"}]})
    device = post({"resourceType": "Device", "deviceName": [{"name": "m", "type": "model-name"}]})

    def obs(status: str, code: str, with_device: bool = True, value: str = "melanoma") -> dict:
        body = {
            "resourceType": "Observation",
            "status": status,
            "code": {"coding": [{"system": "urn:ai", "code": f"{code}{tag}"}]},
            "subject": {"reference": f"Patient/{patient}"},
            "valueCodeableConcept": {"coding": [{"system": "urn:ai", "code": value}]},
        }
        if with_device:
            body["device"] = {"reference": f"Device/{device}"}
        return body

    ids = {
        "patient": patient,
        "device": device,
        "tag": tag,
        "pending": post(obs("preliminary", "pending")),
        "verified": post(obs("final", "verified", value="benign")),
        "lab": post(obs("preliminary", "lab", with_device=False, value="benign")),
        "risk": post(
            {
                "resourceType": "RiskAssessment",
                "status": "preliminary",
                "subject": {"reference": f"Patient/{patient}"},
                "performer": {"reference": f"Device/{device}"},
                "prediction": [{"probabilityDecimal": 0.7}],
            }
        ),
    }
    return ids


def _patient_tokens(server, patient: str) -> dict:  # type: ignore[no-untyped-def]
    """The patient's own login, and an app given the patient's context (no user)."""
    return {
        "patient user": user_token(
            server, "patient", f"Patient/{patient}", "patient/*.cruds", patient
        ),
        "patient app": client_token(server, "patient/*.rs", patient=patient),
    }


def _ids(resp: httpx.Response) -> set[str]:
    assert resp.status_code == 200, resp.text
    return {
        e["resource"]["id"]
        for e in resp.json().get("entry", [])
        if e["resource"]["resourceType"] != "OperationOutcome"
    }


def test_unverified_ai_results_are_as_if_missing_for_the_patient(server, ai):  # type: ignore[no-untyped-def]
    f, p, tag = server.fhir, ai["patient"], ai["tag"]
    for who, h in _patient_tokens(server, p).items():
        # read, vread and history: the answer of an id that never existed
        for res_type, key in (("Observation", "pending"), ("RiskAssessment", "risk")):
            for suffix in ("", "/_history/1", "/_history"):
                hidden = HTTP.get(f"{f}/{res_type}/{ai[key]}{suffix}", headers=h)
                other = uuid.uuid4().hex
                unknown = HTTP.get(f"{f}/{res_type}/{other}{suffix}", headers=h)
                assert hidden.status_code == 404, (who, res_type, suffix, hidden.text)
                assert shape(hidden, ai[key]) == shape(unknown, other)
        # searches: not matched, not counted, not included
        found = _ids(HTTP.get(f"{f}/Observation", params={"subject": f"Patient/{p}"}, headers=h))
        assert found == {ai["verified"], ai["lab"]}, who
        count = HTTP.get(
            f"{f}/Observation", params={"subject": f"Patient/{p}", "_summary": "count"}, headers=h
        )
        assert count.json()["total"] == 2
        assert (
            _ids(HTTP.get(f"{f}/RiskAssessment", params={"subject": f"Patient/{p}"}, headers=h))
            == set()
        )
        assert _ids(HTTP.get(f"{f}/Patient/{p}/RiskAssessment", headers=h)) == set()
        included = HTTP.get(
            f"{f}/Patient",
            params=[
                ("_id", p),
                ("_revinclude", "Observation:subject"),
                ("_revinclude", "RiskAssessment:subject"),
                ("_revinclude", "*:*"),
            ],
            headers=h,
        )
        assert _ids(included) == {p, ai["verified"], ai["lab"]}
        everything = HTTP.get(f"{f}/", params={"_type": "Observation,RiskAssessment"}, headers=h)
        assert ai["pending"] not in _ids(everything) and ai["risk"] not in _ids(everything)
        # a chain or _has into an unverified result answers alike for a true and a false guess
        for key, true, false in (
            ("_has:Observation:subject:value-concept", "urn:ai|melanoma", "urn:ai|nevus"),
            ("_has:Observation:subject:code", f"urn:ai|pending{tag}", f"urn:ai|nothing{tag}"),
            ("_has:RiskAssessment:subject:probability", "gt0.5", "lt0.5"),
        ):
            yes = HTTP.get(f"{f}/Patient", params={key: true, "_id": p}, headers=h)
            no = HTTP.get(f"{f}/Patient", params={key: false, "_id": p}, headers=h)
            assert shape(yes, true, false) == shape(no, true, false), (who, key)
        coded = HTTP.get(
            f"{f}/Observation",
            params={"code": f"urn:ai|pending{tag}", "_total": "accurate"},
            headers=h,
        )
        assert coded.json()["total"] == 0


def test_the_care_team_and_a_verified_result(server, ai):  # type: ignore[no-untyped-def]
    """A doctor in the patient's context sees the unverified result; once it is final, so does
    the patient."""
    f, p = server.fhir, ai["patient"]
    doctor_ref = HTTP.post(
        f"{f}/Practitioner", json={"resourceType": "Practitioner"}, headers=server.headers
    ).json()["id"]
    doctor = user_token(server, "doctor", f"Practitioner/{doctor_ref}", "patient/*.rs", p)
    assert HTTP.get(f"{f}/Observation/{ai['pending']}", headers=doctor).status_code == 200
    assert HTTP.get(f"{f}/RiskAssessment/{ai['risk']}", headers=doctor).status_code == 200
    patient = _patient_tokens(server, p)["patient user"]
    assert HTTP.get(f"{f}/Observation/{ai['verified']}", headers=patient).status_code == 200
    # The lab's own preliminary result (no device) is not an AI result: the patient sees it.
    assert HTTP.get(f"{f}/Observation/{ai['lab']}", headers=patient).status_code == 200


def _op(server, path: str, role: str, actor: str, params: dict | None = None) -> httpx.Response:  # type: ignore[no-untyped-def]
    body = {
        "resourceType": "Parameters",
        "parameter": [{"name": k, **v} for k, v in (params or {}).items()],
    }
    headers = {**server.headers, "X-Hearth-Role": role, "X-Hearth-Actor": actor}
    return HTTP.post(f"{server.fhir}{path}", json=body, headers=headers)


def test_the_doctors_review_releases_the_ai_result_to_the_patient(server):  # type: ignore[no-untyped-def]
    """Lung-risk case: the PLCOm2012 RiskAssessment (preliminary, by the model Device) is hidden
    from the patient until the doctor completes the review step; then it is ``final`` and the
    patient reads and finds it."""
    f, h = server.fhir, server.headers
    step_system = "http://hearth.local/fhir/CodeSystem/workflow-step"

    def create(body: dict) -> dict:
        resp = HTTP.post(f"{f}/{body['resourceType']}", json=body, headers=h)
        assert resp.status_code == 201, resp.text
        return resp.json()

    def step(case_id: str, code: str) -> dict:
        bundle = HTTP.get(
            f"{f}/Task",
            params={"part-of": f"Task/{case_id}", "code": f"{step_system}|{code}"},
            headers=h,
        ).json()
        return bundle["entry"][0]["resource"]

    patient = create({"resourceType": "Patient", "birthDate": "1956-01-01"})["id"]
    doctor = create({"resourceType": "Practitioner"})["id"]
    device = create({"resourceType": "Device"})["id"]
    case = _op(
        server,
        "/Task/$start-case",
        "patient",
        f"Patient/{patient}",
        {
            "caseType": {"valueCode": "lung-risk"},
            "patient": {"valueReference": {"reference": f"Patient/{patient}"}},
        },
    )
    assert case.status_code in (200, 201), case.text
    case_id = case.json()["id"]
    intake = step(case_id, "intake")
    actor = ("patient", f"Patient/{patient}")
    assert _op(server, f"/Task/{intake['id']}/$claim", *actor).status_code == 200
    qr = {"resourceType": "QuestionnaireResponse", "status": "completed"}
    done = _op(server, f"/Task/{intake['id']}/$complete", *actor, {"output": {"resource": qr}})
    assert done.status_code == 200, done.text
    risk_task = step(case_id, "risk-calculation")
    risk = create(
        {
            "resourceType": "RiskAssessment",
            "status": "preliminary",
            "subject": {"reference": f"Patient/{patient}"},
            "basedOn": {"reference": f"Task/{risk_task['id']}"},
            "performer": {"reference": f"Device/{device}"},
            "prediction": [{"probabilityDecimal": 0.042}],
        }
    )["id"]
    result = {"result": {"valueReference": {"reference": f"RiskAssessment/{risk}"}}}
    ai_done = _op(server, f"/Task/{risk_task['id']}/$complete", "ai", f"Device/{device}", result)
    assert ai_done.status_code == 200, ai_done.text

    token = _patient_tokens(server, patient)["patient user"]
    assert HTTP.get(f"{f}/RiskAssessment/{risk}", headers=token).status_code == 404
    assert _ids(HTTP.get(f"{f}/RiskAssessment", headers=token)) == set()

    review = step(case_id, "doctor-review")
    who = ("doctor", f"Practitioner/{doctor}")
    assert _op(server, f"/Task/{review['id']}/$claim", *who).status_code == 200
    conclusion = {"conclusion": {"valueString": "low risk"}}
    reviewed = _op(server, f"/Task/{review['id']}/$complete", *who, conclusion)
    assert reviewed.status_code == 200, reviewed.text

    after = HTTP.get(f"{f}/RiskAssessment/{risk}", headers=token)
    assert after.status_code == 200 and after.json()["status"] == "final"
    assert _ids(HTTP.get(f"{f}/RiskAssessment", headers=token)) == {risk}
