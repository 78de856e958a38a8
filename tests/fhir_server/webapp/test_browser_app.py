"""The web app in a real browser (Debian chromium driven by Playwright) against a running Hearth
on SQLite: a doctor opens /app/, signs in through Hearth's login page (password + TOTP; the app
does the SMART code + PKCE exchange itself), finds the urgent case at the top of the worklist,
opens it, sees the AI finding and the heatmap the real `hearth worker` made, claims and completes
the review; the Task changes on the server. The page loads nothing from outside Hearth."""

from __future__ import annotations

import base64
import uuid

import pytest
from playwright.sync_api import expect, sync_playwright

from fhir_server.webapp import CLIENT_ID
from tests.fhir_server.auth.smart import make_user, store_of
from tests.inference.conftest import run_worker
from tests.servers import database_url, start_server
from tests.shared import shared_path
from tests.workflow.conftest import Fhir, person, ref
from tests.workflow.test_cases_http import STEP, business

# Each expectation waits for the server's answer; under a loaded CI machine (the suite runs in
# parallel) a step's completion can take several seconds, so wait up to 30 s, not 5 s.
expect.set_options(timeout=30_000)

CHROMIUM = "/usr/bin/chromium"  # installed by `make chromium`; never `playwright install`
# The routine case's photo: a confident naevus (malignancy 0.002, not referred); the urgent
# case's: 64 % melanoma, which the screening decision refers (urgent whatever the cadre chose).
PHOTOS = ("ISIC_0024872.jpg", "ISIC_0024310.jpg")


@pytest.fixture(scope="module")
def hearth(tmp_path_factory):  # type: ignore[no-untyped-def]
    tmp = tmp_path_factory.mktemp("webapp")
    url, cleanup = database_url("sqlite", tmp)
    running = start_server("sqlite", url, data_dir=tmp / "data")
    running.data_dir = tmp / "data"  # type: ignore[attr-defined]
    yield running
    running.stop()
    cleanup()


def register_app(server) -> None:  # type: ignore[no-untyped-def]
    """What `make run` does (scripts/webapp-client.sh), for this server's base URL."""
    from fhir_server.auth.clients import register

    store = store_of(server)
    try:
        register(
            store,
            "Hearth web app",
            "public",
            scope="openid fhirUser user/*.cruds",
            redirect_uris=[f"{server.root}/app/"],
            client_id=CLIENT_ID,
        )
    finally:
        store.engine.dispose()


