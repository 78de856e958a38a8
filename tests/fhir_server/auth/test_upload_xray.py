"""$upload-xray over HTTP with real logins, on both databases: a patient sends a chest X-ray as a
PNG (a Media in their compartment) and as a DICOM file (through the ingest, bound to them with
new UIDs: the ImagingStudy's subject is the patient whatever the header said, and a second upload
of the same file makes a second study, never touching the first); the imaging-review case
starts for them, the real worker runs the pneumonia model, the patient sees nothing of the result
until a doctor verified it, then the verified result. A cadre uploads for a patient. Refusals:
another patient's id (404 like an unknown id), another patient's case or X-ray (404), a skin
photo (422, the quality gate's reason), wrong content type (415), empty, corrupt DICOM, a DICOM
that is not a chest radiograph, bad base64 (400), oversized (413) — each an OperationOutcome,
nothing written."""

from __future__ import annotations

import base64
import io
import os
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest

from fhir_server.rest.operations.patient_upload_xray import MAX_BYTES
from tests.fhir_server.auth.smart import (
    bearer,
    code_of,
    exchange,
    login,
    make_client,
    make_user,
    pkce,
)
from tests.shared import shared_path

PORTAL_SCOPE = "openid fhirUser patient/*.cruds"
STAFF_SCOPE = "openid fhirUser user/*.cruds"
CHEST_CR = shared_path("data", "dicom", "RG1_UNCR.dcm")
HEAD_CT = shared_path("data", "dicom", "693_UNCR.dcm")
SKIN = shared_path("data", "skin_photos", "ISIC_0024872.jpg")


def _create(server, body: dict) -> dict:  # type: ignore[no-untyped-def]
    resp = httpx.post(f"{server.fhir}/{body['resourceType']}", json=body, headers=server.headers)
    assert resp.status_code == 201, resp.text
    return resp.json()


def _token(server, client_id: str, user, scope: str) -> dict[str, str]:  # type: ignore[no-untyped-def]
    verifier, challenge = pkce()
    token = exchange(
        server,
        client_id,
        code_of(login(server, client_id, user, scope, challenge=challenge)),
        verifier,
    )
    assert token.status_code == 200, token.text
    return bearer(token.json()["access_token"])


def upload(server, patient: str, headers: dict, kind: str, data: bytes | str) -> httpx.Response:  # type: ignore[no-untyped-def]
    encoded = data if isinstance(data, str) else base64.b64encode(data).decode()
    body = {
        "resourceType": "Parameters",
        "parameter": [{"name": "image", "valueAttachment": {"contentType": kind, "data": encoded}}],
    }
    return httpx.post(
        f"{server.fhir}/{patient}/$upload-xray",
        json=body,
        headers={**headers, "Content-Type": "application/fhir+json"},
        timeout=120,
    )


def chest_png() -> bytes:
    from inference.images import dicom_image, read_dicom

    buffer = io.BytesIO()
    dicom_image(read_dicom(CHEST_CR.read_bytes())).save(buffer, format="PNG")
    return buffer.getvalue()


