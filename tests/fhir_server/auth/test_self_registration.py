"""Self-registration with e-mail verification (HEARTH_SELF_REGISTRATION), through the real login
pages and a real SMTP server (aiosmtpd, STARTTLS): a link that works once and expires; nothing
that can sign in before it is followed; no account enumeration; rate limits; off by default."""

from __future__ import annotations

import base64
import json
import re
import time
from email.message import Message

import httpx
import pytest
from sqlalchemy import create_engine

from fhir_server.auth.keys import SigningKey, key_store, secret_box
from fhir_server.auth.register import IDENTIFIER_SYSTEM
from tests.fhir_server.auth.smart import (
    REDIRECT,
    User,
    client_token,
    code_of,
    login,
    make_client,
    parse_form,
    pkce,
    store_of,
)
from tests.servers import database_url, start_server
from tests.workflow.smtp import start_smtp

PASSWORD = "my own long passphrase"
SENT = "Check your e-mail"


@pytest.fixture(scope="module")
def smtp(tmp_path_factory):  # type: ignore[no-untyped-def]
    server = start_smtp(tmp_path_factory.mktemp("smtp"))
    yield server
    server.stop()


def _start(backend, tmp, smtp, **overrides):  # type: ignore[no-untyped-def]
    url, cleanup = database_url(backend, tmp)
    running = start_server(
        backend,
        url,
        smtp_host="127.0.0.1",
        smtp_port=smtp.port,
        smtp_ca_file=smtp.ca_file,
        **overrides,
    )
    return running, cleanup


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def server(request, tmp_path_factory, smtp):  # type: ignore[no-untyped-def]
    running, cleanup = _start(
        request.param, tmp_path_factory.mktemp("reg"), smtp, self_registration=True
    )
    yield running
    running.stop()
    cleanup()  # type: ignore[operator]


def _mail(smtp, address: str, count: int) -> list[Message]:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + 15
    while len(smtp.inbox.to(address)) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    got = smtp.inbox.to(address)
    assert len(got) == count, [m["Subject"] for m in got]
    return got


def _text(msg: Message) -> str:
    return msg.get_payload(decode=True).decode()  # type: ignore[union-attr]


def _link(msg: Message) -> str:
    found = re.search(r"(http://\S+/auth/register/confirm\?token=\S+)", _text(msg))
    assert found, _text(msg)
    return found.group(1)


def _register(browser: httpx.Client, email: str, **extra: str) -> httpx.Response:
    form = parse_form(browser.get("/auth/register").text)
    fields = {
        **form.fields,
        "given": "Siti",
        "family": "Rahayu",
        "birth_date": "1984-03-02",
        "email": email,
        "password": PASSWORD,
        **extra,
    }
    return browser.post(form.action, data=fields)


def _patients(server, email: str) -> list[dict]:  # type: ignore[no-untyped-def]
    resp = httpx.get(
        f"{server.fhir}/Patient",
        params={"identifier": f"{IDENTIFIER_SYSTEM}|{email}"},
        headers=client_token(server, "system/*.rs"),
    )
    assert resp.status_code == 200
    return [e["resource"] for e in resp.json().get("entry", [])]


def test_register_verify_and_sign_in(server, smtp):  # type: ignore[no-untyped-def]
    email = f"siti-{server.backend}@example.org"
    app, _ = make_client(server, "public", "patient/*.rs openid fhirUser")
    verifier, challenge = pkce()
    # the login page links to the registration form
    with httpx.Client(base_url=server.root, timeout=30) as c:
        page = c.get(
            "/auth/authorize",
            params={
                "response_type": "code",
                "client_id": app,
                "redirect_uri": REDIRECT,
                "scope": "patient/*.rs",
                "state": "s",
                "aud": server.fhir,
                "code_challenge": challenge,
                "code_challenge_method": "S256",
            },
        )
    assert 'href="/auth/register"' in page.text and "Create an account" in page.text

    browser = httpx.Client(base_url=server.root, timeout=30)  # keeps the CSRF cookie
    resp = _register(browser, email.upper())  # the address is kept in lower case
    assert resp.status_code == 200 and SENT in resp.text
    (msg,) = _mail(smtp, email, 1)
    assert msg["Subject"] == "Finish creating your Hearth account"
    assert PASSWORD not in _text(msg)
    link = _link(msg)
    payload = link.split("token=")[1].split(".")[1]
    readable = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)).decode()
    assert "Rahayu" not in readable and "1984" not in readable and "argon2" not in readable

    # before the link is followed, nothing can sign in and no Patient exists
    user = User(email, PASSWORD, None, [], None)
    assert login(server, app, user, "patient/*.rs", challenge=challenge).status_code == 401
    assert _patients(server, email) == []

    page = browser.get(link)
    assert page.status_code == 200 and email in page.text
    form = parse_form(page.text)
    no_csrf = {k: v for k, v in form.fields.items() if k != "csrf"}
    assert browser.post(form.action, data=no_csrf).status_code == 403
    done = browser.post(form.action, data=form.fields)
    assert done.status_code == 200 and "Account created" in done.text

    (patient,) = _patients(server, email)
    assert patient["birthDate"] == "1984-03-02"
    assert patient["name"][0]["family"] == "Rahayu"
    assert {"system": "email", "value": email} in patient["telecom"]
    store = store_of(server)
    try:
        row = store.user(email)
    finally:
        store.engine.dispose()
    assert row is not None and row["role"] == "patient" and row["totp_secret"] is None
    assert row["fhir_user"] == f"Patient/{patient['id']}"

    # the link worked once: reused (GET or POST) it is refused
    assert browser.get(link).status_code == 400
    assert browser.post(form.action, data=form.fields).status_code == 400
    browser.close()

    # the patient signs in (no TOTP needed) and the token's patient is their own
    code = code_of(login(server, app, user, "patient/*.rs openid fhirUser", challenge=challenge))
    token = httpx.post(
        f"{server.root}/auth/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT,
            "client_id": app,
            "code_verifier": verifier,
        },
    )
    assert token.status_code == 200, token.text
    assert token.json()["patient"] == patient["id"]

    # audited: the account's creation names the Patient
    events = httpx.get(
        f"{server.fhir}/AuditEvent",
        params={"entity-name": email},
        headers=server.headers,
    ).json()
    codes = {s["code"] for e in events.get("entry", []) for s in e["resource"].get("subtype", [])}
    assert "self-register" in codes


