"""Self-registration in a real browser (Debian chromium driven by Playwright, phone viewport):
from the patient portal's sign-in, "Create an account", fill in the form, open the link from the
e-mail the SMTP server received, create the account, and sign in to the portal with it.
Screens are kept under test-artefacts/webapp/."""

from __future__ import annotations

import re
import time

import pytest
from playwright.sync_api import expect, sync_playwright

from fhir_server.webapp import portal_files
from tests.fhir_server.webapp.test_browser_portal import CHROMIUM, PHONE, register_portal, shot
from tests.servers import database_url, start_server
from tests.workflow.smtp import start_smtp

expect.set_options(timeout=30_000)


@pytest.fixture(scope="module")
def hearth(tmp_path_factory):  # type: ignore[no-untyped-def]
    assert portal_files() is not None, "the patient portal is not built: run `make webapp`"
    tmp = tmp_path_factory.mktemp("register")
    smtp = start_smtp(tmp)
    url, cleanup = database_url("sqlite", tmp)
    running = start_server(
        "sqlite",
        url,
        data_dir=tmp / "data",
        smtp_host="127.0.0.1",
        smtp_port=smtp.port,
        smtp_ca_file=smtp.ca_file,
        self_registration=True,
    )
    register_portal(running)
    yield running, smtp
    running.stop()
    smtp.stop()
    cleanup()


def test_patient_registers_and_signs_in(hearth):  # type: ignore[no-untyped-def]
    server, smtp = hearth
    email = "dewi.lestari@example.org"
    password = "a passphrase of my own"
    errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        try:
            context = browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True)
            page = context.new_page()
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(f"{server.root}/app/portal/")
            page.get_by_role("button", name="Sign in", exact=True).click()
            page.get_by_role("link", name="Create an account").click()
            expect(page.get_by_role("heading", name="Create a patient account")).to_be_visible()
            page.get_by_label("First name").fill("Dewi")
            page.get_by_label("Last name").fill("Lestari")
            page.get_by_label("Birth date").fill("1979-11-05")
            page.get_by_label("E-mail address").fill(email)
            page.get_by_label("Password").fill(password)
            shot(page, "register-form")
            page.get_by_role("button", name="Send me the link").click()
            expect(page.get_by_role("heading", name="Check your e-mail")).to_be_visible()

            deadline = time.monotonic() + 15
            while not smtp.inbox.to(email) and time.monotonic() < deadline:
                time.sleep(0.05)
            (msg,) = smtp.inbox.to(email)
            text = msg.get_payload(decode=True).decode()
            link = re.search(r"(http://\S+/auth/register/confirm\?token=\S+)", text).group(1)  # type: ignore[union-attr]

            page.goto(link)
            expect(page.get_by_text("Dewi Lestari")).to_be_visible()
            page.get_by_role("button", name="Create my account").click()
            expect(page.get_by_role("heading", name="Account created")).to_be_visible()
            shot(page, "register-done")
            page.get_by_role("link", name="Go to the patient portal").click()

            page.get_by_role("button", name="Sign in", exact=True).click()
            page.get_by_label("User name").fill(email)
            page.get_by_label("Password").fill(password)
            page.get_by_role("button", name="Sign in").click()
            expect(page.get_by_role("heading", name="Needs your attention")).to_be_visible()
            assert "code=" not in page.url
            shot(page, "register-portal")
        finally:
            browser.close()
    assert errors == []
