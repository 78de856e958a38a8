"""The portal's lung check (#/lung, src/lungrisk.jsx) in Debian chromium, on a desktop and a phone
viewport: a patient answers the PLCOm2012 questionnaire (wrong answers are named next to their
field and nothing is sent), the form starts a lung-risk case and completes its intake step; the
real worker computes the PLCOm2012 risk from those answers, which the patient does not see until a
doctor's review verifies it; then the checked risk shows in plain words with the disclaimer."""

from __future__ import annotations

import uuid
from datetime import date

import pytest
from playwright.sync_api import Page, expect

from inference import plco
from inference.plco_record import age_on
from tests.fhir_server.auth.smart import make_user
from tests.fhir_server.webapp.browser import device, fits, own_hearth, shot, sign_in, watch
from tests.inference.conftest import run_worker
from tests.workflow.conftest import Fhir, person, ref

hearth = own_hearth  # its tests run the AI worker: a Hearth of its own
CASE = "http://hearth.local/fhir/CodeSystem/workflow-case"
STEP = "http://hearth.local/fhir/CodeSystem/workflow-step"
QUESTIONNAIRE = "http://hearth.local/fhir/Questionnaire/plcom2012"


def business(task: dict) -> str:
    return task["businessStatus"]["coding"][0]["code"]


def lung_cases(operator: Fhir, patient: str) -> list[dict]:
    return operator.search("Task", patient=patient, code=f"{CASE}|lung-risk")


def step(operator: Fhir, case_id: str, code: str) -> dict:
    [found] = operator.search("Task", **{"part-of": f"Task/{case_id}", "code": f"{STEP}|{code}"})
    return found


def answer(page: Page, question: str, choice: str) -> None:
    page.get_by_role("group", name=question).get_by_label(choice, exact=True).check()


