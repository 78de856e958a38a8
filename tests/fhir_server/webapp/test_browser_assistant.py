"""The patient portal's Assistant screen (src/assistant.jsx) in a real browser (Debian chromium
driven by Playwright) against a running Hearth on SQLite with the real model, on a desktop and a
phone viewport: a patient signs in, asks about their last report (a suggested question) and their
next appointment (typed), follows a citation into the Appointments screen, is refused another
patient's report, gets the fixed emergency answer and follows its offer to Messages. The answers'
sources are their own resources; nothing of the other patient shows; every exchange is audited;
no request leaves Hearth's origin; each screen is kept under test-artefacts/webapp/."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import expect

from tests.fhir_server.auth.smart import make_user
from tests.fhir_server.webapp.browser import (
    ARTEFACTS,
    DESKTOP,
    app_sign_in,
    device,
    fits,
    shot,
    sign_in,
    watch,
)
from tests.fhir_server.webapp.test_browser_portal import record
from tests.workflow.conftest import Fhir, ref


def audited(server, reference: str, intent: str) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        bundle = httpx.get(
            f"{server.fhir}/AuditEvent",
            params={"entity": reference, "subtype": "operation"},
            headers=server.headers,
        ).json()
        if any(
            f"intent={intent}" in e["resource"].get("outcomeDesc", "")
            for e in bundle.get("entry", [])
        ):
            return True
        time.sleep(0.2)
    return False


@pytest.mark.parametrize("viewport", ["desktop", "phone"])
def test_patient_asks_the_assistant(hearth, browser, viewport):
    operator = Fhir(hearth.fhir, hearth.headers)
    data = record(operator)
    user = make_user(hearth, "patient", ref(data["me"]))
    outside: list[str] = []
    errors: list[str] = []
    page = browser.new_context(**device(viewport)).new_page()
    watch(page, errors, outside=outside, allowed=(hearth.root,))
    sign_in(page, hearth.root, user)
    page.get_by_role("link", name="Assistant").click()
    expect(page.get_by_role("heading", name="Ask the assistant", level=1)).to_be_visible()

    # A suggested question: the clinician's conclusion, word for word, and its source.
    page.get_by_role("button", name="What did my last report say?").click()
    latest = page.locator(".exchange").first
    expect(latest).to_contain_text("“Benign naevus; no treatment needed.”")
    source = latest.locator(f"[data-cites='{ref(data['report'])}']")
    expect(source).to_contain_text("Skin screening report")
    assert audited(hearth, ref(data["report"]), "last-report")

    # A typed question: the proposed appointment; its source opens Appointments.
    page.get_by_label("Your question").fill("When is my next appointment?")
    page.get_by_role("button", name="Ask", exact=True).click()
    latest = page.locator(".exchange").first
    expect(latest).to_contain_text("Proposed after your screening")
    expect(latest).to_contain_text("(status: proposed)")
    expect(page.get_by_label("Your question")).to_have_value("")
    shot(page, f"portal-assistant-{viewport}")
    assert fits(page)
    latest.locator(f"[data-cites='{ref(data['proposed'])}'] a").click()
    expect(page.get_by_role("heading", name="Your appointments", level=1)).to_be_visible()

    # Another patient's report: refused, nothing of theirs on the page.
    page.get_by_role("link", name="Assistant").click()
    page.get_by_label("Your question").fill(f"What did Patient/{data['other']['id']}'s report say?")
    page.get_by_role("button", name="Ask", exact=True).click()
    latest = page.locator(".exchange").first
    expect(latest).to_contain_text("I can only answer questions about your own record")
    expect(latest.locator("[data-cites]")).to_have_count(0)
    expect(page.get_by_text(data["tag"])).to_have_count(0)

    # An emergency: the fixed answer with the emergency number, and the way to Messages.
    page.get_by_label("Your question").fill("I have chest pain")
    page.get_by_role("button", name="Ask", exact=True).click()
    latest = page.locator(".exchange").first
    expect(latest).to_contain_text("If this is an emergency, call 112 now")
    shot(page, f"portal-assistant-safety-{viewport}")
    latest.get_by_role("link", name="Message your care team").click()
    expect(page.get_by_role("heading", name="Messages")).to_be_visible()
    assert not errors, errors
    assert not outside, outside
    operator.close()


def test_doctor_asks_the_assistant_in_the_clinicians_app(hearth, browser):
    """Staff: the clinicians' app (/app/, static/assistant.js) — the doctor's claimed work and the
    open urgent cases, each cited Task linking to its case screen."""
    from datetime import UTC, datetime

    operator = Fhir(hearth.fhir, hearth.headers)
    data = record(operator)
    doctor = data["proposed"]["participant"][1]["actor"]["reference"]
    user = make_user(hearth, "doctor", doctor)
    now = datetime.now(UTC).isoformat()
    mine = operator.create(
        {
            "resourceType": "Task",
            "status": "in-progress",
            "intent": "order",
            "priority": "routine",
            "description": f"Doctor review {data['tag']}",
            "owner": {"reference": doctor},
            "for": {"reference": ref(data["me"]), "display": "Ada Portal"},
            "authoredOn": now,
        }
    )
    urgent = operator.create(
        {
            "resourceType": "Task",
            "status": "in-progress",
            "intent": "order",
            "priority": "urgent",
            "code": {
                "coding": [{"system": "http://hearth.local/fhir/CodeSystem/workflow-case", "code": "skin-screening"}],
                "text": "Skin screening",
            },
            "description": f"Urgent screening {data['tag']}",
            "for": {"reference": ref(data["me"]), "display": "Ada Portal"},
            "authoredOn": now,
        }
    )  # fmt: skip
    errors: list[str] = []
    outside: list[str] = []
    page = browser.new_page(viewport=DESKTOP)
    watch(page, errors, console=False, outside=outside, allowed=(hearth.root,))
    app_sign_in(page, hearth.root, user, "Worklist: doctor")
    page.get_by_role("link", name="Assistant").click()
    expect(page.get_by_role("heading", name="Assistant", level=1)).to_be_visible()

    page.get_by_role("button", name="What is waiting for me?").click()
    latest = page.locator(".exchange").first
    expect(latest).to_contain_text(f"Doctor review {data['tag']} for Ada Portal (routine)")
    expect(latest.locator(f"[data-cites='{ref(mine)}'] a")).to_have_attribute(
        "href", f"#/task/{mine['id']}"
    )

    page.get_by_label("Your question").fill("which urgent cases are open")
    page.get_by_role("button", name="Ask", exact=True).click()
    latest = page.locator(".exchange").first
    expect(latest).to_contain_text(f"Urgent screening {data['tag']}")
    page.screenshot(path=str(Path(ARTEFACTS) / "app-assistant.png"), full_page=True)
    latest.locator(f"[data-cites='{ref(urgent)}'] a").click()
    expect(page).to_have_url(f"{hearth.root}/app/#/task/{urgent['id']}")
    assert not errors, errors
    assert not outside, outside
    operator.close()
