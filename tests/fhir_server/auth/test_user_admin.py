"""The account administration operations ($users, $user-create, $user-deactivate,
$user-reactivate, $user-roles, $user-reset-totp) over HTTP, on SQLite and PostgreSQL, and
migration 0013 (docs/security.md "Administering accounts")."""

from __future__ import annotations

import base64
import uuid

import httpx
import pyotp
import pytest
import sqlalchemy as sa

from resources.storage.db import create_engine
from tests.fhir_server.auth.smart import (
    PASSWORD,
    User,
    bearer,
    code_of,
    exchange,
    login,
    make_client,
    make_user,
    pkce,
    store_of,
)
from tests.servers import database_url

SCOPE = "openid fhirUser offline_access user/*.cruds"
HTTP = httpx.Client(timeout=60)
DEACTIVATED = "the access token is not valid"


def _token(server, client_id: str, user: User, second: str | None = None) -> dict:  # type: ignore[no-untyped-def]
    verifier, challenge = pkce()
    code = code_of(login(server, client_id, user, SCOPE, challenge=challenge, code=second))
    resp = exchange(server, client_id, code, verifier)
    assert resp.status_code == 200, resp.text
    return resp.json()


@pytest.fixture
def admin(server):  # type: ignore[no-untyped-def]
    """An administrator's headers (a user with the admin flag, signed in) and their User."""
    client_id, _ = make_client(server, "public", SCOPE)
    user = make_user(server, "admin", None)
    return bearer(_token(server, client_id, user)["access_token"]), user, client_id


def _params(**values) -> dict:  # type: ignore[no-untyped-def]
    out = []
    for name, value in values.items():
        for v in value if isinstance(value, list) else [value]:
            if name == "practitioner":
                out.append({"name": name, "valueReference": {"reference": v}})
            elif name == "role":
                out.append({"name": name, "valueCode": v})
            else:
                out.append({"name": name, "valueString": v})
    return {"resourceType": "Parameters", "parameter": out}


def _op(server, headers, name: str, **values) -> httpx.Response:  # type: ignore[no-untyped-def]
    return HTTP.post(f"{server.fhir}/${name}", json=_params(**values), headers=headers)


def _values(params: dict, name: str) -> list:
    out = []
    for p in params.get("parameter", []):
        if p["name"] == name:
            out.append(next(v for k, v in p.items() if k.startswith("value") or k == "part"))
    return out


def _user(params: dict) -> dict:
    """The ``user`` part of an answer as a dict (role as a list)."""
    (parts,) = _values(params, "user")
    out: dict = {"role": []}
    for p in parts:
        value = next(v for k, v in p.items() if k.startswith("value"))
        if p["name"] == "role":
            out["role"].append(value)
        else:
            out[p["name"]] = value
    return out


def _listed(server, headers, username: str, query: str = "") -> dict | None:  # type: ignore[no-untyped-def]
    resp = HTTP.get(f"{server.fhir}/$users{query}", headers=headers)
    assert resp.status_code == 200, resp.text
    for parts in _values(resp.json(), "user"):
        one = _user({"parameter": [{"name": "user", "part": parts}]})
        if one["username"] == username:
            return one
    return None


def _events(server, **query) -> list[dict]:  # type: ignore[no-untyped-def]
    resp = HTTP.get(f"{server.fhir}/AuditEvent", params=query, headers=server.headers)
    assert resp.status_code == 200, resp.text
    return [e["resource"] for e in resp.json().get("entry", [])]


def _outcome(resp: httpx.Response, status: int, code: str | None = None) -> str:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert body["resourceType"] == "OperationOutcome"
    if code is not None:
        assert body["issue"][0]["code"] == code, body
    return str(body["issue"][0].get("diagnostics", ""))


