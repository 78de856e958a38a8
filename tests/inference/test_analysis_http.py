"""AI analysis end to end over HTTP: uploads and $ai-analyze create Tasks, the real
``hearth worker`` (or the synchronous operation) writes Observations / RiskAssessments linked to
the model Device, the input and the Task — and bad input fails the Task with a reason and writes
nothing."""

from __future__ import annotations

import base64
import io
import uuid
from datetime import timedelta

import numpy as np
import pytest
from PIL import Image

from fhir_server.runtime.app import build_context
from fhir_server.runtime.settings import Settings
from inference import plco
from inference.plco import Education, PLCOm2012Inputs, Race
from inference.registry import metadata
from resources.jobs import queue
from tests.inference.conftest import (
    CHEST_CR,
    HEAD_CT,
    SKIN_PHOTO,
    b64,
    dicom_media,
    run_worker,
    skin_photo_media,
)


def tasks_for(fhir, focus: str) -> list[dict]:  # type: ignore[no-untyped-def]
    bundle = fhir.get("/Task", params={"focus": focus}).json()
    return [e["resource"] for e in bundle.get("entry", [])]


def output_ref(task: dict, what: str) -> str:
    return next(
        o["valueReference"]["reference"] for o in task["output"] if o["type"]["text"] == what
    )


def test_skin_photo_upload_to_observation_and_heatmap(ai_server, fhir, patient_id):
    media = fhir.post("/Media", json=skin_photo_media(patient_id, b64(SKIN_PHOTO))).json()
    [task] = tasks_for(fhir, f"Media/{media['id']}")
    assert task["status"] == "requested"
    assert task["code"]["coding"][0]["code"] == "skin-lesion-classification"
    assert task["for"]["reference"] == f"Patient/{patient_id}"
    version = metadata("skin")["version"]
    assert task["owner"]["reference"] == f"Device/{version}"

    assert "ran 1 job(s)" in run_worker(ai_server).stdout
    task = fhir.get(f"/Task/{task['id']}").json()
    assert task["status"] == "completed", task
    obs = fhir.get(f"/{output_ref(task, 'result')}").json()
    assert obs["status"] == "preliminary"
    assert obs["device"]["reference"] == f"Device/{version}"
    assert obs["derivedFrom"] == [{"reference": f"Media/{media['id']}"}]
    assert obs["subject"]["reference"] == f"Patient/{patient_id}"
    assert obs["effectiveDateTime"] == "2026-11-20T10:00:00Z"
    # A probability per class, the screening score, then the lesion's area and outline.
    *classes, screen, area, outline = obs["component"]
    assert area["code"]["coding"][0]["code"] == "lesion-area"
    assert area["valueQuantity"]["code"] == "{pixels}" and area["valueQuantity"]["unit"] == "pixels"
    assert 0.02 * 450 * 450 <= area["valueQuantity"]["value"] <= 0.85 * 450 * 450
    assert outline["code"]["coding"][0]["code"] == "lesion-outline"
    points = [tuple(map(float, p.split(","))) for p in outline["valueString"].split()]
    assert len(points) >= 3 and all(0 <= v <= 1 for p in points for v in p)
    probs = [c["valueQuantity"]["value"] for c in classes]
    assert len(probs) == 7 and abs(sum(probs) - 1) < 1e-3
    labels = [c["code"]["coding"][-1]["code"] for c in classes]
    assert labels == ["akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"]
    assert screen["code"]["coding"][0]["code"] == "malignancy-probability"
    malignant = probs[0] + probs[1] + probs[4]
    assert screen["valueQuantity"]["value"] == pytest.approx(malignant, abs=2e-4)
    refer = malignant >= screen["referenceRange"][0]["high"]["value"]
    assert obs["interpretation"][1]["coding"][0]["code"] == ("POS" if refer else "NEG")
    top = labels[int(np.argmax(probs))]
    if max(probs) < 0.75:
        assert obs["valueCodeableConcept"]["coding"][0]["code"] == "uncertain"
        assert obs["interpretation"][0]["coding"][0]["code"] == "IND"
        assert obs["meta"]["tag"][0]["code"] == "physician-review-required"
    else:
        assert obs["valueCodeableConcept"]["coding"][-1]["code"] == top
    assert "decision support" in obs["note"][0]["text"]

    device = fhir.get(f"/Device/{version}").json()
    assert device["identifier"][0]["value"] == metadata("skin")["weights_sha256"]
    assert device["version"][0]["value"] == version

    heat = fhir.get(f"/{output_ref(task, 'explanation')}").json()
    assert heat["partOf"] == [{"reference": f"Observation/{obs['id']}"}]
    binary = fhir.get(f"/{heat['content']['url']}").json()
    png = Image.open(io.BytesIO(base64.b64decode(binary["data"])))
    assert png.format == "PNG" and png.size == (450, 450)  # the photo's centre square


