"""`$start-case` with a client's ``key`` (the portal's offline capture queue, docs/webapp.md):
a retry after a lost response returns the case already started, never a second one; a key is
scoped to its patient; a malformed key is a clear 400. The photo itself is a conditional create
on the client's identifier, so its retry makes no second Media either. Both databases."""

from __future__ import annotations

import base64
import uuid

from tests.shared import shared_path
from tests.workflow.conftest import person, photo_media, ref

CASE = "http://hearth.local/fhir/CodeSystem/workflow-case"
CAPTURE = "urn:hearth:portal-capture"


def start(fhir, actor, patient: str, focus: str, key: str | None):  # type: ignore[no-untyped-def]
    params: dict = {
        "caseType": {"valueCode": "skin-screening"},
        "patient": {"valueReference": {"reference": patient}},
        "focus": {"valueReference": {"reference": focus}},
    }
    if key is not None:
        params["key"] = {"valueString": key}
    return fhir.op("/Task/$start-case", actor, params)


def media_once(fhir, patient: str, key: str) -> tuple[int, dict]:  # type: ignore[no-untyped-def]
    body = {
        "resourceType": "Media",
        "status": "completed",
        "identifier": [{"system": CAPTURE, "value": key}],
        "subject": {"reference": patient},
        "bodySite": {"text": "Arm"},
        "content": {
            "contentType": "image/jpeg",
            "data": base64.b64encode(
                shared_path("data", "skin_photos", "ISIC_0024310.jpg").read_bytes()
            ).decode(),
        },
    }
    resp = fhir.http.post(
        "/Media", json=body, headers={"If-None-Exist": f"identifier={CAPTURE}|{key}"}
    )
    assert resp.status_code in (200, 201), resp.text
    return resp.status_code, resp.json()


def cases_of(fhir, patient: str) -> list[dict]:  # type: ignore[no-untyped-def]
    return [
        t
        for t in fhir.search("Task", patient=patient, code=f"{CASE}|skin-screening")
        if "partOf" not in t
    ]


def test_a_retried_capture_makes_one_media_and_one_case(fhir, team):  # type: ignore[no-untyped-def]
    patient = team["patient"][1]
    key = str(uuid.uuid4())
    first_status, media = media_once(fhir, patient, key)
    again_status, again = media_once(fhir, patient, key)
    assert (first_status, again_status) == (201, 200)
    assert again["id"] == media["id"]
    assert len(fhir.search("Media", subject=patient)) == 1

    first = start(fhir, team["cadre"], patient, ref(media), key)
    assert first.status_code == 201, first.text
    retry = start(fhir, team["cadre"], patient, ref(media), key)
    assert retry.status_code in (200, 201), retry.text
    assert retry.json()["id"] == first.json()["id"]
    assert [c["id"] for c in cases_of(fhir, patient)] == [first.json()["id"]]

    # Without a key each start is a new case (as before).
    other = start(fhir, team["cadre"], patient, ref(media), None)
    assert other.status_code == 201 and other.json()["id"] != first.json()["id"]
    assert len(cases_of(fhir, patient)) == 2


def test_a_key_never_finds_another_patients_case(fhir, team):  # type: ignore[no-untyped-def]
    patient = team["patient"][1]
    stranger = ref(person(fhir, "Patient", f"Other{uuid.uuid4().hex[:6]}"))
    key = str(uuid.uuid4())
    _, mine = media_once(fhir, patient, key)
    theirs = photo_media(fhir, stranger)
    a = start(fhir, team["cadre"], patient, ref(mine), key)
    b = start(fhir, team["cadre"], stranger, ref(theirs), key)
    assert a.status_code == 201 and b.status_code == 201, (a.text, b.text)
    assert a.json()["id"] != b.json()["id"]
    assert b.json()["for"] == {"reference": stranger}


def test_a_malformed_key_is_a_clear_400(fhir, team):  # type: ignore[no-untyped-def]
    patient = team["patient"][1]
    media = photo_media(fhir, patient)
    for bad in ("short", "x" * 65, "has space in it", "a/b/c/d/e/f"):
        resp = start(fhir, team["cadre"], patient, ref(media), bad)
        assert resp.status_code == 400, (bad, resp.text)
        assert resp.json()["resourceType"] == "OperationOutcome"
        assert "key must be" in resp.text
    assert cases_of(fhir, patient) == []