def test_create_a_doctor_who_signs_in_with_the_provisioned_second_factor(server, admin):
    headers, admin_user, client_id = admin
    name = f"dr-{uuid.uuid4().hex[:8]}"
    made = _op(
        server,
        headers,
        "user-create",
        username=name,
        role="doctor",
        family="Otieno",
        given="Amina",
        email=f"{name}@example.org",
    )
    assert made.status_code == 201, made.text
    body = made.json()
    account = _user(body)
    assert account["role"] == ["doctor"] and account["active"] is True
    assert account["secondFactor"] is True and account["name"] == "Amina Otieno"
    assert "lastSignIn" not in account
    (password,) = _values(body, "password")
    (uri,) = _values(body, "totpUri")
    (qr,) = _values(body, "totpQr")
    assert qr["contentType"] == "image/svg+xml"
    assert base64.b64decode(qr["data"]).startswith(b"<?xml") and b"<svg" in base64.b64decode(
        qr["data"]
    )
    codes = _values(body, "recoveryCode")
    assert uri.startswith("otpauth://totp/") and len(codes) == 8
    practitioner = account["fhirUser"]["reference"]
    roles = HTTP.get(
        f"{server.fhir}/PractitionerRole",
        params={"practitioner": practitioner},
        headers=server.headers,
    ).json()["entry"]
    assert [r["resource"]["code"][0]["coding"][0]["code"] for r in roles] == ["doctor"]

    # the new doctor signs in with the generated password and the provisioned authenticator
    user = User(name, password, pyotp.parse_uri(uri), codes, practitioner)  # type: ignore[arg-type]
    token = _token(server, client_id, user)
    assert "user/*.cruds" in token["scope"]
    listed = _listed(server, headers, name)
    assert listed is not None and "lastSignIn" in listed

    # who did what to whom
    (event,) = _events(server, subtype="urn:hearth:audit|user-create", **{"entity-name": name})
    assert event["agent"][0]["altId"] == admin_user.username
    assert event["entity"][0]["what"]["reference"] == practitioner
    assert event["entity"][0]["detail"] == [{"type": "roles", "valueString": "doctor"}]
    # the PractitionerRole written by the operation is audited as a write of that request
    written = _events(server, entity=f"PractitionerRole/{roles[0]['resource']['id']}")
    assert any(e["agent"][0].get("altId") == admin_user.username for e in written)


def test_create_for_an_existing_practitioner_with_a_chosen_password(server, admin):
    headers, _, _ = admin
    prac = HTTP.post(
        f"{server.fhir}/Practitioner",
        json={"resourceType": "Practitioner", "name": [{"family": "Mwangi", "given": ["Joy"]}]},
        headers=server.headers,
    ).json()
    name = f"ph-{uuid.uuid4().hex[:8]}"
    made = _op(
        server,
        headers,
        "user-create",
        username=name,
        role=["pharmacist", "admin"],
        practitioner=f"Practitioner/{prac['id']}",
        password=PASSWORD,
    )
    assert made.status_code == 201, made.text
    assert _values(made.json(), "password") == []
    account = _user(made.json())
    assert account["role"] == ["admin", "pharmacist"] and account["name"] == "Joy Mwangi"
    # an admin without a Practitioner
    made = _op(server, headers, "user-create", username=f"ad-{uuid.uuid4().hex[:6]}", role="admin")
    assert made.status_code == 201, made.text
    assert _user(made.json())["role"] == ["admin"]


def test_deactivated_user_cannot_sign_in_and_its_tokens_stop_at_once(server, admin):
    headers, admin_user, client_id = admin
    prac = HTTP.post(
        f"{server.fhir}/Practitioner",
        json={"resourceType": "Practitioner", "name": [{"family": "Kamau"}]},
        headers=server.headers,
    ).json()
    user = make_user(server, "cadre", f"Practitioner/{prac['id']}")
    token = _token(server, client_id, user)
    mine = bearer(token["access_token"])
    assert HTTP.get(f"{server.fhir}/Patient", headers=mine).status_code == 200

    off = _op(server, headers, "user-deactivate", username=user.username)
    assert off.status_code == 200, off.text
    assert _user(off.json())["active"] is False
    # the access token answers 401 at its next request; the refresh token is refused
    assert DEACTIVATED in _outcome(HTTP.get(f"{server.fhir}/Patient", headers=mine), 401)
    refreshed = HTTP.post(
        f"{server.root}/auth/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": token["refresh_token"],
            "client_id": client_id,
        },
    )
    assert refreshed.status_code == 400 and refreshed.json()["error"] == "invalid_grant"
    # and the right password and code no longer sign in (the same answer as a wrong one)
    verifier, challenge = pkce()
    refused = login(server, client_id, user, SCOPE, challenge=challenge, code=user.recovery[0])
    assert refused.status_code == 401
    assert _listed(server, headers, user.username, "?active=false") is not None
    assert _listed(server, headers, user.username, "?active=true") is None

    on = _op(server, headers, "user-reactivate", username=user.username)
    assert on.status_code == 200 and _user(on.json())["active"] is True
    again = _token(server, client_id, user, user.recovery[1])
    assert (
        HTTP.get(f"{server.fhir}/Patient", headers=bearer(again["access_token"])).status_code == 200
    )
    # the old token stays revoked
    assert HTTP.get(f"{server.fhir}/Patient", headers=mine).status_code == 401

    actions = [
        e["subtype"][0]["code"]
        for e in _events(server, **{"entity-name": user.username, "_sort": "date"})
        if e["subtype"][0]["system"] == "urn:hearth:audit"
    ]
    assert actions == ["user-deactivate", "user-reactivate"]
    # an administrator cannot lock themselves out
    _outcome(_op(server, headers, "user-deactivate", username=admin_user.username), 400)


