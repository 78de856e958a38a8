"""The web app in a real browser (Debian chromium driven by Playwright) against a running Hearth
on SQLite: a doctor opens /app/, signs in through Hearth's login page (password + TOTP; the app
does the SMART code + PKCE exchange itself), finds the urgent case at the top of the worklist
(with its case type, its time in the browser's locale and time zone), opens it, sees the whole
case — the photo with the heatmap the real `hearth worker` made laid over it (opacity slider),
the AI finding with why it may differ from the most probable class, the flags with their
reasons, the proposed appointment, people by name — claims and completes the review with a
prescription. Then a pharmacist sees the prescription and the patient's allergies and records
the dispense; an administrator previews the report (the unsigned PDF), approves, sees the
delivery fail with its reason and retries it successfully. The Tasks change on the server; the
page loads nothing from outside Hearth; each role's screen is kept under test-artefacts/webapp/."""

from __future__ import annotations

import base64
import io
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import Page, expect
from pypdf import PdfReader

from tests.fhir_server.auth.smart import make_user
from tests.fhir_server.webapp.browser import ARTEFACTS, app_sign_in, browser_hearth, log_in
from tests.inference.conftest import run_worker
from tests.shared import shared_path
from tests.workflow.conftest import Fhir, person, ref
from tests.workflow.conftest import smtp as smtp  # the session's mail server (a fixture)
from tests.workflow.test_cases_http import STEP, business, free_slot, wait_for_mail

# The browser's locale and time zone: dates and times must be written in them.
LOCALE, ZONE = "de-DE", "Africa/Nairobi"
# The routine case's photo: a confident naevus (malignancy 0.002, not referred); the urgent
# case's: 64 % melanoma, which the screening decision refers (urgent whatever the cadre chose).
PHOTOS = ("ISIC_0024872.jpg", "ISIC_0024310.jpg")


@pytest.fixture(scope="module")
def hearth(tmp_path_factory, smtp):  # type: ignore[no-untyped-def]
    with browser_hearth(
        tmp_path_factory.mktemp("webapp"), smtp_host="127.0.0.1", smtp_port=smtp.port,
        smtp_ca_file=smtp.ca_file, smtp_from="reports@hearth.test",
    ) as running:  # fmt: skip
        yield running


def start_case(  # noqa: PLR0913 - the case's settings, each optional but the first five
    operator: Fhir,
    cadre: str,
    doctor: str,
    photo: str,
    priority: str,
    *,
    patient: dict | None = None,
    site: str | None = None,
    taken: str | None = None,
) -> dict:
    tag = uuid.uuid4().hex[:6]
    patient = patient or person(operator, "Patient", f"{priority.title()}{tag}")
    body: dict = {
        "resourceType": "Media",
        "status": "completed",
        "subject": {"reference": ref(patient)},
        "content": {
            "contentType": "image/jpeg",
            "data": base64.b64encode(
                shared_path("data", "skin_photos", photo).read_bytes()
            ).decode(),
            "title": "Lesion photo",
        },
    }
    if site:
        body["bodySite"] = {"text": site}
    if taken:
        body["createdDateTime"] = taken
    media = operator.create(body)
    params = {
        "caseType": {"valueCode": "skin-screening"},
        "patient": {"valueReference": {"reference": ref(patient)}},
        "focus": {"valueReference": {"reference": ref(media)}},
        "referredTo": {"valueReference": {"reference": doctor}},
        "priority": {"valueCode": priority},
    }
    created = operator.op("/Task/$start-case", ("cadre", cadre), params)
    assert created.status_code == 201, created.text
    return {"case": created.json(), "patient": patient}


def shot(page: Page, name: str) -> None:
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTEFACTS / f"app-{name}.png"), full_page=True)


def local(instant: str) -> tuple[str, str]:
    """An instant's calendar date and hh:mm in the browser's time zone, as de-DE writes them."""
    at = datetime.fromisoformat(instant.replace("Z", "+00:00")).astimezone(ZoneInfo(ZONE))
    return at.strftime("%d.%m.%Y"), at.strftime("%H:%M")


# The browser's own PDF viewer (a built-in extension showing the preview) loads its own files;
# nothing of it comes from the network.
BROWSER_OWN = ("chrome-extension://mhjfbmdgcfjbbpaeojofohoefgiehjai/", "chrome://resources/")


def watch(page: Page, root: str, outside: list[str], errors: list[str]) -> None:
    page.on(
        "request",
        lambda r: (
            outside.append(r.url)
            if not r.url.startswith((root, f"blob:{root}/", *BROWSER_OWN))
            else None
        ),
    )
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("response", lambda r: errors.append(f"{r.status} {r.url}") if r.status >= 400 else None)


