"""Roles from FHIR data, decided at each token issue: a practitioner's role comes from the active
PractitionerRoles of their Practitioner (Hearth care-role codes), a patient's from their fhirUser
type, admin from the account flag. A changed PractitionerRole takes effect at the next token."""

from __future__ import annotations

import uuid

import httpx
import pyotp

from fhir_server.auth.roles import _current
from fhir_server.auth.users import create_user
from tests.fhir_server.auth.smart import (
    PASSWORD,
    User,
    code_of,
    exchange,
    give_role,
    login,
    make_client,
    make_user,
    pkce,
    store_of,
)

SCOPE = "openid fhirUser offline_access user/*.cruds"

HTTP = httpx.Client(timeout=60)  # the shared 2-core test machine can be slow


def _token(server, client_id: str, user, second: str | None = None) -> dict:  # type: ignore[no-untyped-def]
    """Sign in (a recovery code as ``second`` factor where the TOTP step was used already)."""
    verifier, challenge = pkce()
    code = code_of(login(server, client_id, user, SCOPE, challenge=challenge, code=second))
    resp = exchange(server, client_id, code, verifier)
    assert resp.status_code == 200, resp.text
    return resp.json()


def _practitioner(server) -> str:  # type: ignore[no-untyped-def]
    resp = HTTP.post(
        f"{server.fhir}/Practitioner",
        json={"resourceType": "Practitioner", "name": [{"family": uuid.uuid4().hex[:8]}]},
        headers=server.headers,
    )
    return f"Practitioner/{resp.json()['id']}"


def _set_active(server, role: dict, active: bool) -> None:  # type: ignore[no-untyped-def]
    resp = HTTP.put(
        f"{server.fhir}/PractitionerRole/{role['id']}",
        json={**role, "active": active},
        headers=server.headers,
    )
    assert resp.status_code == 200, resp.text


def test_practitioner_role_decides_the_scopes_at_each_token(server):
    client_id, _ = make_client(server, "public", SCOPE)
    prac = _practitioner(server)
    user = make_user(server, "cadre", prac)  # gets an active cadre PractitionerRole
    cadre = _token(server, client_id, user)
    assert "user/*.cruds" not in cadre["scope"] and "user/Observation.cu" in cadre["scope"]

    # promoted: a doctor PractitionerRole is added; the next token carries the wider role
    doctor_role = give_role(server, prac, "doctor")
    refreshed = HTTP.post(
        f"{server.root}/auth/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": cadre["refresh_token"],
            "client_id": client_id,
        },
    )
    assert refreshed.status_code == 200, refreshed.text
    # a refresh never widens what was granted, but is cut to the role's ceiling again
    assert "user/Observation.cu" in refreshed.json()["scope"]
    doctor = _token(server, client_id, user, user.recovery[0])
    assert "user/*.cruds" in doctor["scope"]
    h = {"Authorization": f"Bearer {doctor['access_token']}"}
    assert HTTP.delete(f"{server.fhir}/Observation/nothing-here", headers=h).status_code in (
        200,
        204,
        404,
    )

    # both roles deactivated: no role, so no new token (the login says why) and no refresh
    _set_active(server, doctor_role, False)
    roles = HTTP.get(
        f"{server.fhir}/PractitionerRole",
        params={"practitioner": prac, "active": "true"},
        headers=server.headers,
    ).json()
    for entry in roles.get("entry", []):
        _set_active(server, entry["resource"], False)
    verifier, challenge = pkce()
    refused = login(server, client_id, user, SCOPE, challenge=challenge, code=user.recovery[1])
    assert refused.status_code == 403 and "no active role" in refused.text
    again = HTTP.post(
        f"{server.root}/auth/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": doctor["refresh_token"],
            "client_id": client_id,
        },
    )
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"


def test_roles_outside_the_care_role_system_or_period_do_not_count(server):
    client_id, _ = make_client(server, "public", SCOPE)
    prac = _practitioner(server)
    body = {
        "resourceType": "PractitionerRole",
        "active": True,
        "practitioner": {"reference": prac},
        "code": [{"coding": [{"system": "http://snomed.info/sct", "code": "158965000"}]}],
    }
    assert HTTP.post(f"{server.fhir}/PractitionerRole", json=body, headers=server.headers)
    ended = {
        **body,
        "code": [
            {
                "coding": [
                    {"system": "http://hearth.local/fhir/CodeSystem/care-role", "code": "doctor"}
                ]
            }
        ],
        "period": {"end": "2020-01-01"},
    }
    assert HTTP.post(f"{server.fhir}/PractitionerRole", json=ended, headers=server.headers)
    store = store_of(server)
    name = f"nobody-{uuid.uuid4().hex[:6]}"
    try:
        created = create_user(store, name, PASSWORD, role="doctor", fhir_user=prac)
    finally:
        store.engine.dispose()
    user = User(name, PASSWORD, pyotp.parse_uri(created.totp_uri), [], prac)  # type: ignore[arg-type]
    verifier, challenge = pkce()
    refused = login(server, client_id, user, SCOPE, challenge=challenge)
    assert refused.status_code == 403 and "no active role" in refused.text


def test_patients_by_fhir_user_type_admins_by_flag(server):
    client_id, _ = make_client(server, "public", SCOPE + " patient/*.rs")
    pid = HTTP.post(
        f"{server.fhir}/Patient", json={"resourceType": "Patient"}, headers=server.headers
    ).json()["id"]
    patient = _token(server, client_id, make_user(server, "patient", f"Patient/{pid}"))
    assert patient["patient"] == pid and "user/*.cruds" not in patient["scope"]
    # an admin account needs no PractitionerRole: admin is the account's flag
    admin = _token(server, client_id, make_user(server, "admin", _practitioner(server)))
    h = {"Authorization": f"Bearer {admin['access_token']}"}
    assert HTTP.get(f"{server.fhir}/AuditEvent", params={"_count": 1}, headers=h).status_code == 200


def test_period_bounds():
    from datetime import date

    today = date(2026, 11, 26)
    assert _current({}, today)
    assert _current({"start": "2026-11-26", "end": "2026-11-26T23:00:00Z"}, today)
    assert not _current({"start": "2026-11-27"}, today)
    assert not _current({"end": "2026-11-25"}, today)
