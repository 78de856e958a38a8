"""Helpers for the SMART tests: users and clients registered in the test server's database, a
scripted browser-less login through the real HTML form, and signed client assertions."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
import time
import uuid
from dataclasses import dataclass
from html.parser import HTMLParser
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pyotp
from joserfc import jwt
from joserfc.jwk import KeySet

from fhir_server.auth.clients import register
from fhir_server.auth.keys import secret_box
from fhir_server.auth.roles import PRACTITIONER_ROLES
from fhir_server.auth.users import create_user
from resources.auth.store import AuthStore
from resources.storage.db import create_engine
from tests.shared import shared_path
from workflow.actors import role_concept

PASSWORD = "correct horse battery staple"
REDIRECT = "http://127.0.0.1:9/callback"


def store_of(server) -> AuthStore:  # type: ignore[no-untyped-def]
    """The server's auth tables, with its secret key (TOTP seeds are encrypted at rest)."""
    box = secret_box(server.settings) if server.settings is not None else None
    return AuthStore(create_engine(server.database_url), box=box)


@dataclass
class User:
    username: str
    password: str
    totp: pyotp.TOTP | None
    recovery: list[str]
    fhir_user: str | None


def client_token(server, scope: str, patient: str | None = None) -> dict:  # type: ignore[no-untyped-def]
    """Authorization headers with a token for a new confidential client (no user), issued as
    ``hearth token`` does, with ``patient`` in context."""
    from fhir_server.auth.tokens import operator_token
    from fhir_server.runtime.settings import Settings

    client_id, _ = make_client(server, "confidential-symmetric", scope, redirect=None)
    store = store_of(server)
    try:
        settings = Settings(database_url=server.database_url, base_url=server.root)
        body = operator_token(store, settings, client_id, scope, patient=patient)
    finally:
        store.engine.dispose()
    return bearer(body["access_token"])


def make_user(
    server, role: str, fhir_user: str | None, *, totp: bool | None = None, email=None
) -> User:  # type: ignore[no-untyped-def]
    store = store_of(server)
    name = f"{role}-{uuid.uuid4().hex[:8]}"
    if role in PRACTITIONER_ROLES and fhir_user:
        give_role(server, fhir_user, role)
    try:
        created = create_user(
            store, name, PASSWORD, role=role, fhir_user=fhir_user, totp=totp, email=email
        )
    finally:
        store.engine.dispose()
    return User(
        name,
        PASSWORD,
        pyotp.parse_uri(created.totp_uri) if created.totp_uri else None,  # type: ignore[arg-type]
        created.recovery_codes,
        fhir_user,
    )


def give_role(server, practitioner: str, role: str, *, active: bool = True) -> dict:  # type: ignore[no-untyped-def]
    """An active PractitionerRole with Hearth care-role ``role`` for ``practitioner`` (what
    `hearth users create` makes): the role of that user's tokens comes from it."""
    body = {
        "resourceType": "PractitionerRole",
        "active": active,
        "practitioner": {"reference": practitioner},
        "code": [role_concept(role)],
    }
    resp = httpx.post(f"{server.fhir}/PractitionerRole", json=body, headers=server.headers)
    assert resp.status_code == 201, resp.text
    return resp.json()


def make_client(server, kind: str, scope: str, *, jwks: dict | None = None, redirect=REDIRECT):  # type: ignore[no-untyped-def]
    store = store_of(server)
    try:
        return register(
            store,
            f"test app {uuid.uuid4().hex[:6]}",
            kind,
            scope=scope,
            redirect_uris=[redirect] if redirect else [],
            jwks=jwks,
        )
    finally:
        store.engine.dispose()


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
    return verifier, challenge.decode().rstrip("=")


class _Form(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.action = None
        self.fields: dict[str, str] = {}
        self.options: list[str] = []

    def handle_starttag(self, tag, attrs):  # type: ignore[no-untyped-def]
        a = dict(attrs)
        if tag == "form" and self.action is None:
            self.action = a.get("action")
        elif tag == "input" and a.get("name"):
            self.fields[a["name"]] = a.get("value") or ""
        elif tag == "option":
            self.options.append(a.get("value"))


def parse_form(html: str) -> _Form:
    f = _Form()
    f.feed(html)
    return f


def code_for_totp(user: User) -> str:
    """A fresh TOTP code, waiting for the next 30-second step if this one was used already."""
    assert user.totp is not None
    return user.totp.now()


def login(
    server,  # type: ignore[no-untyped-def]
    client_id: str,
    user: User,
    scope: str,
    *,
    challenge: str,
    code: str | None = None,
    state: str = "st-1",
    extra: dict | None = None,
    patient_choice: str | None = None,
) -> httpx.Response:
    """GET /auth/authorize, submit the login form as a browser would; returns the final
    response (a 303 to the redirect URI on success)."""
    params = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": REDIRECT,
        "scope": scope,
        "state": state,
        "aud": server.fhir,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        **(extra or {}),
    }
    with httpx.Client(base_url=server.root, timeout=30) as c:
        page = c.get("/auth/authorize", params=params)
        if page.status_code != 200:
            return page
        form = parse_form(page.text)
        fields = {
            **form.fields,
            "username": user.username,
            "password": user.password,
            "code": code if code is not None else (code_for_totp(user) if user.totp else ""),
        }
        resp = c.post(form.action, data=fields)
        if resp.status_code == 200 and "Choose a patient" in resp.text:
            pick = parse_form(resp.text)
            choice = patient_choice or pick.options[0]
            resp = c.post(pick.action, data={**pick.fields, "patient": choice})
        return resp


def code_of(resp: httpx.Response) -> str:
    assert resp.status_code == 303, resp.text[:500]
    q = parse_qs(urlsplit(resp.headers["location"]).query)
    assert "code" in q, resp.headers["location"]
    return q["code"][0]


def exchange(server, client_id: str, code: str, verifier: str, **extra) -> httpx.Response:  # type: ignore[no-untyped-def]
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT,
        "client_id": client_id,
        "code_verifier": verifier,
        **extra,
    }
    return httpx.post(f"{server.root}/auth/token", data=data, timeout=30)


def ig_keys(alg: str) -> tuple[KeySet, dict]:
    """(the IG example private key set, its public JWKS) for RS384 or ES384."""
    private = KeySet.import_key_set(
        json.loads(shared_path("smart", "keys", f"{alg}.private.json").read_text())
    )
    public = json.loads(shared_path("smart", "keys", f"{alg}.public.json").read_text())
    return private, public


def assertion(
    private: KeySet,
    alg: str,
    client_id: str,
    aud: str,
    *,
    exp_in: int = 240,
    jti: str | None = None,
) -> str:
    key = next(k for k in private.keys if k.is_private)
    claims = {
        "iss": client_id,
        "sub": client_id,
        "aud": aud,
        "exp": int(time.time()) + exp_in,
        "jti": jti or uuid.uuid4().hex,
    }
    return jwt.encode({"alg": alg, "kid": key.kid, "typ": "JWT"}, claims, key, algorithms=[alg])


def backend_token(server, client_id: str, private: KeySet, alg: str, scope: str) -> httpx.Response:  # type: ignore[no-untyped-def]
    data = {
        "grant_type": "client_credentials",
        "scope": scope,
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": assertion(private, alg, client_id, f"{server.root}/auth/token"),
    }
    return httpx.post(f"{server.root}/auth/token", data=data, timeout=30)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def query_string(url: str) -> dict:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


__all__ = ["re", "urlencode"]
