"""The patient portal (/app/portal/, built by `make webapp`) in a real browser (Debian chromium
driven by Playwright) against a running Hearth on SQLite, on a desktop and a phone viewport: a
patient signs in through Hearth's login page (the SMART JS client does the code + PKCE exchange),
sees what needs attention (a report ready, a proposed appointment, a message from the care
team), their verified result but not the unverified AI one, downloads the signed report as a PDF,
accepts the proposed appointment, books a free Slot and cancels it, and writes to the care team;
each step is checked on the server. Nothing of another patient shows, no request leaves Hearth's
origin, and each screen is kept as a screenshot under test-artefacts/webapp/."""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.sync_api import expect

from fhir_server.webapp import PORTAL_CLIENT_ID
from tests.fhir_server.auth.smart import make_user
from tests.fhir_server.webapp.browser import (
    device,
    fits,
    log_in,
    own_hearth,
    shot,
    sign_in,
    watch,
)
from tests.inference.conftest import run_worker
from tests.shared import shared_path
from tests.workflow.conftest import Fhir, person, ref

hearth = own_hearth  # its tests run the AI worker: a Hearth of its own
PDF = b"%PDF-1.4\n% Hearth test report\n%%EOF\n"


def slot(fhir: Fhir, schedule: dict, start: datetime, status: str = "free") -> dict:
    return fhir.create(
        {
            "resourceType": "Slot",
            "schedule": {"reference": ref(schedule)},
            "status": status,
            "start": start.isoformat(),
            "end": (start + timedelta(minutes=30)).isoformat(),
        }
    )


def record(fhir: Fhir) -> dict:
    """A patient with a verified result, an unverified AI result, a signed report, a proposed
    appointment, free Slots of their doctor and a message from the care team; another patient
    with an appointment of their own."""
    tag = uuid.uuid4().hex[:6]
    me, other = person(fhir, "Patient", f"Portal{tag}"), person(fhir, "Patient", f"Else{tag}")
    doctor = person(fhir, "Practitioner", f"Doctor{tag}")
    now = datetime.now(UTC).replace(microsecond=0)
    fhir.create(
        {
            "resourceType": "Observation",
            "status": "final",
            "code": {"text": "Blood glucose"},
            "subject": {"reference": ref(me)},
            "effectiveDateTime": now.isoformat(),
            "valueQuantity": {"value": 5.4, "unit": "mmol/L"},
        }
    )
    device = fhir.create({"resourceType": "Device", "status": "active"})
    fhir.create(
        {
            "resourceType": "Observation",
            "status": "preliminary",
            "code": {"text": "AI lesion classification"},
            "subject": {"reference": ref(me)},
            "device": {"reference": ref(device)},
            "valueString": "Unverified AI finding",
        }
    )
    report = fhir.create(
        {
            "resourceType": "DiagnosticReport",
            "status": "final",
            "code": {"text": "Skin screening report"},
            "subject": {"reference": ref(me)},
            "issued": now.isoformat(),
            "conclusion": "Benign naevus; no treatment needed.",
        }
    )
    binary = fhir.create(
        {
            "resourceType": "Binary",
            "contentType": "application/pdf",
            "securityContext": {"reference": ref(report)},
            "data": base64.b64encode(PDF).decode(),
        }
    )
    report["presentedForm"] = [
        {"contentType": "application/pdf", "url": ref(binary), "title": "Report"}
    ]
    fhir.http.put(f"/DiagnosticReport/{report['id']}", json=report).raise_for_status()
    schedule = fhir.create(
        {"resourceType": "Schedule", "active": True, "actor": [{"reference": ref(doctor)}]}
    )
    base = (now + timedelta(days=2)).replace(hour=9, minute=0, second=0)
    held = slot(fhir, schedule, base, "busy-tentative")
    free = [slot(fhir, schedule, base + timedelta(hours=h)) for h in (2, 3)]
    proposed = fhir.create(
        {
            "resourceType": "Appointment",
            "status": "proposed",
            "description": "Proposed after your screening",
            "start": held["start"],
            "end": held["end"],
            "slot": [{"reference": ref(held)}],
            "participant": [
                {"actor": {"reference": ref(me)}, "status": "needs-action"},
                {"actor": {"reference": ref(doctor)}, "status": "accepted"},
            ],
        }
    )
    theirs = fhir.create(
        {
            "resourceType": "Appointment",
            "status": "booked",
            "description": f"Someone else's visit {tag}",
            "start": (base + timedelta(days=1)).isoformat(),
            "end": (base + timedelta(days=1, minutes=30)).isoformat(),
            "participant": [{"actor": {"reference": ref(other)}, "status": "accepted"}],
        }
    )
    fhir.create(
        {
            "resourceType": "Communication",
            "status": "completed",
            "subject": {"reference": ref(me)},
            "sender": {"reference": ref(doctor)},
            "recipient": [{"reference": ref(me)}],
            "sent": now.isoformat(),
            "payload": [{"contentString": "Your report is ready, please book a visit."}],
        }
    )
    return {
        "me": me,
        "other": other,
        "report": report,
        "proposed": proposed,
        "free": free,
        "held": held,
        "theirs": theirs,
        "tag": tag,
    }


