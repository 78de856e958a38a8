"""The lesion history and the cadre's capture queue in the patient portal, in Debian chromium on
a phone viewport against a running Hearth (the `hearth` server of test_browser_portal.py):

- a cadre opens a patient's lesion history: two photos of one body site side by side, oldest
  first, each with its date; the verified AI result and the doctor's conclusion are shown, the
  unverified AI result is not; the patient sees the same history of their own photos;
- a capture made while the phone is offline is kept (IndexedDB) and shown as waiting, and sent
  once the connection is back; a capture whose responses are lost (the server made the Media and
  the case, the phone never heard) is sent again and finds them: exactly one Media and one case
  per capture on the server."""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime, timedelta

from playwright.sync_api import Route, expect

from tests.fhir_server.auth.smart import give_role, make_user
from tests.fhir_server.webapp.browser import device, fits, shot, sign_in, watch
from tests.shared import shared_path
from tests.workflow.conftest import Fhir, person, ref

CASE = "http://hearth.local/fhir/CodeSystem/workflow-case"
IO = "http://hearth.local/fhir/CodeSystem/task-io"
PHOTO = shared_path("data", "skin_photos", "ISIC_0024872.jpg")


def lesion(fhir: Fhir, patient: str, site: str, when: datetime, result: str, status: str) -> dict:
    """A photo of `site` with its case, the AI result (`status`) and, if final, a signed report."""
    media = fhir.create(
        {
            "resourceType": "Media",
            "status": "completed",
            "subject": {"reference": patient},
            "createdDateTime": when.isoformat(),
            "bodySite": {"text": site},
            "content": {
                "contentType": "image/jpeg",
                "data": base64.b64encode(PHOTO.read_bytes()).decode(),
            },
        }
    )
    concept = {"coding": [{"system": CASE, "code": "skin-screening", "display": "Skin"}]}
    order = fhir.create(
        {
            "resourceType": "ServiceRequest",
            "status": "active",
            "intent": "order",
            "code": concept,
            "subject": {"reference": patient},
        }
    )
    obs = fhir.create(
        {
            "resourceType": "Observation",
            "status": status,
            "code": {"text": "Skin lesion classification"},
            "subject": {"reference": patient},
            "focus": [{"reference": ref(media)}],
            "valueCodeableConcept": {"text": result},
        }
    )
    fhir.create(
        {
            "resourceType": "Task",
            "status": "in-progress",
            "intent": "order",
            "code": concept,
            "for": {"reference": patient},
            "focus": {"reference": ref(media)},
            "basedOn": [{"reference": ref(order)}],
            "authoredOn": when.isoformat(),
            "input": [
                {
                    "type": {"coding": [{"system": IO, "code": "ai-result"}]},
                    "valueReference": {"reference": ref(obs)},
                }
            ],
        }
    )
    if status == "final":
        fhir.create(
            {
                "resourceType": "DiagnosticReport",
                "status": "final",
                "code": {"text": "Skin screening report"},
                "subject": {"reference": patient},
                "basedOn": [{"reference": ref(order)}],
                "conclusion": f"{result}, seen by the doctor",
            }
        )
    return media


def test_lesion_history_of_one_body_site_for_the_cadre_and_the_patient(hearth, browser):  # type: ignore[no-untyped-def]
    operator = Fhir(hearth.fhir, hearth.headers)
    tag = uuid.uuid4().hex[:6]
    patient = person(operator, "Patient", f"Lesion{tag}")
    P = ref(patient)
    now = datetime.now(UTC).replace(microsecond=0)
    old = lesion(operator, P, "Arm", now - timedelta(days=90), "Benign naevus", "final")
    new = lesion(operator, P, "Arm", now - timedelta(days=2), "Melanoma suspected", "preliminary")
    cadre = make_user(hearth, "cadre", ref(person(operator, "Practitioner", f"Cadre{tag}")))
    me = make_user(hearth, "patient", P)
    errors: list[str] = []
    page = watch(browser.new_context(**device("phone")).new_page(), errors, console=False)
    sign_in(page, hearth.root, cadre, "cadre")
    page.goto(f"{hearth.root}/app/portal/#/patient/{patient['id']}")
    page.get_by_role("link", name="Lesion history").click()
    expect(page.get_by_role("heading", name=f"Lesion history of Test Lesion{tag}")).to_be_visible()
    group = page.locator("[data-site='Arm']")
    figures = group.locator("figure")
    expect(figures).to_have_count(2)
    # Oldest first, side by side, each photo shown (a blob: URL) with its date.
    assert figures.nth(0).get_attribute("data-media") == old["id"]
    assert figures.nth(1).get_attribute("data-media") == new["id"]
    for i in range(2):
        expect(figures.nth(i).locator("img")).to_have_js_property("complete", True)
        assert (
            figures.nth(i)
            .locator("img")
            .evaluate("i => i.src.startsWith('blob:') && i.naturalWidth > 0")
        )
    tops = [figures.nth(i).bounding_box()["y"] for i in range(2)]  # type: ignore[index]
    assert tops[0] == tops[1]  # side by side, not one under the other
    expect(figures.nth(0)).to_contain_text("Checked result: Benign naevus")
    expect(figures.nth(0)).to_contain_text("Doctor: Benign naevus, seen by the doctor")
    expect(figures.nth(1)).to_contain_text("Not checked by a doctor yet")
    expect(page.get_by_role("main")).not_to_contain_text("Melanoma suspected")
    shot(page, "cadre-lesion-history-phone")
    assert fits(page)

    # The patient: the same history of their own photos, unverified result hidden.
    page = watch(browser.new_context(**device("phone")).new_page(), errors, console=False)
    sign_in(page, hearth.root, me)
    page.get_by_role("navigation").get_by_role("link", name="Lesion history").click()
    expect(page.locator("[data-site='Arm'] figure")).to_have_count(2)
    expect(page.get_by_role("main")).to_contain_text("Checked result: Benign naevus")
    expect(page.get_by_role("main")).not_to_contain_text("Melanoma suspected")
    shot(page, "portal-lesion-history-phone")
    assert not errors, errors
    operator.close()


