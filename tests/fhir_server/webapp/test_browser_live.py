"""Live views in a real browser (Debian chromium, Playwright) against a running Hearth on
SQLite: the clinicians' worklist shows a step created for the doctor's role, and a step assigned
to the doctor, as soon as another user writes them over the API — without a reload; the patient
portal's case status moves from "Received" to "Checked by your doctor" the same way. Both pages
say they are live, and the strict CSP lets their websocket through (no violation is reported).
When the websocket is refused (as by a proxy), the worklist falls back to a slow poll."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.fhir_server.auth.smart import make_user
from tests.fhir_server.webapp.browser import app_sign_in, browser_hearth, sign_in
from tests.workflow.conftest import Fhir, person, ref
from workflow.actors import role_concept

CASE_SYSTEM = "http://hearth.local/fhir/CodeSystem/workflow-case"
STATUS_SYSTEM = "http://hearth.local/fhir/CodeSystem/workflow-status"


@pytest.fixture(scope="module")
def hearth(tmp_path_factory):  # type: ignore[no-untyped-def]
    with browser_hearth(tmp_path_factory.mktemp("live")) as running:  # its worklist its own
        yield running


def watch_console(page: Page) -> list[str]:
    problems: list[str] = []
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.on(
        "console",
        lambda m: problems.append(m.text) if "Content Security Policy" in m.text else None,
    )
    return problems


def step(patient: dict, description: str, **extra: object) -> dict:
    return {
        "resourceType": "Task",
        "status": "requested",
        "intent": "order",
        "priority": "routine",
        "description": description,
        "for": {"reference": ref(patient)},
        "authoredOn": datetime.now(UTC).isoformat(timespec="seconds"),
        **extra,
    }


def test_worklist_updates_without_reload(hearth, browser):
    operator = Fhir(hearth.fhir, hearth.headers)
    doctor = person(operator, "Practitioner", f"Live{uuid.uuid4().hex[:6]}")
    user = make_user(hearth, "doctor", ref(doctor))
    patient = person(operator, "Patient", f"Worklist{uuid.uuid4().hex[:6]}")
    page = browser.new_page()
    problems = watch_console(page)
    app_sign_in(page, hearth.root, user, "Worklist: doctor")
    expect(page.locator("#live")).to_have_attribute("data-state", "live")
    expect(page.locator("#live")).to_have_text("Live: this list updates by itself.")
    page.evaluate("window.stillTheSamePage = true")
    expect(page.get_by_text("Nothing is waiting for your role.")).to_be_visible()
    # another user (here the operator's API token) creates a step for the doctor's role
    operator.create(step(patient, "Live review step", performerType=[role_concept("doctor")]))
    expect(page.locator("tr", has_text="Live review step")).to_be_visible()
    # … and assigns one to this doctor
    operator.create(
        step(
            patient,
            "Assigned while you watched",
            status="in-progress",
            owner={"reference": ref(doctor)},
            performerType=[role_concept("doctor")],
        )
    )
    mine = page.locator(
        "section", has=page.get_by_role("heading", name="In progress, claimed by you")
    )
    expect(mine.locator("tr", has_text="Assigned while you watched")).to_be_visible()
    assert page.evaluate("window.stillTheSamePage") is True  # no reload happened
    assert problems == []


def test_worklist_falls_back_to_a_slow_poll_without_websockets(hearth, browser):
    operator = Fhir(hearth.fhir, hearth.headers)
    doctor = person(operator, "Practitioner", f"Poll{uuid.uuid4().hex[:6]}")
    user = make_user(hearth, "doctor", ref(doctor))
    page = browser.new_page()
    # a proxy that refuses the websocket upgrade
    page.route_web_socket("**/websocket", lambda ws: ws.close())
    app_sign_in(page, hearth.root, user, "Worklist: doctor")
    expect(page.locator("#live")).to_have_attribute("data-state", "polling")
    expect(page.locator("#live")).to_contain_text("refreshes every minute")


def test_portal_case_status_moves_without_reload(hearth, browser):
    operator = Fhir(hearth.fhir, hearth.headers)
    me = person(operator, "Patient", f"Portal{uuid.uuid4().hex[:6]}")
    user = make_user(hearth, "patient", ref(me))
    page = browser.new_page()
    problems = watch_console(page)
    sign_in(page, hearth.root, user)
    expect(page.locator(".live")).to_have_attribute("data-state", "live")
    page.get_by_role("link", name="Photos").click()
    expect(page.get_by_text("You have not sent any photos yet.")).to_be_visible()
    expect(page.locator(".live")).to_have_attribute("data-state", "live")
    page.evaluate("window.stillTheSamePage = true")
    # the care team (over the API) records a photo and starts its case
    media = operator.create(
        {
            "resourceType": "Media",
            "status": "completed",
            "subject": {"reference": ref(me)},
            "bodySite": {"text": "Back"},
            "content": {"contentType": "image/png", "title": "Lesion photo"},
        }
    )
    case = operator.create(
        step(
            me,
            "Skin screening",
            code={"coding": [{"system": CASE_SYSTEM, "code": "skin-screening"}]},
            focus={"reference": ref(media)},
            businessStatus={"coding": [{"system": STATUS_SYSTEM, "code": "PENDING_AI"}]},
        )
    )
    status = page.locator(f'[data-media="{media["id"]}"] .case-status')
    expect(status).to_have_text("Received — waiting for the computer analysis")
    reviewed = {"coding": [{"system": STATUS_SYSTEM, "code": "DOCTOR_REVIEWED"}]}
    moved = httpx.put(
        f"{hearth.fhir}/Task/{case['id']}",
        json={**case, "businessStatus": reviewed},
        headers=hearth.headers,
    )
    assert moved.status_code == 200, moved.text
    expect(status).to_have_text("Checked by your doctor")
    assert page.evaluate("window.stillTheSamePage") is True
    assert problems == []
