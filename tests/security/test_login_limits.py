"""Logins under attack, over HTTP against a running Hearth on both databases: the lockout counts
every concurrent failure (atomic), attempts are rate limited per account and per client address
(429 with Retry-After, refused before any password hashing), and concurrent password checks are
bounded server-wide (503 with Retry-After)."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.conftest import BACKENDS
from tests.fhir_server.auth.smart import (
    REDIRECT,
    make_client,
    make_user,
    parse_form,
    pkce,
    store_of,
)
from tests.servers import database_url, start_server


def _server(request, tmp_path_factory, **overrides):  # type: ignore[no-untyped-def]
    url, cleanup = database_url(request.param, tmp_path_factory.mktemp(request.param))
    running = start_server(request.param, url, **overrides)
    request.addfinalizer(cleanup)
    request.addfinalizer(running.stop)
    return running


@pytest.fixture(scope="module", params=BACKENDS)
def open_server(request, tmp_path_factory):  # type: ignore[no-untyped-def]
    """No rate limits to speak of and room for many concurrent password checks: what is left
    to stop guessing is the lockout."""
    return _server(
        request,
        tmp_path_factory,
        login_rate_per_ip=100_000,
        login_rate_per_account=100_000,
        password_check_concurrency=64,
    )


def _patient(server) -> str:  # type: ignore[no-untyped-def]
    resp = httpx.post(
        f"{server.fhir}/Patient",
        json={"resourceType": "Patient"},
        headers=server.headers,
        timeout=60,
    )
    assert resp.status_code == 201, resp.text
    return resp.json()["id"]


class Browser:
    """A login page fetched once (CSRF cookie and form); ``post`` submits it with credentials."""

    def __init__(self, server, client_id: str, source: str = "127.0.0.1") -> None:  # type: ignore[no-untyped-def]
        _, challenge = pkce()
        self.server = server
        self.source = source
        with _http(server, source) as c:
            page = c.get(
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
            assert page.status_code == 200, page.text
            self.cookies = dict(c.cookies)
        self.form = parse_form(page.text)

    def post(self, username: str, password: str) -> httpx.Response:
        fields = {**self.form.fields, "username": username, "password": password, "code": ""}
        with _http(self.server, self.source, cookies=self.cookies) as c:
            return c.post(self.form.action, data=fields)


def _http(server, source: str, **kwargs) -> httpx.Client:  # type: ignore[no-untyped-def]
    """A client whose connections come from ``source`` (any 127/8 address reaches the server
    on 127.0.0.1): each test is its own client address."""
    transport = httpx.HTTPTransport(local_address=source)
    return httpx.Client(base_url=server.root, timeout=120, transport=transport, **kwargs)


def test_concurrent_wrong_passwords_all_count_and_lock_the_account(open_server):
    server = open_server
    user = make_user(server, "patient", f"Patient/{_patient(server)}")
    client_id, _ = make_client(server, "public", "patient/*.rs")
    browser = Browser(server, client_id)
    start = threading.Barrier(20)

    def wrong(_: int) -> int:
        start.wait()
        return browser.post(user.username, "not the password!").status_code

    with ThreadPoolExecutor(20) as pool:
        statuses = list(pool.map(wrong, range(20)))
    assert statuses == [401] * 20
    store = store_of(server)
    try:
        row = store.user(user.username)
    finally:
        store.engine.dispose()
    assert row is not None
    # every attempt that reached the account was counted; the lock came from the counted value
    assert row["failed_count"] >= 5 and row["locked_until"] is not None
    assert browser.post(user.username, user.password).status_code == 401  # locked for now


@pytest.fixture(scope="module", params=BACKENDS)
def limited(request, tmp_path_factory):  # type: ignore[no-untyped-def]
    return _server(
        request,
        tmp_path_factory,
        login_rate_per_ip=6,
        login_rate_per_account=3,
        password_check_concurrency=1,
        client_rate_per_ip=4,
        client_rate_per_client=3,
    )


def _failures(server, username: str) -> int:  # type: ignore[no-untyped-def]
    store = store_of(server)
    try:
        return store.user(username)["failed_count"]  # type: ignore[index]
    finally:
        store.engine.dispose()


def _retry_after(resp: httpx.Response) -> int:
    value = int(resp.headers["retry-after"])
    assert 1 <= value <= 60
    return value


def test_attempts_per_account_are_limited_before_the_password_is_checked(limited):
    server = limited
    user = make_user(server, "patient", f"Patient/{_patient(server)}")
    other = make_user(server, "patient", f"Patient/{_patient(server)}")
    client_id, _ = make_client(server, "public", "patient/*.rs")
    browser = Browser(server, client_id, "127.0.0.2")
    for _ in range(3):
        assert browser.post(user.username, "not the password!").status_code == 401
    refused = browser.post(user.username, user.password)  # even the right password
    assert refused.status_code == 429, refused.text
    _retry_after(refused)
    assert "too many" in refused.text
    assert _failures(server, user.username) == 3  # the refused attempt never reached the account
    assert browser.post(other.username, "not the password!").status_code == 401  # per account


def test_attempts_per_client_address_are_limited(limited):
    server = limited
    client_id, _ = make_client(server, "public", "patient/*.rs")
    browser = Browser(server, client_id, "127.0.0.3")
    for i in range(6):  # unknown users cost a hash too: they count like any attempt
        assert browser.post(f"nobody-{i}", "not the password!").status_code == 401
    refused = browser.post("nobody-else", "not the password!")
    assert refused.status_code == 429
    _retry_after(refused)
    elsewhere = Browser(server, client_id, "127.0.0.4")
    assert elsewhere.post("nobody-else", "not the password!").status_code == 401


def test_concurrent_password_checks_are_bounded(limited):
    server = limited  # one argon2 check at a time
    client_id, _ = make_client(server, "public", "patient/*.rs")
    browsers = [Browser(server, client_id, f"127.0.1.{i + 1}") for i in range(8)]
    start = threading.Barrier(len(browsers))

    def attempt(b: Browser) -> httpx.Response:
        start.wait()
        return b.post(f"nobody-{b.source}", "not the password!")

    with ThreadPoolExecutor(len(browsers)) as pool:
        answers = list(pool.map(attempt, browsers))
    statuses = sorted(r.status_code for r in answers)
    assert set(statuses) <= {401, 503}, statuses
    assert 401 in statuses and 503 in statuses, statuses
    for busy in (r for r in answers if r.status_code == 503):
        assert _retry_after(busy) == 1


def test_token_revoke_and_introspect_are_limited(limited):
    server = limited
    client_id, secret = make_client(server, "confidential-symmetric", "system/*.rs", redirect=None)
    with _http(server, "127.0.0.5") as c:
        wrong = (client_id, "wrong secret")
        form = {"grant_type": "client_credentials", "scope": "system/*.rs"}
        assert c.post("/auth/token", data=form, auth=wrong).status_code == 401
        assert c.post("/auth/revoke", data={"token": "t"}, auth=wrong).status_code == 401
        assert c.post("/auth/introspect", data={"token": "t"}, auth=wrong).status_code == 401
        refused = c.post("/auth/token", data=form, auth=(client_id, secret))
        assert refused.status_code == 429, refused.text
        assert refused.json()["error"] == "temporarily_unavailable"
        _retry_after(refused)
    with _http(server, "127.0.0.6") as c:  # per address: unknown clients count too
        for i in range(4):
            resp = c.post(
                "/auth/token", data={"grant_type": "client_credentials"}, auth=(f"c{i}", "x")
            )
            assert resp.status_code == 401
        refused = c.post("/auth/token", data={"grant_type": "client_credentials"}, auth=("c9", "x"))
        assert refused.status_code == 429
        _retry_after(refused)


def _account_form(server, source: str, path: str) -> tuple[httpx.Client, dict]:  # type: ignore[no-untyped-def]
    c = _http(server, source)
    page = c.get(path)
    assert page.status_code == 200
    return c, parse_form(page.text).fields


def test_totp_enrolment_and_password_reset_are_limited(limited):
    server = limited
    user = make_user(server, "patient", f"Patient/{_patient(server)}")
    c, fields = _account_form(server, "127.0.0.7", "/auth/account/totp")
    try:
        for _ in range(3):
            resp = c.post(
                "/auth/account/totp",
                data={**fields, "username": user.username, "password": "not the password!"},
            )
            assert resp.status_code == 401
        refused = c.post(
            "/auth/account/totp",
            data={**fields, "username": user.username, "password": user.password},
        )
        assert refused.status_code == 429
        _retry_after(refused)
        reset = c.post("/auth/reset", data={**fields, "username": user.username})
        assert reset.status_code == 429  # the same account's budget
        _retry_after(reset)
    finally:
        c.close()