def test_a_capture_that_could_not_be_sent_is_kept_and_sent_once(hearth, browser):  # type: ignore[no-untyped-def]
    operator = Fhir(hearth.fhir, hearth.headers)
    tag = uuid.uuid4().hex[:6]
    patient = person(operator, "Patient", f"Flaky{tag}")
    P = ref(patient)
    cadre = ref(person(operator, "Practitioner", f"Cadre{tag}"))
    give_role(hearth, cadre, "cadre")
    user = make_user(hearth, "cadre", cadre)

    def cases() -> list[dict]:
        return [
            t
            for t in operator.search("Task", patient=P, code=f"{CASE}|skin-screening")
            if "partOf" not in t
        ]

    errors: list[str] = []
    context = browser.new_context(**device("phone"))
    page = watch(context.new_page(), errors, console=False)
    sign_in(page, hearth.root, user, "cadre")
    page.goto(f"{hearth.root}/app/portal/#/patient/{patient['id']}")
    expect(page.get_by_role("heading", name=f"Test Flaky{tag}")).to_be_visible()

    def capture(site: str) -> None:
        page.get_by_label("Take or choose a photo").set_input_files(str(PHOTO))
        page.get_by_label("Where on the body is the spot?").select_option(label=site)
        page.get_by_label("The patient agreed").check()
        page.get_by_role("button", name="Send the photo and start the screening").click()

    # 1. Offline during the capture: kept on the phone, shown as waiting, nothing sent.
    context.set_offline(True)
    capture("Arm")
    expect(page.get_by_role("status")).to_contain_text("the photo is kept on this phone")
    queue = page.locator("[data-pending]")
    expect(queue).to_contain_text("1 photo is waiting to be sent")
    expect(queue).to_contain_text("This phone is offline")
    shot(page, "cadre-capture-waiting-phone")
    assert operator.search("Media", subject=P) == [] and cases() == []

    # Back online: sent by itself, the case shows up.
    context.set_offline(False)
    expect(queue).to_have_count(0)
    expect(page.locator("[data-case]")).to_have_count(1)
    [media] = operator.search("Media", subject=P)
    assert media["bodySite"] == {"text": "Arm"}
    [case] = cases()
    assert case["focus"] == {"reference": f"Media/{media['id']}"}

    # 2. Responses lost: the server makes the Media and the case, the phone hears nothing.
    lost = {"Media": 0, "case": 0}

    def lose(kind: str):  # type: ignore[no-untyped-def]
        def handler(route: Route) -> None:
            if route.request.method == "POST" and lost[kind] == 0:
                lost[kind] += 1
                route.fetch()  # reaches the server
                route.abort()  # the answer never comes back
            else:
                route.continue_()

        return handler

    page.route("**/fhir/Media", lose("Media"))
    page.route("**/fhir/Task/$start-case", lose("case"))
    capture("Leg")
    expect(page.get_by_role("status")).to_contain_text("the photo is kept on this phone")
    expect(queue).to_contain_text("1 photo is waiting to be sent")
    assert len(operator.search("Media", subject=P)) == 2  # the first try made it
    page.get_by_role("button", name="Try sending now").click()  # Media found, case lost
    expect(queue).to_contain_text("1 photo is waiting to be sent")
    page.get_by_role("button", name="Try sending now").click()
    expect(queue).to_have_count(0)
    expect(page.locator("[data-case]")).to_have_count(2)
    assert lost == {"Media": 1, "case": 1}
    photos = operator.search("Media", subject=P)
    assert len(photos) == 2
    assert sorted(m["bodySite"]["text"] for m in photos) == ["Arm", "Leg"]
    assert len(cases()) == 2
    assert sorted(c["focus"]["reference"] for c in cases()) == sorted(
        f"Media/{m['id']}" for m in photos
    )
    assert not errors, errors
    operator.close()
