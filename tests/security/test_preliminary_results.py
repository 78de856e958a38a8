"""A patient sees an AI result once a clinician has verified it (issue 14): an Observation or
RiskAssessment produced by a Device (the AI models name their model Device in
``Observation.device`` / ``RiskAssessment.performer``) with status ``registered`` or
``preliminary`` is, for a patient-context token not held by the care team, exactly as if it did
not exist -- read and history 404 like an unknown id, never matched, counted, included or reached
by a chain or ``_has``. The doctor's step of a case makes the case's AI results ``final``."""

from __future__ import annotations

import json
import re
import uuid

import httpx
import pytest

from inference import results, tasks
from tests.fhir_server.auth.smart import client_token
from tests.security.compartment_helpers import shape, user_token

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


# -- what the workflow writes about an AI result ------------------------------------------------
STEP = "http://hearth.local/fhir/CodeSystem/workflow-step"
_STAMP = re.compile(r"\d{4}-\d\d-\d\dT[0-9:.]+(Z|[+-]\d\d:\d\d)")


def _case_with_ai_result(server, high_risk: bool) -> dict:  # type: ignore[no-untyped-def]
    """A lung-risk case run up to the AI result as the inference worker records it: the analysis
    Task (``partOf`` the case; outputs: the RiskAssessment and the heatmap Media), the heatmap
    Media, the RiskAssessment (preliminary, by the model Device) and the AI step completed with
    ``highRisk`` -- high risk also proposes an Appointment in the referred doctor's free Slot.
    Every scenario is written alike but for the AI's verdict (and the risk it computed)."""
    f, h = server.fhir, server.headers

    def create(body: dict) -> dict:
        resp = HTTP.post(f"{f}/{body['resourceType']}", json=body, headers=h)
        assert resp.status_code == 201, resp.text
        return resp.json()

    def put(body: dict) -> None:
        resp = HTTP.put(f"{f}/{body['resourceType']}/{body['id']}", json=body, headers=h)
        assert resp.status_code in (200, 201), resp.text

    def step(case_id: str, code: str) -> dict:
        found = HTTP.get(
            f"{f}/Task", params={"part-of": f"Task/{case_id}", "code": f"{STEP}|{code}"}, headers=h
        ).json()
        return found["entry"][0]["resource"]

    ids: dict = {}
    ids["patient"] = create({"resourceType": "Patient", "birthDate": "1956-01-01"})["id"]
    patient = f"Patient/{ids['patient']}"
    ids["doctor"] = create({"resourceType": "Practitioner"})["id"]
    doctor = f"Practitioner/{ids['doctor']}"
    ids["device"] = create({"resourceType": "Device"})["id"]
    schedule = create(
        {"resourceType": "Schedule", "active": True, "actor": [{"reference": doctor}]}
    )["id"]
    ids["slot"] = create(
        {
            "resourceType": "Slot",
            "schedule": {"reference": f"Schedule/{schedule}"},
            "status": "free",
            "start": "2099-01-05T09:00:00Z",
            "end": "2099-01-05T09:30:00Z",
        }
    )["id"]
    params = {
        "caseType": {"valueCode": "lung-risk"},
        "patient": {"valueReference": {"reference": patient}},
        "referredTo": {"valueReference": {"reference": doctor}},
    }
    case = _op(server, "/Task/$start-case", "patient", patient, params)
    assert case.status_code in (200, 201), case.text
    ids["case"] = case_id = case.json()["id"]
    ids["order"] = case.json()["basedOn"][0]["reference"].removeprefix("ServiceRequest/")
    intake = step(case_id, "intake")
    ids["intake"] = intake["id"]
    assert _op(server, f"/Task/{intake['id']}/$claim", "patient", patient).status_code == 200
    qr = {"resourceType": "QuestionnaireResponse", "status": "completed"}
    done = _op(
        server, f"/Task/{intake['id']}/$complete", "patient", patient, {"output": {"resource": qr}}
    )
    assert done.status_code == 200, done.text
    [answers] = [o["valueReference"]["reference"] for o in done.json()["output"]]
    ids["answers"] = answers.removeprefix("QuestionnaireResponse/")
    ai_step = step(case_id, "risk-calculation")
    ids["ai_step"] = ai_step["id"]
    ids["review"] = step(case_id, "doctor-review")["id"]
    risk = create(
        {
            "resourceType": "RiskAssessment",
            "status": "preliminary",
            "subject": {"reference": patient},
            "basedOn": {"reference": f"Task/{ai_step['id']}"},
            "performer": {"reference": f"Device/{ids['device']}"},
            "prediction": [{"probabilityDecimal": 0.09 if high_risk else 0.004}],
        }
    )
    ids["risk"] = risk["id"]
    # The analysis Task and its heatmap, as the inference worker writes them.
    analysis = tasks.task_body(
        "lung-cancer-risk-plcom2012",
        patient,
        patient,
        "v1",
        part_of=f"Task/{case_id}",
    )
    analysis = create(analysis)
    ids["analysis"] = analysis["id"]
    _, media = results.heatmap_resources(
        b"\x89PNG fake",
        task_id=analysis["id"],
        observation_ref=f"RiskAssessment/{risk['id']}",
        subject=patient,
        device_id=ids["device"],
    )
    put(media)
    ids["media"] = media["id"]
    outputs = [("result", f"RiskAssessment/{risk['id']}"), ("explanation", f"Media/{media['id']}")]
    done_analysis = tasks.completed(analysis, outputs, "high risk" if high_risk else "low risk")
    put(done_analysis)
    result = {
        "result": {"valueReference": {"reference": f"RiskAssessment/{risk['id']}"}},
        "highRisk": {"valueBoolean": high_risk},
        "uncertain": {"valueBoolean": False},
    }
    ai_done = _op(
        server, f"/Task/{ai_step['id']}/$complete", "ai", f"Device/{ids['device']}", result
    )
    assert ai_done.status_code == 200, ai_done.text
    staff = HTTP.get(f"{f}/Appointment", params={"patient": patient}, headers=h)
    appointments = _ids(staff)
    assert len(appointments) == (1 if high_risk else 0), staff.text
    ids["appointment"] = appointments.pop() if appointments else uuid.uuid4().hex
    return ids


