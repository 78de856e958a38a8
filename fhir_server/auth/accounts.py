"""Account administration (the admin operations ``$users``, ``$user-create``,
``$user-deactivate``, ``$user-reactivate``, ``$user-roles``, ``$user-reset-totp``;
docs/security.md "Administering accounts").

An account (``auth_user``) and its FHIR side are changed together: a staff account's care roles
are its Practitioner's PractitionerRoles (``fhir_server.auth.roles``), written through the
operation's repository (so the REST gate audits those writes), while the account row's changes
— created, deactivated, reactivated, admin flag, second factor — each get an AuditEvent of
their own naming who did what to whom (``account_event``). Deactivating, changing the roles of
or resetting the second factor of an account revokes its tokens: the change takes effect at once.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

import pyotp

from fhir_server.auth.audit_events import account_event
from fhir_server.auth.roles import (
    ADMIN,
    PATIENT_TYPES,
    PRACTITIONER_ROLES,
    care_roles,
    is_active,
    role_records,
)
from fhir_server.auth.users import MAX_USERNAME, NEEDS_TOTP, create_user, new_recovery_codes
from fhir_server.rest.context import Context
from resources import audit
from resources.auth.store import AuthStore
from resources.errors import Conflict, Invalid, NotFound
from resources.storage.repository import Unit
from resources.storage.store import Stored, instant
from workflow.actors import role_concept

STAFF_ROLES = (*PRACTITIONER_ROLES, ADMIN)


def auth_store(ctx: Context) -> AuthStore:
    """The serving process's auth tables (``fhir_server.runtime.app`` puts the AuthService in
    ``ctx.services["auth"]``)."""
    service = ctx.services.get("auth")
    if service is None:
        raise RuntimeError("no auth service in this context")
    return service.store  # type: ignore[no-any-return]


def _display_name(resource: dict | None) -> str | None:
    for name in (resource or {}).get("name") or []:
        if name.get("text"):
            return str(name["text"])
        parts = [*(name.get("prefix") or []), *(name.get("given") or []), name.get("family")]
        text = " ".join(p for p in parts if p)
        if text:
            return text
    return None


def summary(unit: Unit, row: dict) -> dict:
    """What an administrator sees of an account: never its secrets."""
    fhir_user = row.get("fhir_user") or None
    kind, _, rid = (fhir_user or "").partition("/")
    resource = None
    roles: list[str] = []
    if kind and rid:
        pks = unit.match(kind, [("_id", rid)]) if kind in ("Practitioner", *PATIENT_TYPES) else []
        found = unit.read_many(pks)
        resource = found[0].content if found else None
    if kind == "Practitioner" and rid:
        roles = care_roles(unit, rid)
    elif kind in PATIENT_TYPES or row["role"] == "patient":
        roles = ["patient"]
    if row["role"] == ADMIN:
        roles = [ADMIN, *roles]
    return {
        "username": row["username"],
        "name": _display_name(resource),
        "fhirUser": fhir_user,
        "roles": roles,
        "active": row.get("active") is not False,
        "secondFactor": bool(row.get("totp_secret")),
        "lastSignIn": instant(row["last_sign_in"]) if row.get("last_sign_in") else None,
        "created": instant(row["created"]),
        "email": row.get("email"),
    }


def list_accounts(ctx: Context) -> list[dict]:
    rows = auth_store(ctx).users()
    return ctx.repo.read(lambda u: [summary(u, r) for r in rows])


def _account(store: AuthStore, username: str) -> dict:
    row = store.user(username)
    if row is None:
        raise NotFound(f"there is no account {username!r}")
    return row


def _audit(ctx: Context, action: str, row: dict, detail: dict[str, str]) -> None:
    access = ctx.access
    event = account_event(
        base=ctx.base,
        action=action,
        client_id=access.client_id if access else None,
        username=access.username if access else None,
        fhir_user=access.fhir_user if access else None,
        target=row["username"],
        target_fhir_user=row.get("fhir_user"),
        detail=detail,
    )
    ctx.repo.run(lambda u: audit.append(u.conn, event))


def _check_roles(roles: list[str]) -> list[str]:
    bad = [r for r in roles if r not in STAFF_ROLES]
    if bad:
        raise Invalid(f"role must be one of {', '.join(STAFF_ROLES)} (not {', '.join(bad)})")
    if not roles:
        raise Invalid("a staff account needs at least one role")
    return [r for r in STAFF_ROLES if r in roles]  # widest first, without repeats


def _set_care_roles(unit: Unit, practitioner_id: str, wanted: list[str]) -> None:
    """Make the practitioner's active care-role PractitionerRoles exactly ``wanted``: one no
    longer wanted becomes ``active: false`` (kept, with its history), a wanted one that is
    inactive is made active again (its ``period`` dropped), a missing one is created."""
    stored_by_id: dict[str, Stored] = {}
    codes_by_id: dict[str, set[str]] = {}
    for stored, code in role_records(unit, practitioner_id):
        stored_by_id[stored.res_id] = stored
        codes_by_id.setdefault(stored.res_id, set()).add(code)
    want = set(wanted)
    have: set[str] = set()
    for res_id, stored in stored_by_id.items():
        if not is_active(stored.resource):
            continue
        if codes_by_id[res_id] & want:
            have |= codes_by_id[res_id]
        else:
            unit.update("PractitionerRole", res_id, {**stored.resource, "active": False})
    for code in wanted:
        if code in have:
            continue
        again = next(
            (
                stored
                for res_id, stored in stored_by_id.items()
                if code in codes_by_id[res_id]
                and codes_by_id[res_id] <= want
                and not is_active(stored.resource)
            ),
            None,
        )
        if again is not None:
            body = {k: v for k, v in again.resource.items() if k != "period"}
            unit.update("PractitionerRole", again.res_id, {**body, "active": True})
            have |= codes_by_id[again.res_id]
            continue
        unit.create(
            {
                "resourceType": "PractitionerRole",
                "active": True,
                "practitioner": {"reference": f"Practitioner/{practitioner_id}"},
                "code": [role_concept(code)],
            }
        )
        have.add(code)


@dataclass(frozen=True)
class NewAccount:
    account: dict
    password: str | None  # generated here: shown once
    totp_uri: str | None
    recovery_codes: list[str]


def create(
    ctx: Context,
    username: str,
    *,
    roles: list[str],
    password: str | None,
    practitioner: str | None,
    family: str | None,
    given: list[str],
    email: str | None,
) -> NewAccount:
    """A staff account for an existing Practitioner (``practitioner``) or a new one (named by
    ``family`` / ``given``), with a PractitionerRole per care role; ``admin`` sets the account's
    admin flag. The second factor's provisioning URI and the recovery codes are returned once."""
    store = auth_store(ctx)
    roles = _check_roles(roles)
    if not 1 <= len(username) <= MAX_USERNAME or username != username.strip():
        raise Invalid(f"a username is 1 to {MAX_USERNAME} characters, without surrounding spaces")
    if store.user(username) is not None:
        raise Conflict(f"the account {username!r} exists")
    care = [r for r in roles if r in PRACTITIONER_ROLES]
    if practitioner is not None and not practitioner.startswith("Practitioner/"):
        raise Invalid("practitioner must reference a Practitioner")
    if practitioner is not None and (family or given):
        raise Invalid("give either practitioner (an existing one) or family/given (a new one)")
    if care and practitioner is None and not family:
        raise Invalid(
            f"a {care[0]} is a Practitioner: give practitioner (an existing one) or family "
            "(and given) for a new one"
        )
    generated = None
    if password is None:
        generated = password = secrets.token_urlsafe(15)

    def fhir_side(u: Unit) -> str | None:
        ref = practitioner
        if ref is not None:
            if not u.match("Practitioner", [("_id", ref.removeprefix("Practitioner/"))]):
                raise Invalid(f"{ref} is not known")
        elif family:
            name: dict = {"family": family}
            if given:
                name["given"] = given
            body: dict = {"resourceType": "Practitioner", "active": True, "name": [name]}
            if email:
                body["telecom"] = [{"system": "email", "value": email}]
            ref = f"Practitioner/{u.create(body).stored.res_id}"
        if ref is not None and care:
            _set_care_roles(u, ref.removeprefix("Practitioner/"), care)
        return ref

    # Checked before anything is written, so a refused password writes no Practitioner.
    if len(password) < 10 or len(password) > 1024:
        raise Invalid("a password is 10 to 1024 characters")
    fhir_user = ctx.repo.run(fhir_side)
    try:
        made = create_user(
            store,
            username,
            password,
            role=ADMIN if ADMIN in roles else care[0],
            fhir_user=fhir_user,
            email=email,
        )
    except ValueError as exc:
        raise Invalid(str(exc)) from None
    row = _account(store, username)
    _audit(ctx, "user-create", row, {"roles": " ".join(roles)})
    account = ctx.repo.read(lambda u: summary(u, row))
    return NewAccount(account, generated, made.totp_uri, made.recovery_codes)