def test_change_roles_writes_practitioner_roles_and_takes_effect_at_once(server, admin):
    headers, admin_user, client_id = admin
    prac = HTTP.post(
        f"{server.fhir}/Practitioner",
        json={"resourceType": "Practitioner", "name": [{"family": "Njeri"}]},
        headers=server.headers,
    ).json()
    ref = f"Practitioner/{prac['id']}"
    user = make_user(server, "cadre", ref)
    token = _token(server, client_id, user)
    assert "user/*.cruds" not in token["scope"]

    changed = _op(server, headers, "user-roles", username=user.username, role="doctor")
    assert changed.status_code == 200, changed.text
    assert _user(changed.json())["role"] == ["doctor"]
    roles = {
        r["resource"]["code"][0]["coding"][0]["code"]: r["resource"].get("active")
        for r in HTTP.get(
            f"{server.fhir}/PractitionerRole", params={"practitioner": ref}, headers=server.headers
        ).json()["entry"]
    }
    assert roles == {"cadre": False, "doctor": True}
    # the cadre token is revoked; the next sign-in is a doctor's
    assert (
        HTTP.get(f"{server.fhir}/Patient", headers=bearer(token["access_token"])).status_code == 401
    )
    assert "user/*.cruds" in _token(server, client_id, user, user.recovery[0])["scope"]

    # back to cadre: the inactive PractitionerRole is made active again (no new one)
    back = _op(server, headers, "user-roles", username=user.username, role=["cadre", "admin"])
    assert _user(back.json())["role"] == ["admin", "cadre"]
    entries = HTTP.get(
        f"{server.fhir}/PractitionerRole", params={"practitioner": ref}, headers=server.headers
    ).json()["entry"]
    assert len(entries) == 2
    (event,) = _events(
        server,
        subtype="urn:hearth:audit|user-roles",
        **{"entity-name": user.username, "_sort": "-date", "_count": "1"},
    )
    assert event["type"]["code"] == "110136"
    assert event["entity"][0]["detail"] == [{"type": "roles", "valueString": "cadre admin"}]

    _outcome(_op(server, headers, "user-roles", username=user.username, role="nurse"), 400)
    _outcome(_op(server, headers, "user-roles", username=user.username), 400)
    _outcome(_op(server, headers, "user-roles", username=admin_user.username, role="doctor"), 400)


def test_reset_second_factor(server, admin):
    headers, _, client_id = admin
    prac = HTTP.post(
        f"{server.fhir}/Practitioner",
        json={"resourceType": "Practitioner", "name": [{"family": "Wanjiru"}]},
        headers=server.headers,
    ).json()
    user = make_user(server, "doctor", f"Practitioner/{prac['id']}")
    token = _token(server, client_id, user)
    reset = _op(server, headers, "user-reset-totp", username=user.username)
    assert reset.status_code == 200, reset.text
    (uri,) = _values(reset.json(), "totpUri")
    codes = _values(reset.json(), "recoveryCode")
    assert len(codes) == 8 and _user(reset.json())["secondFactor"] is True
    assert (
        HTTP.get(f"{server.fhir}/Patient", headers=bearer(token["access_token"])).status_code == 401
    )
    # the old recovery codes and seed no longer work; the new ones do
    verifier, challenge = pkce()
    old = login(server, client_id, user, SCOPE, challenge=challenge, code=user.recovery[1])
    assert old.status_code == 401
    fresh = User(user.username, user.password, pyotp.parse_uri(uri), codes, user.fhir_user)  # type: ignore[arg-type]
    assert _token(server, client_id, fresh)["access_token"]
    assert _events(
        server, subtype="urn:hearth:audit|user-reset-totp", **{"entity-name": user.username}
    )

    # a patient's optional second factor is removed (they may enrol again themselves)
    patient = make_user(server, "patient", None, totp=True)
    reset = _op(server, headers, "user-reset-totp", username=patient.username)
    assert reset.status_code == 200 and _values(reset.json(), "totpUri") == []
    assert _values(reset.json(), "totpQr") == []
    assert _user(reset.json())["secondFactor"] is False