def no_references(page: Page) -> None:
    """People are named, never shown as references."""
    text = page.locator("main").inner_text()
    for kind in ("Practitioner/", "PractitionerRole/", "Patient/", "Device/"):
        assert kind not in text, (kind, text)


def test_doctor_works_an_urgent_case_in_the_browser(hearth, browser):
    operator = Fhir(hearth.fhir, hearth.headers)
    cadre = ref(person(operator, "Practitioner", "Cadre"))
    doctor = ref(person(operator, "Practitioner", "Doctor"))
    free_slot(operator, doctor, hours=30)  # the urgent case's proposed appointment
    visit_slot = free_slot(operator, doctor, hours=24 * 15)  # the plan's visit in 2 weeks
    book_slot = free_slot(operator, doctor, hours=24 * 20)  # booked from the case view
    user = make_user(hearth, "doctor", doctor)
    routine = start_case(operator, cadre, doctor, PHOTOS[0], "routine")
    # The urgent patient's earlier photo of the same site, half a year ago (already reviewed).
    taken = (datetime.now(UTC) - timedelta(days=180)).replace(microsecond=0).isoformat()
    earlier = start_case(
        operator, cadre, doctor, PHOTOS[0], "routine", site="Left forearm", taken=taken
    )
    urgent = start_case(
        operator, cadre, doctor, PHOTOS[1], "urgent", patient=earlier["patient"],
        site="Left forearm",
    )  # fmt: skip
    assert "ran" in run_worker(hearth).stdout  # the real skin classifier, with heatmaps
    earlier_review = operator.search(
        "Task", **{"part-of": f"Task/{earlier['case']['id']}", "code": f"{STEP}|doctor-review"}
    )[0]
    assert (
        operator.op(f"/Task/{earlier_review['id']}/$claim", ("doctor", doctor)).status_code == 200
    )
    finding = {"resourceType": "Observation", "status": "final", "code": {"text": "Finding"}}
    done = operator.op(
        f"/Task/{earlier_review['id']}/$complete",
        ("doctor", doctor),
        {"output": {"resource": {**finding, "valueString": "Regular naevus"}}},
    )
    assert done.status_code == 200, done.text
    for c in (routine, urgent):
        case = operator.get(f"/Task/{c['case']['id']}")
        assert business(case) == "AI_ANALYZED", case
        c["step"] = operator.search(
            "Task", **{"part-of": f"Task/{case['id']}", "code": f"{STEP}|doctor-review"}
        )[0]
        c["name"] = f"Test {c['patient']['name'][0]['family']}"
    # The routine case is older; only its priority can put the urgent one above it.
    assert routine["step"]["priority"] == "routine", "the AI raised the routine case to urgent"
    assert urgent["step"]["status"] == "requested"
    urgent_case = operator.get(f"/Task/{urgent['case']['id']}")
    [appointment] = [o for o in urgent_case["output"] if "Appointment/" in str(o)]
    appointment = operator.get(f"/{appointment['valueReference']['reference']}")
    [result] = operator.get(f"/Task/{urgent['case']['id']}")["input"][:1]
    observation = operator.get(f"/{result['valueReference']['reference']}")
    # The class probabilities (UCUM "1", no reference range: not the screening score, not the
    # lesion's area or outline).
    classes = [
        c
        for c in observation["component"]
        if "referenceRange" not in c and c.get("valueQuantity", {}).get("code") == "1"
    ]
    top = max(classes, key=lambda c: c["valueQuantity"]["value"])
    area = next(
        c for c in observation["component"] if c["code"]["coding"][0]["code"] == "lesion-area"
    )
    pixels = f"{area['valueQuantity']['value']:,}".replace(",", ".")  # de-DE grouping

    outside: list[str] = []
    errors: list[str] = []
    page = browser.new_context(locale=LOCALE, timezone_id=ZONE).new_page()
    watch(page, hearth.root, outside, errors)
    # An answer with a state this tab never sent is refused before any code exchange.
    page.goto(f"{hearth.root}/app/?code=stolen&state=forged")
    expect(page.get_by_role("alert")).to_contain_text("does not belong to a sign-in")
    assert "code=" not in page.url
    errors.clear()  # the refused answer's own 4xx is not the app's error
    page.get_by_role("button", name="Sign in").click()
    log_in(page, user)

    # The worklist of the doctor role, urgent first; the code is gone from the URL.
    expect(page.get_by_role("heading", name="Worklist: doctor")).to_be_visible()
    assert "code=" not in page.url
    rows = page.locator("table").first.locator("tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.nth(0)).to_contain_text(urgent["name"])
    expect(rows.nth(0)).to_contain_text("Urgent")
    expect(rows.nth(1)).to_contain_text(routine["name"])
    expect(rows.nth(1)).to_contain_text("Routine")
    # Every row names its case type, and its time in the browser's locale and zone.
    for n, c in enumerate((urgent, routine)):
        expect(rows.nth(n)).to_contain_text("Skin lesion screening")
        date, clock = local(c["step"]["authoredOn"])
        expect(rows.nth(n)).to_contain_text(f"{date}, {clock}")
    shot(page, "doctor-worklist")

    # The case: the AI finding with its probabilities and why the finding may not be
    # the most probable class; the heatmap laid over the photo.
    rows.nth(0).get_by_role("link").click()
    expect(page.get_by_role("heading", name=urgent["name"])).to_be_visible()
    expect(page.get_by_text("AI finding:")).to_be_visible()
    expect(page.get_by_role("table", name="Probabilities", exact=True)).to_be_visible()
    probabilities = page.get_by_role("table", name="Probabilities", exact=True).locator("tbody tr")
    expect(probabilities).to_have_count(len(classes))
    expect(probabilities.first).to_contain_text(top["code"]["text"])
    why = page.locator(".why")
    expect(why).to_contain_text("class-balanced")
    expect(why).to_contain_text(top["code"]["text"])
    expect(why).to_contain_text("screening threshold")
    heatmap = page.get_by_role("img", name="AI explanation heatmap over the image")
    expect(heatmap).to_be_visible()
    assert heatmap.get_attribute("src").startswith("blob:")
    page.wait_for_function(
        "document.querySelector('img[alt^=\"AI explanation\"]').naturalWidth > 0"
    )
    photo = page.get_by_role("img", name="Lesion photo")
    expect(photo).to_be_visible()
    assert photo.bounding_box() == heatmap.bounding_box()  # over the photo, not beside
    slider = page.get_by_role("slider", name="Heatmap opacity")
    opacity = "e => getComputedStyle(e).opacity"
    assert heatmap.evaluate(opacity) == "0.6"
    slider.focus()
    page.keyboard.press("Home")
    assert heatmap.evaluate(opacity) == "0"
    page.keyboard.press("ArrowRight")
    assert heatmap.evaluate(opacity) == "0.05"
    expect(page.locator("#heat-opacity-value")).to_have_text("5 %")
    # The lesion's outline over the photo (the centre square, as the heatmap), its area
    # in the caption and the result; a checkbox hides it.
    outline = page.locator(".overlay svg.lesion-outline")
    expect(outline.locator("polygon")).to_have_count(1)
    box, frame = outline.locator("polygon").bounding_box(), photo.bounding_box()
    assert box and frame and box["width"] > 0.2 * frame["width"]
    assert frame["x"] <= box["x"] and box["x"] + box["width"] <= frame["x"] + frame["width"] + 1
    expect(page.locator("p.lesion-area")).to_contain_text(f"Lesion area: {pixels} pixels")
    expect(page.locator(".overlay-figure figcaption")).to_contain_text("lesion's outline")
    page.get_by_label("Show the lesion outline").uncheck()
    expect(outline).to_be_hidden()
    page.get_by_label("Show the lesion outline").check()
    expect(outline).to_be_visible()
    # The flags with their reasons; the proposed appointment; people by name.
    flags = page.locator("#flags")
    expect(flags).to_contain_text("Urgent")
    expect(flags).to_contain_text("raised by the AI")
    expect(flags).to_contain_text("High risk")
    expect(flags).to_contain_text("refer (high risk)")
    date, clock = local(appointment["start"])
    expect(page.locator("#appointment")).to_contain_text(f"Proposed: {date}, {clock}")
    expect(page.locator("#appointment")).to_contain_text("Test Doctor")
    expect(page.locator(".case-line")).to_contain_text("owner Test Doctor")
    expect(page.locator("li[data-step=ai-analysis]")).to_contain_text("completed")
    no_references(page)
    # The same patient's earlier photo of that site beside this one, by date; the AI's
    # probabilities over time (a chart and a table).
    history = page.locator("#history")
    site = history.locator(".site-group", has_text="Left forearm (this photo's site)")
    expect(site.locator("figure")).to_have_count(2)
    before, now = local(taken.replace("+00:00", "Z"))
    expect(site.locator("figure").first).to_contain_text(f"{before}, {now}")
    expect(site.locator("figure").nth(1)).to_contain_text("this case")
    expect(history.get_by_role("img", name=f"Left forearm, {before}")).to_be_visible()
    expect(history.locator("svg.trend:not(.area) circle")).to_have_count(2)
    # Each photo with its lesion outline; the area over time for the site.
    expect(site.locator("figure svg.lesion-outline polygon")).to_have_count(2)
    expect(site.locator("figure").nth(1)).to_contain_text(f"lesion area {pixels} pixels")
    expect(site.locator(".area-change")).to_contain_text(f"→ {pixels} pixels")
    expect(site.locator(".area-change")).to_contain_text("%")
    expect(site.locator("svg.trend.area circle")).to_have_count(2)
    over_time = page.get_by_role("table", name="AI probabilities over time")
    expect(over_time.locator("thead th")).to_have_count(3)
    expect(over_time).to_contain_text(top["code"]["text"])
    expect(over_time.locator("tr.lesion-area")).to_contain_text(f"{pixels} pixels")
    shot(page, "doctor-case")
    # The earlier case opens (the case itself, with its steps), and back.
    site.locator("figure").first.get_by_role("link", name="Open").click()
    expect(page.locator("li[data-step=doctor-review]")).to_contain_text("Regular naevus")
    expect(page.get_by_role("button", name="Claim")).to_have_count(0)
    page.go_back()
    expect(page.get_by_role("button", name="Claim")).to_be_visible()

    # Claim: the step is the doctor's on the server.
    page.get_by_role("button", name="Claim").click()
    expect(page.get_by_role("status")).to_contain_text("Claimed")
    step = operator.get(f"/Task/{urgent['step']['id']}")
    assert step["status"] == "in-progress"
    assert step["owner"] == {"reference": doctor}

    # A treatment plan: a follow-up photo in 3 months and an excision referral, each
    # made as its own resource and listed with its status ($plan-treatment).
    expect(page.get_by_label("Finding (required)")).to_be_visible()  # re-rendered
    page.get_by_label("Plan title (required)").fill("Watch and excise")
    page.get_by_label("In how many months (empty: none)").fill("3")
    page.get_by_label("Referral (e.g. excision biopsy, skin clinic)").fill("Excision biopsy")
    page.get_by_label("Within how many days", exact=True).fill("30")
    # ... and a follow-up visit with the doctor in 2 weeks: their first free Slot then.
    page.get_by_label("With (empty: none)").select_option(label="Test Doctor")
    page.get_by_label("In how many weeks").fill("2")
    page.get_by_role("button", name="Save the plan").click()
    expect(page.get_by_role("status")).to_contain_text("Treatment plan saved")
    planned = page.locator("ul.plan li")
    expect(planned).to_have_count(3)
    expect(planned.nth(0)).to_contain_text("Follow-up photo")
    expect(planned.nth(1)).to_contain_text("Excision biopsy")
    expect(planned.nth(2)).to_contain_text("Appointment: Follow-up visit in 2 week(s)")
    expect(planned.nth(2)).to_contain_text("with Test Doctor")
    expect(planned.nth(2)).to_contain_text("booked")
    [careplan] = operator.search("CarePlan", subject=ref(urgent["patient"]))
    assert careplan["title"] == "Watch and excise" and careplan["author"] == {"reference": doctor}  # fmt: skip
    made = [operator.get(f"/{a['reference']['reference']}") for a in careplan["activity"]]
    assert [r["resourceType"] for r in made] == ["Task", "ServiceRequest", "Appointment"]
    assert made[2]["slot"] == [{"reference": ref(visit_slot)}]
    assert operator.get(f"/{ref(visit_slot)}")["status"] == "busy"

    # Refer and book from the case view, without a plan ($refer, $book with basedOn).
    page.get_by_label("Referral (required: what and where)").fill("Dermatology review")
    page.get_by_label("Refer to").select_option(label="Test Doctor")
    page.get_by_role("button", name="Refer", exact=True).click()
    expect(page.get_by_role("status")).to_contain_text("Referral made")
    expect(page.locator("ul.refer-book")).to_contain_text("Referral: Dermatology review · to Test Doctor")  # fmt: skip
    page.get_by_label("Book with").select_option(label="Test Doctor")
    expect(page.locator("#book-slots input[type=radio]")).to_have_count(1)
    page.get_by_label("Reason for the appointment").fill("Discuss the biopsy")
    page.get_by_role("button", name="Book", exact=True).click()
    expect(page.get_by_role("status")).to_contain_text("Booked")
    order = urgent["case"]["basedOn"][0]["reference"]
    booked = operator.search("Appointment", **{"based-on": order, "slot": ref(book_slot)})
    assert [b["status"] for b in booked] == ["booked"]
    assert booked[0]["description"] == "Discuss the biopsy"
    # The case's appointments: the AI's proposal, the plan's visit and this one.
    expect(page.locator("ul.refer-book li[data-appointment]")).to_have_count(3)
    shot(page, "doctor-plan")

    # Complete without the required finding: the browser keeps the form.
    page.get_by_role("button", name="Complete step").click()
    finding = page.get_by_label("Finding (required)")
    assert finding.evaluate("e => e.matches(':invalid') && e.form.checkValidity() === false")
    expect(page.get_by_role("status")).to_contain_text("Booked")  # unsent
    finding.fill("Irregular pigmented lesion, 7 mm")
    page.get_by_label("Conclusion for the report").fill("Benign naevus likely; review")
    page.get_by_label("Prescription: medication").fill("Hydrocortisone 1 % cream")
    page.get_by_label("Prescription: dosage instructions").fill("Apply twice daily")
    # The coded diagnosis is one of the classes the AI chose between (docs/analytics.md).
    diagnosis = page.get_by_label("Diagnosis (coded, compared with the AI finding)")
    diagnosis.select_option(label="melanocytic nevus")
    page.get_by_role("button", name="Complete step").click()
    # What happened, in words: the case's status and its next step.
    expect(page.get_by_role("status")).to_contain_text(
        "Completed: the case is now reviewed by a doctor"
    )
    expect(page.get_by_role("status")).to_contain_text("next: Pharmacist review")
    expect(page.locator("#step-status")).to_contain_text("completed")
    review = page.locator("li[data-step=doctor-review]")
    expect(review).to_contain_text("Test Doctor")
    expect(review).to_contain_text("Doctor's finding: Irregular pigmented lesion, 7 mm")
    expect(review).to_contain_text("Conclusion: Benign naevus likely; review")
    expect(review).to_contain_text("Prescription: Hydrocortisone 1 % cream")
    no_references(page)

    # A server error (OperationOutcome) reads as plain words.
    errors.clear()
    page.goto(f"{hearth.root}/app/#/task/no-such-step")
    expect(page.get_by_role("alert")).to_contain_text("This was not found")
    expect(page.get_by_role("alert")).to_contain_text("no-such-step")
    errors.clear()  # the 404 answer is what this checks
    page.get_by_role("link", name="Back to the worklist").click()
    expect(page.get_by_role("heading", name="Worklist: doctor")).to_be_visible()
    expect(page.locator("table").first.locator("tbody tr")).to_have_count(1)

    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("button", name="Sign in")).to_be_visible()
    assert page.evaluate("sessionStorage.length") == 0
    assert not errors, errors
    assert not outside, outside

    step = operator.get(f"/Task/{urgent['step']['id']}")
    assert step["status"] == "completed"
    [finding] = [o for o in step["output"] if "Observation/" in str(o)]
    observation = operator.get(f"/{finding['valueReference']['reference']}")
    assert observation["valueString"] == "Irregular pigmented lesion, 7 mm"
    [prescribed] = [o for o in step["output"] if "MedicationRequest/" in str(o)]
    request = operator.get(f"/{prescribed['valueReference']['reference']}")
    assert request["medicationCodeableConcept"] == {"text": "Hydrocortisone 1 % cream"}
    assert request["requester"] == {"reference": doctor}
    [coded] = [o for o in step["output"] if o["type"]["coding"][0]["code"] == "conclusion-code"]
    assert {"system": "http://hearth.local/fhir/CodeSystem/ai-model-label/skin", "code": "nv"} in [
        {k: c[k] for k in ("system", "code")} for c in coded["valueCodeableConcept"]["coding"]
    ]
    case = operator.get(f"/Task/{urgent['case']['id']}")
    assert business(case) == "DOCTOR_REVIEWED"
    operator.close()


