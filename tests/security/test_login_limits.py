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

    def __init__(self, server, client_id: str) -> None:  # type: ignore[no-untyped-def]
        _, challenge = pkce()
        self.server = server
        with httpx.Client(base_url=server.root, timeout=60) as c:
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
        with httpx.Client(base_url=self.server.root, timeout=120, cookies=self.cookies) as c:
            return c.post(self.form.action, data=fields)


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