def test_same_address_twice_same_answer_no_duplicate(server, smtp):  # type: ignore[no-untyped-def]
    email = f"twice-{server.backend}@example.org"
    browser = httpx.Client(base_url=server.root, timeout=30)
    first = _register(browser, email)
    second = _register(browser, email, given="Other")
    assert first.status_code == second.status_code == 200 and first.text == second.text
    links = [_link(m) for m in _mail(smtp, email, 2)]
    form = parse_form(browser.get(links[1]).text)
    assert "Account created" in browser.post(form.action, data=form.fields).text
    # the other link, not used yet, is refused now: the address has its account
    assert browser.get(links[0]).status_code == 400

    # asking again for a registered address: the same answer, an e-mail without a link
    again = _register(browser, email)
    assert again.status_code == 200 and again.text == first.text
    fresh = _register(browser, f"nobody-yet-{server.backend}@example.org")
    assert fresh.text == again.text  # no oracle for whether an account exists
    told = _mail(smtp, email, 3)[2]
    assert "has one" in _text(told) and "/auth/register/confirm" not in _text(told)
    assert len(_patients(server, email)) == 1
    browser.close()


def test_expired_forged_and_bad_input_refused(server, smtp):  # type: ignore[no-untyped-def]
    email = f"late-{server.backend}@example.org"
    engine = create_engine(server.database_url)
    try:
        key = SigningKey.load(key_store(engine, server.settings))
    finally:
        engine.dispose()
    assert key is not None
    sealed = {
        "email": email,
        "given": "A",
        "family": "B",
        "birthDate": "1990-01-01",
        "pw": "x",
    }
    box = secret_box(server.settings)
    claims = {"purpose": "register", "data": box.encrypt(json.dumps(sealed))}
    expired = key.sign(claims, ttl=-60)
    unsealed = key.sign({"purpose": "register", "data": json.dumps(sealed)}, ttl=600)
    wrong_purpose = key.sign({**claims, "purpose": "reset"}, ttl=600)
    browser = httpx.Client(base_url=server.root, timeout=30)
    for token in (expired, wrong_purpose, unsealed, expired[:-4] + "AAAA", ""):
        page = browser.get("/auth/register/confirm", params={"token": token})
        assert page.status_code == 400 and "Link not valid" in page.text
    csrf = parse_form(browser.get("/auth/register").text).fields["csrf"]
    no_csrf = browser.post(
        "/auth/register",
        data={
            "given": "A",
            "family": "B",
            "birth_date": "1990-01-01",
            "email": email,
            "password": PASSWORD,
        },
    )
    assert no_csrf.status_code == 403  # a form not sent from Hearth's page: nothing happens
    posted = browser.post("/auth/register/confirm", data={"csrf": csrf, "token": expired})
    assert posted.status_code == 400
    assert _patients(server, email) == []

    for bad in (
        {"password": "short"},
        {"birth_date": "2999-01-01"},
        {"birth_date": "not a date"},
        {"address": "not-an-address"},
        {"given": "  "},
    ):
        resp = _register(browser, bad.pop("address", email), **bad)
        assert resp.status_code == 400 and 'role="alert"' in resp.text, bad
    browser.close()
    time.sleep(0.3)
    assert smtp.inbox.to(email) == []


def test_rate_limited_and_off_by_default(tmp_path, smtp):  # type: ignore[no-untyped-def]
    limited, cleanup = _start(
        "sqlite", tmp_path / "a", smtp, self_registration=True, login_rate_per_account=2
    )
    try:
        browser = httpx.Client(base_url=limited.root, timeout=30)
        assert _register(browser, "busy@example.org").status_code == 200
        assert _register(browser, "busy@example.org").status_code == 200
        refused = _register(browser, "busy@example.org")
        assert refused.status_code == 429 and "Retry-After" in refused.headers
        browser.close()
    finally:
        limited.stop()
    (tmp_path / "b").mkdir()
    off, cleanup_off = _start("sqlite", tmp_path / "b", smtp)
    try:
        assert httpx.get(f"{off.root}/auth/register").status_code == 404
        assert httpx.get(f"{off.root}/auth/register/confirm?token=x").status_code == 404
    finally:
        off.stop()
