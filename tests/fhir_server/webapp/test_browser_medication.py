"""Prescribing from the formulary and the warnings it raises, in a real browser (Debian chromium,
Playwright) against a running Hearth on SQLite: the doctor types in the medication picker, picks
ibuprofen (an RxNorm code from ValueSet/$expand of the formulary) for a patient on warfarin and
allergic to aspirin, and sees the interaction and allergy warnings right after completing; the
pharmacist sees them beside the prescription to dispense, with severity, why and source, cannot
complete the dispense without acknowledging them, and the dispense records the acknowledgement
(MedicationDispense.detectedIssue and note). Screens are kept under test-artefacts/webapp/."""

from __future__ import annotations

from playwright.sync_api import expect

from terminology.formulary import RXNORM
from tests.fhir_server.auth.smart import make_user
from tests.fhir_server.webapp.browser import app_sign_in
from tests.fhir_server.webapp.test_browser_app import (
    LOCALE,
    PHOTOS,
    ZONE,
    shot,
    start_case,
    step_of,
    watch,
)
from tests.fhir_server.webapp.test_browser_app import (
    hearth as hearth,  # the module's own Hearth (a fixture)
)
from tests.fhir_server.webapp.test_browser_app import (
    smtp as smtp,  # the session's mail server (a fixture)
)
from tests.workflow.conftest import Fhir, person, ref
from tests.workflow.test_cases_http import ai_observation


def coded(code: str, display: str) -> dict:
    return {"coding": [{"system": RXNORM, "code": code, "display": display}], "text": display}