def step_of(operator: Fhir, case_id: str, code: str) -> dict:
    [found] = operator.search("Task", **{"part-of": f"Task/{case_id}", "code": f"{STEP}|{code}"})
    return found


def test_pharmacist_dispenses_and_admin_previews_approves_and_retries(hearth, smtp, browser):
    operator = Fhir(hearth.fhir, hearth.headers)
    cadre = ref(person(operator, "Practitioner", "Cadre"))
    doctor = ref(person(operator, "Practitioner", "Prescriber"))
    pharmacist = ref(person(operator, "Practitioner", "Pharmacist"))
    admin = ref(person(operator, "Practitioner", "Approver"))
    started = start_case(operator, cadre, doctor, PHOTOS[0], "routine")
    case_id, patient = started["case"]["id"], started["patient"]
    name = f"Test {patient['name'][0]['family']}"
    operator.create(
        {
            "resourceType": "AllergyIntolerance",
            "clinicalStatus": {"text": "active"},
            "criticality": "high",
            "code": {"text": "Penicillin"},
            "patient": {"reference": ref(patient)},
            "reaction": [{"manifestation": [{"text": "Hives"}]}],
        }
    )
    assert "ran" in run_worker(hearth).stdout
    # The doctor's review, through the API (the browser journey of it is the test above).
    review = step_of(operator, case_id, "doctor-review")
    assert operator.op(f"/Task/{review['id']}/$claim", ("doctor", doctor)).status_code == 200
    prescription = {
        "resourceType": "MedicationRequest",
        "status": "active",
        "intent": "order",
        "medicationCodeableConcept": {"text": "Mometasone 0.1 % cream"},
        "dosageInstruction": [{"text": "Apply once daily for 14 days"}],
    }
    finding = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "Doctor's finding"},
        "valueString": "Eczematous patch beside the naevus",
    }
    done = operator.op(
        f"/Task/{review['id']}/$complete",
        ("doctor", doctor),
        {
            "output": [{"resource": finding}, {"resource": prescription}],
            "conclusion": {"valueString": "Benign naevus; eczema treated"},
        },
    )
    assert done.status_code == 200, done.text
    pharmacist_user = make_user(hearth, "pharmacist", pharmacist)
    admin_user = make_user(hearth, "admin", admin)

    outside: list[str] = []
    errors: list[str] = []
    # The pharmacist: the prescription, the allergies, the finding; records the dispense.
    context = browser.new_context(locale=LOCALE, timezone_id=ZONE, accept_downloads=True)
    page = context.new_page()
    watch(page, hearth.root, outside, errors)
    app_sign_in(page, hearth.root, pharmacist_user, "Worklist: pharmacist")
    row = page.locator("tbody tr", has_text=name)
    expect(row).to_contain_text("Skin lesion screening")
    expect(row).to_contain_text("Pharmacist review")
    row.get_by_role("link").click()
    expect(page.get_by_role("heading", name=name)).to_be_visible()
    prescriptions = page.get_by_role("table", name="Prescriptions of this case")
    expect(prescriptions).to_contain_text("Mometasone 0.1 % cream")
    expect(prescriptions).to_contain_text("Apply once daily for 14 days")
    expect(prescriptions).to_contain_text("Test Prescriber")
    expect(prescriptions).to_contain_text("not yet")
    expect(page.locator("#allergies")).to_contain_text("Penicillin")
    expect(page.locator("#allergies")).to_contain_text("criticality high")
    expect(page.locator("#allergies")).to_contain_text("Hives")
    expect(page.get_by_text("AI finding:")).to_be_visible()
    expect(page.locator("li[data-step=doctor-review]")).to_contain_text(
        "Eczematous patch beside the naevus"
    )
    no_references(page)
    page.get_by_role("button", name="Claim").click()
    expect(page.get_by_role("status")).to_contain_text("Claimed")
    expect(page.get_by_label("Prescription dispensed")).to_contain_text("Mometasone")
    page.get_by_label("Quantity handed over").fill("1")
    page.get_by_label("Unit (e.g. tablets, tube)").fill("tube")
    expect(page.get_by_label("Instructions given to the patient")).to_have_value(
        "Apply once daily for 14 days"
    )
    page.get_by_label("Note").fill("Counselled on thin application")
    page.get_by_role("button", name="Complete step").click()
    expect(page.get_by_role("status")).to_contain_text("done by the pharmacist")
    expect(prescriptions).to_contain_text("Dispensed: Mometasone 0.1 % cream, 1 tube")
    step = page.locator("li[data-step=pharmacist-review]")
    expect(step).to_contain_text("Test Pharmacist")
    expect(step).to_contain_text("Counselled on thin application")
    no_references(page)
    shot(page, "pharmacist-case")
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("button", name="Sign in")).to_be_visible()
    context.close()

    # The admin: the preview (unsigned PDF), approval, the failed delivery with its
    # reason (the patient has no e-mail address), and a retry once there is one.
    context = browser.new_context(locale=LOCALE, timezone_id=ZONE, accept_downloads=True)
    page = context.new_page()
    watch(page, hearth.root, outside, errors)
    app_sign_in(page, hearth.root, admin_user, "Worklist: admin")
    page.locator("tbody tr", has_text=name).get_by_role("link").click()
    expect(page.get_by_role("heading", name=name)).to_be_visible()
    expect(page.locator("#delivery-status")).to_contain_text("not yet")
    page.get_by_role("button", name="Preview the report").click()
    frame = page.locator("iframe[title^='Report preview']")
    expect(frame).to_be_visible()
    assert frame.get_attribute("src").startswith(f"blob:{hearth.root}/")
    with page.expect_download() as download:
        page.get_by_role("link", name="Download the preview (PDF)").click()
    pdf = Path(download.value.path()).read_bytes()
    assert pdf.startswith(b"%PDF-")
    reader = PdfReader(io.BytesIO(pdf))
    assert "/AcroForm" not in reader.trailer["/Root"]  # not signed
    text = " ".join(p.extract_text() for p in reader.pages)
    assert "Benign naevus; eczema treated" in text and "Mometasone" in text
    shot(page, "admin-preview")
    # The PDF viewer (an out-of-process frame) keeps the focus, and headless chromium then
    # drops the next click on the page: give the page the focus back first, as a
    # keyboard user would.
    claim = page.get_by_role("button", name="Claim")
    claim.focus()
    claim.click()
    expect(page.get_by_role("status")).to_contain_text("Claimed")
    page.get_by_role("button", name="Approve and complete").click()
    status = page.get_by_role("status")
    expect(status).to_contain_text("Approved, but the report was not delivered")
    expect(status).to_contain_text("has no e-mail address")
    expect(status).not_to_contain_text("next step")
    expect(page.locator("#delivery-status")).to_contain_text("failed")
    expect(page.locator("#delivery-status")).to_contain_text("has no e-mail address")
    expect(page.locator("#flags")).to_contain_text("Report not delivered")
    # The signed report was stored all the same: it opens, signed this time.
    page.get_by_role("button", name="Show the signed report").click()
    expect(page.locator("iframe[title='Signed report (PDF)']")).to_be_visible()
    with page.expect_download() as download:
        page.get_by_role("link", name="Download the signed report (PDF)").click()
    signed = PdfReader(io.BytesIO(Path(download.value.path()).read_bytes()))
    assert "/AcroForm" in signed.trailer["/Root"]  # the signature field
    assert "Benign naevus; eczema treated" in signed.pages[0].extract_text() + " ".join(
        p.extract_text() for p in signed.pages[1:]
    )
    shot(page, "admin-delivery-failed")
    assert business(operator.get(f"/Task/{case_id}")) == "REPORT_FAILED"

    address = f"patient-{uuid.uuid4().hex[:8]}@example.org"
    fixed = operator.get(f"/Patient/{patient['id']}")
    fixed["telecom"] = [{"system": "email", "value": address}]
    assert operator.http.put(f"/Patient/{patient['id']}", json=fixed).status_code == 200
    # The failed delivery waits on the admin's worklist, with its reason; it opens.
    to_worklist = page.get_by_role("link", name="Worklist")
    to_worklist.focus()  # the signed report's viewer had the focus (see above)
    to_worklist.click()
    failed = page.locator("section", has_text="Reports not delivered").locator(
        "tbody tr", has_text=name
    )
    expect(failed).to_contain_text("Report delivery to the patient")
    expect(failed).to_contain_text(f"failed: {name} has no e-mail address")
    expect(failed).to_contain_text("Skin lesion screening")
    shot(page, "admin-worklist")
    failed.get_by_role("link").click()
    expect(page.locator("#delivery-status")).to_contain_text("has no e-mail address")
    page.get_by_role("button", name="Retry delivery").click()
    expect(status).to_contain_text("Delivered: the signed report was e-mailed")
    expect(page.locator("#delivery-status")).to_contain_text("delivered to the patient")
    expect(page.get_by_role("button", name="Retry delivery")).to_have_count(0)
    page.get_by_role("link", name="Worklist").click()
    expect(page.get_by_text("No report delivery has failed.")).to_be_visible()
    no_references(page)
    shot(page, "admin-delivered")
    assert not errors, errors
    assert not outside, outside
    wait_for_mail(smtp, address)
    assert business(operator.get(f"/Task/{case_id}")) == "REPORT_DELIVERED"
    [dispensed] = [
        o
        for o in step_of(operator, case_id, "pharmacist-review")["output"]
        if "MedicationDispense/" in str(o)
    ]
    dispense = operator.get(f"/{dispensed['valueReference']['reference']}")
    assert dispense["status"] == "completed"
    assert dispense["quantity"] == {"value": 1, "unit": "tube"}
    assert dispense["performer"] == [{"actor": {"reference": pharmacist}}]
    assert dispense["authorizingPrescription"][0]["reference"].startswith("MedicationRequest/")
    assert dispense["subject"] == {"reference": ref(patient)}
    operator.close()


