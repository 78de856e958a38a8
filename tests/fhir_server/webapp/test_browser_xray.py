"""The portal's chest X-ray screens (src/xray.jsx) and the cadre's lung check for a patient, in
Debian chromium, desktop and phone.

A patient opens **Chest X-ray**: the file input offers the camera and takes JPEG, PNG and DICOM; a
text file is refused in plain words and a skin photo is refused with the quality gate's reason
(nothing stored); a PNG dropped on the box goes up with a progress bar (the request is held until
the bar was seen) and starts the chest X-ray case; a DICOM file from a "hospital CD" whose header
names someone else becomes an ImagingStudy of this patient. The real worker runs the pneumonia
model: the patient is told only that the care team is looking; after a doctor's verification the
checked result shows in plain words with the disclaimer.

A community health worker opens a patient's page, fills the lung check for them (the intake is
completed by the cadre, the answers are the patient's), then sends a chest X-ray for them."""

from __future__ import annotations

import base64
import uuid

import pytest
from playwright.sync_api import Page, expect

from tests.fhir_server.auth.smart import make_user
from tests.fhir_server.auth.test_upload_xray import chest_png, small_chest_dicom
from tests.fhir_server.webapp.browser import device, fits, own_hearth, shot, sign_in, watch
from tests.fhir_server.webapp.test_browser_lungrisk import answer, business, lung_cases, step
from tests.inference.conftest import run_worker
from tests.shared import shared_path
from tests.workflow.conftest import Fhir, person, ref

hearth = own_hearth  # its tests run the AI worker: a Hearth of its own
CASE = "http://hearth.local/fhir/CodeSystem/workflow-case"
FINDING = {
    "normal": "no sign of pneumonia",
    "pneumonia": "signs of pneumonia",
    "uncertain": "not clear",
}


def xray_cases(operator: Fhir, patient: str) -> list[dict]:
    found = operator.search("Task", patient=patient, code=f"{CASE}|imaging-review")
    return [c for c in found if "partOf" not in c]


def drop_file(page: Page, target: str, data: bytes, name: str, kind: str) -> None:
    """A file dropped on ``target`` (a real DataTransfer, as a desktop browser makes it)."""
    transfer = page.evaluate_handle(
        """([b64, name, kind]) => {
            const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
            const dt = new DataTransfer();
            dt.items.add(new File([bytes], name, { type: kind }));
            return dt;
        }""",
        [base64.b64encode(data).decode(), name, kind],
    )
    page.dispatch_event(target, "drop", {"dataTransfer": transfer})


