"""Treatment plans that book, refer and show their progress, over HTTP on both databases: a
plan's ``appointment`` activity books a free Slot of the chosen doctor (the first from
``dueInDays`` on, or the one named) as ``$book`` does, ``basedOn`` the case's order; two plans
racing for one named Slot get one 201 and one 409 (nothing written for the loser), two racing
for "the first free" get two different Slots; the plan's status follows its activities (the
follow-up Task completed and the appointment fulfilled → the plan ``completed``; one reopened →
``active``); ``$refer`` and ``$book`` with ``basedOn`` make the case view's referral and booking
without a plan; bad input is a 4xx OperationOutcome with nothing written; a patient's own token
finds their plan with its activities, and another patient's plan answers 404."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime, timedelta

import httpx

from tests.fhir_server.auth.smart import (
    bearer,
    code_of,
    exchange,
    login,
    make_client,
    make_user,
    pkce,
)
from tests.workflow.conftest import photo_media, ref
from tests.workflow.test_careplan_http import activity
from tests.workflow.test_cases_http import start, step

OUTCOME = "OperationOutcome"


def slots(fhir, doctor: str, days: list[int]) -> list[str]:  # type: ignore[no-untyped-def]
    """One free half-hour Slot ``days`` days from now each, on a new Schedule of ``doctor``."""
    schedule = fhir.create(
        {"resourceType": "Schedule", "active": True, "actor": [{"reference": doctor}]}
    )
    base = datetime.now(UTC).replace(microsecond=0, second=0) + timedelta(hours=1)
    out = []
    for d in days:
        s = base + timedelta(days=d)
        slot = fhir.create(
            {
                "resourceType": "Slot",
                "schedule": {"reference": ref(schedule)},
                "status": "free",
                "start": s.isoformat(),
                "end": (s + timedelta(minutes=30)).isoformat(),
            }
        )
        out.append(ref(slot))
    return out


def new_case(fhir, team) -> dict:  # type: ignore[no-untyped-def]
    patient = team["patient"][1]
    media = photo_media(fhir, patient)
    return start(fhir, team["cadre"], "skin-screening", patient, ref(media)).json()


def plan(title: str, *activities: dict) -> dict:
    return {"title": {"valueString": title}, "activity": list(activities)}


def visit(**parts: object) -> dict:
    """An ``appointment`` activity (references as valueReference parts)."""
    body = activity(kind="appointment", **{k: v for k, v in parts.items() if k not in ("practitioner", "slot")})  # fmt: skip
    for name in ("practitioner", "slot"):
        if name in parts:
            body["part"].append({"name": name, "valueReference": {"reference": parts[name]}})
    return body


def test_a_plan_books_a_follow_up_visit_and_its_progress_follows(fhir, team):  # type: ignore[no-untyped-def]
    doctor = team["doctor"][1]
    # A Slot too early for "in 2 weeks", then the two the plan may take.
    early, due, later = slots(fhir, doctor, [3, 15, 16])
    case = new_case(fhir, team)
    body = plan(
        "Watch the naevus",
        activity(kind="follow-up-photo", description="Photo of the lesion", dueInDays=90),
        visit(description="Follow-up visit", dueInDays=14, practitioner=doctor),
    )
    made = fhir.op(f"/Task/{case['id']}/$plan-treatment", team["doctor"], body)
    assert made.status_code == 201, made.text
    careplan = made.json()
    task_ref, appt_ref = (a["reference"]["reference"] for a in careplan["activity"])
    appt = fhir.get(f"/{appt_ref}")
    assert appt_ref.startswith("Appointment/") and appt["status"] == "booked"
    assert appt["slot"] == [{"reference": due}]  # the first free Slot from day 14 on
    assert appt["basedOn"] == case["basedOn"] and appt["description"] == "Follow-up visit"
    actors = [p["actor"]["reference"] for p in appt["participant"]]
    assert actors == [team["patient"][1], doctor]
    assert fhir.get(f"/{due}")["status"] == "busy"
    assert fhir.get(f"/{early}")["status"] == "free" == fhir.get(f"/{later}")["status"]
    # The plan is found from the activity (R4 CarePlan activity-reference).
    found = fhir.search("CarePlan", **{"activity-reference": appt_ref})
    assert [p["id"] for p in found] == [careplan["id"]]

    # Progress: the photo comes, the visit happens → the plan is completed.
    task = fhir.get(f"/{task_ref}")
    task.pop("meta", None)
    assert fhir.http.put(f"/{task_ref}", json={**task, "status": "completed"}).status_code == 200
    assert fhir.get(f"/CarePlan/{careplan['id']}")["status"] == "active"
    appt.pop("meta", None)
    put = fhir.http.put(f"/{appt_ref}", json={**appt, "status": "fulfilled"})
    assert put.status_code == 200, put.text
    assert fhir.get(f"/CarePlan/{careplan['id']}")["status"] == "completed"
    # Reopened (entered again as booked): the plan is active again.
    again = {**fhir.get(f"/{appt_ref}"), "status": "booked"}
    again.pop("meta", None)
    assert fhir.http.put(f"/{appt_ref}", json=again).status_code == 200
    assert fhir.get(f"/CarePlan/{careplan['id']}")["status"] == "active"


def test_a_cancelled_plan_appointment_frees_its_slot_and_shows_cancelled(fhir, team):  # type: ignore[no-untyped-def]
    doctor = team["doctor"][1]
    (slot,) = slots(fhir, doctor, [20])
    case = new_case(fhir, team)
    body = plan("Visit only", visit(description="Visit", slot=slot, practitioner=doctor))
    made = fhir.op(f"/Task/{case['id']}/$plan-treatment", team["doctor"], body)
    assert made.status_code == 201, made.text
    appt_ref = made.json()["activity"][0]["reference"]["reference"]
    cancelled = fhir.op(f"/{appt_ref}/$cancel", team["patient"], {})
    assert cancelled.status_code == 200, cancelled.text
    assert fhir.get(f"/{appt_ref}")["status"] == "cancelled"
    assert fhir.get(f"/{slot}")["status"] == "free"
    # Its only activity ended: the plan is completed (R4: all activities done).
    assert fhir.get(f"/CarePlan/{made.json()['id']}")["status"] == "completed"


def test_a_plan_proposes_a_visit_the_patient_accepts(fhir, team):  # type: ignore[no-untyped-def]
    doctor = team["doctor"][1]
    (slot,) = slots(fhir, doctor, [25])
    case = new_case(fhir, team)
    proposal = visit(description="Visit, if it suits you", practitioner=doctor, dueInDays=24)
    proposal["part"].append({"name": "propose", "valueBoolean": True})
    made = fhir.op(f"/Task/{case['id']}/$plan-treatment", team["doctor"], plan("Offer", proposal))
    assert made.status_code == 201, made.text
    appt_ref = made.json()["activity"][0]["reference"]["reference"]
    assert fhir.get(f"/{appt_ref}")["status"] == "proposed"
    assert fhir.get(f"/{slot}")["status"] == "busy-tentative"
    accepted = fhir.op(f"/{appt_ref}/$accept", team["patient"], {})
    assert accepted.status_code == 200, accepted.text
    assert fhir.get(f"/{appt_ref}")["status"] == "booked"
    assert fhir.get(f"/{slot}")["status"] == "busy"
    assert fhir.get(f"/CarePlan/{made.json()['id']}")["status"] == "active"
    bad = activity(kind="referral", description="not proposable")
    bad["part"].append({"name": "propose", "valueBoolean": True})
    r = fhir.op(f"/Task/{case['id']}/$plan-treatment", team["doctor"], plan("Bad", bad))
    assert r.status_code == 400 and r.json()["resourceType"] == OUTCOME, r.text


def _race(fhir, calls: list[tuple[str, tuple, dict]]) -> list[httpx.Response]:  # type: ignore[no-untyped-def]
    barrier = threading.Barrier(len(calls))
    out: list = [None] * len(calls)

    def go(n: int) -> None:
        path, actor, params = calls[n]
        barrier.wait()
        out[n] = fhir.op(path, actor, params)

    threads = [threading.Thread(target=go, args=(n,)) for n in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


def test_two_plans_racing_for_one_slot(fhir, team):  # type: ignore[no-untyped-def]
    doctor = team["doctor"][1]
    (slot,) = slots(fhir, doctor, [30])
    cases = [new_case(fhir, team) for _ in range(2)]
    calls = [
        (
            f"/Task/{c['id']}/$plan-treatment",
            team["doctor"],
            plan("Race", visit(description="Visit", slot=slot)),
        )  # fmt: skip
        for c in cases
    ]
    answers = _race(fhir, calls)
    assert sorted(r.status_code for r in answers) == [201, 409], [r.text for r in answers]
    loser = next(r for r in answers if r.status_code == 409)
    assert loser.json()["resourceType"] == OUTCOME
    booked = fhir.search("Appointment", slot=slot)
    assert len(booked) == 1 and booked[0]["status"] == "booked"
    # The losing case got no plan (nothing half-written).
    outputs = [
        o for c in cases for o in fhir.get(f"/Task/{c['id']}").get("output", [])
        if o["type"]["coding"][0]["code"] == "CarePlan"
    ]  # fmt: skip
    assert len(outputs) == 1


def test_two_plans_picking_the_first_free_slot_get_two(fhir, team):  # type: ignore[no-untyped-def]
    doctor = team["doctor2"][1]
    two = slots(fhir, doctor, [40, 41])
    cases = [new_case(fhir, team) for _ in range(2)]
    visit_in = visit(description="Visit", dueInDays=39, practitioner=doctor)
    calls = [
        (f"/Task/{c['id']}/$plan-treatment", team["doctor"], plan("Pick", visit_in)) for c in cases
    ]
    answers = _race(fhir, calls)
    assert [r.status_code for r in answers] == [201, 201], [r.text for r in answers]
    taken = sorted(
        fhir.get(f"/{r.json()['activity'][0]['reference']['reference']}")["slot"][0]["reference"]
        for r in answers
    )
    assert taken == sorted(two)
    # A third finds none free from day 39: 409 saying so, nothing written.
    third = new_case(fhir, team)
    r = fhir.op(f"/Task/{third['id']}/$plan-treatment", team["doctor"], plan("None", visit_in))
    assert r.status_code == 409 and "no free Slot" in r.text, r.text
    assert not fhir.get(f"/Task/{third['id']}").get("output")


def test_bad_appointment_activities_are_refused(fhir, team):  # type: ignore[no-untyped-def]
    doctor, other = team["doctor"][1], team["doctor2"][1]
    (slot,) = slots(fhir, doctor, [50])
    case = new_case(fhir, team)
    url = f"/Task/{case['id']}/$plan-treatment"
    bad = [
        (400, visit(description="nowhere")),
        (400, visit(description="not a slot", slot=team["patient"][1])),
        (400, visit(description="not a doctor", practitioner=team["patient"][1])),
        (400, visit(description="someone else's slot", slot=slot, practitioner=other)),
        (404, visit(description="unknown slot", slot="Slot/no-such-slot")),
        (400, visit(description="too late", practitioner=doctor, dueInDays=99999)),
    ]
    for status, a in bad:
        r = fhir.op(url, team["doctor"], plan("Bad", a))
        assert r.status_code == status and r.json()["resourceType"] == OUTCOME, (a, r.text)
    assert fhir.get(f"/{slot}")["status"] == "free"
    assert not fhir.get(f"/Task/{case['id']}").get("output")


def test_refer_from_the_case_view(fhir, team):  # type: ignore[no-untyped-def]
    case = new_case(fhir, team)
    patient = team["patient"][1]
    finding = fhir.create(
        {
            "resourceType": "Observation",
            "status": "final",
            "code": {"text": "Doctor's finding"},
            "subject": {"reference": patient},
            "valueString": "Atypical naevus",
        }
    )
    clinic = fhir.create({"resourceType": "Organization", "name": "Skin clinic"})
    url = f"/Task/{case['id']}/$refer"
    params = {
        "description": {"valueString": "Excision biopsy"},
        "performer": {"valueReference": {"reference": ref(clinic)}},
        "reason": {"valueReference": {"reference": ref(finding)}},
        "dueInDays": {"valueInteger": 21},
    }
    made = fhir.op(url, team["doctor"], params)
    assert made.status_code == 201, made.text
    sr = made.json()
    assert made.headers["location"].endswith(f"/ServiceRequest/{sr['id']}")
    assert sr["performer"] == [{"reference": ref(clinic)}]
    assert sr["reasonReference"] == [{"reference": ref(finding)}]
    assert sr["basedOn"] == case["basedOn"] and sr["subject"] == {"reference": patient}
    assert sr["code"]["text"] == "Excision biopsy" and sr["status"] == "active"
    outputs = [
        o["valueReference"]["reference"] for o in fhir.get(f"/Task/{case['id']}")["output"]
        if o["type"]["coding"][0]["code"] == "referral"
    ]  # fmt: skip
    assert outputs == [f"ServiceRequest/{sr['id']}"]
    found = fhir.search("ServiceRequest", **{"based-on": case["basedOn"][0]["reference"]})
    assert f"ServiceRequest/{sr['id']}" in [ref(s) for s in found]

    other_patient = fhir.create({"resourceType": "Patient", "name": [{"family": "Else"}]})
    elses = fhir.create({**{k: v for k, v in finding.items() if k not in ("id", "meta")}, "subject": {"reference": ref(other_patient)}})  # fmt: skip
    bad = [
        (400, {"performer": params["performer"]}),  # no description
        (400, {**params, "description": {"valueString": " "}}),
        (400, {**params, "performer": {"valueReference": {"reference": patient}}}),
        (400, {**params, "reason": {"valueReference": {"reference": ref(elses)}}}),
        (400, {**params, "reason": {"valueReference": {"reference": ref(clinic)}}}),
        (400, {**params, "dueInDays": {"valueInteger": -1}}),
        (404, {**params, "performer": {"valueReference": {"reference": "Organization/nope"}}}),
    ]
    for status, body in bad:
        r = fhir.op(url, team["doctor"], body)
        assert r.status_code == status and r.json()["resourceType"] == OUTCOME, (body, r.text)
    for who in ("cadre", "pharmacist", "admin", "patient"):
        assert fhir.op(url, team[who], params).status_code == 403, who
    a_step = step(fhir, case["id"], "doctor-review")
    assert fhir.op(f"/Task/{a_step['id']}/$refer", team["doctor"], params).status_code == 400
    assert fhir.op("/Task/nope/$refer", team["doctor"], params).status_code == 404
    assert len(fhir.search("ServiceRequest", **{"based-on": case["basedOn"][0]["reference"]})) == len(found)  # fmt: skip


def test_book_for_the_case_from_the_case_view(fhir, team):  # type: ignore[no-untyped-def]
    a, b = slots(fhir, team["doctor"][1], [60, 61])
    case = new_case(fhir, team)
    patient = team["patient"][1]
    order = case["basedOn"][0]["reference"]

    def book(slot: str, **more: str) -> httpx.Response:
        refs = {"slot": slot, "patient": patient, **more}
        params = {k: {"valueReference": {"reference": v}} for k, v in refs.items()}
        return fhir.op("/Appointment/$book", team["doctor"], {**params, "reason": {"valueString": "Review"}})  # fmt: skip

    made = book(a, basedOn=order)
    assert made.status_code == 201, made.text
    assert made.json()["basedOn"] == [{"reference": order}]
    assert [ref(x) for x in fhir.search("Appointment", **{"based-on": order})] == [
        f"Appointment/{made.json()['id']}"
    ]
    other = fhir.create({"resourceType": "Patient", "name": [{"family": "Other"}]})
    other_case = start(fhir, team["cadre"], "skin-screening", ref(other), ref(photo_media(fhir, ref(other)))).json()  # fmt: skip
    for bad in (other_case["basedOn"][0]["reference"], patient):
        r = book(b, basedOn=bad)
        assert r.status_code == 400 and r.json()["resourceType"] == OUTCOME, r.text
    assert book(b, basedOn="ServiceRequest/nope").status_code == 404
    assert fhir.get(f"/{b}")["status"] == "free"
    assert book(a).status_code == 409  # taken


def _patient_token(server, patient: str) -> dict[str, str]:  # type: ignore[no-untyped-def]
    scope = "openid fhirUser patient/*.cruds"
    client_id, _ = make_client(server, "public", "openid fhirUser user/*.cruds")
    verifier, challenge = pkce()
    resp = login(server, client_id, make_user(server, "patient", patient), scope, challenge=challenge)  # fmt: skip
    token = exchange(server, client_id, code_of(resp), verifier)
    assert token.status_code == 200, token.text
    return bearer(token.json()["access_token"])


def test_the_patient_sees_their_own_plan_only(wf_server, fhir, team):  # type: ignore[no-untyped-def]
    doctor = team["doctor"][1]
    (slot,) = slots(fhir, doctor, [70])
    mine = new_case(fhir, team)
    body = plan(
        "Watch and review",
        activity(kind="follow-up-photo", description="Photo in 3 months", dueInDays=90),
        activity(kind="referral", description="Excision biopsy", dueInDays=30),
        visit(description="Review visit", slot=slot),
    )
    made = fhir.op(f"/Task/{mine['id']}/$plan-treatment", team["doctor"], body)
    assert made.status_code == 201, made.text
    careplan = made.json()
    other = fhir.create({"resourceType": "Patient", "name": [{"family": f"O{uuid.uuid4().hex[:6]}"}]})  # fmt: skip
    theirs_case = start(fhir, team["cadre"], "skin-screening", ref(other), ref(photo_media(fhir, ref(other)))).json()  # fmt: skip
    theirs = fhir.op(f"/Task/{theirs_case['id']}/$plan-treatment", team["doctor"], plan("Other's", activity(kind="referral", description="Theirs")))  # fmt: skip
    assert theirs.status_code == 201

    h = _patient_token(wf_server, team["patient"][1])
    get = lambda path, **q: httpx.get(f"{wf_server.fhir}/{path}", params=q, headers=h, timeout=30)  # noqa: E731
    found = get("CarePlan", _include="CarePlan:activity-reference").json()
    plans = [e["resource"] for e in found.get("entry", []) if e["search"]["mode"] == "match"]
    included = {ref(e["resource"]) for e in found.get("entry", []) if e["search"]["mode"] == "include"}  # fmt: skip
    assert [p["id"] for p in plans] == [careplan["id"]]
    assert included == {a["reference"]["reference"] for a in careplan["activity"]}
    assert get(f"CarePlan/{careplan['id']}").status_code == 200
    # Another patient's plan and its activities: 404 exactly as an unknown id.
    for r in [f"CarePlan/{theirs.json()['id']}", theirs.json()["activity"][0]["reference"]["reference"], "CarePlan/nope"]:  # fmt: skip
        resp = get(r)
        assert resp.status_code == 404 and resp.json()["resourceType"] == OUTCOME, r
    assert get("CarePlan", subject=ref(other)).json().get("total", 0) == 0
    # Booking for an order: their own case's, yes; another patient's answers 404 like an unknown id.
    free = slots(fhir, doctor, [71])[0]

    def book(order: str) -> httpx.Response:
        refs = {"slot": free, "patient": team["patient"][1], "basedOn": order}
        body = {"resourceType": "Parameters", "parameter": [{"name": k, "valueReference": {"reference": v}} for k, v in refs.items()]}  # fmt: skip
        return httpx.post(f"{wf_server.fhir}/Appointment/$book", json=body, headers=h, timeout=30)

    for order in (theirs_case["basedOn"][0]["reference"], "ServiceRequest/nope"):
        resp = book(order)
        assert resp.status_code == 404 and resp.json()["resourceType"] == OUTCOME, resp.text
    assert fhir.get(f"/{free}")["status"] == "free"
    mine_booked = book(mine["basedOn"][0]["reference"])
    assert mine_booked.status_code == 201, mine_booked.text
