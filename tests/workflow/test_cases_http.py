"""Cases end to end over HTTP on SQLite and PostgreSQL: start → AI → doctor → pharmacist →
admin → final DiagnosticReport → PDF e-mailed over STARTTLS (read back from aiosmtpd, parsed
with pypdf) → the patient downloads it; every role is refused the steps that are not theirs."""

from __future__ import annotations

import base64
import io
import time
from datetime import UTC, datetime, timedelta

from pypdf import PdfReader

from tests.workflow.conftest import photo_media, ref

STEP = "http://hearth.local/fhir/CodeSystem/workflow-step"


def step(fhir, case_id: str, code: str) -> dict:
    found = fhir.search("Task", **{"part-of": f"Task/{case_id}", "code": f"{STEP}|{code}"})
    assert len(found) == 1, found
    return found[0]


def business(task: dict) -> str:
    return task["businessStatus"]["coding"][0]["code"]


def start(
    fhir, actor, case_type: str, patient: str, focus: str | None = None, referred: str | None = None
):
    params = {
        "caseType": {"valueCode": case_type},
        "patient": {"valueReference": {"reference": patient}},
    }
    if focus:
        params["focus"] = {"valueReference": {"reference": focus}}
    if referred:
        params["referredTo"] = {"valueReference": {"reference": referred}}
    return fhir.op("/Task/$start-case", actor, params)


def ai_observation(fhir, case: dict, team: dict, focus: str, label: str = "Melanoma") -> dict:
    return fhir.create(
        {
            "resourceType": "Observation",
            "status": "preliminary",
            "code": {"text": "Skin lesion classification"},
            "subject": case["for"],
            "basedOn": case["basedOn"],
            "device": {"reference": team["ai"][1]},
            "derivedFrom": [{"reference": focus}],
            "valueCodeableConcept": {
                "coding": [
                    {"system": "http://snomed.info/sct", "code": "372130007", "display": label}
                ]
            },
            "component": [
                {"code": {"text": "p(mel)"}, "valueQuantity": {"value": 0.81}},
                {"code": {"text": "p(nv)"}, "valueQuantity": {"value": 0.12}},
            ],
        }
    )


def free_slot(fhir, doctor: str, hours: int) -> dict:
    schedule = fhir.create(
        {"resourceType": "Schedule", "active": True, "actor": [{"reference": doctor}]}
    )
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=hours)
    return fhir.create(
        {
            "resourceType": "Slot",
            "schedule": {"reference": ref(schedule)},
            "status": "free",
            "start": start.isoformat().replace("+00:00", "Z"),
            "end": (start + timedelta(minutes=20)).isoformat().replace("+00:00", "Z"),
        }
    )


def wait_for_mail(smtp, address: str, count: int = 1):
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        found = smtp.inbox.to(address)
        if len(found) >= count:
            return found
        time.sleep(0.05)
    raise AssertionError(f"no e-mail to {address}")


def pdf_of(message) -> bytes:
    parts = [p for p in message.walk() if p.get_content_type() == "application/pdf"]
    assert len(parts) == 1
    return parts[0].get_payload(decode=True)