def test_errors_are_operation_outcomes(server, admin):
    headers, admin_user, _ = admin
    # 401 without a token, 403 for anyone but an administrator
    assert HTTP.get(f"{server.fhir}/$users").status_code == 401
    client_id, _ = make_client(server, "public", SCOPE)
    prac = HTTP.post(
        f"{server.fhir}/Practitioner",
        json={"resourceType": "Practitioner", "name": [{"family": "Doe"}]},
        headers=server.headers,
    ).json()
    doctor = make_user(server, "doctor", f"Practitioner/{prac['id']}")
    doc = bearer(_token(server, client_id, doctor)["access_token"])
    _outcome(HTTP.get(f"{server.fhir}/$users", headers=doc), 403, "forbidden")
    for name in (
        "user-create",
        "user-deactivate",
        "user-reactivate",
        "user-roles",
        "user-reset-totp",
    ):
        _outcome(_op(server, doc, name, username=admin_user.username, role="doctor"), 403)
    # 400 / 404 / 409
    _outcome(_op(server, headers, "user-deactivate"), 400, "required")
    _outcome(_op(server, headers, "user-deactivate", username="nobody-at-all"), 404, "not-found")
    _outcome(_op(server, headers, "user-reset-totp", username="nobody-at-all"), 404, "not-found")
    _outcome(
        _op(server, headers, "user-create", username=doctor.username, role="doctor", family="X"),
        409,
    )
    _outcome(
        _op(server, headers, "user-create", username="u-" + uuid.uuid4().hex[:6], role="nurse"), 400
    )
    _outcome(
        _op(server, headers, "user-create", username="u-" + uuid.uuid4().hex[:6], role="doctor"),
        400,
    )
    _outcome(
        _op(
            server,
            headers,
            "user-create",
            username="u-" + uuid.uuid4().hex[:6],
            role="doctor",
            practitioner="Practitioner/nope",
        ),
        400,
    )
    _outcome(
        _op(
            server,
            headers,
            "user-create",
            username="u-" + uuid.uuid4().hex[:6],
            role="admin",
            password="short",
        ),
        400,
    )
    family = f"Long{uuid.uuid4().hex[:8]}"
    too_long = _op(server, headers, "user-create", username="x" * 129, role="doctor", family=family)
    _outcome(too_long, 400)
    written = HTTP.get(
        f"{server.fhir}/Practitioner", params={"family": family}, headers=server.headers
    )
    assert written.json().get("entry", []) == []  # refused before anything was written
    in_url = HTTP.post(
        f"{server.fhir}/$user-create?password=secret-in-the-url",
        json=_params(username="u-x", role="admin"),
        headers=headers,
    )
    assert "never in the URL" in _outcome(in_url, 400)
    _outcome(HTTP.get(f"{server.fhir}/$user-deactivate?username=x", headers=headers), 405)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_migration_0013_keeps_existing_accounts_active(backend, tmp_path):
    from alembic import command

    from resources.storage.migrate import alembic_config

    url, cleanup = database_url(backend, tmp_path)
    cfg = alembic_config(url)
    command.downgrade(cfg, "0012")
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            columns = {c["name"] for c in sa.inspect(conn).get_columns("auth_user")}
            assert "active" not in columns and "last_sign_in" not in columns
            conn.execute(
                sa.text(
                    "INSERT INTO auth_user (username, password_hash, role, recovery_codes, "
                    "failed_count, created) VALUES ('old', 'x', 'admin', '[]', 0, :t)"
                ),
                {"t": "2026-01-01 00:00:00"},
            )
        command.upgrade(cfg, "head")
        with engine.connect() as conn:
            row = conn.execute(
                sa.text("SELECT active, last_sign_in FROM auth_user WHERE username = 'old'")
            ).one()
        assert bool(row[0]) is True and row[1] is None
        store = store_of(type("S", (), {"database_url": url, "settings": None})())
        try:
            assert store.user("old")["active"] is True  # type: ignore[index]
        finally:
            store.engine.dispose()
        command.downgrade(cfg, "0012")
        command.upgrade(cfg, "head")
    finally:
        engine.dispose()
        cleanup()  # type: ignore[operator]


def test_a_code_issued_before_the_deactivation_gets_no_token(server, admin):
    headers, _, client_id = admin
    prac = HTTP.post(
        f"{server.fhir}/Practitioner",
        json={"resourceType": "Practitioner", "name": [{"family": "Otieno"}]},
        headers=server.headers,
    ).json()
    user = make_user(server, "cadre", f"Practitioner/{prac['id']}")
    verifier, challenge = pkce()
    code = code_of(login(server, client_id, user, SCOPE, challenge=challenge))
    assert _op(server, headers, "user-deactivate", username=user.username).status_code == 200
    refused = exchange(server, client_id, code, verifier)
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_grant"