def start_case(operator: Fhir, cadre: str, doctor: str, photo: str, priority: str) -> dict:
    tag = uuid.uuid4().hex[:6]
    patient = person(operator, "Patient", f"{priority.title()}{tag}")
    media = operator.create(
        {
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
    )
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


def test_doctor_works_an_urgent_case_in_the_browser(hearth):
    register_app(hearth)
    operator = Fhir(hearth.fhir, hearth.headers)
    cadre = ref(person(operator, "Practitioner", "Cadre"))
    doctor = ref(person(operator, "Practitioner", "Doctor"))
    user = make_user(hearth, "doctor", doctor)
    routine = start_case(operator, cadre, doctor, PHOTOS[0], "routine")
    urgent = start_case(operator, cadre, doctor, PHOTOS[1], "urgent")
    assert "ran" in run_worker(hearth).stdout  # the real skin classifier, with heatmaps
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

    outside: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        try:
            page = browser.new_page()
            page.on(
                "request",
                lambda r: (
                    outside.append(r.url)
                    if not r.url.startswith((hearth.root, f"blob:{hearth.root}/"))
                    else None
                ),
            )
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            # An answer with a state this tab never sent is refused before any code exchange.
            page.goto(f"{hearth.root}/app/?code=stolen&state=forged")
            expect(page.get_by_role("alert")).to_contain_text("does not belong to a sign-in")
            assert "code=" not in page.url
            page.get_by_role("button", name="Sign in").click()
            page.get_by_label("User name").fill(user.username)
            page.get_by_label("Password").fill(user.password)
            page.get_by_label("Authenticator code or recovery code").fill(user.totp.now())  # type: ignore[union-attr]
            page.get_by_role("button", name="Sign in").click()

            # The worklist of the doctor role, urgent first; the code is gone from the URL.
            expect(page.get_by_role("heading", name="Worklist: doctor")).to_be_visible()
            assert "code=" not in page.url
            rows = page.locator("table").first.locator("tbody tr")
            expect(rows).to_have_count(2)
            expect(rows.nth(0)).to_contain_text(urgent["name"])
            expect(rows.nth(0)).to_contain_text("Urgent")
            expect(rows.nth(1)).to_contain_text(routine["name"])
            expect(rows.nth(1)).to_contain_text("Routine")

            # The case: the AI finding with its probabilities and the heatmap (a blob: image).
            rows.nth(0).get_by_role("link").click()
            expect(page.get_by_role("heading", name=urgent["name"])).to_be_visible()
            expect(page.get_by_text("AI finding:")).to_be_visible()
            expect(page.get_by_role("table", name="Probabilities")).to_be_visible()
            heatmap = page.get_by_role("img", name="AI explanation heatmap over the image")
            expect(heatmap).to_be_visible()
            assert heatmap.get_attribute("src").startswith("blob:")
            page.wait_for_function(
                "document.querySelector('img[alt^=\"AI explanation\"]').naturalWidth > 0"
            )
            photo = page.get_by_role("img", name="Lesion photo")
            expect(photo).to_be_visible()

            # Claim: the step is the doctor's on the server.
            page.get_by_role("button", name="Claim").click()
            expect(page.get_by_role("status")).to_contain_text("Claimed")
            step = operator.get(f"/Task/{urgent['step']['id']}")
            assert step["status"] == "in-progress"
            assert step["owner"] == {"reference": doctor}

            # Complete without the required finding: the browser keeps the form.
            page.get_by_role("button", name="Complete step").click()
            finding = page.get_by_label("Finding (required)")
            assert finding.evaluate(
                "e => e.matches(':invalid') && e.form.checkValidity() === false"
            )
            expect(page.get_by_role("status")).to_contain_text("Claimed")  # nothing was sent
            finding.fill("Irregular pigmented lesion, 7 mm")
            page.get_by_label("Conclusion for the report").fill("Benign naevus likely; review")
            # The coded diagnosis is one of the classes the AI chose between (docs/analytics.md).
            diagnosis = page.get_by_label("Diagnosis (coded, compared with the AI finding)")
            diagnosis.select_option(label="melanocytic nevus")
            page.get_by_role("button", name="Complete step").click()
            expect(page.get_by_role("status")).to_contain_text("Completed")
            expect(page.locator("#step-status")).to_contain_text("completed")

            # A server error (OperationOutcome) reads as plain words.
            page.goto(f"{hearth.root}/app/#/task/no-such-step")
            expect(page.get_by_role("alert")).to_contain_text("This was not found")
            expect(page.get_by_role("alert")).to_contain_text("no-such-step")
            page.get_by_role("link", name="Back to the worklist").click()
            expect(page.get_by_role("heading", name="Worklist: doctor")).to_be_visible()
            expect(page.locator("table").first.locator("tbody tr")).to_have_count(1)

            page.get_by_role("button", name="Sign out").click()
            expect(page.get_by_role("button", name="Sign in")).to_be_visible()
            assert page.evaluate("sessionStorage.length") == 0
            assert not errors, errors
        finally:
            browser.close()
    assert not outside, outside

    step = operator.get(f"/Task/{urgent['step']['id']}")
    assert step["status"] == "completed"
    [finding] = [o for o in step["output"] if "Observation/" in str(o)]
    observation = operator.get(f"/{finding['valueReference']['reference']}")
    assert observation["valueString"] == "Irregular pigmented lesion, 7 mm"
    [coded] = [o for o in step["output"] if o["type"]["coding"][0]["code"] == "conclusion-code"]
    assert {"system": "http://hearth.local/fhir/CodeSystem/ai-model-label/skin", "code": "nv"} in [
        {k: c[k] for k in ("system", "code")} for c in coded["valueCodeableConcept"]["coding"]
    ]
    case = operator.get(f"/Task/{urgent['case']['id']}")
    assert business(case) == "DOCTOR_REVIEWED"
    operator.close()
