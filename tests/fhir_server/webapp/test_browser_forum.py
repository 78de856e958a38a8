"""The portal's Community screen (src/forum.jsx, docs/community.md) in a real browser (Debian
chromium driven by Playwright) against a running Hearth on SQLite: a patient starts a thread under
their pseudonym, another patient replies and a cadre replies showing their name; the first
patient reports the reply; an administrator signs in, finds the report in the moderators' queue,
hides the reply and blocks its author, who then sees it gone and cannot post. Nothing on another
member's screen names the patient; no request leaves Hearth's origin; each screen is kept under
test-artefacts/webapp/."""

from __future__ import annotations

import uuid

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.fhir_server.auth.smart import make_user
from tests.fhir_server.webapp.browser import device, fits, shot, sign_in, watch
from tests.workflow.conftest import Fhir, person, ref


def open_page(browser: Browser, root: str, viewport: str, errors: list, outside: list) -> Page:
    page = browser.new_context(**device(viewport)).new_page()
    return watch(page, errors, console=False, outside=outside, allowed=(root,))


def community(page: Page) -> None:
    page.get_by_role("navigation").get_by_role("link", name="Community").click()
    expect(page.get_by_role("heading", name="Community", level=1)).to_be_visible()


@pytest.mark.parametrize("viewport", ["desktop", "phone"])
def test_forum_post_reply_report_and_moderation(hearth, browser, viewport):
    operator = Fhir(hearth.fhir, hearth.headers)
    tag = uuid.uuid4().hex[:6]
    ada_patient = person(operator, "Patient", f"Ada{tag}")
    bea_patient = person(operator, "Patient", f"Bea{tag}")
    cadre = person(operator, "Practitioner", f"Cadre{tag}")
    moderator = person(operator, "Practitioner", f"Moderator{tag}")
    ada = make_user(hearth, "patient", ref(ada_patient))
    bea = make_user(hearth, "patient", ref(bea_patient))
    carl = make_user(hearth, "cadre", ref(cadre))
    admin = make_user(hearth, "admin", ref(moderator))
    topic = f"Itching after the cream {tag}"
    errors: list[str] = []
    outside: list[str] = []
    # Ada starts a thread under her pseudonym.
    pa = open_page(browser, hearth.root, viewport, errors, outside)
    sign_in(pa, hearth.root, ada)
    community(pa)
    pa.get_by_text("Your forum profile").click()
    pa.get_by_label("Pseudonym", exact=True).fill(f"Sunflower {tag}")
    pa.get_by_role("button", name="Save pseudonym").click()
    expect(pa.get_by_role("status")).to_contain_text("Pseudonym saved")
    pa.get_by_label("Topic").fill(topic)
    pa.get_by_label("Your post").fill("Does anyone else itch for days?")
    pa.get_by_role("button", name="Post", exact=True).click()
    expect(pa.get_by_role("heading", name=topic, level=2)).to_be_visible()
    expect(pa.locator(".post").first).to_contain_text(f"Sunflower {tag}")

    # Bea replies under her pseudonym; the cadre replies showing her name and role.
    pb = open_page(browser, hearth.root, viewport, errors, outside)
    sign_in(pb, hearth.root, bea)
    community(pb)
    pb.get_by_role("link", name=topic).click()
    expect(pb.get_by_role("heading", name=topic, level=2)).to_be_visible()
    pb.get_by_label("Your reply").fill("Buy my miracle pills!")
    pb.get_by_role("button", name="Reply", exact=True).click()
    expect(pb.get_by_role("status")).to_contain_text("Your reply is posted")
    expect(pb.locator(".post")).to_have_count(2)
    for secret in (f"Ada{tag}", ada.username, ada_patient["id"]):
        expect(pb.get_by_text(secret)).to_have_count(0)

    pc = open_page(browser, hearth.root, viewport, errors, outside)
    sign_in(pc, hearth.root, carl, "cadre")
    community(pc)
    pc.get_by_role("link", name=topic).click()
    pc.get_by_label("Your reply").fill("If it lasts more than a week, tell your cadre.")
    pc.get_by_label("Show my name on this post instead of my pseudonym").check()
    pc.get_by_role("button", name="Reply", exact=True).click()
    cadre_post = pc.locator(".post").nth(2)
    expect(cadre_post).to_contain_text(f"Test Cadre{tag}")
    expect(cadre_post).to_contain_text("Cadre")
    shot(pc, f"portal-forum-thread-{viewport}")
    assert fits(pc)

    # Ada reports Bea's reply.
    pa.get_by_role("button", name="All threads").click()
    pa.get_by_role("link", name=topic).click()
    spam = pa.locator(".post").nth(1)
    expect(spam).to_contain_text("Buy my miracle pills!")
    spam.get_by_role("button", name="Report").click()
    spam.get_by_label("Why should a moderator look at this post?").fill("Advertising")
    spam.get_by_role("button", name="Send report").click()
    expect(pa.get_by_role("status")).to_contain_text("A moderator will look at it")

    # The administrator finds it in the queue, hides it and blocks its author.
    pm = open_page(browser, hearth.root, viewport, errors, outside)
    sign_in(pm, hearth.root, admin, "staff")
    community(pm)
    queue = pm.locator("[data-report]")
    expect(queue).to_have_count(1)
    expect(queue).to_contain_text("Advertising")
    expect(queue).to_contain_text("Buy my miracle pills!")
    shot(pm, f"portal-forum-queue-{viewport}")
    queue.get_by_role("button", name="Open thread").click()
    reported = pm.locator(".post").filter(has_text="Buy my miracle pills!")
    reported.get_by_role("button", name="Hide").click()
    reported.get_by_label("Reason (kept in the audit log)").fill("Advertising")
    reported.get_by_role("button", name="Hide this post").click()
    expect(pm.get_by_role("status")).to_contain_text("Post hidden")
    expect(reported).to_contain_text("Hidden by a moderator: Advertising")
    reported.get_by_role("button", name="Block author").click()
    reported.get_by_label("Reason (kept in the audit log)").fill("Spam")
    reported.get_by_role("button", name="Block this author").click()
    expect(pm.get_by_role("status")).to_contain_text("Author blocked")
    expect(reported).to_contain_text("blocked")
    shot(pm, f"portal-forum-moderated-{viewport}")
    pm.get_by_role("button", name="All threads").click()
    expect(pm.locator("[data-report]")).to_have_count(0)

    # Bea: her reply is gone, and she cannot post any more.
    pb.get_by_role("button", name="All threads").click()
    pb.get_by_role("link", name=topic).click()
    expect(pb.locator(".post")).to_have_count(2)
    expect(pb.get_by_text("Buy my miracle pills!")).to_have_count(0)
    pb.get_by_label("Your reply").fill("Let me post again")
    pb.get_by_role("button", name="Reply", exact=True).click()
    expect(pb.get_by_role("alert")).to_contain_text("blocked")
    expect(pb.locator(".post")).to_have_count(2)
    shot(pb, f"portal-forum-blocked-{viewport}")
    assert fits(pb)
    assert not errors, errors
    assert not outside, outside
    operator.close()
