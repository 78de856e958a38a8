"""What the patient portal (/app/portal/) needs from the API, over HTTP with real logins, on both
databases: a patient user books a free Slot of their doctor, accepts a proposed appointment and
cancels one — only their own (another patient's appointment answers 404 exactly as an unknown
id; booking for someone else is refused); they see the doctors' Slots but no other patient's
data; a cadre books for a patient; the report's Binary comes back as the PDF itself when asked
with ``Accept: application/pdf``."""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from tests.fhir_server.auth.smart import (
    bearer,
    code_of,
    exchange,
    login,
    make_client,
    make_user,
    pkce,
)

PORTAL_SCOPE = "openid fhirUser patient/*.cruds"


def _create(server, body: dict) -> dict:  # type: ignore[no-untyped-def]
    resp = httpx.post(f"{server.fhir}/{body['resourceType']}", json=body, headers=server.headers)
    assert resp.status_code == 201, resp.text
    return resp.json()


def _patient(server, family: str) -> str:  # type: ignore[no-untyped-def]
    return (
        "Patient/"
        + _create(server, {"resourceType": "Patient", "name": [{"family": family}]})["id"]
    )


def _slots(server, doctor: str, n: int) -> list[str]:  # type: ignore[no-untyped-def]
    schedule = _create(
        server, {"resourceType": "Schedule", "active": True, "actor": [{"reference": doctor}]}
    )
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(days=3)
    out = []
    for i in range(n):
        s, e = start + timedelta(hours=i), start + timedelta(hours=i, minutes=30)
        slot = _create(
            server,
            {
                "resourceType": "Slot",
                "schedule": {"reference": f"Schedule/{schedule['id']}"},
                "status": "free",
                "start": s.isoformat(),
                "end": e.isoformat(),
            },
        )
        out.append(f"Slot/{slot['id']}")
    return out


def _token(server, client_id: str, user, scope: str) -> dict[str, str]:  # type: ignore[no-untyped-def]
    verifier, challenge = pkce()
    resp = login(server, client_id, user, scope, challenge=challenge)
    token = exchange(server, client_id, code_of(resp), verifier)
    assert token.status_code == 200, token.text
    return bearer(token.json()["access_token"])


def _params(**refs: str) -> dict:
    return {
        "resourceType": "Parameters",
        "parameter": [{"name": k, "valueReference": {"reference": v}} for k, v in refs.items()],
    }


def _op(server, path: str, headers: dict, body: dict | None = None) -> httpx.Response:  # type: ignore[no-untyped-def]
    return httpx.post(
        f"{server.fhir}/{path}",
        json=body or {"resourceType": "Parameters"},
        headers={**headers, "Content-Type": "application/fhir+json"},
        timeout=30,
    )


@pytest.fixture
def portal_app(server):  # type: ignore[no-untyped-def]
    client_id, _ = make_client(server, "public", "openid fhirUser user/*.cruds")
    return client_id