def test_chest_dicom_synchronous_ai_analyze(fhir, patient_id):
    media = fhir.post("/Media", json=dicom_media(patient_id, CHEST_CR, "CR")).json()
    assert tasks_for(fhir, f"Media/{media['id']}") == []  # X-ray media are not skin photos
    r = fhir.post(f"/Media/{media['id']}/$ai-analyze")
    assert r.status_code == 200, r.text
    task = r.json()
    assert task["status"] == "completed" and r.headers["Content-Location"].endswith(task["id"])
    obs = fhir.get(f"/{output_ref(task, 'result')}").json()
    assert obs["code"]["coding"][0]["code"] == "chest-xray-pneumonia"
    assert [c["code"]["coding"][-1]["code"] for c in obs["component"]] == ["normal", "pneumonia"]
    again = fhir.post(f"/Media/{media['id']}/$ai-analyze")
    assert again.status_code == 200 and again.json()["id"] == task["id"]  # one Task per analysis
    history = fhir.get(f"/Observation/{obs['id']}/_history").json()
    assert history["total"] == 1


def test_respond_async_returns_202_and_worker_completes(ai_server, fhir, patient_id):
    media = fhir.post("/Media", json=dicom_media(patient_id, CHEST_CR, "DX")).json()
    r = fhir.post(f"/Media/{media['id']}/$ai-analyze", headers={"Prefer": "respond-async"})
    assert r.status_code == 202 and r.json()["status"] == "requested"
    run_worker(ai_server)
    task = fhir.get(r.headers["Content-Location"].split("/fhir", 1)[1]).json()
    assert task["status"] == "completed"


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda: base64.b64encode(b"\xff\xd8\xff not really a jpeg").decode(), "cannot be decoded"),
        (lambda: base64.b64encode(_grey_png()).decode(), "no visible content"),
    ],
    ids=["corrupt", "grey"],
)
def test_bad_photo_fails_task_without_observation(ai_server, fhir, patient_id, make, reason):
    media = fhir.post("/Media", json=skin_photo_media(patient_id, make(), "image/png")).json()
    [task] = tasks_for(fhir, f"Media/{media['id']}")
    run_worker(ai_server)
    task = fhir.get(f"/Task/{task['id']}").json()
    assert task["status"] == "failed" and reason in task["statusReason"]["text"], task
    assert fhir.get(f"/Observation/ai-{task['id']}").status_code == 404
    assert fhir.get(f"/Media/ai-heatmap-{task['id']}").status_code == 404


def test_non_chest_study_fails_with_reason(fhir, patient_id):
    media = fhir.post("/Media", json=dicom_media(patient_id, HEAD_CT, "CT")).json()
    body = {
        "resourceType": "Parameters",
        "parameter": [{"name": "analysis", "valueCode": "chest-xray-pneumonia"}],
    }
    task = fhir.post(f"/Media/{media['id']}/$ai-analyze", json=body).json()
    assert task["status"] == "failed"
    assert "not a chest radiograph" in task["statusReason"]["text"]
    assert fhir.get(f"/Observation/ai-{task['id']}").status_code == 404


def test_unknown_analysis_is_a_400(fhir, patient_id):
    body = {"resourceType": "Parameters", "parameter": [{"name": "analysis", "valueCode": "x"}]}
    r = fhir.post(f"/Patient/{patient_id}/$ai-analyze", json=body)
    assert r.status_code == 400 and r.json()["resourceType"] == "OperationOutcome"
    assert fhir.post("/Patient/nobody/$ai-analyze").status_code == 404


def test_worker_dying_mid_task_is_retried_once(ai_server, fhir, patient_id):
    media = fhir.post("/Media", json=skin_photo_media(patient_id, b64(SKIN_PHOTO))).json()
    [task] = tasks_for(fhir, f"Media/{media['id']}")
    ctx = build_context(Settings(database_url=ai_server.database_url, ai_triggers=False))
    try:
        # A worker claims the job and dies: it never finishes, its lease runs out.
        [job] = queue.claim(ctx.repo, ["ai-analysis"], "doomed", lease=timedelta(seconds=-1))
        assert job.task_ref == f"Task/{task['id']}"
        run_worker(ai_server)
        [after] = queue.for_task(ctx.repo, job.task_ref)
        assert after.state == queue.DONE and after.attempts == 2
    finally:
        ctx.repo.engine.dispose()
    task = fhir.get(f"/Task/{task['id']}").json()
    assert task["status"] == "completed"
    obs_id = output_ref(task, "result").split("/")[1]
    assert fhir.get(f"/Observation/{obs_id}/_history").json()["total"] == 1