def _questions(ids: dict) -> list[tuple[str, list[tuple[str, str]]]]:
    """What the patient may ask about the case, its AI result and the workflow records about it:
    reads, searches, counts, _include, _revinclude, chains and _has."""
    p = f"Patient/{ids['patient']}"
    reads = [
        (f"Task/{ids[k]}", []) for k in ("case", "ai_step", "review", "analysis", "intake")
    ] + [
        (f"Media/{ids['media']}", []),
        (f"RiskAssessment/{ids['risk']}", []),
        (f"Appointment/{ids['appointment']}", []),
        (f"Task/{ids['case']}/_history", []),
        (f"Appointment/{ids['appointment']}/_history", []),
        ("Task/_history", []),
        ("Media/_history", []),
        ("Appointment/_history", []),
        ("RiskAssessment/_history", []),
        (f"Patient/{ids['patient']}/Task", []),
        (f"Patient/{ids['patient']}/Appointment", []),
        (f"Patient/{ids['patient']}/$everything", []),
    ]
    searches: list[tuple[str, list[tuple[str, str]]]] = [
        ("Task", [("patient", p), ("_total", "accurate")]),
        ("Task", [("priority", "urgent")]),
        ("Task", [("patient", p), ("priority", "routine"), ("_summary", "count")]),
        ("Task", [("part-of", f"Task/{ids['case']}")]),
        ("Task", [("_id", ids["case"]), ("_include", "Task:patient")]),
        ("Task", [("patient", p), ("_revinclude", "Task:part-of")]),
        ("Task", [("output", f"RiskAssessment/{ids['risk']}")]),
        ("Media", [("subject", p), ("_total", "accurate")]),
        ("Media", [("_id", ids["media"]), ("_include", "Media:device")]),
        ("Appointment", [("patient", p), ("_total", "accurate")]),
        ("Appointment", [("status", "proposed"), ("actor", p)]),
        ("Appointment", [("patient", p), ("_include", "Appointment:actor")]),
        ("RiskAssessment", [("subject", p), ("_total", "accurate")]),
        ("Observation", [("subject", p)]),
        ("ServiceRequest", [("subject", p), ("_revinclude", "Task:based-on")]),
        ("ServiceRequest", [("subject", p), ("_revinclude", "Appointment:based-on")]),
        ("Patient", [("_id", ids["patient"]), ("_revinclude", "*:*")]),
        (
            "Patient",
            [
                ("_id", ids["patient"]),
                ("_revinclude", "Task:patient"),
                ("_revinclude", "Media:subject"),
                ("_revinclude", "Appointment:patient"),
                ("_revinclude", "RiskAssessment:subject"),
            ],
        ),
        ("Patient", [("_id", ids["patient"]), ("_has:Task:patient:priority", "urgent")]),
        ("Patient", [("_id", ids["patient"]), ("_has:Task:patient:priority", "routine")]),
        ("Patient", [("_id", ids["patient"]), ("_has:Appointment:patient:status", "proposed")]),
        ("Patient", [("_id", ids["patient"]), ("_has:Media:subject:_id", ids["media"])]),
        ("Patient", [("_id", ids["patient"]), ("_has:Task:patient:status", "completed")]),
        (
            "Patient",
            [("_id", ids["patient"]), ("_has:RiskAssessment:subject:probability", "gt0.05")],
        ),
        ("ServiceRequest", [("subject", p), ("_has:Task:based-on:priority", "urgent")]),
        ("Task", [("patient", p), ("focus:Patient.birthdate", "1956-01-01")]),
        ("", [("_type", "Task,Media,Appointment,RiskAssessment,Observation")]),
    ]
    return reads + searches