@pytest.mark.parametrize("viewport", ["desktop", "phone"])
def test_patient_uses_the_portal(hearth, browser, viewport):
    operator = Fhir(hearth.fhir, hearth.headers)
    data = record(operator)
    user = make_user(hearth, "patient", ref(data["me"]))
    outside: list[str] = []
    errors: list[str] = []
    page = browser.new_context(**device(viewport), accept_downloads=True).new_page()
    watch(page, errors, outside=outside, allowed=(hearth.root, f"blob:{hearth.root}/"))
    authorize: list[str] = []
    page.on(
        "request",
        lambda r: authorize.append(r.url) if "/auth/authorize?" in r.url else None,
    )
    sign_in(page, hearth.root, user)
    # The SMART JS client's standalone launch: code + PKCE S256, this client, Hearth's FHIR.
    [asked] = authorize
    query = parse_qs(urlsplit(asked).query)
    assert query["client_id"] == [PORTAL_CLIENT_ID]
    assert query["code_challenge_method"] == ["S256"]
    assert query["aud"] == [hearth.fhir]
    assert query["redirect_uri"] == [f"{hearth.root}/app/portal/"]

    # Home: what needs attention, then the verified result only, the report, appointments.
    attention = page.locator("section.attention")
    expect(attention).to_contain_text("Your report “Skin screening report” is ready.")
    expect(attention).to_contain_text("An appointment is proposed for")
    expect(attention).to_contain_text("Your report is ready, please book a visit.")
    results = page.get_by_role("region", name="Your results")
    expect(results).to_contain_text("Blood glucose")
    expect(results).to_contain_text("5.4 mmol/L")
    expect(results).to_contain_text("Checked by a clinician")
    expect(results).to_contain_text("not a diagnosis on its own")
    expect(page.get_by_text("Unverified AI finding")).to_have_count(0)
    expect(page.get_by_text("AI lesion classification")).to_have_count(0)
    expect(page.get_by_text(data["tag"])).to_have_count(0)  # nothing of the other patient
    assert fits(page)
    shot(page, f"portal-home-{viewport}")

    # The signed report, downloaded as the PDF itself.
    with page.expect_download() as info:
        page.get_by_role("button", name="Download the report (PDF)").click()
    download = info.value
    assert Path(download.path()).read_bytes() == PDF
    assert download.suggested_filename == "Skin screening report.pdf"

    # Appointments: accept the proposal; the server has it booked, its Slot busy.
    page.get_by_role("link", name="Appointments").click()
    expect(page.get_by_role("heading", name="Your appointments", level=1)).to_be_visible()
    shot(page, f"portal-appointments-{viewport}")
    proposed = page.locator(f"[data-appointment='{data['proposed']['id']}']")
    expect(proposed).to_contain_text("Proposed — waiting for your answer")
    proposed.get_by_role("button", name="Accept").click()
    expect(page.get_by_role("status")).to_contain_text("Appointment accepted")
    expect(proposed).to_contain_text("Booked")
    assert operator.get(f"/Appointment/{data['proposed']['id']}")["status"] == "booked"
    assert operator.get(f"/Slot/{data['held']['id']}")["status"] == "busy"

    # Book the first free Slot with a reason; then cancel that booking.
    first = data["free"][0]
    page.get_by_label("Reason for the visit (optional)").fill("Follow-up of my mole")
    page.locator(f"[data-slot='{first['id']}']").click()
    expect(page.get_by_role("status")).to_contain_text("Appointment booked")
    expect(page.locator(f"[data-slot='{first['id']}']")).to_have_count(0)
    mine = operator.search("Appointment", patient=ref(data["me"]), status="booked")
    [booked] = [a for a in mine if a.get("slot") == [{"reference": ref(first)}]]
    assert booked["description"] == "Follow-up of my mole"
    assert operator.get(f"/Slot/{first['id']}")["status"] == "busy"
    shot(page, f"portal-booked-{viewport}")

    # Move it to the other free time ($reschedule): the first Slot is free again.
    second = data["free"][1]
    page.locator(f"[data-appointment='{booked['id']}']").get_by_role(
        "button", name="Change the time"
    ).click()
    expect(page.get_by_role("heading", name="Choose a new time")).to_be_visible()
    page.locator(f"[data-slot='{second['id']}']").click()
    expect(page.get_by_role("status")).to_contain_text("Appointment moved")
    moved = operator.get(f"/Appointment/{booked['id']}")
    assert moved["slot"] == [{"reference": ref(second)}]
    assert moved["status"] == "booked"
    assert operator.get(f"/Slot/{first['id']}")["status"] == "free"
    assert operator.get(f"/Slot/{second['id']}")["status"] == "busy"
    expect(page.get_by_role("heading", name="Book an appointment")).to_be_visible()

    # Cancel it: the Slot is free again.
    page.once("dialog", lambda d: d.accept())
    page.locator(f"[data-appointment='{booked['id']}']").get_by_role(
        "button", name="Cancel appointment"
    ).click()
    expect(page.get_by_role("status")).to_contain_text("Appointment cancelled")
    expect(page.locator(f"[data-appointment='{booked['id']}']")).to_contain_text("Cancelled")
    assert operator.get(f"/Appointment/{booked['id']}")["status"] == "cancelled"
    assert operator.get(f"/Slot/{second['id']}")["status"] == "free"
    expect(page.get_by_text(f"Someone else's visit {data['tag']}")).to_have_count(0)
    assert fits(page)

    # Messages: the care team's message, and one of the patient's own, sent.
    page.get_by_role("link", name="Messages").click()
    expect(page.get_by_text("Your report is ready, please book a visit.")).to_be_visible()
    text = f"Thank you, I booked a visit ({viewport})."
    page.get_by_label("Your message").fill(text)
    page.get_by_role("button", name="Send").click()
    expect(page.get_by_role("status")).to_contain_text("Message sent")
    expect(page.locator(".messages li.mine").first).to_contain_text(text)
    sent = operator.search("Communication", subject=ref(data["me"]))
    [mine_msg] = [c for c in sent if c["payload"][0]["contentString"] == text]
    assert mine_msg["sender"] == {"reference": ref(data["me"])}
    shot(page, f"portal-messages-{viewport}")
    assert fits(page)

    # Sign out: the token is revoked and this tab forgets it.
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("button", name="Sign in", exact=True)).to_be_visible()
    assert page.evaluate("sessionStorage.length") == 0
    assert not errors, errors
    assert not outside, outside
    operator.close()