def test_patient_books_accepts_and_cancels_only_their_own(server, portal_app):
    tag = uuid.uuid4().hex[:6]
    me, other = _patient(server, f"Me{tag}"), _patient(server, f"Other{tag}")
    doctor = (
        "Practitioner/"
        + _create(server, {"resourceType": "Practitioner", "name": [{"family": f"Doc{tag}"}]})["id"]
    )
    slots = _slots(server, doctor, 4)
    h = _token(server, portal_app, make_user(server, "patient", me), PORTAL_SCOPE)

    # The doctors' free Slots are visible to the patient (in no compartment, naming no patient).
    found = httpx.get(
        f"{server.fhir}/Slot", params={"status": "free", "_count": "200"}, headers=h
    ).json()
    ids = {f"Slot/{e['resource']['id']}" for e in found.get("entry", [])}
    assert set(slots) <= ids
    assert httpx.get(f"{server.fhir}/{slots[0]}", headers=h).status_code == 200
    # ... but still nothing of another patient, nor the Slots through a write.
    assert httpx.get(f"{server.fhir}/{other}", headers=h).status_code == 404
    slot_put = httpx.put(
        f"{server.fhir}/{slots[0]}",
        json={"resourceType": "Slot", "id": slots[0].split("/")[1], "status": "busy"},
        headers=h,
    )
    assert slot_put.status_code == 403

    # $book for themself: 201, the Slot is busy; for someone else: refused.
    booked = _op(server, "Appointment/$book", h, _params(slot=slots[0], patient=me))
    assert booked.status_code == 201, booked.text
    appt = booked.json()
    assert appt["status"] == "booked"
    assert httpx.get(f"{server.fhir}/{slots[0]}", headers=h).json()["status"] == "busy"
    for_other = _op(server, "Appointment/$book", h, _params(slot=slots[1], patient=other))
    assert for_other.status_code == 403, for_other.text
    assert httpx.get(f"{server.fhir}/{slots[1]}", headers=server.headers).json()["status"] == "free"
    # Plain REST writes of Appointments stay closed to the patient.
    direct = httpx.post(
        f"{server.fhir}/Appointment",
        json={
            "resourceType": "Appointment",
            "status": "booked",
            "participant": [{"actor": {"reference": me}, "status": "accepted"}],
        },
        headers=h,
    )
    assert direct.status_code == 403

    # Another patient's appointment answers exactly as an id that does not exist.
    theirs = _create(
        server,
        {
            "resourceType": "Appointment",
            "status": "proposed",
            "participant": [{"actor": {"reference": other}, "status": "needs-action"}],
        },
    )
    for action in ("$accept", "$cancel"):
        seen = _op(server, f"Appointment/{theirs['id']}/{action}", h)
        unknown = _op(server, f"Appointment/no-such-{tag}/{action}", h)
        assert seen.status_code == unknown.status_code == 404, (seen.text, unknown.text)
        assert seen.json()["issue"][0]["code"] == unknown.json()["issue"][0]["code"]
    moved = _op(server, f"Appointment/{theirs['id']}/$reschedule", h, _params(slot=slots[2]))
    assert moved.status_code == 404
    left = httpx.get(f"{server.fhir}/Appointment/{theirs['id']}", headers=server.headers).json()
    assert left["status"] == "proposed" and left["meta"]["versionId"] == "1"

    # A proposal of their own (the urgent pathway's: its Slot held busy-tentative) they accept.
    held = httpx.get(f"{server.fhir}/{slots[3]}", headers=server.headers).json()
    held["status"] = "busy-tentative"
    assert (
        httpx.put(f"{server.fhir}/{slots[3]}", json=held, headers=server.headers).status_code == 200
    )
    mine = _create(
        server,
        {
            "resourceType": "Appointment",
            "status": "proposed",
            "slot": [{"reference": slots[3]}],
            "participant": [
                {"actor": {"reference": me}, "status": "needs-action"},
                {"actor": {"reference": doctor}, "status": "accepted"},
            ],
        },
    )
    accepted = _op(server, f"Appointment/{mine['id']}/$accept", h)
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["status"] == "booked"
    assert httpx.get(f"{server.fhir}/{slots[3]}", headers=h).json()["status"] == "busy"

    # Cancel their booking: the Slot is free again; a second cancel is a conflict.
    cancelled = _op(server, f"Appointment/{appt['id']}/$cancel", h)
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "cancelled"
    assert httpx.get(f"{server.fhir}/{slots[0]}", headers=h).json()["status"] == "free"
    assert _op(server, f"Appointment/{appt['id']}/$cancel", h).status_code == 409

    # A token of the patient without read on Appointment may not take these steps.
    narrow = _token(
        server, portal_app, make_user(server, "patient", me), "openid patient/Observation.rs"
    )
    refused = _op(server, "Appointment/$book", narrow, _params(slot=slots[1], patient=me))
    assert refused.status_code == 403


def test_cadre_books_for_a_patient(server, portal_app):
    tag = uuid.uuid4().hex[:6]
    patient = _patient(server, f"Cadre{tag}")
    cadre = (
        "Practitioner/"
        + _create(server, {"resourceType": "Practitioner", "name": [{"family": f"Cadre{tag}"}]})[
            "id"
        ]
    )
    doctor = (
        "Practitioner/"
        + _create(server, {"resourceType": "Practitioner", "name": [{"family": f"Doc{tag}"}]})["id"]
    )
    slot = _slots(server, doctor, 1)[0]
    h = _token(
        server, portal_app, make_user(server, "cadre", cadre), "openid fhirUser user/*.cruds"
    )
    booked = _op(server, "Appointment/$book", h, _params(slot=slot, patient=patient))
    assert booked.status_code == 201, booked.text
    # A pharmacist's token has no Appointment write, and the engine does not let them book.
    pharmacist = (
        "Practitioner/"
        + _create(server, {"resourceType": "Practitioner", "name": [{"family": f"Ph{tag}"}]})["id"]
    )
    ph = _token(
        server, portal_app, make_user(server, "pharmacist", pharmacist), "openid user/*.cruds"
    )
    other = _slots(server, doctor, 1)[0]
    assert (
        _op(server, "Appointment/$book", ph, _params(slot=other, patient=patient)).status_code
        == 403
    )


PDF = b"%PDF-1.4\n% a report\n%%EOF\n"