def _grey_png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (300, 200), (128, 128, 128)).save(buffer, format="PNG")
    return buffer.getvalue()


# -- PLCOm2012 ---------------------------------------------------------------------------------
def _answers(**values: object) -> list[dict]:
    items = []
    for link, value in values.items():
        if isinstance(value, bool):
            answer = {"valueBoolean": value}
        elif isinstance(value, str):
            answer = {"valueCoding": {"code": value}}
        else:
            answer = {"valueDecimal": value}
        items.append({"linkId": link.replace("_", "-"), "answer": [answer]})
    return items


def test_plco_risk_assessment_from_questionnaire(fhir, patient_id):
    response = {
        "resourceType": "QuestionnaireResponse",
        "questionnaire": "http://hearth.local/fhir/Questionnaire/plcom2012",
        "status": "completed",
        "subject": {"reference": f"Patient/{patient_id}"},
        "authored": "2026-11-01T09:00:00Z",
        "item": _answers(
            education="3", bmi=24.0, copd=True, personal_cancer_history=False,
            family_history_lung_cancer=True, smoking_status="former", cigarettes_per_day=30,
            smoking_duration_years=40, years_since_quitting=5, race="white",
        ),
    }  # fmt: skip
    assert fhir.post("/QuestionnaireResponse", json=response).status_code == 201
    task = fhir.post(f"/Patient/{patient_id}/$ai-analyze").json()
    assert task["status"] == "completed", task
    risk = fhir.get(f"/{output_ref(task, 'result')}").json()
    birth_age = _age("1958-03-02")
    expected = plco.six_year_risk(
        PLCOm2012Inputs(
            age=birth_age, education=Education(3), bmi=24.0, copd=True,
            personal_cancer_history=False, family_history_lung_cancer=True, current_smoker=False,
            cigarettes_per_day=30, smoking_duration_years=40, years_since_quitting=5,
            race=Race.WHITE,
        )
    )  # fmt: skip
    prediction = risk["prediction"][0]
    assert prediction["probabilityDecimal"] == pytest.approx(expected, abs=1e-6)
    assert prediction["qualitativeRisk"]["coding"][0]["code"] == (
        "high" if expected >= 0.0151 else "low"
    )
    assert risk["performer"]["reference"] == "Device/plcom2012-nejm2013"
    assert {"reference": f"Patient/{patient_id}"} in risk["basis"]
    assert any(b["reference"].startswith("QuestionnaireResponse/") for b in risk["basis"])


def test_plco_missing_inputs_are_listed_not_guessed(fhir):
    pid = fhir.post("/Patient", json={"resourceType": "Patient", "gender": "male"}).json()["id"]
    task = fhir.post(f"/Patient/{pid}/$ai-analyze").json()
    assert task["status"] == "failed"
    text = task["statusReason"]["text"]
    assert "age" in text and "bmi" in text and "cigarettes_per_day" in text
    assert fhir.get(f"/RiskAssessment/ai-{task['id']}").status_code == 404


