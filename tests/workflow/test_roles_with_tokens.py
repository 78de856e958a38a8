"""A skin-screening case end to end with real SMART user tokens, on SQLite and PostgreSQL: every
person signs in through the login page (password + TOTP, code + PKCE) and acts only as the role
and fhirUser of their account. The cadre registers the patient, uploads the photo and starts the
case; the real `hearth worker` runs the skin classifier; the doctor, the pharmacist and the admin
each take their step; the signed PDF is e-mailed (read back from aiosmtpd, parsed with pypdf, its
signature checked with pyHanko); the patient downloads it with their own token. Each role is
refused the steps that are not theirs; another patient sees nothing of it; the X-Hearth-* headers
a trusted backend may send are ignored for a user's token."""

from __future__ import annotations

import base64
import io
import uuid

import httpx
import pytest
from asn1crypto import x509 as asn1_x509
from cryptography.hazmat.primitives import serialization
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.validation import validate_pdf_signature
from pyhanko_certvalidator import ValidationContext
from pypdf import PdfReader

from fhir_server.auth.keys import key_store
from resources.storage.db import create_engine
from tests.conftest import BACKENDS
from tests.fhir_server.auth.smart import code_of, exchange, login, make_client, make_user, pkce
from tests.inference.conftest import run_worker
from tests.servers import database_url, start_server
from tests.shared import shared_path
from tests.workflow.conftest import Fhir, person, ref
from tests.workflow.test_cases_http import STEP, business, pdf_of, wait_for_mail
from workflow import signing

SCOPE = "openid fhirUser user/*.cruds"
FACILITY = "Hearth District Hospital"
PHOTO = shared_path("data", "skin_photos", "ISIC_0024310.jpg")


@pytest.fixture(scope="module", params=BACKENDS)
def hearth(request, tmp_path_factory, smtp):  # type: ignore[no-untyped-def]
    """A Hearth of its own (the worker then runs only this module's analyses)."""
    tmp = tmp_path_factory.mktemp(f"tokens-{request.param}")
    url, cleanup = database_url(request.param, tmp)
    running = start_server(
        request.param, url, data_dir=tmp / "data", smtp_host="127.0.0.1", smtp_port=smtp.port,
        smtp_ca_file=smtp.ca_file, smtp_from="reports@hearth.test", facility_name=FACILITY,
    )  # fmt: skip
    running.data_dir = tmp / "data"  # type: ignore[attr-defined]
    yield running
    running.stop()
    cleanup()


class Person:
    """Someone signed in through the real login, calling the FHIR API with their own token."""

    def __init__(self, server, client_id: str, role: str, fhir_user: str) -> None:  # type: ignore[no-untyped-def]
        user = make_user(server, role, fhir_user)
        verifier, challenge = pkce()
        code = code_of(login(server, client_id, user, SCOPE, challenge=challenge))
        body = exchange(server, client_id, code, verifier).json()
        assert "access_token" in body, body
        self.role, self.reference = role, fhir_user
        self.http = httpx.Client(
            base_url=server.fhir,
            timeout=120,
            headers={"Authorization": f"Bearer {body['access_token']}"},
        )

    def get(self, path: str, **params: object) -> httpx.Response:
        return self.http.get(path, params=params)

    def read(self, path: str, **params: object) -> dict:
        resp = self.get(path, **params)
        assert resp.status_code == 200, resp.text
        return resp.json()

    def create(self, body: dict) -> dict:
        resp = self.http.post(f"/{body['resourceType']}", json=body)
        assert resp.status_code == 201, resp.text
        return resp.json()

    def op(self, path: str, params: dict | None = None, headers=None) -> httpx.Response:  # type: ignore[no-untyped-def]
        parts = [
            {"name": k, **v}
            for k, vs in (params or {}).items()
            for v in (vs if isinstance(vs, list) else [vs])
        ]
        body = {"resourceType": "Parameters", "parameter": parts}
        return self.http.post(path, json=body, headers=headers or {})

    def step(self, case_id: str, code: str) -> dict:
        bundle = self.read("/Task", **{"part-of": f"Task/{case_id}", "code": f"{STEP}|{code}"})
        [entry] = bundle["entry"]
        return entry["resource"]


