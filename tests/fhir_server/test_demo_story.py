"""`hearth demo`, the story `make run` tells, run as the operator runs it (a subprocess, on the
SQLite database `make run` uses), then read back over HTTP from a server on that database: the
doctor's free Slots, two reports delivered into the development mailbox as signed PDFs (also
stored as DocumentReferences), an urgent case with a proposed appointment and a routine one on
the doctor's worklist, one case for the pharmacist and one for the admin; told once."""

from __future__ import annotations

import mailbox
import os
import subprocess
import sys
from email import message_from_bytes
from email.policy import default

import httpx
import pytest
from playwright.sync_api import expect

from tests.fhir_server.auth.smart import make_user
from tests.fhir_server.webapp.browser import DESKTOP, fits, register_portal, shot, sign_in
from tests.servers import database_url, free_port, start_server
from tests.shared import ROOT

STEP = "http://hearth.local/fhir/CodeSystem/workflow-step"


def hearth(*args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "fhir_server.cli", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, **env},
        timeout=600,
    )


@pytest.fixture(scope="module")
def told(tmp_path_factory):  # type: ignore[no-untyped-def]
    tmp = tmp_path_factory.mktemp("demo")
    url, cleanup = database_url("sqlite", tmp)
    env = {
        "HEARTH_DATABASE_URL": url,
        "HEARTH_DATA_DIR": str(tmp / "data"),
        "HEARTH_DEV_MAILBOX": str(tmp / "mailbox"),
        "HEARTH_DEV_MAILBOX_PORT": str(free_port()),
    }
    assert hearth("db", "upgrade", env=env).returncode == 0
    first = hearth("demo", str(ROOT / "demo"), env=env)
    assert first.returncode == 0, first.stdout + first.stderr
    # The server `make run` starts after the story: the same database and mailbox folder.
    server = start_server(
        "sqlite",
        url,
        data_dir=str(tmp / "data"),
        dev_mailbox=tmp / "mailbox",
        dev_mailbox_port=free_port(),
    )
    register_portal(server)
    yield server, first.stdout, env, tmp
    server.stop()
    cleanup()  # type: ignore[operator]


def search(server, query: str) -> list[dict]:  # type: ignore[no-untyped-def]
    bundle = httpx.get(f"{server.fhir}/{query}", headers=server.headers).json()
    return [e["resource"] for e in bundle.get("entry", []) if e["search"]["mode"] == "match"]


def business(task: dict) -> str:
    return task["businessStatus"]["coding"][0]["code"]


def test_the_story_is_told_once(told):  # type: ignore[no-untyped-def]
    server, out, env, _ = told
    assert "REPORT_DELIVERED" in out
    again = hearth("demo", str(ROOT / "demo"), env=env)
    assert again.returncode == 0 and "already told" in again.stdout
    assert len(search(server, "Task?code=http://hearth.local/fhir/CodeSystem/workflow-case|skin-screening&_count=100")) == 6  # fmt: skip


def test_reports_reach_the_mailbox_as_signed_pdfs(told):  # type: ignore[no-untyped-def]
    server, _, _, tmp = told
    box = mailbox.Maildir(tmp / "mailbox" / "Maildir", create=False)
    mails = [message_from_bytes(box.get_bytes(k), policy=default) for k in box.keys()]
    assert sorted(str(m["To"]) for m in mails) == [
        "joseph.kamau@example.org",
        "thandi.nkosi@example.org",
    ]
    for m in mails:
        [pdf] = [p.get_payload(decode=True) for p in m.iter_attachments()]
        assert pdf.startswith(b"%PDF-") and b"/ByteRange" in pdf  # signed (PAdES)
    for patient in ("demo-patient-1", "demo-patient-2"):
        [case] = search(server, f"Task?patient=Patient/{patient}&code=http://hearth.local/fhir/CodeSystem/workflow-case|skin-screening")  # fmt: skip
        assert business(case) == "REPORT_DELIVERED" and case["status"] == "completed"
        docs = search(server, f"DocumentReference?subject=Patient/{patient}")
        assert len(docs) == 1 and docs[0]["content"][0]["attachment"]["contentType"] == "application/pdf"  # fmt: skip
    # Joseph's prescription was dispensed by the pharmacist, against his order.
    [dispense] = search(server, "MedicationDispense?subject=Patient/demo-patient-2")
    assert dispense["status"] == "completed"


