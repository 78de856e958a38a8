"""CSRF protection of the HTML forms (signed double-submit cookie): a form POST needs the
``hearth_csrf`` cookie its page set and the page's token bound to that cookie; anything else is
a 403 page, and the login is neither attempted nor counted."""

from __future__ import annotations

import httpx

from tests.fhir_server.auth.smart import (
    REDIRECT,
    code_of,
    login,
    make_client,
    make_user,
    parse_form,
    pkce,
    store_of,
)

HTTP = httpx.Client(timeout=60)  # the shared 2-core test machine can be slow


def _login_form(server, client_id: str) -> tuple[httpx.Client, object]:  # type: ignore[no-untyped-def]
    _, challenge = pkce()
    browser = httpx.Client(base_url=server.root, timeout=30)
    page = browser.get(
        "/auth/authorize",
        params={
            "response_type": "code",
            "client_id": client_id,
            "redirect_uri": REDIRECT,
            "scope": "patient/*.rs",
            "state": "s",
            "aud": server.fhir,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        },
    )
    assert page.status_code == 200
    cookie = page.headers["set-cookie"].lower()
    assert "hearth_csrf=" in cookie and "httponly" in cookie and "samesite=lax" in cookie
    return browser, parse_form(page.text)


def _failures(server, username: str) -> int:  # type: ignore[no-untyped-def]
    store = store_of(server)
    try:
        return store.user(username)["failed_count"]  # type: ignore[index]
    finally:
        store.engine.dispose()


def test_login_form_refuses_posts_without_a_valid_token(server):
    pid = HTTP.post(
        f"{server.fhir}/Patient", json={"resourceType": "Patient"}, headers=server.headers
    ).json()["id"]
    user = make_user(server, "patient", f"Patient/{pid}")
    client_id, _ = make_client(server, "public", "patient/*.rs")
    browser, form = _login_form(server, client_id)
    good = {**form.fields, "username": user.username, "password": user.password, "code": ""}  # type: ignore[attr-defined]
    action = form.action  # type: ignore[attr-defined]
    assert good["csrf"]

    missing = {k: v for k, v in good.items() if k != "csrf"}
    tampered = {**good, "csrf": good["csrf"][:-4] + "AAAA"}
    for data in (missing, tampered, {**good, "csrf": "not-a-token"}):
        resp = browser.post(action, data=data)
        assert resp.status_code == 403 and "Form expired" in resp.text
        assert "location" not in resp.headers
    # a cross-site post: the token from the page, but the victim's browser has no such cookie
    # (or another one); the attacker's own cookie does not fit a token the attacker can't sign
    assert HTTP.post(f"{server.root}{action}", data=good).status_code == 403
    other, other_form = _login_form(server, client_id)
    swapped = {**good, "csrf": other_form.fields["csrf"]}  # type: ignore[attr-defined]
    assert browser.post(action, data=swapped).status_code == 403
    other.close()
    assert _failures(server, user.username) == 0  # refused before any login attempt

    ok = browser.post(action, data=good)
    assert ok.status_code == 303 and ok.headers["location"].startswith(REDIRECT)
    browser.close()


def test_patient_picker_needs_the_token_too(server):
    HTTP.post(f"{server.fhir}/Patient", json={"resourceType": "Patient"}, headers=server.headers)
    prac = HTTP.post(
        f"{server.fhir}/Practitioner", json={"resourceType": "Practitioner"}, headers=server.headers
    ).json()["id"]
    doctor = make_user(server, "doctor", f"Practitioner/{prac}")
    client_id, _ = make_client(server, "public", "launch/patient patient/*.rs")
    browser, form = _login_form(server, client_id)
    fields = {
        **form.fields,  # type: ignore[attr-defined]
        "scope": "launch/patient patient/*.rs",
        "username": doctor.username,
        "password": doctor.password,
        "code": doctor.totp.now(),  # type: ignore[union-attr]
    }
    pick_page = browser.post(form.action, data=fields)  # type: ignore[attr-defined]
    assert pick_page.status_code == 200 and "Choose a patient" in pick_page.text
    pick = parse_form(pick_page.text)
    choice = {**pick.fields, "patient": pick.options[0]}
    no_token = {k: v for k, v in choice.items() if k != "csrf"}
    assert browser.post(pick.action, data=no_token).status_code == 403
    done = browser.post(pick.action, data=choice)
    assert done.status_code == 303
    browser.close()
    # and the scripted login helper (a browser-like client) still completes
    _, challenge = pkce()
    patient_user = make_user(server, "patient", None)
    code_of(login(server, client_id, patient_user, "patient/*.rs", challenge=challenge))
