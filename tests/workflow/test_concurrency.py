"""Races over HTTP on SQLite and PostgreSQL: 20 people claiming one Task, 50 bookings of 10
Slots — exactly one winner each, never a double assignment."""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import httpx

from tests.workflow.conftest import Fhir, person, photo_media, ref
from tests.workflow.test_cases_http import start, step


def _post(server, path: str, actor: tuple[str, str], params: list[dict]) -> httpx.Response:  # type: ignore[no-untyped-def]
    with httpx.Client(base_url=server.fhir, timeout=120, headers=server.headers) as c:
        return c.post(
            path,
            json={"resourceType": "Parameters", "parameter": params},
            headers={"X-Hearth-Role": actor[0], "X-Hearth-Actor": actor[1]},
        )


def test_twenty_parallel_claims_one_winner(wf_server, fhir, team):
    patient = team["patient"][1]
    case = start(
        fhir, team["cadre"], "skin-screening", patient, ref(photo_media(fhir, patient))
    ).json()
    ai_task = step(fhir, case["id"], "ai-analysis")
    obs = fhir.create(
        {
            "resourceType": "Observation",
            "status": "preliminary",
            "code": {"text": "AI"},
            "subject": case["for"],
            "basedOn": case["basedOn"],
            "valueString": "nv",
        }
    )
    assert (
        fhir.op(
            f"/Task/{ai_task['id']}/$complete",
            team["ai"],
            {"result": {"valueReference": {"reference": ref(obs)}}},
        ).status_code
        == 200
    )
    doctor_task = step(fhir, case["id"], "doctor-review")
    doctors = [("doctor", ref(person(fhir, "Practitioner", f"Doc{n}"))) for n in range(20)]

    def claim(actor):
        return _post(wf_server, f"/Task/{doctor_task['id']}/$claim", actor, [])

    with ThreadPoolExecutor(20) as pool:
        replies = list(pool.map(claim, doctors))
    codes = Counter(r.status_code for r in replies)
    assert codes == {200: 1, 409: 19}, codes
    winner = next(d for d, r in zip(doctors, replies, strict=True) if r.status_code == 200)
    for r in replies:
        if r.status_code == 409:
            assert r.json()["issue"][0]["code"] == "conflict"
    task = fhir.get(f"/Task/{doctor_task['id']}")
    assert task["status"] == "in-progress" and task["owner"] == {"reference": winner[1]}
    history = fhir.get(f"/Task/{doctor_task['id']}/_history")
    claims = [e["resource"] for e in history["entry"] if e["resource"]["status"] == "in-progress"]
    assert len(claims) == 1


def _slots(fhir: Fhir, doctor: str, n: int) -> list[dict]:
    schedule = fhir.create(
        {"resourceType": "Schedule", "active": True, "actor": [{"reference": doctor}]}
    )
    base = datetime.now(UTC).replace(microsecond=0, second=0) + timedelta(days=3)
    out = []
    for i in range(n):
        s = base + timedelta(minutes=20 * i)
        out.append(
            fhir.create(
                {
                    "resourceType": "Slot",
                    "schedule": {"reference": ref(schedule)},
                    "status": "free",
                    "start": s.isoformat().replace("+00:00", "Z"),
                    "end": (s + timedelta(minutes=20)).isoformat().replace("+00:00", "Z"),
                }
            )
        )
    return out


def test_fifty_parallel_bookings_of_ten_slots(wf_server, fhir, team):
    slots = _slots(fhir, team["doctor"][1], 10)
    patients = [ref(person(fhir, "Patient", f"Booker{n}")) for n in range(50)]

    def book(n: int) -> httpx.Response:
        return _post(
            wf_server,
            "/Appointment/$book",
            team["cadre"],
            [
                {"name": "slot", "valueReference": {"reference": ref(slots[n % 10])}},
                {"name": "patient", "valueReference": {"reference": patients[n]}},
            ],
        )

    with ThreadPoolExecutor(50) as pool:
        replies = list(pool.map(book, range(50)))
    codes = Counter(r.status_code for r in replies)
    assert codes == {201: 10, 409: 40}, codes
    booked = [r.json() for r in replies if r.status_code == 201]
    assert sorted(a["slot"][0]["reference"] for a in booked) == sorted(ref(s) for s in slots)
    for s in slots:
        assert fhir.get(f"/Slot/{s['id']}")["status"] == "busy"
        appts = fhir.search("Appointment", slot=ref(s), status="booked")
        assert len(appts) == 1


def test_cancel_and_reschedule_free_and_take_slots(fhir, team):
    a, b, c = _slots(fhir, team["doctor"][1], 3)
    patient = team["patient"]
    book = fhir.op(
        "/Appointment/$book",
        patient,
        {
            "slot": {"valueReference": {"reference": ref(a)}},
            "patient": {"valueReference": {"reference": patient[1]}},
            "reason": {"valueString": "Follow-up of skin lesion"},
        },
    )
    assert book.status_code == 201, book.text
    appt = book.json()
    assert appt["status"] == "booked" and appt["start"] == a["start"]
    # Someone else's appointment cannot be moved by this patient; a taken slot is refused.
    other = fhir.op(
        "/Appointment/$book",
        team["cadre"],
        {
            "slot": {"valueReference": {"reference": ref(c)}},
            "patient": {"valueReference": {"reference": ref(person(fhir, "Patient", "Else"))}},
        },
    ).json()
    assert fhir.op(f"/Appointment/{other['id']}/$cancel", patient).status_code == 403
    assert (
        fhir.op(
            f"/Appointment/{appt['id']}/$reschedule",
            patient,
            {"slot": {"valueReference": {"reference": ref(c)}}},
        ).status_code
        == 409
    )
    moved = fhir.op(
        f"/Appointment/{appt['id']}/$reschedule",
        patient,
        {"slot": {"valueReference": {"reference": ref(b)}}},
    )
    assert moved.status_code == 200 and moved.json()["start"] == b["start"]
    assert fhir.get(f"/Slot/{a['id']}")["status"] == "free"
    assert fhir.get(f"/Slot/{b['id']}")["status"] == "busy"
    cancelled = fhir.op(
        f"/Appointment/{appt['id']}/$cancel", patient, {"reason": {"valueString": "travelling"}}
    )
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert fhir.get(f"/Slot/{b['id']}")["status"] == "free"
    assert fhir.op(f"/Appointment/{appt['id']}/$cancel", patient).status_code == 409
    assert (
        fhir.op(
            f"/Appointment/{appt['id']}/$reschedule",
            patient,
            {"slot": {"valueReference": {"reference": ref(a)}}},
        ).status_code
        == 409
    )