def test_doctor_picks_from_the_formulary_and_the_pharmacist_sees_the_warning(hearth, browser):  # type: ignore[no-untyped-def]
    operator = Fhir(hearth.fhir, hearth.headers)
    cadre = ref(person(operator, "Practitioner", "Cadre"))
    doctor = ref(person(operator, "Practitioner", "Prescriber"))
    pharmacist = ref(person(operator, "Practitioner", "Dispenser"))
    device = operator.create({"resourceType": "Device", "deviceName": [{"name": "skin model", "type": "model-name"}]})  # fmt: skip
    started = start_case(operator, cadre, doctor, PHOTOS[0], "routine")
    case, patient = started["case"], started["patient"]
    name = f"Test {patient['name'][0]['family']}"
    operator.create({"resourceType": "MedicationRequest", "status": "active", "intent": "order",
                     "subject": {"reference": ref(patient)}, "medicationCodeableConcept": coded("11289", "warfarin"),
                     "dosageInstruction": [{"text": "5 mg daily"}]})  # fmt: skip
    operator.create({"resourceType": "AllergyIntolerance", "patient": {"reference": ref(patient)},
                     "code": coded("1191", "aspirin"), "reaction": [{"manifestation": [{"text": "Wheeze"}]}]})  # fmt: skip
    # The AI step, through the API (the model's own journey is test_browser_app.py's).
    ai = step_of(operator, case["id"], "ai-analysis")
    obs = ai_observation(operator, case, {"ai": ("ai", ref(device))}, case["focus"]["reference"], "Melanocytic nevus")  # fmt: skip
    done = operator.op(f"/Task/{ai['id']}/$complete", ("ai", ref(device)), {"result": {"valueReference": {"reference": ref(obs)}}})  # fmt: skip
    assert done.status_code == 200, done.text
    doctor_user = make_user(hearth, "doctor", doctor)
    pharmacist_user = make_user(hearth, "pharmacist", pharmacist)

    outside: list[str] = []
    errors: list[str] = []
    context = browser.new_context(locale=LOCALE, timezone_id=ZONE)
    page = context.new_page()
    watch(page, hearth.root, outside, errors)
    app_sign_in(page, hearth.root, doctor_user, "Worklist: doctor")
    page.locator("tbody tr", has_text=name).get_by_role("link").click()
    expect(page.get_by_role("heading", name=name)).to_be_visible()
    page.get_by_role("button", name="Claim").click()
    expect(page.get_by_role("status")).to_contain_text("Claimed")
    page.get_by_label("Finding (required)").fill("Eczema beside a benign naevus")
    picker = page.get_by_role("combobox", name="Prescription: medication")
    picker.press_sequentially("ibup")
    option = page.get_by_role("option", name="ibuprofen")
    expect(option).to_contain_text("RxNorm 5640")
    option.click()
    expect(picker).to_have_value("ibuprofen")
    expect(page.locator("#medication-coding")).to_contain_text("Coded: ibuprofen (RxNorm 5640)")
    # Typing past the choice makes it free text again, said to be uncoded.
    picker.press_sequentially(" gel")
    expect(page.locator("#medication-coding")).to_contain_text("Not coded")
    picker.fill("")
    picker.press_sequentially("ibupro")
    page.get_by_role("option", name="ibuprofen").click()
    page.get_by_label("Prescription: dosage instructions").fill("400 mg three times daily")
    shot(page, "doctor-medication-picker")
    page.get_by_role("button", name="Complete step").click()
    expect(page.get_by_role("status")).to_contain_text("Completed")
    # Right after prescribing: the warnings of this case's prescription.
    warnings = page.locator("#case-issues")
    expect(warnings.locator("li.issue")).to_have_count(2)
    interaction = warnings.locator("li.issue", has_text="Drug Interaction Alert")
    expect(interaction).to_contain_text("High severity")
    expect(interaction).to_contain_text("warfarin")
    allergy = warnings.locator("li.issue", has_text="Allergy Alert")
    expect(allergy).to_contain_text("aspirin")
    # The treatment plan's medication comes from the same picker, and is checked too.
    page.get_by_label("Plan title (required)").fill("Psoriasis")
    plan_picker = page.get_by_role("combobox", name="Medication from the formulary")
    plan_picker.press_sequentially("methotr")
    page.get_by_role("option", name="methotrexate").click()
    page.get_by_label("Dosage instructions", exact=True).fill("7.5 mg once weekly")
    page.get_by_role("button", name="Save the plan").click()
    expect(page.get_by_role("status")).to_contain_text("Treatment plan saved")
    warnings = page.locator("#case-issues")
    expect(warnings.locator("li.issue")).to_have_count(3)
    nsaid = warnings.locator("li.issue", has_text="methotrexate")
    expect(nsaid).to_contain_text("Moderate severity")
    expect(nsaid).to_contain_text("Source: Methotrexate US prescribing information")
    shot(page, "doctor-medication-warnings")
    page.get_by_role("button", name="Sign out").click()
    context.close()

    context = browser.new_context(locale=LOCALE, timezone_id=ZONE)
    page = context.new_page()
    watch(page, hearth.root, outside, errors)
    app_sign_in(page, hearth.root, pharmacist_user, "Worklist: pharmacist")
    page.locator("tbody tr", has_text=name).get_by_role("link").click()
    warnings = page.locator("#case-issues")
    expect(warnings.locator("li.issue")).to_have_count(3)
    expect(warnings.locator("li.issue").first).to_contain_text("High severity")
    interaction = warnings.locator("li.issue", has_text="ibuprofen + warfarin")
    expect(interaction).to_contain_text("High severity")
    expect(interaction).to_contain_text("Drug Interaction Alert")
    expect(interaction).to_contain_text("bleeding")
    expect(interaction).to_contain_text(
        "Source: Coumadin (warfarin sodium) US prescribing information"
    )
    expect(page.get_by_role("table", name="Prescriptions of this case")).to_contain_text(
        "ibuprofen"
    )
    page.get_by_role("button", name="Claim").click()
    expect(page.get_by_role("status")).to_contain_text("Claimed")
    page.get_by_label("Quantity handed over").fill("30")
    page.get_by_label("Unit (e.g. tablets, tube)").fill("tablets")
    page.get_by_role("button", name="Complete step").click()
    box = page.get_by_label("I have reviewed the 3 warnings")
    assert box.evaluate("e => e.matches(':invalid') && e.form.checkValidity() === false")
    box.check()
    page.get_by_label("Dispensing record").fill("Prescriber agreed: paracetamol instead if bleeding signs; INR check in 5 days")  # fmt: skip
    shot(page, "pharmacist-medication-warnings")
    page.get_by_role("button", name="Complete step").click()
    expect(page.get_by_role("status")).to_contain_text("done by the pharmacist")
    assert not errors, errors
    assert not outside, outside

    review = step_of(operator, case["id"], "doctor-review")
    [prescribed] = [o for o in review["output"] if "MedicationRequest/" in str(o)]
    request = operator.get(f"/{prescribed['valueReference']['reference']}")
    assert request["medicationCodeableConcept"]["coding"] == [{"system": RXNORM, "code": "5640", "display": "ibuprofen"}]  # fmt: skip
    assert len(request["detectedIssue"]) == 2
    [dispensed] = [o for o in step_of(operator, case["id"], "pharmacist-review")["output"] if "MedicationDispense/" in str(o)]  # fmt: skip
    dispense = operator.get(f"/{dispensed['valueReference']['reference']}")
    acknowledged = {d["reference"] for d in dispense["detectedIssue"]}
    assert (
        len(acknowledged) == 3 and {d["reference"] for d in request["detectedIssue"]} < acknowledged
    )
    [plan] = operator.search("CarePlan", subject=ref(patient))
    mtx = operator.get(f"/{plan['activity'][0]['reference']['reference']}")
    assert mtx["medicationCodeableConcept"]["coding"][0]["code"] == "6851"
    assert [d["reference"] for d in mtx["detectedIssue"]] == sorted(
        acknowledged - {d["reference"] for d in request["detectedIssue"]}
    )
    assert dispense["note"][0]["text"].startswith("Prescriber agreed")
    assert dispense["note"][0]["authorReference"] == {"reference": pharmacist}
    operator.close()
