"""SMART App Launch: authorization code with PKCE, the login form with TOTP, refresh,
revocation, the id_token, standalone patient picking and EHR launch — and each way it must
fail (wrong verifier, reused or expired code, redirect_uri mismatch, wrong audience, scope
escalation on refresh, TOTP replay, lockout, hostile login input)."""

from __future__ import annotations

import time
import uuid

import httpx
import pytest
import sqlalchemy as sa
from joserfc import jwt
from joserfc.jwk import KeySet

from fhir_server.auth.scopes import Scopes
from fhir_server.auth.tokens import issue
from fhir_server.runtime.settings import Settings
from resources.auth.store import auth_code
from tests.fhir_server.auth.smart import (
    REDIRECT,
    bearer,
    code_of,
    exchange,
    login,
    make_client,
    make_user,
    pkce,
    query_string,
    store_of,
)


def _patient(server, family: str) -> str:  # type: ignore[no-untyped-def]
    body = {"resourceType": "Patient", "name": [{"family": family, "given": ["Test"]}]}
    resp = httpx.post(f"{server.fhir}/Patient", json=body, headers=server.headers)
    assert resp.status_code == 201
    return resp.json()["id"]


def _practitioner(server) -> str:  # type: ignore[no-untyped-def]
    body = {"resourceType": "Practitioner", "name": [{"family": "Osei"}]}
    return httpx.post(f"{server.fhir}/Practitioner", json=body, headers=server.headers).json()["id"]


@pytest.fixture
def public_app(server):  # type: ignore[no-untyped-def]
    client_id, _ = make_client(
        server,
        "public",
        "openid fhirUser launch launch/patient offline_access online_access "
        "patient/*.rs user/*.cruds",
    )
    return client_id


def test_patient_login_code_flow_refresh_and_id_token(server, public_app):
    pid = _patient(server, f"Flow{uuid.uuid4().hex[:6]}")
    user = make_user(server, "patient", f"Patient/{pid}")
    assert user.totp is None  # optional for patients
    verifier, challenge = pkce()
    scope = "openid fhirUser offline_access patient/*.rs"
    resp = login(server, public_app, user, scope, challenge=challenge, extra={"nonce": "n-1"})
    assert query_string(resp.headers["location"])["state"] == "st-1"
    token = exchange(server, public_app, code_of(resp), verifier)
    assert token.status_code == 200, token.text
    body = token.json()
    assert body["patient"] == pid
    assert body["scope"].split() == ["fhirUser", "offline_access", "openid", "patient/*.rs"]
    assert token.headers["cache-control"] == "no-store"
    jwks = KeySet.import_key_set(httpx.get(f"{server.root}/auth/jwks").json())
    claims = jwt.decode(body["id_token"], jwks, algorithms=["RS256"]).claims
    assert claims["fhirUser"] == f"{server.fhir}/Patient/{pid}"
    assert claims["aud"] == public_app and claims["iss"] == server.fhir
    assert claims["nonce"] == "n-1"
    assert claims["hearth_role"] == "patient"  # the care role (the web app's worklist)
    h = bearer(body["access_token"])
    assert httpx.get(f"{server.fhir}/Patient/{pid}", headers=h).status_code == 200
    # refresh: same or fewer scopes only
    refreshed = httpx.post(
        f"{server.root}/auth/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": body["refresh_token"],
            "client_id": public_app,
        },
    )
    assert refreshed.status_code == 200, refreshed.text
    assert refreshed.json()["patient"] == pid
    narrower = httpx.post(
        f"{server.root}/auth/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": body["refresh_token"],
            "client_id": public_app,
            "scope": "patient/Observation.rs",
        },
    )
    assert narrower.status_code == 200 and narrower.json()["scope"] == "patient/Observation.rs"
    wider = httpx.post(
        f"{server.root}/auth/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": body["refresh_token"],
            "client_id": public_app,
            "scope": "patient/*.cruds",
        },
    )
    assert wider.status_code == 400 and wider.json()["error"] == "invalid_scope"
    # revoking the refresh token revokes every token of the grant
    assert (
        httpx.post(
            f"{server.root}/auth/revoke",
            data={"token": body["refresh_token"], "client_id": public_app},
        ).status_code
        == 200
    )
    assert httpx.get(f"{server.fhir}/Patient/{pid}", headers=h).status_code == 401
    again = httpx.post(
        f"{server.root}/auth/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": body["refresh_token"],
            "client_id": public_app,
        },
    )
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"


