"""Password reset by a one-time e-mailed link, through a real SMTP server (aiosmtpd)."""

from __future__ import annotations

import re
import time
from email import message_from_bytes

import httpx
import pytest
from aiosmtpd.controller import Controller

from tests.fhir_server.auth.smart import code_of, login, make_client, make_user, parse_form, pkce
from tests.servers import database_url, free_port, start_server


class Inbox:
    def __init__(self) -> None:
        self.messages: list = []

    async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]  # noqa: N802
        self.messages.append(message_from_bytes(envelope.content))
        return "250 OK"


@pytest.fixture(params=["sqlite", "postgresql"])
def mail_server(request, tmp_path):  # type: ignore[no-untyped-def]
    inbox = Inbox()
    port = free_port()
    smtp = Controller(inbox, hostname="127.0.0.1", port=port)
    smtp.start()
    url, cleanup = database_url(request.param, tmp_path)
    running = start_server(request.param, url, smtp_host="127.0.0.1", smtp_port=port)
    yield running, inbox
    running.stop()
    smtp.stop()
    cleanup()


def test_reset_link_works_once(mail_server):
    server, inbox = mail_server
    user = make_user(server, "patient", None, email="pat@example.org")
    app, _ = make_client(server, "public", "patient/*.rs openid")
    browser = httpx.Client(base_url=server.root, timeout=30)  # keeps the CSRF cookie
    start = parse_form(browser.get("/auth/reset").text)
    resp = browser.post(start.action, data={**start.fields, "username": user.username})
    assert resp.status_code == 200
    unknown = browser.post(start.action, data={**start.fields, "username": "nobody-here"})
    assert unknown.status_code == 200 and unknown.text == resp.text  # no account oracle
    deadline = time.monotonic() + 10
    while not inbox.messages and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(inbox.messages) == 1
    msg = inbox.messages[0]
    assert msg["To"] == "pat@example.org"
    link = re.search(
        r"(http://\S+/auth/reset/confirm\?token=\S+)", msg.get_payload(decode=True).decode()
    ).group(1)
    page = browser.get(link)
    assert page.status_code == 200
    form = parse_form(page.text)
    # without the form's CSRF token, or from a browser without the cookie: refused
    no_token = {k: v for k, v in form.fields.items() if k != "csrf"}
    forged = browser.post(form.action, data={**no_token, "password": "a forged passphrase"})
    assert forged.status_code == 403 and "Form expired" in forged.text
    elsewhere = httpx.post(
        f"{server.root}{form.action}", data={**form.fields, "password": "a forged passphrase"}
    )
    assert elsewhere.status_code == 403
    short = browser.post(form.action, data={**form.fields, "password": "short"})
    assert short.status_code == 400
    done = browser.post(form.action, data={**form.fields, "password": "a brand new passphrase"})
    assert done.status_code == 200 and "Password changed" in done.text
    again = browser.post(form.action, data={**form.fields, "password": "another new passphrase"})
    assert again.status_code == 400  # the link worked once
    browser.close()
    _, challenge = pkce()
    assert login(server, app, user, "patient/*.rs", challenge=challenge).status_code == 401
    user.password = "a brand new passphrase"
    code_of(login(server, app, user, "patient/*.rs", challenge=challenge))