def test_every_role_has_work_waiting(told):  # type: ignore[no-untyped-def]
    server, _, _, _ = told

    def waiting(role: str) -> list[dict]:
        return search(server, f"Task?performer-type=http://hearth.local/fhir/CodeSystem/care-role|{role}&status=requested&_count=50")  # fmt: skip

    doctor = waiting("doctor")
    assert sorted(t["for"]["reference"] for t in doctor) == ["Patient/demo-patient-3", "Patient/demo-patient-4"]  # fmt: skip
    urgent = [t for t in doctor if t["for"]["reference"] == "Patient/demo-patient-3"][0]
    assert urgent["priority"] == "urgent"
    assert [t["for"]["reference"] for t in waiting("pharmacist")] == ["Patient/demo-patient-5"]
    assert [t["for"]["reference"] for t in waiting("admin")] == ["Patient/demo-patient-6"]
    # The urgent pathway proposed an appointment in one of the doctor's free Slots.
    [appt] = search(server, "Appointment?patient=Patient/demo-patient-3")
    assert appt["status"] == "proposed"
    [slot] = [httpx.get(f"{server.fhir}/{s['reference']}", headers=server.headers).json() for s in appt["slot"]]  # fmt: skip
    assert slot["schedule"]["reference"] == "Schedule/demo-doctor-schedule"
    assert slot["status"] == "busy-tentative"
    free = search(server, "Slot?schedule=Schedule/demo-doctor-schedule&status=free&_count=500")
    assert len(free) >= 40  # two weeks of weekday mornings, less the proposals


def test_admin_fixes_a_failed_delivery_and_reads_the_mail(told, browser):  # type: ignore[no-untyped-def]
    """The admin's part of the story in Debian chromium: Mary Wanjiru's report, approved while
    her record had no e-mail address, is a delivery problem with its reason; once the address is
    added, Retry delivers it, and the signed PDF is in the development mailbox."""
    server, _, _, _ = told
    h = server.headers
    patient = httpx.get(f"{server.fhir}/Patient/demo-patient-6", headers=h).json()
    address = patient["telecom"][0]["value"]
    no_mail = {k: v for k, v in patient.items() if k not in ("telecom", "meta")}
    assert httpx.put(f"{server.fhir}/Patient/demo-patient-6", json=no_mail, headers=h).status_code == 200  # fmt: skip
    [step] = [
        t
        for t in search(server, "Task?patient=Patient/demo-patient-6&status=requested")
        if t["code"]["coding"][0]["code"] == "admin-approval"
    ]
    admin = {**h, "X-Hearth-Role": "admin", "X-Hearth-Actor": "Practitioner/demo-admin"}
    assert httpx.post(f"{server.fhir}/Task/{step['id']}/$claim", headers=admin).status_code == 200
    assert httpx.post(f"{server.fhir}/Task/{step['id']}/$complete", headers=admin, timeout=60).status_code == 200  # fmt: skip
    case = step["partOf"][0]["reference"]
    assert business(httpx.get(f"{server.fhir}/{case}", headers=h).json()) == "REPORT_FAILED"

    user = make_user(server, "admin", "Practitioner/demo-admin")
    errors: list[str] = []
    page = browser.new_context(viewport=DESKTOP, accept_downloads=True).new_page()
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" and "404" not in m.text else None)  # fmt: skip
    sign_in(page, server.root, user, "staff")
    page.get_by_role("link", name="Delivery problems").click()
    row = page.locator(f'tr[data-target="{case}"]')
    expect(row).to_contain_text("Report to a patient")
    expect(row).to_contain_text("no e-mail address")
    shot(page, "delivery-problems")
    # The cause fixed (the address back), the admin retries.
    fixed = {**no_mail, "telecom": patient["telecom"]}
    assert httpx.put(f"{server.fhir}/Patient/demo-patient-6", json=fixed, headers=h).status_code == 200  # fmt: skip
    row.get_by_role("button", name="Retry").click()
    expect(page.get_by_role("status")).to_have_text("Delivered.")
    expect(page.locator(f'tr[data-target="{case}"]')).to_have_count(0)

    page.get_by_role("link", name="Mailbox").click()
    mails = page.locator("ul.mails li")
    expect(mails).to_have_count(3)  # the story's two, and Mary's
    page.locator("ul.mails li", has_text=address).get_by_role("button").click()
    expect(page.get_by_role("heading", name="Your Skin lesion screening report")).to_be_visible()  # fmt: skip
    with page.expect_download() as info:
        page.get_by_role("button", name="Download report-").click()
    pdf = open(info.value.path(), "rb").read()
    assert pdf.startswith(b"%PDF-") and b"/ByteRange" in pdf
    assert fits(page)
    shot(page, "mailbox")
    assert errors == [], errors
    assert business(httpx.get(f"{server.fhir}/{case}", headers=h).json()) == "REPORT_DELIVERED"