def test_patient_sends_a_skin_photo_from_a_phone(hearth, browser):
    operator = Fhir(hearth.fhir, hearth.headers)
    me = person(operator, "Patient", f"Photo{uuid.uuid4().hex[:6]}")
    user = make_user(hearth, "patient", ref(me))
    photo = shared_path("data", "skin_photos", "ISIC_0024310.jpg")
    errors: list[str] = []
    page = watch(browser.new_context(**device("phone")).new_page(), errors, console=False)
    sign_in(page, hearth.root, user)
    page.get_by_role("link", name="Photos").click()
    expect(page.get_by_text("You have not sent any photos yet.")).to_be_visible()
    chooser = page.get_by_label("Take or choose a photo")
    # The phone's camera is offered (capture), and only photos are accepted.
    assert chooser.get_attribute("capture") == "environment"
    assert chooser.get_attribute("accept") == "image/jpeg,image/png"
    send = page.get_by_role("button", name="Send the photo")
    expect(send).to_be_disabled()
    # Not a photo: said in plain words, nothing is sent.
    chooser.set_input_files(
        {"name": "notes.txt", "mimeType": "text/plain", "buffer": b"not a photo"}
    )
    send.click()
    expect(page.get_by_role("alert")).to_contain_text("not a photo we can use")
    assert operator.search("Media", subject=ref(me)) == []
    chooser.set_input_files(str(photo))
    expect(page.get_by_role("img", name="The photo you chose")).to_be_visible()
    page.get_by_label("Where on your body is it?").select_option(label="Back")
    send.click()
    expect(page.get_by_role("status")).to_contain_text("Photo sent")
    card = page.locator("[data-media]")
    expect(card).to_have_count(1)
    expect(card).to_contain_text("Received — waiting for the computer analysis")
    expect(card).to_contain_text("Back")
    expect(card.get_by_role("img")).to_be_visible()
    page.wait_for_function("document.querySelector('[data-media] img').naturalWidth > 0")
    shot(page, "portal-photos-phone")

    # On the server: the photo (a JPEG) and a skin-screening case about it, for this patient.
    [media] = operator.search("Media", subject=ref(me))
    assert media["content"]["contentType"] == "image/jpeg"
    assert base64.b64decode(media["content"]["data"])[:3] == b"\xff\xd8\xff"
    assert media["bodySite"] == {"text": "Back"}
    cases = operator.search("Task", focus=f"Media/{media['id']}")
    [case] = [c for c in cases if "partOf" not in c]
    assert case["for"] == {"reference": ref(me)}
    assert case["businessStatus"]["coding"][0]["code"] == "PENDING_AI"

    # The real skin classifier runs; until a clinician verifies it the patient is told
    # only that the photo is being looked at, never the AI's finding.
    assert "ran" in run_worker(hearth).stdout
    assert (
        operator.get(f"/Task/{case['id']}")["businessStatus"]["coding"][0]["code"] == "AI_ANALYZED"
    )
    page.reload()
    expect(card).to_contain_text("Being looked at by your care team")
    shot(page, "portal-photos-analysed-phone")
    assert fits(page)
    assert not errors, errors
    operator.close()


