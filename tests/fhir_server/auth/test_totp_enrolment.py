"""A patient turns on TOTP in the browser pages: password, QR code (inline SVG, no external
asset), a first code to confirm; from then on login needs the code, and recovery codes work."""

from __future__ import annotations

import re
import time

import httpx
import pyotp

from tests.fhir_server.auth.smart import code_of, login, make_client, make_user, parse_form, pkce


def test_patient_enrols_totp(server):
    user = make_user(server, "patient", None)
    app, _ = make_client(server, "public", "patient/*.rs openid")
    browser = httpx.Client(base_url=server.root, timeout=30)  # keeps the CSRF cookie
    start = parse_form(browser.get("/auth/account/totp").text)
    wrong = browser.post(
        start.action, data={**start.fields, "username": user.username, "password": "nope nope"}
    )
    assert wrong.status_code == 401
    page = browser.post(
        start.action,
        data={**start.fields, "username": user.username, "password": user.password},
    )
    assert (
        page.status_code == 200
        and "<svg" in page.text
        and "http"
        not in page.text.split("<svg", 1)[1].split("</svg>")[0].replace("http://www.w3.org", "")
    )
    secret = re.search(r'<code id="secret">([A-Z2-7]+)</code>', page.text).group(1)
    form = parse_form(page.text)
    bad = browser.post(form.action, data={**form.fields, "code": "000000"})
    assert bad.status_code == 400
    totp = pyotp.TOTP(secret)
    # Start early in a 30 s step, so that the steps below see the same "previous step" as the
    # confirmation did (on a slow machine a step boundary in between made a fresh code of it).
    if time.time() % 30 > 15:
        time.sleep(30.5 - time.time() % 30)
    # confirm with the previous step's code (still accepted), so the current one stays fresh
    confirming = totp.at(time.time() - 30)
    done = browser.post(form.action, data={**form.fields, "code": confirming})
    assert done.status_code == 200, done.text
    recovery = re.findall(r"<li><code>([0-9a-f-]+)</code></li>", done.text)
    assert len(recovery) == 8
    again = browser.post(form.action, data={**form.fields, "code": totp.now()})
    assert again.status_code == 400  # enrolment happens once
    _, challenge = pkce()
    assert login(server, app, user, "patient/*.rs", challenge=challenge, code="").status_code == 401
    stale = login(server, app, user, "patient/*.rs", challenge=challenge, code=confirming)
    assert stale.status_code == 401  # the confirming code is spent
    code_of(login(server, app, user, "patient/*.rs", challenge=challenge, code=totp.now()))
    code_of(login(server, app, user, "patient/*.rs", challenge=challenge, code=recovery[0]))