def test_skin_screening_start_to_pdf_in_the_patients_mailbox(fhir, team, smtp):
    patient = team["patient"][1]
    media = photo_media(fhir, patient)
    slot = free_slot(fhir, team["doctor"][1], hours=30)
    later = free_slot(fhir, team["doctor"][1], hours=60)

    # Only the roles of the definition may start it; a patient only for themself.
    assert start(fhir, team["pharmacist"], "skin-screening", patient, ref(media)).status_code == 403
    other = fhir.create({"resourceType": "Patient", "name": [{"family": "Other"}]})
    assert (
        start(fhir, ("patient", ref(other)), "skin-screening", patient, ref(media)).status_code
        == 403
    )
    assert start(fhir, None, "skin-screening", patient, ref(media)).status_code == 401
    assert start(fhir, team["cadre"], "no-such-case", patient, ref(media)).status_code == 404

    resp = start(fhir, team["cadre"], "skin-screening", patient, ref(media), team["doctor"][1])
    assert resp.status_code == 201, resp.text
    case = resp.json()
    assert case["status"] == "in-progress" and business(case) == "PENDING_AI"
    assert resp.headers["Location"].endswith(f"/fhir/Task/{case['id']}/_history/1")
    ai_task = step(fhir, case["id"], "ai-analysis")
    doctor_task = step(fhir, case["id"], "doctor-review")
    assert ai_task["status"] == "requested" and doctor_task["status"] == "draft"
    assert doctor_task["partOf"] == [{"reference": f"Task/{case['id']}"}]
    assert doctor_task["owner"] == {"reference": team["doctor"][1]}  # the cadre's referral

    # No step can be skipped: the doctor step is not reachable before the AI result.
    assert fhir.op(f"/Task/{doctor_task['id']}/$claim", team["doctor"]).status_code == 409
    # People cannot do the AI step.
    assert fhir.op(f"/Task/{ai_task['id']}/$claim", team["doctor"]).status_code == 403
    # The AI worklist is a plain search.
    assert ai_task["id"] in [
        t["id"]
        for t in fhir.search(
            "Task", **{"performer-type": "ai", "status": "requested", "_count": 200}
        )
    ]

    obs = ai_observation(fhir, case, team, ref(media))
    resp = fhir.op(
        f"/Task/{ai_task['id']}/$complete",
        team["ai"],
        {
            "result": {"valueReference": {"reference": ref(obs)}},
            "highRisk": {"valueBoolean": True},
            "uncertain": {"valueBoolean": True},
        },
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["status"] == "completed"
    case = fhir.get(f"/Task/{case['id']}")
    assert business(case) == "AI_ANALYZED" and case["priority"] == "urgent"
    # High risk: a proposed Appointment in the referred doctor's next free Slot.
    appts = fhir.search("Appointment", slot=ref(slot))
    assert [a["status"] for a in appts] == ["proposed"]
    assert fhir.get(f"/Slot/{slot['id']}")["status"] == "busy-tentative"
    assert fhir.get(f"/Slot/{later['id']}")["status"] == "free"
    # Only the patient's side may accept it; accepting books the Slot.
    other_patient = ("patient", ref(fhir.create({"resourceType": "Patient"})))
    assert fhir.op(f"/Appointment/{appts[0]['id']}/$accept", other_patient).status_code == 403
    accepted = fhir.op(f"/Appointment/{appts[0]['id']}/$accept", team["patient"])
    assert accepted.status_code == 200 and accepted.json()["status"] == "booked"
    assert fhir.get(f"/Slot/{slot['id']}")["status"] == "busy"
    assert fhir.op(f"/Appointment/{appts[0]['id']}/$accept", team["patient"]).status_code == 409

    # The doctor's worklist: urgent first.
    queue = fhir.search(
        "Task",
        **{
            "performer-type": "doctor",
            "status": "requested",
            "_sort": "-priority,authored-on",
            "_count": 500,
        },
    )
    assert queue[0]["priority"] == "urgent"
    doctor_task = step(fhir, case["id"], "doctor-review")
    assert doctor_task["id"] in [t["id"] for t in queue]
    assert any(
        i["type"]["coding"][0]["code"] == "mandatory-review" for i in doctor_task.get("input", [])
    )

    for who in ("patient", "cadre", "pharmacist", "admin", "ai"):
        assert fhir.op(f"/Task/{doctor_task['id']}/$claim", team[who]).status_code == 403, who
    assert (
        fhir.op(f"/Task/{doctor_task['id']}/$claim", team["doctor2"]).status_code == 403
    )  # assigned
    assert (
        fhir.op(f"/Task/{doctor_task['id']}/$complete", team["doctor"]).status_code == 409
    )  # not claimed
    claimed = fhir.op(f"/Task/{doctor_task['id']}/$claim", team["doctor"])
    assert claimed.status_code == 200 and claimed.json()["status"] == "in-progress"
    assert fhir.op(f"/Task/{doctor_task['id']}/$claim", team["doctor"]).status_code == 409
    assert fhir.op(f"/Task/{doctor_task['id']}/$complete", team["doctor2"]).status_code == 403
    bad = fhir.op(
        f"/Task/{doctor_task['id']}/$complete",
        team["doctor"],
        {"output": {"resource": {"resourceType": "Patient"}}},
    )
    assert bad.status_code == 400 and bad.json()["resourceType"] == "OperationOutcome"
    done = fhir.op(
        f"/Task/{doctor_task['id']}/$complete",
        team["doctor"],
        {
            "output": [
                {
                    "resource": {
                        "resourceType": "Observation",
                        "status": "final",
                        "code": {"text": "Dermoscopic assessment"},
                        "valueString": "Asymmetric pigmented lesion with irregular border",
                    }
                },
                {
                    "resource": {
                        "resourceType": "MedicationRequest",
                        "status": "active",
                        "intent": "order",
                        "medicationCodeableConcept": {"text": "Imiquimod 5% cream"},
                        "dosageInstruction": [{"text": "Apply once daily at night for 6 weeks"}],
                    }
                },
            ],
            "conclusion": {"valueString": "Suspected melanoma; excision biopsy advised"},
            "conclusionCode": {
                "valueCodeableConcept": {
                    "coding": [
                        {
                            "system": "http://snomed.info/sct",
                            "code": "372130007",
                            "display": "Malignant melanoma of skin",
                        }
                    ]
                }
            },
        },
    )
    assert done.status_code == 200, done.text
    assert business(fhir.get(f"/Task/{case['id']}")) == "DOCTOR_REVIEWED"

    # Medication was prescribed, so the pharmacist step applies.
    pharm = step(fhir, case["id"], "pharmacist-review")
    assert pharm["status"] == "requested"
    for who in ("patient", "cadre", "doctor", "admin"):
        assert fhir.op(f"/Task/{pharm['id']}/$claim", team[who]).status_code == 403, who
    assert fhir.op(f"/Task/{pharm['id']}/$claim", team["pharmacist"]).status_code == 200
    assert (
        fhir.op(
            f"/Task/{pharm['id']}/$complete",
            team["pharmacist"],
            {"note": {"valueString": "Dispensed, counselled"}},
        ).status_code
        == 200
    )
    assert business(fhir.get(f"/Task/{case['id']}")) == "PHARMACIST_COMPLETED"

    approval = step(fhir, case["id"], "admin-approval")
    for who in ("patient", "cadre", "doctor", "pharmacist"):
        assert fhir.op(f"/Task/{approval['id']}/$claim", team[who]).status_code == 403, who
    assert fhir.op(f"/Task/{approval['id']}/$claim", team["admin"]).status_code == 200
    assert fhir.op(f"/Task/{approval['id']}/$complete", team["admin"]).status_code == 200
    delivery = step(fhir, case["id"], "report-delivery")
    assert fhir.op(f"/Task/{delivery['id']}/$claim", team["admin"]).status_code == 403

    case = fhir.get(f"/Task/{case['id']}")
    assert case["status"] == "completed" and business(case) == "REPORT_DELIVERED"
    report_ref = next(
        o["valueReference"]["reference"]
        for o in case["output"]
        if o["type"]["coding"][0]["code"] == "report"
    )
    report = fhir.get(f"/{report_ref}")
    assert report["status"] == "final"
    assert report["resultsInterpreter"] == [{"reference": team["doctor"][1]}]
    assert report["basedOn"] == case["basedOn"]
    assert report["conclusion"].startswith("Suspected melanoma")
    assert report["conclusionCode"][0]["coding"][0]["code"] == "372130007"
    assert ref(obs) in [r["reference"] for r in report["result"]]
    form = report["presentedForm"][0]
    assert form["contentType"] == "application/pdf"

    # The e-mail, read back from the SMTP server, arrived over TLS with the PDF.
    [message] = wait_for_mail(smtp, team["email"])
    assert smtp.inbox.tls_sessions[smtp.inbox.messages.index(message)]
    mailed = pdf_of(message)
    text = "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(mailed)).pages)
    for expected in (
        "Hearth District Hospital",
        team["patient_resource"]["name"][0]["family"],
        "hearth-skin-classifier",
        "1.0.0",
        "decision support",
        "Suspected melanoma",
        "Imiquimod 5% cream",
        "Asymmetric pigmented lesion",
        "Signatures",
    ):
        assert expected in text, expected

    # The patient finds the report and downloads the same bytes through the API.
    docs = fhir.search("DocumentReference", subject=patient)
    assert len(docs) == 1
    url = docs[0]["content"][0]["attachment"]["url"]
    binary = fhir.get(f"/{url}")
    assert base64.b64decode(binary["data"]) == mailed
    assert url == form["url"]
    # Case done: nothing can be claimed again.
    assert fhir.op(f"/Task/{approval['id']}/$claim", team["admin"]).status_code == 409


def test_imaging_review_lifecycle_and_a_failed_delivery_retried(fhir, team, smtp):
    tag = team["email"]
    patient_res = team["patient_resource"]
    # The patient has no e-mail yet: delivery fails visibly and is retried after it is fixed.
    patient_res = {k: v for k, v in patient_res.items() if k not in ("telecom", "meta")}
    resp = fhir.http.put(f"/Patient/{patient_res['id']}", json=patient_res)
    assert resp.status_code == 200, resp.text
    patient = team["patient"][1]
    study = fhir.create(
        {"resourceType": "ImagingStudy", "status": "available", "subject": {"reference": patient}}
    )
    assert start(fhir, team["pharmacist"], "imaging-review", patient, ref(study)).status_code == 403
    case = start(fhir, team["doctor"], "imaging-review", patient, ref(study)).json()
    seen = [business(case)]
    ai_task = step(fhir, case["id"], "ai-analysis")
    obs = ai_observation(fhir, case, team, ref(study), label="Pneumonia")
    assert (
        fhir.op(
            f"/Task/{ai_task['id']}/$complete",
            team["ai"],
            {"result": {"valueReference": {"reference": ref(obs)}}},
        ).status_code
        == 200
    )
    seen.append(business(fhir.get(f"/Task/{case['id']}")))
    for code, who in (("doctor-verification", "doctor"), ("pharmacist-completion", "pharmacist")):
        t = step(fhir, case["id"], code)
        assert fhir.op(f"/Task/{t['id']}/$claim", team[who]).status_code == 200
        # Release and claim again: back on the worklist, then taken.
        assert fhir.op(f"/Task/{t['id']}/$release", team[who]).json()["status"] == "requested"
        assert fhir.op(f"/Task/{t['id']}/$claim", team[who]).status_code == 200
        assert (
            fhir.op(
                f"/Task/{t['id']}/$complete",
                team[who],
                {"conclusion": {"valueString": "No consolidation"}},
            ).status_code
            == 200
        )
        seen.append(business(fhir.get(f"/Task/{case['id']}")))
    approval = step(fhir, case["id"], "admin-approval")
    assert fhir.op(f"/Task/{approval['id']}/$claim", team["admin"]).status_code == 200
    assert fhir.op(f"/Task/{approval['id']}/$complete", team["admin"]).status_code == 200
    case = fhir.get(f"/Task/{case['id']}")
    assert seen == ["PENDING_AI", "AI_ANALYZED", "DOCTOR_VERIFIED", "PHARMACIST_COMPLETED"]
    assert business(case) == "REPORT_FAILED" and case["status"] == "in-progress"
    delivery = step(fhir, case["id"], "report-delivery")
    assert delivery["status"] == "failed" and "e-mail" in delivery["statusReason"]["text"]
    report_ref = next(
        o["valueReference"]["reference"]
        for o in case["output"]
        if o["type"]["coding"][0]["code"] == "report"
    )
    report = fhir.get(f"/{report_ref}")
    assert report["imagingStudy"] == [{"reference": ref(study)}]
    assert smtp.inbox.to(tag) == []
    # The signed PDF is kept although it could not be sent: Binary + DocumentReference.
    [form] = report["presentedForm"]
    stored_pdf = base64.b64decode(fhir.get(f"/{form['url']}")["data"])
    assert stored_pdf.startswith(b"%PDF-")
    found = fhir.get("/DocumentReference", related=report_ref).get("entry", [])
    docs = [e["resource"] for e in found if e["search"]["mode"] == "match"]
    assert [d["content"][0]["attachment"]["url"] for d in docs] == [form["url"]], found

    # The admin's list of delivery problems names the case and why.
    problems = fhir.get("/$delivery-problems")["parameter"]
    listed = [
        {part["name"]: part for part in p["part"]}
        for p in problems
        if {"name": "target", "valueReference": {"reference": f"Task/{case['id']}"}} in p["part"]
    ]
    assert len(listed) == 1 and listed[0]["kind"]["valueCode"] == "report-delivery"
    assert "e-mail" in listed[0]["reason"]["valueString"]
    assert fhir.op(f"/Task/{case['id']}/$deliver-report", team["doctor"]).status_code == 403
    fixed = fhir.get(f"/Patient/{patient_res['id']}")
    fixed["telecom"] = [{"system": "email", "value": tag}]
    assert fhir.http.put(f"/Patient/{fixed['id']}", json=fixed).status_code == 200
    retry = fhir.op(f"/Task/{case['id']}/$deliver-report", team["admin"])
    assert retry.status_code == 200
    assert retry.json()["parameter"][0] == {"name": "status", "valueString": "delivered"}
    mailed = wait_for_mail(smtp, tag)
    case = fhir.get(f"/Task/{case['id']}")
    assert business(case) == "REPORT_DELIVERED" and case["status"] == "completed"
    # The retry sent the PDF stored by the failed attempt, not a second rendering.
    assert fhir.get(f"/{report_ref}")["presentedForm"] == [form]
    assert pdf_of(mailed[0]) == stored_pdf
    assert not [
        p
        for p in fhir.get("/$delivery-problems").get("parameter", [])
        if f"Task/{case['id']}" in str(p)
    ]
    again = fhir.op(f"/Task/{case['id']}/$deliver-report", team["admin"])
    assert again.json()["parameter"][0]["valueString"] == "already-delivered"
    assert len(smtp.inbox.to(tag)) == 1


def test_lung_risk_high_risk_ends_in_a_screening_referral(fhir, team):
    patient = team["patient"][1]
    case = start(fhir, team["patient"], "lung-risk", patient).json()
    assert business(case) == "PENDING_INTAKE" and case["focus"] == {"reference": patient}
    intake = step(fhir, case["id"], "intake")
    assert fhir.op(f"/Task/{intake['id']}/$claim", team["doctor"]).status_code == 403
    assert fhir.op(f"/Task/{intake['id']}/$claim", team["patient"]).status_code == 200
    qr = {
        "resourceType": "QuestionnaireResponse",
        "status": "completed",
        "item": [{"linkId": "age", "answer": [{"valueInteger": 67}]}],
    }
    assert (
        fhir.op(
            f"/Task/{intake['id']}/$complete", team["patient"], {"output": {"resource": qr}}
        ).status_code
        == 200
    )
    risk_task = step(fhir, case["id"], "risk-calculation")
    assert risk_task["status"] == "requested"
    risk = fhir.create(
        {
            "resourceType": "RiskAssessment",
            "status": "final",
            "subject": {"reference": patient},
            "basedOn": {"reference": f"Task/{risk_task['id']}"},
            "method": {"text": "PLCOm2012"},
            "prediction": [
                {"outcome": {"text": "Lung cancer within 6 years"}, "probabilityDecimal": 0.042}
            ],
        }
    )
    # A result that names neither the case nor its step is refused.
    stray = fhir.create(
        {"resourceType": "RiskAssessment", "status": "final", "subject": {"reference": patient}}
    )
    assert (
        fhir.op(
            f"/Task/{risk_task['id']}/$complete",
            team["ai"],
            {"result": {"valueReference": {"reference": ref(stray)}}},
        ).status_code
        == 400
    )
    assert (
        fhir.op(
            f"/Task/{risk_task['id']}/$complete",
            team["ai"],
            {
                "result": {"valueReference": {"reference": ref(risk)}},
                "highRisk": {"valueBoolean": True},
            },
        ).status_code
        == 200
    )
    review = step(fhir, case["id"], "doctor-review")
    assert fhir.op(f"/Task/{review['id']}/$claim", team["doctor"]).status_code == 200
    assert (
        fhir.op(
            f"/Task/{review['id']}/$complete",
            team["doctor"],
            {"conclusion": {"valueString": "Refer for LDCT"}},
        ).status_code
        == 200
    )
    case = fhir.get(f"/Task/{case['id']}")
    assert case["status"] == "completed" and case["priority"] == "urgent"
    referral = next(
        o["valueReference"]["reference"]
        for o in case["output"]
        if o["type"]["coding"][0]["code"] == "referral"
    )
    sr = fhir.get(f"/{referral}")
    assert sr["code"]["coding"][0]["code"] == "16334891000119106"
    assert sr["reasonReference"] == [{"reference": ref(risk)}]