@pytest.mark.parametrize("viewport", ["desktop", "phone"])
def test_patient_answers_the_lung_check_and_sees_the_reviewed_risk(hearth, browser, viewport):
    operator = Fhir(hearth.fhir, hearth.headers)
    me = person(operator, "Patient", f"Lung{uuid.uuid4().hex[:6]}")
    patient = ref(me)
    doctor = ref(person(operator, "Practitioner", f"Chest{uuid.uuid4().hex[:6]}"))
    user = make_user(hearth, "patient", patient)
    age = int(age_on(me["birthDate"], date.today()))
    errors: list[str] = []
    page = watch(browser.new_context(**device(viewport)).new_page(), errors)
    sign_in(page, hearth.root, user)
    page.get_by_role("link", name="Lung check").click()
    expect(page.get_by_role("heading", name="Lung cancer risk check")).to_be_visible()
    status = page.locator("section.lung-status")
    expect(status).to_contain_text("You have not answered the questions yet.")
    send = page.get_by_role("button", name="Send my answers")

    # Nothing answered: each question says what is wrong, nothing reaches the server.
    send.click()
    expect(page.get_by_role("alert")).to_contain_text("Please correct")
    smoking = page.get_by_label("Do you smoke?")
    expect(smoking).to_have_attribute("aria-invalid", "true")
    expect(smoking).to_be_focused()
    expect(page.locator(".field-error").first).to_contain_text("Please choose an answer.")
    expect(page.get_by_role("group", name="Have you ever had cancer?")).to_contain_text(
        "Please answer yes or no."
    )
    # A never-smoker is told, in plain words, that the check does not apply.
    smoking.select_option(label="I have never smoked")
    send.click()
    expect(page.locator("#lung-smoking-status-error")).to_contain_text(
        "This check is for people who smoke or used to smoke"
    )

    smoking.select_option(label="Yes, I smoke now")
    page.get_by_label("How many cigarettes a day").fill("25")
    years = page.get_by_label("For how many years have you smoked, in total?")
    years.fill(str(age + 5))  # more years than the patient's age
    page.get_by_label("Body-mass index (BMI)").fill("abc")
    answer(page, "Has a doctor ever told you that you have COPD", "Yes")
    answer(page, "Have you ever had cancer?", "No")
    answer(page, "Has your mother, father, a brother or a sister had lung cancer?", "Yes")
    page.get_by_label("Your highest level of education").select_option(
        label="Training after high school"
    )
    page.get_by_label("Your race or ethnic group").select_option(label="White")
    send.click()
    expect(page.locator("#lung-smoking-duration-years-error")).to_contain_text(
        f"not more than your age ({age})"
    )
    expect(page.locator("#lung-bmi-error")).to_contain_text("Please enter a number.")
    shot(page, f"portal-lung-errors-{viewport}")
    assert lung_cases(operator, patient) == []

    years.fill("40")
    page.get_by_label("Body-mass index (BMI)").fill("24,5")  # a decimal comma is fine
    send.click()
    expect(page.get_by_role("status")).to_contain_text("Answers sent")
    expect(status).to_contain_text("Received — waiting for the computer analysis")
    expect(page.get_by_role("button", name="Send my answers")).to_have_count(0)
    shot(page, f"portal-lung-sent-{viewport}")

    # On the server: the patient's lung-risk case, its intake done with these answers.
    [case] = [c for c in lung_cases(operator, patient) if "partOf" not in c]
    assert case["for"] == {"reference": patient} and business(case) == "PENDING_AI"
    intake = step(operator, case["id"], "intake")
    assert intake["status"] == "completed" and intake["owner"] == {"reference": patient}
    [qr] = operator.search("QuestionnaireResponse", subject=patient)
    assert qr["questionnaire"] == QUESTIONNAIRE and qr["status"] == "completed"
    got = {
        i["linkId"]: next(iter(i["answer"][0].values())) for i in qr["item"]
    }  # fmt: skip
    assert got["bmi"] == 24.5 and got["cigarettes-per-day"] == 25
    assert got["copd"] is True and got["personal-cancer-history"] is False
    assert got["smoking-status"]["code"] == "current"
    assert got["education"]["code"] == "3" and got["race"]["code"] == "white"
    assert "years-since-quitting" not in got

    # The real PLCOm2012 runs on those answers; the patient is told only that the care
    # team is looking, never the AI's number.
    run_worker(hearth)
    case = operator.get(f"/Task/{case['id']}")
    assert business(case) == "AI_ANALYZED", case
    page.reload()
    expect(status).to_contain_text("Being looked at by your care team")
    expect(status).to_contain_text("once a clinician has checked it")
    expect(page.locator(".lung-result")).to_have_count(0)
    expect(page.get_by_text("six years:")).to_have_count(0)
    expect(page.get_by_role("button", name="Send my answers")).to_have_count(0)

    # A doctor reviews it (over HTTP, as the clinicians' app does): now it shows.
    review = step(operator, case["id"], "doctor-review")
    claim = operator.op(f"/Task/{review['id']}/$claim", ("doctor", doctor))
    assert claim.status_code == 200, claim.text
    done = operator.op(
        f"/Task/{review['id']}/$complete",
        ("doctor", doctor),
        {"conclusion": {"valueString": "Refer for low-dose CT"}},
    )
    assert done.status_code == 200, done.text
    risk = plco.six_year_risk(
        plco.PLCOm2012Inputs(
            age=age, education=plco.Education(3), bmi=24.5, copd=True,
            personal_cancer_history=False, family_history_lung_cancer=True,
            current_smoker=True, cigarettes_per_day=25, smoking_duration_years=40,
            race=plco.Race.WHITE,
        )
    )  # fmt: skip
    assert risk >= plco.THRESHOLD
    page.reload()
    result = page.locator(".lung-result")
    expect(result).to_contain_text(
        f"next six years: {risk * 100:.1f} % (about {round(risk * 1000)} in 1,000"
    )
    expect(result).to_contain_text("low-dose CT scan of the chest is advised")
    expect(result).to_contain_text("Checked by a clinician")
    expect(result).to_contain_text("it is not a diagnosis on its own")
    expect(status).to_contain_text("Checked by your doctor")
    shot(page, f"portal-lung-result-{viewport}")
    assert fits(page)
    assert not errors, errors
    operator.close()