def set_active(ctx: Context, username: str, active: bool) -> dict:
    store = auth_store(ctx)
    row = _account(store, username)
    access = ctx.access
    if not active and access is not None and access.username == username:
        raise Invalid("an administrator cannot deactivate their own account")
    store.set_active(username, active)
    row = _account(store, username)
    _audit(ctx, "user-reactivate" if active else "user-deactivate", row, {})
    return ctx.repo.read(lambda u: summary(u, row))


def set_roles(ctx: Context, username: str, roles: list[str]) -> dict:
    """Make the account's roles exactly ``roles``: its Practitioner's care-role
    PractitionerRoles and its admin flag. Its tokens are revoked (the new roles hold at once)."""
    store = auth_store(ctx)
    row = _account(store, username)
    roles = _check_roles(roles)
    kind, _, rid = (row.get("fhir_user") or "").partition("/")
    if kind in PATIENT_TYPES or (row["role"] == "patient" and kind != "Practitioner"):
        raise Invalid("a patient's account has no staff roles")
    care = [r for r in roles if r in PRACTITIONER_ROLES]
    if care and kind != "Practitioner":
        raise Invalid(f"the account {username!r} is not a Practitioner's: it can only be admin")
    access = ctx.access
    if ADMIN not in roles and access is not None and access.username == username:
        raise Invalid("an administrator cannot take away their own admin role")
    if kind == "Practitioner":
        ctx.repo.run(lambda u: _set_care_roles(u, rid, care))
    store.update_user(username, role=ADMIN if ADMIN in roles else care[0])
    store.revoke_user_tokens(username)
    row = _account(store, username)
    _audit(ctx, "user-roles", row, {"roles": " ".join(roles)})
    return ctx.repo.read(lambda u: summary(u, row))


@dataclass(frozen=True)
class Reset:
    account: dict
    totp_uri: str | None
    recovery_codes: list[str]


def reset_second_factor(ctx: Context, username: str) -> Reset:
    """A staff account gets a new TOTP seed (its provisioning URI and fresh recovery codes are
    returned once, for the administrator to hand over); a patient's account loses its optional
    second factor (the patient may enrol again at /auth/account/totp). The old seed and recovery
    codes stop working and the account's tokens are revoked."""
    store = auth_store(ctx)
    row = _account(store, username)
    if ctx.access is not None and ctx.access.username == username:
        raise Invalid("an administrator cannot reset their own second factor")
    codes, hashes = new_recovery_codes()
    staff = row["role"] in NEEDS_TOTP
    secret = pyotp.random_base32() if staff else None
    store.replace_totp(username, secret, hashes if staff else [])
    store.revoke_user_tokens(username)
    row = _account(store, username)
    _audit(ctx, "user-reset-totp", row, {})
    uri = (
        pyotp.TOTP(secret).provisioning_uri(name=username, issuer_name="Hearth") if secret else None
    )
    account = ctx.repo.read(lambda u: summary(u, row))
    return Reset(account, uri, codes if staff else [])