@pytest.mark.parametrize("viewport", ["desktop", "phone"])
def test_patient_sends_a_chest_xray_and_sees_the_verified_result(hearth, browser, viewport):
    operator = Fhir(hearth.fhir, hearth.headers)
    tag = uuid.uuid4().hex[:6]
    me = ref(person(operator, "Patient", f"Ray{tag}"))
    doctor = ref(person(operator, "Practitioner", f"Lungs{tag}"))
    user = make_user(hearth, "patient", me)
    errors: list[str] = []
    page = watch(browser.new_context(**device(viewport)).new_page(), errors, console=False)
    sign_in(page, hearth.root, user)
    page.get_by_role("link", name="Chest X-ray").click()
    expect(page.get_by_role("heading", name="Chest X-ray", exact=True)).to_be_visible()
    expect(page.get_by_text("No chest X-ray yet.")).to_be_visible()
    chooser = page.get_by_label("Take or choose the X-ray file")
    assert chooser.get_attribute("capture") == "environment"
    assert chooser.get_attribute("accept") == "image/jpeg,image/png,application/dicom,.dcm"
    send = page.get_by_role("button", name="Send the X-ray")
    expect(send).to_be_disabled()

    # A text file: refused in the browser, in plain words.
    chooser.set_input_files({"name": "notes.txt", "mimeType": "text/plain", "buffer": b"x"})
    send.click()
    expect(page.get_by_role("alert")).to_contain_text("not an X-ray we can use")
    # A skin photo: Hearth's quality gate refuses it, and says why.
    skin = shared_path("data", "skin_photos", "ISIC_0024872.jpg")
    chooser.set_input_files(str(skin))
    send.click()
    expect(page.get_by_role("alert")).to_contain_text(
        "this looks like a colour photo, not an X-ray"
    )
    shot(page, f"portal-xray-refused-{viewport}")
    assert operator.search("Media", subject=me) == []
    assert xray_cases(operator, me) == []

    # A PNG dropped on the box (a phone gets it from the file input): progress, then the case.
    png = chest_png()
    if viewport == "desktop":
        drop_file(page, "[data-testid=xray-drop]", png, "chest.png", "image/png")
    else:
        chooser.set_input_files({"name": "chest.png", "mimeType": "image/png", "buffer": png})
    expect(page.get_by_test_id("xray-file")).to_contain_text("chest.png")
    held = []
    page.route("**/$upload-xray", lambda route: held.append(route))
    send.click()
    expect(page.get_by_label("Sending the X-ray")).to_be_visible()  # the progress bar
    for _ in range(200):  # the held request reaches the handler (events run while waiting)
        if held:
            break
        page.wait_for_timeout(50)
    assert len(held) == 1
    expect(page.get_by_label("Sending the X-ray")).to_be_visible()  # still, while held
    held[0].continue_()
    page.unroute("**/$upload-xray")
    expect(page.get_by_role("status")).to_contain_text("the X-ray was received")
    cards = page.locator("[data-xray]")
    expect(cards).to_have_count(1)
    expect(cards.first).to_contain_text("Chest X-ray (picture)")
    expect(cards.first).to_contain_text("Received — waiting for the computer analysis")

    # A DICOM file from the hospital (its header names another person).
    chooser.set_input_files({"name": "CHEST.DCM", "mimeType": "", "buffer": small_chest_dicom()})
    send.click()
    expect(page.get_by_role("status")).to_contain_text("the X-ray was received")
    expect(cards).to_have_count(2)
    expect(page.locator("[data-xray^='ImagingStudy/']")).to_contain_text("Chest X-ray (DICOM file)")
    shot(page, f"portal-xray-sent-{viewport}")

    # On the server: the Media and the ImagingStudy are the patient's, each with its case.
    [media] = operator.search("Media", subject=me)
    assert base64.b64decode(media["content"]["data"]) == png
    [study] = operator.search("ImagingStudy", subject=me)
    cases = xray_cases(operator, me)
    assert sorted(c["focus"]["reference"] for c in cases) == sorted(
        [f"Media/{media['id']}", f"ImagingStudy/{study['id']}"]
    )
    assert all(business(c) == "PENDING_AI" and c["requester"]["reference"] == me for c in cases)

    # The pneumonia model runs; the patient sees no result until a doctor verified it.
    run_worker(hearth)
    png_case = next(c for c in cases if c["focus"]["reference"].startswith("Media/"))
    assert business(operator.get(f"/Task/{png_case['id']}")) == "AI_ANALYZED"
    page.reload()
    expect(cards).to_have_count(2)
    for card in cards.all():
        expect(card).to_contain_text("Being looked at by your care team")
    expect(page.locator(".xray-result")).to_have_count(0)

    verify = step(operator, png_case["id"], "doctor-verification")
    for op, body in (("$claim", None), ("$complete", {"note": {"valueString": "seen"}})):
        done = operator.op(f"/Task/{verify['id']}/{op}", ("doctor", doctor), body)
        assert done.status_code == 200, done.text
    case = operator.get(f"/Task/{png_case['id']}")
    obs_ref = next(
        i["valueReference"]["reference"]
        for i in case["input"]
        if i["type"]["coding"][0]["code"] == "ai-result"
    )
    obs = operator.get(f"/{obs_ref}")
    codes = {c["code"] for c in obs["valueCodeableConcept"]["coding"]}
    [word] = [w for code, w in FINDING.items() if code in codes]
    page.reload()
    card = page.locator(f"[data-xray='Media/{media['id']}']")
    expect(card).to_contain_text("Checked by your doctor")
    expect(card.locator(".xray-result")).to_contain_text(f"Checked result: {word}")
    expect(card).to_contain_text("not a diagnosis on its own")
    shot(page, f"portal-xray-result-{viewport}")
    assert fits(page)
    assert not errors, errors
    operator.close()