def test_plco_recomputes_when_its_inputs_change(fhir, patient_id):
    """The lung-risk Task is keyed on its inputs' versions: asking again with the record unchanged
    returns the same Task; after the missing answers are added (or an answer is corrected) a new
    assessment runs."""
    first = fhir.post(f"/Patient/{patient_id}/$ai-analyze").json()
    assert first["status"] == "failed" and "bmi" in first["statusReason"]["text"]
    again = fhir.post(f"/Patient/{patient_id}/$ai-analyze").json()
    assert again["id"] == first["id"]
    assert [i["valueReference"]["reference"] for i in first["input"]] == [
        f"Patient/{patient_id}/_history/1"
    ]

    response = {
        "resourceType": "QuestionnaireResponse",
        "questionnaire": "http://hearth.local/fhir/Questionnaire/plcom2012",
        "status": "completed",
        "subject": {"reference": f"Patient/{patient_id}"},
        "authored": "2026-11-01T09:00:00Z",
        "item": _answers(
            education="3", bmi=24.0, copd=False, personal_cancer_history=False,
            family_history_lung_cancer=False, smoking_status="current", cigarettes_per_day=20,
            smoking_duration_years=30, race="white",
        ),
    }  # fmt: skip
    qr = fhir.post("/QuestionnaireResponse", json=response).json()
    second = fhir.post(f"/Patient/{patient_id}/$ai-analyze").json()
    assert second["id"] != first["id"] and second["status"] == "completed", second
    assert f"QuestionnaireResponse/{qr['id']}/_history/1" in {
        i["valueReference"]["reference"] for i in second["input"]
    }
    risk = fhir.get(f"/{output_ref(second, 'result')}").json()
    assert fhir.post(f"/Patient/{patient_id}/$ai-analyze").json()["id"] == second["id"]

    # A corrected answer (a new version of the same QuestionnaireResponse): a new assessment.
    response["item"] = _answers(
        education="3", bmi=24.0, copd=False, personal_cancer_history=False,
        family_history_lung_cancer=False, smoking_status="current", cigarettes_per_day=40,
        smoking_duration_years=30, race="white",
    )  # fmt: skip
    assert fhir.put(f"/QuestionnaireResponse/{qr['id']}", json={**response, "id": qr["id"]})
    third = fhir.post(f"/Patient/{patient_id}/$ai-analyze").json()
    assert third["id"] not in (first["id"], second["id"]) and third["status"] == "completed"
    risk3 = fhir.get(f"/{output_ref(third, 'result')}").json()
    p2 = risk["prediction"][0]["probabilityDecimal"]
    assert risk3["prediction"][0]["probabilityDecimal"] > p2

    # A new Observation (BMI) is an input too; an unrelated one is not.
    unrelated = {
        "resourceType": "Observation", "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
        "subject": {"reference": f"Patient/{patient_id}"},
        "valueQuantity": {"value": 70, "unit": "/min"},
    }  # fmt: skip
    assert fhir.post("/Observation", json=unrelated).status_code == 201
    assert fhir.post(f"/Patient/{patient_id}/$ai-analyze").json()["id"] == third["id"]
    bmi = {
        "resourceType": "Observation", "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "39156-5"}]},
        "subject": {"reference": f"Patient/{patient_id}"},
        "effectiveDateTime": "2026-11-20T09:00:00Z",
        "valueQuantity": {"value": 31.0, "unit": "kg/m2", "system": "http://unitsofmeasure.org",
                          "code": "kg/m2"},
    }  # fmt: skip
    bmi_id = fhir.post("/Observation", json=bmi).json()["id"]
    fourth = fhir.post(f"/Patient/{patient_id}/$ai-analyze").json()
    assert fourth["id"] != third["id"] and fourth["status"] == "completed"
    basis = fhir.get(f"/{output_ref(fourth, 'result')}").json()["basis"]
    assert {"reference": f"Observation/{bmi_id}"} in basis


def _age(birth: str) -> float:
    from datetime import date

    from inference.plco_record import age_on

    return age_on(birth, date.today())


def test_each_task_key_is_one_job(ai_server):
    ctx = build_context(Settings(database_url=ai_server.database_url, ai_triggers=False))
    key = f"test:{uuid.uuid4()}"
    try:
        first = ctx.repo.run(lambda u: queue.enqueue(u, "test-kind", key, "Task/x"))
        second = ctx.repo.run(lambda u: queue.enqueue(u, "test-kind", key, "Task/x"))
        assert first.id == second.id
    finally:
        ctx.repo.engine.dispose()


def test_a_patient_token_gets_no_analysis_task(ai_server, fhir):  # type: ignore[no-untyped-def]
    """A patient asking for an analysis of their own record is told it is done, not what it
    found: the analysis Task (outputs, business status) is hidden until a clinician verified the
    result (docs/security.md). Asking again makes no second Task."""
    from tests.fhir_server.auth.smart import client_token

    pid = fhir.post("/Patient", json={"resourceType": "Patient", "gender": "male"}).json()["id"]
    token = client_token(ai_server, "patient/*.rs", patient=pid)
    for _ in range(2):
        resp = fhir.post(f"/Patient/{pid}/$ai-analyze", headers=token)
        assert resp.status_code == 200, resp.text
        assert resp.json()["resourceType"] == "OperationOutcome"
        assert "Content-Location" not in resp.headers
    [task] = tasks_for(fhir, f"Patient/{pid}")
    assert fhir.get(f"/Task/{task['id']}", headers=token).status_code == 404
    hidden = fhir.get("/Task", params={"focus": f"Patient/{pid}"}, headers=token)
    assert hidden.status_code == 200 and hidden.json().get("entry", []) == []
