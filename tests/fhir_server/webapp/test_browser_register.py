"""Self-registration in a real browser (Debian chromium driven by Playwright, phone viewport):
from the patient portal's sign-in, "Create an account", fill in the form, open the link from the
e-mail the SMTP server received, create the account, and sign in to the portal with it.
Screens are kept under test-artefacts/webapp/."""

from __future__ import annotations

import re
import time

import pytest
from playwright.sync_api import expect

from tests.fhir_server.auth.smart import User
from tests.fhir_server.webapp.browser import (
    browser_hearth,
    device,
    log_in,
    shot,
    signed_in_home,
    watch,
)
from tests.workflow.smtp import start_smtp


@pytest.fixture(scope="module")
def hearth(tmp_path_factory):  # type: ignore[no-untyped-def]
    tmp = tmp_path_factory.mktemp("register")
    smtp = start_smtp(tmp)
    settings = {"smtp_port": smtp.port, "smtp_ca_file": smtp.ca_file, "self_registration": True}
    with browser_hearth(tmp, smtp_host="127.0.0.1", **settings) as running:
        yield running, smtp
    smtp.stop()


def test_patient_registers_and_signs_in(hearth, browser):  # type: ignore[no-untyped-def]
    server, smtp = hearth
    email = "dewi.lestari@example.org"
    password = "a passphrase of my own"
    errors: list[str] = []
    page = watch(browser.new_context(**device("phone")).new_page(), errors, console=False)
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
    log_in(page, User(email, password, None, [], None))
    signed_in_home(page, "patient")
    assert "code=" not in page.url
    shot(page, "register-portal")
    assert errors == []
