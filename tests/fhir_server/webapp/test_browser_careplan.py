"""The patient follows their care plan in the portal (/app/portal/) on a phone, in Debian chromium
driven by Playwright against a running Hearth on SQLite: the doctor's plan for a case
(``$plan-treatment``: a follow-up photo in 3 months, an excision referral, a medication and a
follow-up visit booked in the doctor's first free Slot in 2 weeks) shows on Home as "Your doctor
made a care plan", and "My care plan" lists each activity in plain words with its status and
date — the booked visit with its time; the photo sent (Task completed) reads "Done"; another
patient's plan never shows. The screen is kept as test-artefacts/webapp/portal-careplan-phone.png."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from playwright.sync_api import expect

from tests.fhir_server.auth.smart import make_user
from tests.fhir_server.webapp.browser import device, fits, shot, sign_in, watch
from tests.workflow.conftest import Fhir, person, photo_media, ref
from tests.workflow.test_careplan_http import activity


def _case(operator: Fhir, cadre: str, patient: str) -> dict:
    params = {
        "caseType": {"valueCode": "skin-screening"},
        "patient": {"valueReference": {"reference": patient}},
        "focus": {"valueReference": {"reference": ref(photo_media(operator, patient))}},
    }
    made = operator.op("/Task/$start-case", ("cadre", cadre), params)
    assert made.status_code == 201, made.text
    return made.json()


def _plan(operator: Fhir, doctor: str, case: dict, title: str, *activities: dict) -> dict:
    body = {"title": {"valueString": title}, "activity": list(activities)}
    made = operator.op(f"/Task/{case['id']}/$plan-treatment", ("doctor", doctor), body)
    assert made.status_code == 201, made.text
    return made.json()


def test_patient_follows_their_care_plan_on_a_phone(hearth, browser):
    operator = Fhir(hearth.fhir, hearth.headers)
    tag, secret = uuid.uuid4().hex[:6], uuid.uuid4().hex[:8]
    me, other = person(operator, "Patient", f"Plan{tag}"), person(operator, "Patient", f"Else{tag}")
    cadre = ref(person(operator, "Practitioner", f"Cadre{tag}"))
    doctor = ref(person(operator, "Practitioner", f"Doctor{tag}"))
    schedule = operator.create(
        {"resourceType": "Schedule", "active": True, "actor": [{"reference": doctor}]}
    )
    start = (datetime.now(UTC) + timedelta(days=15)).replace(hour=9, minute=0, second=0, microsecond=0)  # fmt: skip
    slot = operator.create(
        {
            "resourceType": "Slot",
            "schedule": {"reference": ref(schedule)},
            "status": "free",
            "start": start.isoformat(),
            "end": (start + timedelta(minutes=30)).isoformat(),
        }
    )
    visit = activity(kind="appointment", description="Check the scar", dueInDays=14)
    visit["part"].append({"name": "practitioner", "valueReference": {"reference": doctor}})
    plan = _plan(
        operator,
        doctor,
        _case(operator, cadre, ref(me)),
        "Watch and excise",
        activity(kind="follow-up-photo", description="Photo of the left forearm spot", dueInDays=90),
        activity(kind="referral", description="Excision biopsy, skin clinic", dueInDays=30),
        activity(kind="medication", description="Until the biopsy", medication="Chlorhexidine 0.05% solution", dosage="Clean the area once daily"),
        visit,
    )  # fmt: skip
    photo_task, _, _, appointment = (a["reference"]["reference"] for a in plan["activity"])
    assert operator.get(f"/{appointment}")["slot"] == [{"reference": ref(slot)}]
    # The patient sent the follow-up photo: its Task is completed.
    task = operator.get(f"/{photo_task}")
    task.pop("meta", None)
    operator.http.put(f"/{photo_task}", json={**task, "status": "completed"}).raise_for_status()
    _plan(
        operator,
        doctor,
        _case(operator, cadre, ref(other)),
        f"Someone else's plan {secret}",
        activity(kind="referral", description=f"Their referral {secret}"),
    )

    user = make_user(hearth, "patient", ref(me))
    outside: list[str] = []
    errors: list[str] = []
    page = browser.new_context(**device("phone")).new_page()
    watch(page, errors, outside=outside, allowed=(hearth.root,))
    sign_in(page, hearth.root, user)

    item = page.locator("section.attention").get_by_role(
        "link", name="Your doctor made a care plan: “Watch and excise”"
    )
    expect(item).to_be_visible()
    item.click()
    expect(page.get_by_role("heading", name="My care plan", level=1)).to_be_visible()
    card = page.locator(f"[data-careplan='{plan['id']}']")
    expect(card.get_by_role("heading", name="Watch and excise")).to_be_visible()
    expect(card).to_contain_text("1 of 4 steps done")
    steps = card.locator("li.activity")
    expect(steps).to_have_count(4)
    photo, referral, medicine, booked = (steps.nth(n) for n in range(4))
    expect(photo).to_contain_text("Send a new photo of the skin spot")
    expect(photo).to_contain_text("Done")
    expect(referral).to_contain_text("Referral: Excision biopsy, skin clinic")
    expect(referral).to_contain_text("Arranged — you will be contacted")
    expect(referral).to_contain_text("by ")
    expect(medicine).to_contain_text("Take Chlorhexidine 0.05% solution")
    expect(medicine).to_contain_text("Clean the area once daily")
    expect(medicine).to_contain_text("Ongoing")
    expect(booked).to_contain_text("Follow-up visit")
    expect(booked).to_contain_text("Check the scar")
    expect(booked).to_contain_text("Booked")
    expect(booked).to_contain_text(f"on {start.strftime('%a %-d %b %Y')}")
    expect(page.get_by_text(secret)).to_have_count(0)  # nothing of the other patient
    assert fits(page)
    shot(page, "portal-careplan-phone")
    assert not outside, outside
    assert not errors, errors
    operator.close()