def test_code_misuse(server, public_app):
    pid = _patient(server, "Misuse")
    user = make_user(server, "patient", f"Patient/{pid}")
    verifier, challenge = pkce()
    code = code_of(login(server, public_app, user, "patient/*.rs", challenge=challenge))
    wrong_verifier = exchange(server, public_app, code, pkce()[0])
    assert (
        wrong_verifier.status_code == 400 and "PKCE" in wrong_verifier.json()["error_description"]
    )
    # the failed attempt consumed the code: the right verifier now fails too
    assert exchange(server, public_app, code, verifier).status_code == 400

    verifier, challenge = pkce()
    code = code_of(login(server, public_app, user, "patient/*.rs", challenge=challenge))
    first = exchange(server, public_app, code, verifier)
    assert first.status_code == 200
    reused = exchange(server, public_app, code, verifier)
    assert reused.status_code == 400 and "already used" in reused.json()["error_description"]
    # reuse revokes what the first exchange issued
    h = bearer(first.json()["access_token"])
    assert httpx.get(f"{server.fhir}/Patient/{pid}", headers=h).status_code == 401

    verifier, challenge = pkce()
    code = code_of(login(server, public_app, user, "patient/*.rs", challenge=challenge))
    mismatch = exchange(server, public_app, code, verifier, redirect_uri="http://127.0.0.1:9/other")
    assert mismatch.status_code == 400 and "redirect_uri" in mismatch.json()["error_description"]

    verifier, challenge = pkce()
    code = code_of(login(server, public_app, user, "patient/*.rs", challenge=challenge))
    store = store_of(server)
    try:
        with store.engine.begin() as conn:  # age the code past its 60 s life
            conn.execute(sa.update(auth_code).values(expires=sa.func.current_timestamp()))
    finally:
        store.engine.dispose()
    time.sleep(0.01)
    expired = exchange(server, public_app, code, verifier)
    assert expired.status_code == 400 and expired.json()["error"] == "invalid_grant"

    other_app, _ = make_client(server, "public", "patient/*.rs")
    verifier, challenge = pkce()
    code = code_of(login(server, public_app, user, "patient/*.rs", challenge=challenge))
    stolen = exchange(server, other_app, code, verifier)
    assert stolen.status_code == 400


