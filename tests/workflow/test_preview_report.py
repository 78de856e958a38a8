"""$preview-report over HTTP on SQLite and PostgreSQL: before the admin approves, the PDF the
approval would make (preliminary, unsigned, nothing stored); after approval, the stored final
report's; errors as OperationOutcomes; a patient's own token previews their own case and gets 404
for another patient's."""

from __future__ import annotations

import base64
import io

import httpx
from pypdf import PdfReader

from tests.fhir_server.auth.smart import code_of, exchange, login, make_client, make_user, pkce
from tests.workflow.conftest import photo_media, ref
from tests.workflow.test_cases_http import ai_observation, business, start, step

SCOPE = "openid fhirUser user/*.cruds"


def pdf_text(binary: dict) -> str:
    assert binary["resourceType"] == "Binary" and binary["contentType"] == "application/pdf"
    assert "id" not in binary  # not stored
    data = base64.b64decode(binary["data"])
    assert data.startswith(b"%PDF-")
    reader = PdfReader(io.BytesIO(data))
    assert "/AcroForm" not in reader.trailer["/Root"]  # no signature field: unsigned
    return " ".join(page.extract_text() for page in reader.pages)


def token_client(server, client_id: str, role: str, fhir_user: str) -> httpx.Client:  # type: ignore[no-untyped-def]
    user = make_user(server, role, fhir_user)
    verifier, challenge = pkce()
    code = code_of(login(server, client_id, user, SCOPE, challenge=challenge))
    body = exchange(server, client_id, code, verifier).json()
    return httpx.Client(
        base_url=server.fhir,
        timeout=120,
        headers={"Authorization": f"Bearer {body['access_token']}"},
    )


def counts(fhir) -> dict[str, int]:  # type: ignore[no-untyped-def]
    return {
        t: fhir.get(f"/{t}", _summary="count")["total"]
        for t in ("DiagnosticReport", "Binary", "DocumentReference")
    }


def doctor_reviewed(fhir, team) -> dict:  # type: ignore[no-untyped-def]
    patient = team["patient"][1]
    media = photo_media(fhir, patient)
    case = start(fhir, team["cadre"], "skin-screening", patient, ref(media)).json()
    obs = ai_observation(fhir, case, team, ref(media))
    ai = step(fhir, case["id"], "ai-analysis")
    done = fhir.op(
        f"/Task/{ai['id']}/$complete",
        team["ai"],
        {"result": {"valueReference": {"reference": ref(obs)}}},
    )
    assert done.status_code == 200, done.text
    review = step(fhir, case["id"], "doctor-review")
    assert fhir.op(f"/Task/{review['id']}/$claim", team["doctor"]).status_code == 200
    finding = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "Doctor's finding"},
        "valueString": "Asymmetric lesion, 6 mm",
    }
    done = fhir.op(
        f"/Task/{review['id']}/$complete",
        team["doctor"],
        {
            "output": {"resource": finding},
            "conclusion": {"valueString": "Excision advised within two weeks"},
        },
    )
    assert done.status_code == 200, done.text
    return case


def test_preview_before_and_after_approval(wf_server, fhir, team):
    case = doctor_reviewed(fhir, team)
    admin_step = step(fhir, case["id"], "admin-approval")
    before = counts(fhir)

    # GET on the case or on one of its steps: the same report, preliminary, nothing written.
    for target in (case["id"], admin_step["id"]):
        resp = fhir.http.get(f"/Task/{target}/$preview-report")
        assert resp.status_code == 200, resp.text
        text = pdf_text(resp.json())
        assert "Excision advised within two weeks" in text
        assert "Asymmetric lesion, 6 mm" in text
        assert "preliminary" in text
    assert fhir.op(f"/Task/{case['id']}/$preview-report", team["admin"]).status_code == 200
    assert counts(fhir) == before
    assert business(fhir.get(f"/Task/{case['id']}")) == "DOCTOR_REVIEWED"

    # Approved: the preview is the stored final report's content.
    assert fhir.op(f"/Task/{admin_step['id']}/$claim", team["admin"]).status_code == 200
    assert fhir.op(f"/Task/{admin_step['id']}/$complete", team["admin"]).status_code == 200
    after = fhir.http.get(f"/Task/{case['id']}/$preview-report")
    assert after.status_code == 200, after.text
    text = pdf_text(after.json())
    assert "final" in text and "Excision advised within two weeks" in text


def test_preview_errors_are_operation_outcomes(fhir, team):
    patient = team["patient"][1]
    missing = fhir.http.get("/Task/no-such-case/$preview-report")
    assert missing.status_code == 404
    assert missing.json()["resourceType"] == "OperationOutcome"
    plain = fhir.create({"resourceType": "Task", "status": "requested", "intent": "order"})
    refused = fhir.http.get(f"/Task/{plain['id']}/$preview-report")
    assert refused.status_code == 400
    outcome = refused.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert "not a Hearth case" in outcome["issue"][0]["diagnostics"]
    # Before the doctor's review there is nothing of the report's to show but the AI result;
    # the case has no report output yet, the preview still renders (preliminary).
    media = photo_media(fhir, patient)
    case = start(fhir, team["cadre"], "skin-screening", patient, ref(media)).json()
    early = fhir.http.get(f"/Task/{case['id']}/$preview-report")
    assert early.status_code == 200, early.text
    assert "preliminary" in pdf_text(early.json())
    # An operation on the wrong type is not found.
    wrong = fhir.http.get(f"/Patient/{patient.removeprefix('Patient/')}/$preview-report")
    assert wrong.status_code == 404 and wrong.json()["resourceType"] == "OperationOutcome"


def test_a_patient_token_previews_only_its_own_case(wf_server, fhir, team):
    case = doctor_reviewed(fhir, team)
    other = fhir.create({"resourceType": "Patient", "name": [{"family": "Elsewhere"}]})
    client_id, _ = make_client(wf_server, "public", SCOPE)
    stranger = token_client(wf_server, client_id, "patient", ref(other))
    owner = token_client(wf_server, client_id, "patient", team["patient"][1])
    try:
        refused = stranger.get(f"/Task/{case['id']}/$preview-report")
        assert refused.status_code == 404, refused.text
        assert refused.json()["resourceType"] == "OperationOutcome"
        mine = owner.get(f"/Task/{case['id']}/$preview-report")
        assert mine.status_code == 200, mine.text
        assert "Excision advised within two weeks" in pdf_text(mine.json())
    finally:
        stranger.close()
        owner.close()
