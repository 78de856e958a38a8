"""The portal's Medicines screen (#/medicines, src/prescriptions.jsx) in Debian chromium, desktop
and phone: the patient's active prescriptions with their dosage text and the reminder times Hearth
sends for them (workflow/reminders.py: timeOfDay and `when` codes at fixed times, or a frequency per
period); a timing Hearth does not read says no reminder is sent; a stopped prescription and another
patient's do not show. Each reminded prescription shows its next reminder, which the server
computes with the worker's rule (``$next-reminder``), in the patient's time zone (here the server's
default, UTC) whatever the browser's zone (the browser runs in Africa/Nairobi)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, time, timedelta

import pytest
from playwright.sync_api import expect

from tests.fhir_server.auth.smart import make_user
from tests.fhir_server.webapp.browser import device, fits, shot, sign_in, watch
from tests.workflow.conftest import Fhir, person, ref


def prescription(fhir: Fhir, patient: str, name: str, text: str, repeat: dict, **extra) -> dict:  # type: ignore[no-untyped-def]
    return fhir.create(
        {
            "resourceType": "MedicationRequest",
            "status": extra.pop("status", "active"),
            "intent": "order",
            "subject": {"reference": patient},
            "medicationCodeableConcept": {"text": name},
            "authoredOn": datetime.now(UTC).replace(microsecond=0).isoformat(),
            "dosageInstruction": [{"text": text, "timing": {"repeat": repeat}}],
            **extra,
        }
    )


@pytest.mark.parametrize("viewport", ["desktop", "phone"])
def test_patient_sees_prescriptions_with_their_reminder_times(hearth, browser, viewport):
    operator = Fhir(hearth.fhir, hearth.headers)
    tag = uuid.uuid4().hex[:6]
    me = ref(person(operator, "Patient", f"Meds{tag}"))
    other = ref(person(operator, "Patient", f"Else{tag}"))
    end = (datetime.now(UTC) + timedelta(days=10)).date().isoformat()
    timed = prescription(
        operator, me, f"Amoxicillin 500 mg {tag}", "One capsule three times a day with water",
        {"timeOfDay": ["20:00:00", "08:00:00"], "when": ["NOON"],
         "boundsPeriod": {"start": "2026-01-01", "end": end}},
    )  # fmt: skip
    every = prescription(
        operator, me, f"Paracetamol {tag}", "Two tablets every eight hours",
        {"frequency": 3, "period": 1, "periodUnit": "d"},
    )  # fmt: skip
    weekly = prescription(
        operator, me, f"Methotrexate {tag}", "Once a week, on Mondays",
        {"frequency": 1, "period": 1, "periodUnit": "wk", "dayOfWeek": ["mon"]},
    )  # fmt: skip
    prescription(
        operator, me, f"Stopped {tag}", "No longer taken",
        {"timeOfDay": ["09:00:00"]}, status="stopped",
    )  # fmt: skip
    prescription(operator, other, f"Theirs {tag}", "Not yours", {"timeOfDay": ["09:00:00"]})
    user = make_user(hearth, "patient", me)
    errors: list[str] = []
    context = browser.new_context(**device(viewport), timezone_id="Africa/Nairobi")
    page = watch(context.new_page(), errors)
    sign_in(page, hearth.root, user)
    page.get_by_role("link", name="Medicines").click()
    expect(page.get_by_role("heading", name="Your medicines")).to_be_visible()
    cards = page.locator("[data-prescription]")
    expect(cards).to_have_count(3)
    first = page.locator(f"[data-prescription='{timed['id']}']")
    expect(first).to_contain_text(f"Amoxicillin 500 mg {tag}")
    expect(first).to_contain_text("One capsule three times a day with water")
    expect(first.locator(".reminders")).to_have_text("Reminders every day at 08:00, 12:00, 20:00")
    expect(first).to_contain_text("Until")
    second = page.locator(f"[data-prescription='{every['id']}']")
    expect(second).to_contain_text("Two tablets every eight hours")
    expect(second.locator(".reminders")).to_have_text("Reminders 3 time(s) every 1 day(s)")
    third = page.locator(f"[data-prescription='{weekly['id']}']")
    expect(third.locator(".reminders")).to_contain_text("No reminders are sent")
    # The next reminder, worked out here independently: the next 08:00, 12:00 or 20:00
    # UTC after now; every 8 h from the prescription's date for the other.
    now = datetime.now(UTC)
    daily = sorted(
        datetime.combine(now.date() + timedelta(days=d), time(h), UTC)
        for d in (0, 1)
        for h in (8, 12, 20)
    )
    upcoming = next(at for at in daily if at > now)
    words = lambda at: at.strftime("%A %-d %B %Y at %H:%M")  # noqa: E731
    expect(first.locator(".next-reminder")).to_contain_text(
        f"Next reminder: {words(upcoming)} (your time, UTC)"
    )
    authored = datetime.fromisoformat(every["authoredOn"])
    expect(second.locator(".next-reminder")).to_contain_text(words(authored + timedelta(hours=8)))
    expect(third.locator(".next-reminder")).to_have_count(0)
    expect(page.get_by_text(f"Stopped {tag}")).to_have_count(0)
    expect(page.get_by_text(f"Theirs {tag}")).to_have_count(0)
    shot(page, f"portal-medicines-{viewport}")
    assert fits(page)
    assert not errors, errors
    operator.close()
