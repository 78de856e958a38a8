"""The login pages in a real browser (Debian chromium driven by Playwright): a wrong password
shows an accessible error, the right password and TOTP code redirect to the app with a code
that exchanges for a token. The page loads nothing from outside Hearth."""

from __future__ import annotations

import uuid
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx

from tests.fhir_server.auth.smart import REDIRECT, exchange, make_client, make_user, pkce


def test_browser_login_with_totp(server, browser):
    prac = httpx.post(
        f"{server.fhir}/Practitioner",
        json={"resourceType": "Practitioner", "name": [{"family": "Browser"}]},
        headers=server.headers,
    ).json()["id"]
    user = make_user(server, "doctor", f"Practitioner/{prac}")
    app, _ = make_client(server, "public", "openid fhirUser user/*.rs")
    verifier, challenge = pkce()
    state = uuid.uuid4().hex
    url = f"{server.root}/auth/authorize?" + urlencode(
        {
            "response_type": "code",
            "client_id": app,
            "redirect_uri": REDIRECT,
            "scope": "openid fhirUser user/*.rs",
            "state": state,
            "aud": server.fhir,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        }
    )
    outside: list[str] = []
    landed: list[str] = []
    page = browser.new_page()
    page.on(
        "request",
        lambda r: outside.append(r.url) if not r.url.startswith((server.root, REDIRECT)) else None,
    )

    def arrive(route):  # type: ignore[no-untyped-def]
        landed.append(route.request.url)
        route.fulfill(status=200, body="app")

    page.route(f"{REDIRECT}**", arrive)
    page.goto(url)
    assert page.locator("html").get_attribute("lang") == "en"
    page.get_by_label("User name").fill(user.username)
    page.get_by_label("Password").fill("not the password")
    page.get_by_label("Authenticator code or recovery code").fill("000000")
    page.get_by_role("button", name="Sign in").click()
    alert = page.get_by_role("alert")
    assert "not right" in alert.inner_text()
    page.get_by_label("User name").fill(user.username)
    page.get_by_label("Password").fill(user.password)
    page.get_by_label("Authenticator code or recovery code").fill(user.totp.now())  # type: ignore[union-attr]
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{REDIRECT}**")
    assert not outside, outside
    q = parse_qs(urlsplit(landed[-1]).query)
    assert q["state"] == [state]
    token = exchange(server, app, q["code"][0], verifier)
    assert token.status_code == 200, token.text
    assert token.json()["scope"].endswith("user/*.rs")
