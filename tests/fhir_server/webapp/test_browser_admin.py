"""The administrators' screens of the web app (/app/portal/, src/admin/) in Debian chromium
driven by Playwright against a running Hearth on SQLite: an administrator signs in with their
second factor, creates a doctor's account and hands over its one-time secrets, changes its
roles, deactivates it (the doctor can no longer sign in) and reactivates it, resets its second
factor; creates the doctor's Schedule, a morning of free Slots from a weekly template, and sees
the doctor's day with the patient booked in it; verifies the audit chain and finds who read a
patient's record. Each step is checked on the server; screenshots under test-artefacts/webapp/."""

from __future__ import annotations

import time
import uuid
from datetime import date, timedelta

import httpx
import pyotp
import pytest
from playwright.sync_api import expect

from tests.fhir_server.auth.smart import (
    User,
    bearer,
    code_of,
    exchange,
    login,
    make_client,
    make_user,
    pkce,
)
from tests.fhir_server.webapp.browser import DESKTOP, browser_hearth, shot, sign_in, watch
from tests.workflow.conftest import Fhir, person, ref

SCOPE = "openid fhirUser offline_access user/*.cruds"


@pytest.fixture(scope="module")
def hearth(tmp_path_factory):  # type: ignore[no-untyped-def]
    with browser_hearth(tmp_path_factory.mktemp("admin")) as running:  # its accounts its own
        yield running


def _signs_in(server, user: User, code: str) -> int:  # type: ignore[no-untyped-def]
    """The status of a sign-in of ``user`` with the second factor ``code`` (303: signed in)."""
    client_id, _ = make_client(server, "public", SCOPE)
    _, challenge = pkce()
    return login(server, client_id, user, SCOPE, challenge=challenge, code=code).status_code


def _account(operator: Fhir, username: str) -> dict:
    answer = operator.get("/$users")
    for p in answer["parameter"]:
        parts = {q["name"]: q for q in p["part"]}
        if parts["username"]["valueString"] == username:
            return {
                "roles": sorted(q["valueCode"] for q in p["part"] if q["name"] == "role"),
                "active": parts["active"]["valueBoolean"],
                "fhirUser": parts.get("fhirUser", {}).get("valueReference", {}).get("reference"),
            }
    raise AssertionError(f"no account {username}")


def _next_monday() -> date:
    today = date.today()
    return today + timedelta(days=(7 - today.weekday()) % 7 or 7)