def small_chest_dicom() -> bytes:
    """The real chest CR at a quarter of its size (the test server takes 8 MB bodies)."""
    import numpy as np
    from PIL import Image
    from pydicom import dcmread

    ds = dcmread(CHEST_CR)
    pixels = ds.pixel_array
    small = Image.fromarray(pixels).resize((pixels.shape[1] // 4, pixels.shape[0] // 4))
    arr = np.asarray(small).astype(pixels.dtype)
    ds.Rows, ds.Columns = arr.shape
    ds.PixelData = arr.tobytes()
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def run_worker(server) -> None:  # type: ignore[no-untyped-def]
    env = {
        **os.environ,
        "HEARTH_DATABASE_URL": server.database_url,
        "HEARTH_BASE_URL": server.root,
        "HEARTH_DATA_DIR": str(server.settings.data_dir),
    }
    done = subprocess.run(
        [str(Path(sys.executable).with_name("hearth")), "worker", "--once"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr


def _counts(server) -> dict[str, int]:  # type: ignore[no-untyped-def]
    return {
        t: httpx.get(
            f"{server.fhir}/{t}", params={"_summary": "count"}, headers=server.headers
        ).json()["total"]
        for t in ("Media", "ImagingStudy", "Task", "ServiceRequest")
    }


@pytest.fixture
def people(server):  # type: ignore[no-untyped-def]
    tag = uuid.uuid4().hex[:6]
    me = _create(
        server,
        {
            "resourceType": "Patient",
            "name": [{"family": f"Ray{tag}", "given": ["Adèle"]}],
            "birthDate": "1961-04-02",
            "gender": "female",
        },
    )
    other = _create(server, {"resourceType": "Patient", "name": [{"family": f"Other{tag}"}]})
    cid, _ = make_client(server, "public", STAFF_SCOPE)
    return {
        "me": f"Patient/{me['id']}",
        "other": f"Patient/{other['id']}",
        "h": _token(server, cid, make_user(server, "patient", f"Patient/{me['id']}"), PORTAL_SCOPE),
        "h_other": _token(
            server, cid, make_user(server, "patient", f"Patient/{other['id']}"), PORTAL_SCOPE
        ),
        "client": cid,
    }


def test_patient_png_and_dicom_start_their_case_and_see_it_verified(server, people):
    me, h = people["me"], people["h"]
    # A PNG: a Media of the patient, chest DX, the file as sent.
    png = chest_png()
    resp = upload(server, me, h, "image/png", png)
    assert resp.status_code == 201, resp.text
    case = resp.json()
    assert (
        case["for"]["reference"] == me
        and case["businessStatus"]["coding"][0]["code"] == "PENDING_AI"
    )
    assert case["code"]["coding"][0]["code"] == "imaging-review"
    media = httpx.get(f"{server.fhir}/{case['focus']['reference']}", headers=h).json()
    assert media["subject"]["reference"] == me
    assert media["modality"]["coding"][0]["code"] == "DX"
    assert base64.b64decode(media["content"]["data"]) == png

    # A DICOM file whose header names someone else: bound to the patient, with new UIDs.
    from pydicom import dcmread

    original = dcmread(CHEST_CR)
    resp = upload(server, me, h, "application/dicom", small_chest_dicom())
    assert resp.status_code == 201, resp.text
    dicom_case = resp.json()
    study_ref = dicom_case["focus"]["reference"]
    assert study_ref.startswith("ImagingStudy/")
    study = httpx.get(f"{server.fhir}/{study_ref}", headers=server.headers).json()
    assert study["subject"]["reference"] == me
    uids = {i["value"] for i in study["identifier"]}
    assert f"urn:oid:{original.StudyInstanceUID}" not in uids
    # The same file again: a second study, the first one unchanged.
    again = upload(server, me, h, "application/dicom", small_chest_dicom())
    assert again.status_code == 201, again.text
    assert again.json()["focus"]["reference"] != study_ref
    after = httpx.get(f"{server.fhir}/{study_ref}", headers=server.headers).json()
    assert after["meta"]["versionId"] == study["meta"]["versionId"]
    # The stored instance names the patient (a UTF-8 name), not the person in the header.
    from sqlalchemy import create_engine

    engine = create_engine(server.database_url)
    try:
        store = server.settings.instance_store(engine)
        header = dcmread(io.BytesIO(store.read(study["series"][0]["instance"][0]["uid"])))
    finally:
        engine.dispose()
    assert str(header.PatientID) == me.split("/")[1]
    assert (
        "Adèle" in str(header.PatientName) and header.StudyInstanceUID != original.StudyInstanceUID
    )
    # No Patient was made from the header.
    found = httpx.get(
        f"{server.fhir}/Patient", params={"identifier": original.PatientID}, headers=server.headers
    ).json()
    assert not found.get("entry")

    # Another patient reads none of it: 404 like an unknown id.
    for ref in (f"Task/{case['id']}", case["focus"]["reference"], f"Task/{dicom_case['id']}"):
        assert httpx.get(f"{server.fhir}/{ref}", headers=people["h_other"]).status_code == 404

    # The worker runs the pneumonia model; the result waits for a doctor, hidden from the patient.
    run_worker(server)
    staff = httpx.get(f"{server.fhir}/Task/{case['id']}", headers=server.headers).json()
    assert staff["businessStatus"]["coding"][0]["code"] == "AI_ANALYZED"
    assert httpx.get(f"{server.fhir}/Task/{case['id']}", headers=h).status_code == 404
    obs_ref = next(
        i["valueReference"]["reference"]
        for i in staff["input"]
        if i["type"]["coding"][0]["code"] == "ai-result"
    )
    assert httpx.get(f"{server.fhir}/{obs_ref}", headers=h).status_code == 404

    # A doctor verifies: the patient now sees the case and the final result.
    doctor = _create(server, {"resourceType": "Practitioner", "name": [{"family": "Verifier"}]})
    dh = {
        **server.headers,
        "X-Hearth-Role": "doctor",
        "X-Hearth-Actor": f"Practitioner/{doctor['id']}",
    }
    steps = httpx.get(
        f"{server.fhir}/Task",
        params={"part-of": f"Task/{case['id']}", "_count": "50"},
        headers=server.headers,
    ).json()["entry"]
    verify = next(
        e["resource"]
        for e in steps
        if e["resource"]["code"]["coding"][0]["code"] == "doctor-verification"
    )
    for op, body in (
        ("$claim", {"resourceType": "Parameters"}),
        (
            "$complete",
            {
                "resourceType": "Parameters",
                "parameter": [{"name": "note", "valueString": "checked"}],
            },
        ),
    ):
        done = httpx.post(
            f"{server.fhir}/Task/{verify['id']}/{op}", json=body, headers=dh, timeout=60
        )
        assert done.status_code == 200, done.text
    mine = httpx.get(f"{server.fhir}/Task/{case['id']}", headers=h)
    assert mine.status_code == 200
    assert mine.json()["businessStatus"]["coding"][0]["code"] == "DOCTOR_VERIFIED"
    result = httpx.get(f"{server.fhir}/{obs_ref}", headers=h).json()
    assert result["status"] == "final"
    assert result["valueCodeableConcept"]["coding"][0]["code"] in (
        "normal",
        "pneumonia",
    ) or result.get("component")


def test_cadre_uploads_for_a_patient(server, people):
    cadre = _create(server, {"resourceType": "Practitioner", "name": [{"family": "Cadre"}]})
    hc = _token(
        server,
        people["client"],
        make_user(server, "cadre", f"Practitioner/{cadre['id']}"),
        STAFF_SCOPE,
    )
    resp = upload(server, people["other"], hc, "image/png", chest_png())
    assert resp.status_code == 201, resp.text
    case = resp.json()
    assert case["for"]["reference"] == people["other"]
    assert case["requester"]["reference"] == f"Practitioner/{cadre['id']}"
    media = httpx.get(f"{server.fhir}/{case['focus']['reference']}", headers=server.headers).json()
    assert media["operator"]["reference"] == f"Practitioner/{cadre['id']}"


def test_refusals_are_4xx_outcomes_and_write_nothing(server, people):
    me, h = people["me"], people["h"]
    before = _counts(server)
    png = chest_png()
    cases = [
        (people["other"], "image/png", png, 404, "not known"),  # another patient: as unknown
        ("Patient/no-such-patient", "image/png", png, 404, "not known"),
        (me, "text/plain", b"hello", 415, "JPEG, PNG or DICOM"),
        (me, "image/gif", png, 415, "JPEG, PNG or DICOM"),
        (me, "image/png", b"", 400, "empty"),
        (me, "image/png", "not base64!", 400, "base64"),
        (me, "image/jpeg", b"\xff\xd8\xff\xe0 not really a jpeg", 400, "cannot be decoded"),
        (me, "application/dicom", b"\0" * 128 + b"DICM" + b"\1\2\3", 400, "DICOM"),
        (me, "application/dicom", png, 400, "DICOM"),
        (me, "application/dicom", HEAD_CT.read_bytes(), 400, "not a chest radiograph"),
        (me, "image/jpeg", SKIN.read_bytes(), 422, "colour photo, not an X-ray"),
        (me, "image/png", b"\0" * (MAX_BYTES + 1), 413, ""),
    ]
    for patient, kind, data, status, words in cases:
        resp = upload(server, patient, h, kind, data)
        assert resp.status_code == status, (kind, resp.text)
        outcome = resp.json()
        assert outcome["resourceType"] == "OperationOutcome"
        assert words in outcome["issue"][0]["diagnostics"], outcome
    # the other patient's token cannot upload for me either
    assert upload(server, me, people["h_other"], "image/png", png).status_code == 404
    assert _counts(server) == before