def test_cadre_registers_a_patient_and_starts_a_screening_on_a_phone(hearth, browser):
    from tests.fhir_server.auth.smart import give_role

    operator = Fhir(hearth.fhir, hearth.headers)
    tag = uuid.uuid4().hex[:6]
    cadre = ref(person(operator, "Practitioner", f"Cadre{tag}"))
    doctor = person(operator, "Practitioner", f"Referral{tag}")
    give_role(hearth, ref(doctor), "doctor")  # listed under "Refer to doctor"
    user = make_user(hearth, "cadre", cadre)
    photo = shared_path("data", "skin_photos", "ISIC_0024872.jpg")
    family = f"Wanjiru{tag}"
    errors: list[str] = []
    page = watch(browser.new_context(**device("phone")).new_page(), errors, console=False)
    sign_in(page, hearth.root, user, "cadre")  # the cadre's whole sign-in journey

    # Not found yet: register them.
    page.get_by_label("Name of the patient").fill(family)
    page.get_by_role("button", name="Find").click()
    expect(page.get_by_text("No patient with this name")).to_be_visible()
    page.get_by_role("main").get_by_role("link", name="Register a patient").click()
    page.get_by_label("Given name").fill("Amani")
    page.get_by_label("Family name").fill(family)
    page.get_by_label("Date of birth").fill("1970-03-14")
    page.get_by_label("Sex").select_option("female")
    page.get_by_label("Mobile phone (optional)").fill("+254700000001")
    shot(page, "cadre-register-phone")
    page.get_by_role("button", name="Register").click()
    expect(page.get_by_role("heading", name=f"Amani {family}")).to_be_visible()
    expect(page.get_by_role("status")).to_contain_text("is registered")
    [registered] = operator.search("Patient", family=family)
    assert registered["birthDate"] == "1970-03-14" and registered["gender"] == "female"
    assert registered["telecom"] == [{"system": "phone", "value": "+254700000001", "use": "mobile"}]

    # The screening: photo, body site, the chosen doctor, urgent, consent.
    page.get_by_label("Take or choose a photo").set_input_files(str(photo))
    page.get_by_label("Where on the body is the spot?").select_option(label="Arm")
    page.get_by_label("Refer to doctor").select_option(label=f"Test Referral{tag}")
    page.get_by_label("Priority").select_option("urgent")
    page.get_by_label("Note for the doctor (optional)").fill("Grew in 3 months")
    start = page.get_by_role("button", name="Send the photo and start the screening")
    start.click()  # without consent the browser keeps the form
    assert page.get_by_label("The patient agreed").evaluate("e => e.matches(':invalid')")
    assert operator.search("Media", subject=ref(registered)) == []
    page.get_by_label("The patient agreed").check()
    start.click()
    expect(page.get_by_role("status")).to_contain_text("Screening started")
    card = page.locator("[data-case]")
    expect(card).to_have_count(1)
    expect(card).to_contain_text("Waiting for the computer analysis")
    expect(card).to_contain_text("Urgent")
    shot(page, "cadre-screening-phone")
    assert fits(page)

    [media] = operator.search("Media", subject=ref(registered))
    assert media["bodySite"] == {"text": "Arm"}
    [case] = [c for c in operator.search("Task", focus=f"Media/{media['id']}") if "partOf" not in c]
    assert case["for"] == {"reference": ref(registered)}
    assert case["priority"] == "urgent"
    assert case["requester"] == {"reference": cadre}
    order = operator.get(f"/{case['basedOn'][0]['reference']}")
    assert order["performer"] == [{"reference": ref(doctor)}]
    assert "Grew in 3 months" in str(case.get("note"))

    # Found by name afterwards.
    page.get_by_role("navigation").get_by_role("link", name="Find a patient").click()
    page.get_by_label("Name of the patient").fill(family)
    page.get_by_role("button", name="Find").click()
    expect(page.get_by_role("link", name=f"Amani {family}")).to_be_visible()
    assert not errors, errors
    operator.close()


def test_staff_sign_in_is_sent_to_the_clinicians_app(hearth, browser):
    operator = Fhir(hearth.fhir, hearth.headers)
    doctor = ref(person(operator, "Practitioner", "PortalDoctor"))
    user = make_user(hearth, "doctor", doctor)
    page = browser.new_page()
    page.goto(f"{hearth.root}/app/portal/")
    page.get_by_role("button", name="Sign in", exact=True).click()  # the patients' button
    log_in(page, user)
    expect(page.get_by_text("This portal is for patients and community")).to_be_visible()
    expect(page.get_by_role("link", name="Open the clinicians' app")).to_have_attribute(
        "href", "/app/"
    )
    operator.close()