def test_authorize_request_checks(server, public_app):
    _, challenge = pkce()
    base = {
        "response_type": "code",
        "client_id": public_app,
        "redirect_uri": REDIRECT,
        "scope": "patient/*.rs",
        "state": "s",
        "aud": server.fhir,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    url = f"{server.root}/auth/authorize"
    ok = httpx.get(url, params=base)
    assert ok.status_code == 200 and "<form" in ok.text
    bad_redirect = httpx.get(url, params={**base, "redirect_uri": "https://evil.example/cb"})
    assert bad_redirect.status_code == 400 and "location" not in bad_redirect.headers
    unknown = httpx.get(url, params={**base, "client_id": "nobody"})
    assert unknown.status_code == 400
    for change, error in (
        ({"code_challenge_method": "plain"}, "invalid_request"),
        ({"code_challenge": ""}, "invalid_request"),
        ({"aud": "https://other.example/fhir"}, "invalid_request"),
        ({"response_type": "token"}, "unsupported_response_type"),
        ({"scope": "system/*.cruds"}, "invalid_scope"),
        ({"launch": "no-such-launch"}, "invalid_request"),
    ):
        resp = httpx.get(url, params={**base, **change})
        assert resp.status_code == 303, change
        q = query_string(resp.headers["location"])
        assert q["error"] == error and q["state"] == "s", change


def test_token_for_another_audience_is_refused(server):
    store = store_of(server)
    try:
        body = issue(
            store,
            Settings(database_url=server.database_url, base_url=server.root),
            None,
            client_id="someone",
            scope=Scopes.parse("system/*.rs"),
            context={},
            audience="https://other-server.example/fhir",
        )
    finally:
        store.engine.dispose()
    resp = httpx.get(f"{server.fhir}/Patient", headers=bearer(body["access_token"]))
    assert resp.status_code == 401


def test_practitioner_needs_totp_and_replay_is_refused(server, public_app):
    prac = _practitioner(server)
    user = make_user(server, "doctor", f"Practitioner/{prac}")
    assert user.totp is not None
    _, challenge = pkce()
    no_code = login(server, public_app, user, "user/*.rs", challenge=challenge, code="")
    assert no_code.status_code == 401 and "not right" in no_code.text
    verifier, challenge = pkce()
    code = user.totp.now()
    first = login(
        server, public_app, user, "openid fhirUser user/*.rs", challenge=challenge, code=code
    )
    token = exchange(server, public_app, code_of(first), verifier).json()
    assert "patient" not in token and token["scope"].endswith("user/*.rs")
    _, challenge = pkce()
    replay = login(server, public_app, user, "user/*.rs", challenge=challenge, code=code)
    assert replay.status_code == 401  # the same TOTP code never works twice
    _, challenge = pkce()
    recovery = login(
        server, public_app, user, "user/*.rs", challenge=challenge, code=user.recovery[0]
    )
    assert recovery.status_code == 303
    _, challenge = pkce()
    recovery_again = login(
        server, public_app, user, "user/*.rs", challenge=challenge, code=user.recovery[0]
    )
    assert recovery_again.status_code == 401


def test_lockout_and_hostile_input(server, public_app):
    pid = _patient(server, "Lockout")
    user = make_user(server, "patient", f"Patient/{pid}")
    _, challenge = pkce()
    for hostile in ("' OR '1'='1", "admin'--", "x" * 100_000):
        wrong = type(user)(hostile, "' OR 1=1 --", None, [], None)
        resp = login(server, public_app, wrong, "patient/*.rs", challenge=challenge)
        assert resp.status_code in (401, 413), resp.status_code
        assert "Traceback" not in resp.text
    bad = type(user)(user.username, "wrong password!", None, [], None)
    for _ in range(5):
        assert (
            login(server, public_app, bad, "patient/*.rs", challenge=challenge).status_code == 401
        )
    locked = login(server, public_app, user, "patient/*.rs", challenge=challenge)
    assert locked.status_code == 401  # the right password no longer works for now


def test_standalone_launch_picks_a_patient_and_ehr_launch(server, public_app):
    pid = _patient(server, f"Pick{uuid.uuid4().hex[:6]}")
    prac = _practitioner(server)
    doctor = make_user(server, "doctor", f"Practitioner/{prac}")
    verifier, challenge = pkce()
    resp = login(
        server,
        public_app,
        doctor,
        "launch/patient patient/*.rs",
        challenge=challenge,
        patient_choice=pid,
    )
    token = exchange(server, public_app, code_of(resp), verifier).json()
    assert token["patient"] == pid
    # EHR launch: the EHR records the context, the app brings the launch id
    launch = httpx.post(
        f"{server.root}/auth/launch",
        json={"patient": pid, "encounter": "enc-1"},
        headers=server.headers,
    )
    assert launch.status_code == 201, launch.text
    verifier, challenge = pkce()
    resp = login(
        server,
        public_app,
        doctor,
        "launch patient/*.rs",
        challenge=challenge,
        extra={"launch": launch.json()["launch"]},
        code=doctor.recovery[0],  # this TOTP step was used by the first login
    )
    token = exchange(server, public_app, code_of(resp), verifier).json()
    assert token["patient"] == pid and token["encounter"] == "enc-1"
    assert token["need_patient_banner"] is True


def test_related_person_acts_for_their_patient_and_launch_cannot_move_a_patient_user(
    server, public_app
):
    pid = _patient(server, "Child")
    other = _patient(server, "Stranger")
    related = httpx.post(
        f"{server.fhir}/RelatedPerson",
        json={"resourceType": "RelatedPerson", "patient": {"reference": f"Patient/{pid}"}},
        headers=server.headers,
    ).json()["id"]
    parent = make_user(server, "patient", f"RelatedPerson/{related}")
    verifier, challenge = pkce()
    resp = login(server, public_app, parent, "openid fhirUser patient/*.rs", challenge=challenge)
    token = exchange(server, public_app, code_of(resp), verifier).json()
    assert token["patient"] == pid
    h = bearer(token["access_token"])
    assert httpx.get(f"{server.fhir}/Patient/{pid}", headers=h).status_code == 200
    assert httpx.get(f"{server.fhir}/Patient/{other}", headers=h).status_code == 404
    # a launch made for another patient does not move a patient user off their own record
    launch = httpx.post(
        f"{server.root}/auth/launch", json={"patient": other}, headers=server.headers
    ).json()["launch"]
    verifier, challenge = pkce()
    resp = login(
        server,
        public_app,
        parent,
        "launch patient/*.rs",
        challenge=challenge,
        extra={"launch": launch},
    )
    token = exchange(server, public_app, code_of(resp), verifier).json()
    assert token["patient"] == pid