def test_doctor_sees_a_lung_risk_case_without_an_image(hearth, browser):
    """A case about the record (lung-risk: intake questionnaire, PLCOm2012 risk), not a photo:
    no image, the risk and its high-risk flag with the reason, the referral the review made."""
    operator = Fhir(hearth.fhir, hearth.headers)
    cadre = ref(person(operator, "Practitioner", "Intake"))
    doctor = ref(person(operator, "Practitioner", "Pulmonologist"))
    patient = person(operator, "Patient", f"Lung{uuid.uuid4().hex[:6]}")
    name = f"Test {patient['name'][0]['family']}"
    params = {
        "caseType": {"valueCode": "lung-risk"},
        "patient": {"valueReference": {"reference": ref(patient)}},
    }
    created = operator.op("/Task/$start-case", ("cadre", cadre), params)
    assert created.status_code == 201, created.text
    case_id = created.json()["id"]
    intake = step_of(operator, case_id, "intake")
    assert operator.op(f"/Task/{intake['id']}/$claim", ("cadre", cadre)).status_code == 200
    answers = {
        "resourceType": "QuestionnaireResponse",
        "status": "completed",
        "item": [{"linkId": "age", "answer": [{"valueInteger": 67}]}],
    }
    done = operator.op(
        f"/Task/{intake['id']}/$complete", ("cadre", cadre), {"output": {"resource": answers}}
    )
    assert done.status_code == 200, done.text
    risk_step = step_of(operator, case_id, "risk-calculation")
    device = operator.create(
        {"resourceType": "Device", "deviceName": [{"name": "PLCOm2012", "type": "model-name"}]}
    )
    risk = operator.create(
        {
            "resourceType": "RiskAssessment",
            "status": "final",
            "subject": {"reference": ref(patient)},
            "basedOn": {"reference": f"Task/{risk_step['id']}"},
            "method": {"text": "PLCOm2012"},
            "prediction": [
                {"outcome": {"text": "Lung cancer within 6 years"}, "probabilityDecimal": 0.042}
            ],
        }
    )
    done = operator.op(
        f"/Task/{risk_step['id']}/$complete",
        ("ai", ref(device)),
        {
            "result": {"valueReference": {"reference": ref(risk)}},
            "highRisk": {"valueBoolean": True},
        },
    )
    assert done.status_code == 200, done.text
    user = make_user(hearth, "doctor", doctor)

    outside: list[str] = []
    errors: list[str] = []
    page = browser.new_context(locale=LOCALE, timezone_id=ZONE).new_page()
    watch(page, hearth.root, outside, errors)
    app_sign_in(page, hearth.root, user, "Worklist: doctor")
    row = page.locator("tbody tr", has_text=name)
    expect(row).to_contain_text("Lung cancer risk (PLCOm2012)")
    expect(row).to_contain_text("Urgent")
    row.get_by_role("link").click()
    expect(page.get_by_role("heading", name=name)).to_be_visible()
    expect(page.get_by_text("Risk: 4.20 %")).to_be_visible()
    expect(page.locator("#flags")).to_contain_text(
        "High risk: Lung cancer within 6 years: 4.20 % by PLCOm2012"
    )
    expect(page.get_by_role("heading", name="Image")).to_have_count(0)
    expect(page.get_by_role("heading", name="Report")).to_have_count(0)  # makes none
    expect(page.locator("li[data-step=intake]")).to_contain_text("Test Intake")
    expect(page.locator("li[data-step=intake]")).to_contain_text("Questionnaire answers (1)")
    expect(page.locator("li[data-step=risk-calculation]")).to_contain_text("PLCOm2012")
    no_references(page)
    page.get_by_role("button", name="Claim").click()
    expect(page.get_by_role("status")).to_contain_text("Claimed")
    page.get_by_label("Finding (required)").fill("Heavy smoker, 40 pack-years")
    page.get_by_role("button", name="Complete step").click()
    expect(page.get_by_role("status")).to_contain_text(
        "reviewed by a doctor (DOCTOR_REVIEWED); the case is complete"
    )
    expect(page.locator("li[data-step=risk-calculation]")).to_contain_text(
        "Risk: Lung cancer within 6 years: 4.20 % by PLCOm2012"
    )
    expect(page.locator("#case-outputs")).to_contain_text(
        "Order: Lung cancer screening (low-dose CT) (active)"
    )
    no_references(page)
    shot(page, "doctor-lung-risk")
    assert not errors, errors
    assert not outside, outside
    assert business(operator.get(f"/Task/{case_id}")) == "DOCTOR_REVIEWED"
    operator.close()