def _answers(server, ids: dict, token: dict) -> list[tuple[int, str]]:  # type: ignore[no-untyped-def]
    """The patient's answers, with each scenario's own ids and every time stamp blanked."""
    out = []
    for path, params in _questions(ids):
        resp = HTTP.get(f"{server.fhir}/{path}", params=params, headers=token)
        status, text = shape(resp)
        for key, value in sorted(ids.items(), key=lambda kv: -len(str(kv[1]))):
            text = text.replace(str(value), f"<{key}>")
        text = _STAMP.sub("<time>", text)
        try:  # included rows come in no defined order (PostgreSQL): compare them as a set
            body = json.loads(text)
        except ValueError:
            body = None
        if isinstance(body, dict) and body.get("resourceType") == "Bundle":
            entries = sorted(json.dumps(e, sort_keys=True) for e in body.get("entry", []))
            text = json.dumps({**body, "entry": entries}, sort_keys=True)
        out.append((status, text))
    return out


def test_workflow_records_tell_the_patient_nothing_before_the_doctor(server):  # type: ignore[no-untyped-def]
    """Before the doctor's step the patient's answers about the case are the same whether the AI
    said high risk or low risk (reads, searches, counts, _include, _revinclude, chains, _has of
    Task, Media, Observation, RiskAssessment, Appointment); an unrestricted token sees the
    difference. After the doctor's review, the patient sees the verified result and the records
    about it."""
    scenarios = {verdict: _case_with_ai_result(server, verdict) for verdict in (True, False)}
    tokens = {v: _patient_tokens(server, ids["patient"]) for v, ids in scenarios.items()}
    for who in tokens[True]:
        high = _answers(server, scenarios[True], tokens[True][who])
        low = _answers(server, scenarios[False], tokens[False][who])
        for question, yes, no in zip(_questions(scenarios[True]), high, low, strict=True):
            assert yes == no, (who, question, yes, no)
    # Each answer differs for a token that sees everything: the questions are real ones.
    staff = {v: _answers(server, ids, server.headers) for v, ids in scenarios.items()}
    assert staff[True] != staff[False]
    # The patient sees the case up to the AI's result: the order and the intake's answers.
    token = tokens[True]["patient user"]
    f, ids = server.fhir, scenarios[True]
    assert HTTP.get(f"{f}/ServiceRequest/{ids['order']}", headers=token).status_code == 200
    assert HTTP.get(f"{f}/Task/{ids['case']}", headers=token).status_code == 404

    # The doctor reviews the case: the result is verified, and the patient sees it all.
    who = ("doctor", f"Practitioner/{ids['doctor']}")
    assert _op(server, f"/Task/{ids['review']}/$claim", *who).status_code == 200
    conclusion = {"conclusion": {"valueString": "refer to low-dose CT"}}
    reviewed = _op(server, f"/Task/{ids['review']}/$complete", *who, conclusion)
    assert reviewed.status_code == 200, reviewed.text
    for res_type, key in (
        ("RiskAssessment", "risk"),
        ("Task", "case"),
        ("Task", "ai_step"),
        ("Task", "review"),
        ("Task", "analysis"),
        ("Media", "media"),
        ("Appointment", "appointment"),
    ):
        resp = HTTP.get(f"{f}/{res_type}/{ids[key]}", headers=token)
        assert resp.status_code == 200, (res_type, resp.text)
        assert "security" not in resp.json().get("meta", {}), resp.text
    case = HTTP.get(f"{f}/Task/{ids['case']}", headers=token).json()
    assert case["priority"] == "urgent"
    assert {"valueBoolean": True} in [
        {"valueBoolean": i["valueBoolean"]} for i in case["input"] if "valueBoolean" in i
    ]
    assert HTTP.get(f"{f}/RiskAssessment/{ids['risk']}", headers=token).json()["status"] == "final"
    urgent = HTTP.get(f"{f}/Task", params={"priority": "urgent"}, headers=token)
    assert ids["case"] in _ids(urgent)
    appts = HTTP.get(f"{f}/Appointment", params={"status": "proposed"}, headers=token)
    assert _ids(appts) == {ids["appointment"]}
    revinc = HTTP.get(
        f"{f}/Patient",
        params=[("_id", ids["patient"]), ("_revinclude", "Media:subject")],
        headers=token,
    )
    assert ids["media"] in _ids(revinc)