def test_binary_is_served_as_itself_when_its_type_is_asked_for(server, portal_app):
    tag = uuid.uuid4().hex[:6]
    me, other = _patient(server, f"Pdf{tag}"), _patient(server, f"PdfOther{tag}")
    binaries = {}
    for who in (me, other):
        report = _create(
            server,
            {
                "resourceType": "DiagnosticReport",
                "status": "final",
                "code": {"text": "Skin screening report"},
                "subject": {"reference": who},
            },
        )
        binaries[who] = _create(
            server,
            {
                "resourceType": "Binary",
                "contentType": "application/pdf",
                "securityContext": {"reference": f"DiagnosticReport/{report['id']}"},
                "data": base64.b64encode(PDF).decode(),
            },
        )["id"]
    h = _token(server, portal_app, make_user(server, "patient", me), PORTAL_SCOPE)
    url = f"{server.fhir}/Binary/{binaries[me]}"
    raw = httpx.get(url, headers={**h, "Accept": "application/pdf"})
    assert raw.status_code == 200
    assert raw.headers["content-type"] == "application/pdf"
    assert raw.content == PDF
    assert raw.headers["x-content-type-options"] == "nosniff"
    assert "sandbox" in raw.headers["content-security-policy"]
    assert raw.headers["cache-control"] == "no-store"
    assert raw.headers["etag"] == 'W/"1"'
    # vread too; FHIR JSON when asked for FHIR (or nothing), and when _format says so.
    vread = httpx.get(f"{url}/_history/1", headers={**h, "Accept": "application/pdf"})
    assert vread.content == PDF
    as_fhir = httpx.get(url, headers={**h, "Accept": "application/fhir+json"})
    assert as_fhir.json()["resourceType"] == "Binary"
    assert httpx.get(url, headers=h).json()["data"] == base64.b64encode(PDF).decode()
    forced = httpx.get(url, params={"_format": "json"}, headers={**h, "Accept": "application/pdf"})
    assert forced.json()["resourceType"] == "Binary"
    # A type the Binary is not: the FHIR resource, not its bytes under a wrong label.
    png = httpx.get(url, headers={**h, "Accept": "image/png"})
    assert png.headers["content-type"].startswith("application/fhir+json")
    # Another patient's report PDF: 404 as an unknown id, whatever is accepted.
    theirs = httpx.get(
        f"{server.fhir}/Binary/{binaries[other]}", headers={**h, "Accept": "application/pdf"}
    )
    unknown = httpx.get(
        f"{server.fhir}/Binary/none-{tag}", headers={**h, "Accept": "application/pdf"}
    )
    assert theirs.status_code == unknown.status_code == 404
    assert theirs.headers["content-type"].startswith("application/fhir+json")


def _photo(server, patient: str, headers: dict) -> httpx.Response:  # type: ignore[no-untyped-def]
    body = {
        "resourceType": "Media",
        "status": "completed",
        "subject": {"reference": patient},
        "content": {
            "contentType": "image/jpeg",
            "data": base64.b64encode(b"\xff\xd8\xff\xe0 not really a photo").decode(),
            "title": "Lesion photo",
        },
    }
    return httpx.post(f"{server.fhir}/Media", json=body, headers=headers)


def test_patient_uploads_a_photo_and_starts_a_case_only_for_themself(server, portal_app):
    tag = uuid.uuid4().hex[:6]
    me, other = _patient(server, f"Up{tag}"), _patient(server, f"UpOther{tag}")
    h = _token(server, portal_app, make_user(server, "patient", me), PORTAL_SCOPE)
    mine = _photo(server, me, h)
    assert mine.status_code == 201, mine.text
    # A photo of another patient cannot be written (their compartment), nor used.
    assert _photo(server, other, h).status_code == 403
    theirs = _photo(server, other, server.headers).json()

    def start(patient: str, focus: str) -> httpx.Response:
        return _op(
            server,
            "Task/$start-case",
            h,
            {
                "resourceType": "Parameters",
                "parameter": [
                    {"name": "caseType", "valueCode": "skin-screening"},
                    {"name": "patient", "valueReference": {"reference": patient}},
                    {"name": "focus", "valueReference": {"reference": focus}},
                ],
            },
        )

    on_theirs = start(me, f"Media/{theirs['id']}")
    unknown = start(me, f"Media/none-{tag}")
    assert on_theirs.status_code == unknown.status_code == 404, on_theirs.text
    assert on_theirs.json()["issue"][0]["code"] == unknown.json()["issue"][0]["code"]
    assert start(other, f"Media/{mine.json()['id']}").status_code == 403
    started = start(me, f"Media/{mine.json()['id']}")
    assert started.status_code == 201, started.text
    case = started.json()
    assert case["for"] == {"reference": me}
    assert case["businessStatus"]["coding"][0]["code"] == "PENDING_AI"
    # The patient follows their case with their own token.
    seen = httpx.get(f"{server.fhir}/Task/{case['id']}", headers=h)
    assert seen.status_code == 200
    # Plain REST writes of Tasks stay closed to the patient.
    forged = httpx.post(
        f"{server.fhir}/Task",
        json={
            "resourceType": "Task",
            "status": "requested",
            "intent": "order",
            "for": {"reference": me},
        },
        headers=h,
    )
    assert forged.status_code == 403