def test_administrator_manages_users_schedules_and_the_audit_log(hearth, browser):
    operator = Fhir(hearth.fhir, hearth.headers)
    tag = uuid.uuid4().hex[:6]
    admin = make_user(hearth, "admin", None)
    patient = person(operator, "Patient", f"Audited{tag}")
    doctor_name = f"Otieno{tag}"
    new_user = f"dr-{tag}"
    monday = _next_monday()
    errors: list[str] = []
    context = browser.new_context(viewport=DESKTOP, timezone_id="Africa/Nairobi")
    page = watch(context.new_page(), errors, console=False)
    page.on("dialog", lambda d: d.accept())  # the confirmations of deactivate / reset
    sign_in(page, hearth.root, admin, "staff")  # the administrator's whole sign-in journey
    # the staff area: the administrators' screens beside the dashboard
    nav = page.get_by_role("navigation")
    for name in ("Dashboard", "Users", "Schedules", "Audit"):
        expect(nav.get_by_role("link", name=name, exact=True)).to_be_visible()
    nav.get_by_role("link", name="Users", exact=True).click()
    expect(page.get_by_role("heading", name="Users", exact=True)).to_be_visible()
    expect(page.locator(f'[data-user="{admin.username}"]')).to_contain_text("Administrator")

    # A new doctor's account: a Practitioner, a PractitionerRole, one-time secrets.
    form = page.locator("form", has=page.get_by_role("heading", name="New staff account"))
    form.get_by_label("User name").fill(new_user)
    form.get_by_label("Given name").fill("Amina")
    form.get_by_label("Family name").fill(doctor_name)
    form.get_by_role("button", name="Create account").click()
    expect(page.get_by_role("status")).to_contain_text(f"Account {new_user} created")
    secrets = page.locator("[data-secrets]")
    expect(secrets).to_contain_text("shown only once")
    password = page.locator("[data-password]").inner_text()
    key = page.locator("[data-totp-key]").inner_text()
    expect(secrets.locator(".codes li")).to_have_count(8)
    qr = page.get_by_role("img", name="QR code to scan with the authenticator app")
    expect(qr).to_be_visible()
    assert qr.evaluate("img => img.complete && img.naturalWidth > 0")
    codes = secrets.locator(".codes li").all_inner_texts()
    shot(page, "admin-users-created")
    page.get_by_role("button", name="Done — I have handed them over").click()
    row = page.locator(f'[data-user="{new_user}"]')
    expect(row).to_contain_text(f"Amina {doctor_name}")
    expect(row).to_contain_text("Never")
    account = _account(operator, new_user)
    assert account["roles"] == ["doctor"] and account["active"] is True
    practitioner = account["fhirUser"]
    doctor = User(new_user, password, pyotp.TOTP(key), codes, practitioner)
    assert _signs_in(hearth, doctor, doctor.totp.now()) == 303  # type: ignore[union-attr]

    # Roles: doctor and administrator.
    row.get_by_role("button", name=f"Change roles {new_user}").click()
    row.get_by_label("Administrator").check()
    row.get_by_role("button", name="Save roles").click()
    expect(page.get_by_role("status")).to_contain_text("roles of")
    expect(page.locator(f'[data-user="{new_user}"]')).to_contain_text("Administrator, Doctor")
    assert _account(operator, new_user)["roles"] == ["admin", "doctor"]

    # Deactivated: no sign-in; reactivated: signs in again.
    page.get_by_role("button", name=f"Deactivate {new_user}").click()
    expect(page.locator(f'[data-user="{new_user}"]')).to_contain_text("Deactivated")
    assert _account(operator, new_user)["active"] is False
    assert _signs_in(hearth, doctor, codes[0]) == 401  # right password, good code
    page.get_by_role("button", name=f"Reactivate {new_user}").click()
    expect(page.locator(f'[data-user="{new_user}"]')).to_contain_text("Active")
    assert _account(operator, new_user)["active"] is True
    assert _signs_in(hearth, doctor, codes[0]) == 303

    # A lost phone: the second factor is reset; the new key is shown once.
    page.get_by_role("button", name=f"Reset second factor {new_user}").click()
    expect(page.locator("[data-secrets]")).to_contain_text(new_user)
    new_key = page.locator("[data-totp-key]").inner_text()
    assert new_key != key
    page.get_by_role("button", name="Done — I have handed them over").click()
    shot(page, "admin-users")

    # Schedules: the doctor's schedule, Monday and Tuesday mornings in half hours.
    page.get_by_role("link", name="Schedules").click()
    page.get_by_label("Doctor").select_option(label=f"Amina {doctor_name}")
    page.get_by_role("button", name="Create a schedule").click()
    expect(page.get_by_role("status")).to_contain_text("Schedule created")
    page.get_by_label("First day").fill(monday.isoformat())
    for day in ("Wednesday", "Thursday", "Friday"):
        page.get_by_label(day).uncheck()
    page.get_by_label("From", exact=True).fill("09:00")
    page.get_by_label("To", exact=True).fill("11:00")
    page.get_by_label("Minutes per slot").fill("30")
    expect(page.get_by_label("Time zone")).to_have_value("Africa/Nairobi")
    page.get_by_role("button", name="Create slots").click()
    expect(page.get_by_role("status")).to_contain_text("8 slots created (0 existed")
    [schedule] = operator.search("Schedule", actor=practitioner)
    slots = operator.search("Slot", schedule=ref(schedule), _sort="start")
    assert len(slots) == 8
    assert slots[0]["start"] == f"{monday.isoformat()}T06:00:00Z"  # 09:00 in Nairobi

    # A booking, then the doctor's day.
    first = slots[0]
    operator.http.put(f"/Slot/{first['id']}", json={**first, "status": "busy"}).raise_for_status()
    operator.create(
        {
            "resourceType": "Appointment",
            "status": "booked",
            "start": first["start"],
            "end": first["end"],
            "slot": [{"reference": ref(first)}],
            "participant": [
                {"actor": {"reference": ref(patient)}, "status": "accepted"},
                {"actor": {"reference": practitioner}, "status": "accepted"},
            ],
        }
    )
    page.get_by_label("Day", exact=True).fill((monday + timedelta(days=1)).isoformat())
    page.get_by_label("Day", exact=True).fill(monday.isoformat())
    day = page.locator("ol.day li")
    expect(day).to_have_count(4)
    expect(day.first).to_contain_text("09:00–09:30")
    expect(day.first).to_contain_text(f"Booked — Test Audited{tag}")
    expect(day.nth(1)).to_contain_text("Free")
    shot(page, "admin-schedules-day")

    # Audit: the chain is verified; who read the patient's record.
    client_id, _ = make_client(hearth, "public", SCOPE)
    reader = make_user(hearth, "doctor", ref(person(operator, "Practitioner", "Reader")))
    verifier, challenge = pkce()
    code = code_of(login(hearth, client_id, reader, SCOPE, challenge=challenge))
    token = exchange(hearth, client_id, code, verifier).json()["access_token"]
    read = httpx.get(f"{hearth.fhir}/Patient/{patient['id']}", headers=bearer(token))
    assert read.status_code == 200
    for _ in range(100):  # the background audit writer
        if operator.search("AuditEvent", entity=ref(patient), altid=reader.username):
            break
        time.sleep(0.1)
    page.get_by_role("link", name="Audit").click()
    page.get_by_role("button", name="Verify the chain").click()
    expect(page.locator("[data-verify]")).to_contain_text("The audit log is intact")
    page.get_by_label("Patient name").fill(f"Audited{tag}")
    page.get_by_label("User name").fill(reader.username)
    page.get_by_role("button", name="Search").click()
    results = page.locator("[data-audit-results] tbody tr")
    expect(results.first).to_contain_text(reader.username)
    expect(results.first).to_contain_text(f"read: Test Audited{tag} ({ref(patient)})")
    shot(page, "admin-audit")
    # and what the administrator did to the doctor's account
    page.get_by_label("Patient name").fill("")
    page.get_by_label("User name").fill(admin.username)
    page.get_by_role("button", name="Search").click()
    expect(page.locator("[data-audit-results]")).to_contain_text("Account deactivated")
    expect(page.locator("[data-audit-results]")).to_contain_text("Second factor reset")
    assert not errors, errors
    operator.close()