def refused(people: dict[str, Person], who: tuple[str, ...], path: str) -> None:
    """403 for each of ``who``; a patient (who may take a step of their own case, e.g. the
    lung-risk intake) gets the 404 of an unknown id for a step hidden from them (an unverified
    AI result's), exactly as reading it would."""
    for name in who:
        resp = people[name].op(path)
        expected = 403
        if people[name].role == "patient":
            task = path.rsplit("/$", 1)[0]
            expected = 404 if people[name].get(task).status_code == 404 else 403
        assert resp.status_code == expected, (name, path, resp.text)
        assert resp.json()["resourceType"] == "OperationOutcome"


def test_skin_case_with_each_persons_own_token(hearth, smtp):
    operator = Fhir(hearth.fhir, hearth.headers)  # only to enrol the staff and their accounts
    tag = uuid.uuid4().hex[:8]
    staff = {
        role: ref(person(operator, "Practitioner", f"{role.title()}{tag}"))
        for role in ("cadre", "doctor", "pharmacist", "admin")
    }
    other_patient = ref(person(operator, "Patient", f"Other{tag}", email=f"o-{tag}@example.org"))
    operator.close()
    client_id, _ = make_client(hearth, "public", SCOPE)
    people = {role: Person(hearth, client_id, role, r) for role, r in staff.items()}
    cadre, doctor, pharmacist, admin = (people[r] for r in staff)

    # The cadre registers the patient and uploads the lesion photo with their own token.
    email = f"patient-{tag}@example.org"
    patient_res = cadre.create(
        {
            "resourceType": "Patient",
            "identifier": [{"system": "urn:hearth:test", "value": tag}],
            "name": [{"given": ["Amina"], "family": f"Patient{tag}"}],
            "birthDate": "1961-04-12",
            "gender": "female",
            "telecom": [{"system": "email", "value": email}],
        }
    )
    patient = ref(patient_res)
    people["patient"] = Person(hearth, client_id, "patient", patient)
    people["other"] = Person(hearth, client_id, "patient", other_patient)
    me, other = people["patient"], people["other"]
    media = cadre.create(
        {
            "resourceType": "Media",
            "status": "completed",
            "modality": {
                "coding": [{"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "XC"}]
            },
            "subject": {"reference": patient},
            "content": {
                "contentType": "image/jpeg",
                "data": base64.b64encode(PHOTO.read_bytes()).decode(),
                "title": "Lesion photo",
            },
        }
    )
    params = {
        "caseType": {"valueCode": "skin-screening"},
        "patient": {"valueReference": {"reference": patient}},
        "focus": {"valueReference": {"reference": ref(media)}},
        "referredTo": {"valueReference": {"reference": staff["doctor"]}},
    }
    # A pharmacist may not start a skin-screening case, another patient not for this one: the
    # photo is not theirs, so it answers as an unknown id would (404), and not for themself
    # about this patient's photo either.
    refused_start = [
        pharmacist.op("/Task/$start-case", params),
        other.op("/Task/$start-case", params),
        other.op(
            "/Task/$start-case",
            {**params, "patient": {"valueReference": {"reference": other_patient}}},
        ),
    ]
    assert [r.status_code for r in refused_start] == [403, 404, 404]
    created = cadre.op("/Task/$start-case", params)
    assert created.status_code == 201, created.text
    case = created.json()
    assert case["requester"] == {"reference": staff["cadre"]}
    assert business(case) == "PENDING_AI"
    ai_step = cadre.step(case["id"], "ai-analysis")
    review = cadre.step(case["id"], "doctor-review")
    assert review["owner"] == {"reference": staff["doctor"]}  # the cadre's referral
    # No person can do the AI step; the doctor's step is not open before it.
    refused(people, ("cadre", "doctor", "admin", "patient"), f"/Task/{ai_step['id']}/$claim")
    assert doctor.op(f"/Task/{review['id']}/$claim").status_code == 409

    # The AI: the real `hearth worker` runs the skin classifier on the photo.
    assert "ran" in run_worker(hearth).stdout
    case = doctor.read(f"/Task/{case['id']}")
    assert business(case) == "AI_ANALYZED"
    ai_step = doctor.read(f"/Task/{ai_step['id']}")
    assert ai_step["status"] == "completed"
    [ai_obs_ref] = [o["valueReference"]["reference"] for o in ai_step["output"]]
    ai_obs = doctor.read(f"/{ai_obs_ref}")
    assert ai_obs["derivedFrom"] == [{"reference": ref(media)}]
    assert ai_obs["basedOn"] == case["basedOn"]
    device = doctor.read(f"/{ai_obs['device']['reference']}")
    if ai_obs["interpretation"][0]["coding"][0]["code"] == "IND":  # uncertain: review flagged
        review = doctor.read(f"/Task/{review['id']}")
        assert "mandatory-review" in [i["type"]["coding"][0]["code"] for i in review["input"]]

    # The doctor's step: no one else may take it, whatever headers their token comes with.
    path = f"/Task/{review['id']}"
    refused(people, ("patient", "cadre", "pharmacist", "admin"), f"{path}/$claim")
    forged = {"X-Hearth-Role": "doctor", "X-Hearth-Actor": staff["doctor"]}
    assert cadre.op(f"{path}/$claim", headers=forged).status_code == 403
    claimed = doctor.op(f"{path}/$claim")
    assert claimed.status_code == 200, claimed.text
    assert claimed.json()["owner"] == {"reference": staff["doctor"]}
    refused(people, ("patient", "cadre", "pharmacist", "admin"), f"{path}/$complete")
    done = doctor.op(
        f"{path}/$complete",
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
        },
    )
    assert done.status_code == 200, done.text
    assert business(doctor.read(f"/Task/{case['id']}")) == "DOCTOR_REVIEWED"

    # The pharmacist's step (medication was prescribed).
    path = f"/Task/{pharmacist.step(case['id'], 'pharmacist-review')['id']}"
    refused(people, ("patient", "cadre", "doctor", "admin"), f"{path}/$claim")
    assert pharmacist.op(f"{path}/$claim").status_code == 200
    refused(people, ("patient", "cadre", "doctor", "admin"), f"{path}/$complete")
    note = {"note": {"valueString": "Dispensed, counselled"}}
    assert pharmacist.op(f"{path}/$complete", note).status_code == 200
    assert business(doctor.read(f"/Task/{case['id']}")) == "PHARMACIST_COMPLETED"

    # The admin's approval: the report is made, signed, attached and e-mailed at once.
    path = f"/Task/{admin.step(case['id'], 'admin-approval')['id']}"
    refused(people, ("patient", "cadre", "doctor", "pharmacist"), f"{path}/$claim")
    assert admin.op(f"{path}/$claim").status_code == 200
    refused(people, ("patient", "cadre", "doctor", "pharmacist"), f"{path}/$complete")
    approved = admin.op(f"{path}/$complete")
    assert approved.status_code == 200, approved.text
    delivery = admin.step(case["id"], "report-delivery")
    refused(
        people,
        ("patient", "cadre", "doctor", "pharmacist", "admin"),
        f"/Task/{delivery['id']}/$claim",
    )
    refused(
        people, ("patient", "cadre", "doctor", "pharmacist"), f"/Task/{case['id']}/$deliver-report"
    )
    case = doctor.read(f"/Task/{case['id']}")
    assert case["status"] == "completed" and business(case) == "REPORT_DELIVERED"

    # The e-mail, read back from the SMTP server: over TLS, with the PDF.
    [message] = wait_for_mail(smtp, email)
    assert smtp.inbox.tls_sessions[smtp.inbox.messages.index(message)]
    mailed = pdf_of(message)
    pages = PdfReader(io.BytesIO(mailed)).pages
    text = " ".join(" ".join(p.extract_text() for p in pages).split())  # lines may wrap
    for expected in (
        FACILITY,
        f"Patient{tag}",
        device["deviceName"][0]["name"],
        device["version"][0]["value"],
        "decision support",
        "Suspected melanoma",
        "Imiquimod 5% cream",
        "Asymmetric pigmented lesion",
        f"Admin{tag}",
    ):
        assert expected in text, (expected, text)

    # Its signature: intact, over the whole file, by Hearth's own certificate, naming the
    # approving admin and the responsible doctor; one changed byte breaks it.
    engine = create_engine(hearth.database_url)
    try:  # Hearth's generated key and certificate, in the database (shared by every node)
        hearths = signing.shared(
            key_store(engine, hearth.settings), hearth.data_dir, FACILITY
        ).certificate()
    finally:
        engine.dispose()
    root = asn1_x509.Certificate.load(hearths.public_bytes(serialization.Encoding.DER))
    [sig] = PdfFileReader(io.BytesIO(mailed)).embedded_signatures
    status = validate_pdf_signature(sig, ValidationContext(trust_roots=[root]))
    assert status.intact and status.valid and status.trusted, status.pretty_print_details()
    assert status.coverage.name == "ENTIRE_FILE"
    assert status.signing_cert.sha256 == root.sha256
    assert sig.sig_object["/Name"] == f"Test Admin{tag}"
    assert f"Test Doctor{tag}" in sig.sig_object["/Reason"]
    tampered = bytearray(mailed)
    tampered[len(mailed) // 3] ^= 0x01
    [bad] = PdfFileReader(io.BytesIO(bytes(tampered)), strict=False).embedded_signatures
    assert not validate_pdf_signature(bad, ValidationContext(trust_roots=[root])).intact

    # The patient finds the report with their own token and downloads the same bytes.
    [doc] = [e["resource"] for e in me.read("/DocumentReference", subject=patient)["entry"]]
    report_ref = doc["context"]["related"][0]["reference"]
    report = me.read(f"/{report_ref}")
    assert report["status"] == "final" and report["subject"] == {"reference": patient}
    url = report["presentedForm"][0]["url"]
    assert doc["content"][0]["attachment"]["url"] == url
    assert base64.b64decode(me.read(f"/{url}")["data"]) == mailed
    # Another patient sees none of it: not the report, not its PDF, not its DocumentReference.
    assert other.get(f"/{report_ref}").status_code == 404
    assert other.get(f"/{url}").status_code == 404
    assert other.read("/DocumentReference", subject=patient).get("entry", []) == []
    assert other.get(f"/DocumentReference/{doc['id']}").status_code == 404
    # And a patient cannot re-open the finished case.
    assert me.op(f"{path}/$claim").status_code in (403, 409)


def test_patient_takes_their_own_lung_risk_intake_with_their_token(hearth):
    """A patient user starts a lung-risk case for themself and claims and completes its intake
    step (their token has no Task write scope: $claim / $complete check it themselves); another
    patient cannot see or take that step, and the patient cannot take the doctor's step."""
    operator = Fhir(hearth.fhir, hearth.headers)
    tag = uuid.uuid4().hex[:8]
    mine = ref(person(operator, "Patient", f"Lung{tag}"))
    theirs = ref(person(operator, "Patient", f"Else{tag}"))
    operator.close()
    client_id, _ = make_client(hearth, "public", SCOPE)
    me, other = (
        Person(hearth, client_id, "patient", mine),
        Person(hearth, client_id, "patient", theirs),
    )
    params = {
        "caseType": {"valueCode": "lung-risk"},
        "patient": {"valueReference": {"reference": mine}},
    }
    created = me.op("/Task/$start-case", params)
    assert created.status_code == 201, created.text
    case = created.json()
    intake = me.step(case["id"], "intake")
    path = f"/Task/{intake['id']}"
    # Another patient: the step is not known to them, to claim or to complete.
    assert other.op(f"{path}/$claim").status_code == 404
    assert other.op(f"{path}/$complete").status_code == 404
    assert me.op(f"{path}/$complete").status_code == 409  # claim first
    claimed = me.op(f"{path}/$claim")
    assert claimed.status_code == 200, claimed.text
    assert claimed.json()["owner"] == {"reference": mine}
    answers = {
        "resourceType": "QuestionnaireResponse",
        "questionnaire": "http://hearth.local/fhir/Questionnaire/plcom2012",
        "status": "completed",
        "item": [{"linkId": "bmi", "answer": [{"valueDecimal": 24.5}]}],
    }
    done = me.op(f"{path}/$complete", {"output": {"resource": answers}})
    assert done.status_code == 200, done.text
    assert me.read(f"/Task/{case['id']}")["businessStatus"]["coding"][0]["code"] == "PENDING_AI"
    [qr] = [e["resource"] for e in me.read("/QuestionnaireResponse", subject=mine)["entry"]]
    assert qr["subject"] == {"reference": mine} and "author" not in qr
    # Not the patient's role: the doctor's review (draft until the risk is in) stays refused.
    review = me.step(case["id"], "doctor-review")
    assert me.op(f"/Task/{review['id']}/$claim").status_code in (403, 409)
    assert other.read("/QuestionnaireResponse", subject=mine).get("entry", []) == []