@pytest.mark.parametrize("viewport", ["desktop", "phone"])
def test_cadre_fills_the_lung_check_and_sends_an_xray_for_a_patient(hearth, browser, viewport):
    operator = Fhir(hearth.fhir, hearth.headers)
    tag = uuid.uuid4().hex[:6]
    cadre = ref(person(operator, "Practitioner", f"Cadre{tag}"))
    patient = person(operator, "Patient", f"Otieno{tag}")
    P = ref(patient)
    user = make_user(hearth, "cadre", cadre)
    errors: list[str] = []
    page = watch(browser.new_context(**device(viewport)).new_page(), errors, console=False)
    sign_in(page, hearth.root, user, "cadre")
    page.get_by_label("Name of the patient").fill(f"Otieno{tag}")
    page.get_by_role("button", name="Find").click()
    page.get_by_role("link", name=f"Test Otieno{tag}").click()

    # The lung check, from the patient's page.
    page.get_by_role("link", name="Lung check").click()
    expect(page.get_by_role("heading", name=f"Lung check of Test Otieno{tag}")).to_be_visible()
    expect(page.get_by_text("Ask the patient these questions")).to_be_visible()
    page.get_by_label("Do you smoke?").select_option(label="I used to smoke, but stopped")
    page.get_by_label("How many cigarettes a day").fill("20")
    page.get_by_label("For how many years have you smoked, in total?").fill("30")
    page.get_by_label("How many years ago did you stop smoking?").fill("5")
    page.get_by_label("Body-mass index (BMI)").fill("27")
    answer(page, "Has a doctor ever told you that you have COPD", "No")
    answer(page, "Have you ever had cancer?", "No")
    answer(page, "Has your mother, father, a brother or a sister had lung cancer?", "No")
    page.get_by_label("Your highest level of education").select_option(label="High school graduate")
    page.get_by_label("Your race or ethnic group").select_option(label="Black")
    page.get_by_role("button", name="Send my answers").click()
    expect(page.get_by_role("status")).to_contain_text("Answers sent")
    expect(page.locator("section.lung-status")).to_contain_text("Waiting for the computer analysis")
    shot(page, f"cadre-lung-sent-{viewport}")
    # On the server: the patient's case, the intake completed by the cadre with the answers.
    [case] = [c for c in lung_cases(operator, P) if "partOf" not in c]
    assert case["for"] == {"reference": P} and business(case) == "PENDING_AI"
    assert case["requester"] == {"reference": cadre}
    intake = step(operator, case["id"], "intake")
    assert intake["status"] == "completed" and intake["owner"] == {"reference": cadre}
    [qr] = operator.search("QuestionnaireResponse", subject=P)
    got = {i["linkId"]: next(iter(i["answer"][0].values())) for i in qr["item"]}
    assert got["smoking-status"]["code"] == "former" and got["years-since-quitting"] == 5

    # Back to the patient, then a chest X-ray for them.
    page.get_by_role("link", name="Back to the patient").click()
    page.get_by_role("main").get_by_role("link", name="Chest X-ray").click()
    expect(page.get_by_role("heading", name=f"Chest X-ray of Test Otieno{tag}")).to_be_visible()
    page.get_by_label("Take or choose the X-ray file").set_input_files(
        {"name": "chest.png", "mimeType": "image/png", "buffer": chest_png()}
    )
    page.get_by_role("button", name="Send the X-ray").click()
    expect(page.get_by_role("status")).to_contain_text("the X-ray was received")
    expect(page.locator("[data-xray]")).to_contain_text("Waiting for the computer analysis")
    shot(page, f"cadre-xray-sent-{viewport}")
    [xray] = xray_cases(operator, P)
    assert xray["requester"] == {"reference": cadre}
    [media] = operator.search("Media", subject=P)
    assert media["operator"] == {"reference": cadre}
    assert fits(page)
    assert not errors, errors
    operator.close()
