"""Users and their two factors: argon2id password hashes (argon2-cffi), TOTP (pyotp, RFC 6238)
with replay protection, single-use recovery codes, and lockout with back-off.

The role a token carries is decided at each token issue by ``fhir_server.auth.roles`` (from the
fhirUser's type and the Practitioner's active PractitionerRoles; admin is an account flag).
``auth_user.role`` holds the admin flag, and for other accounts the role asked for when the
account was created. ``ROLE_SCOPES`` is the most each role may be granted; a token never carries
more than its user's role allows.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

import pyotp
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from fhir_server.auth.scopes import Scopes
from resources.auth.store import AuthStore, digest
from resources.storage.store import utcnow

ROLES = ("patient", "cadre", "doctor", "pharmacist", "admin")
NEEDS_TOTP = frozenset({"cadre", "doctor", "pharmacist", "admin"})
ROLE_SCOPES = {
    # A patient sees their own record (user-level access is cut to their compartment), writes
    # messages to their care team and uploads photos (Media); appointments and cases they change
    # through $book/$accept/$cancel/$reschedule/$start-case, which check that they are their own
    # (fhir_server/rest/workflow_http.py).
    "patient": Scopes.parse("user/*.rs patient/*.rs patient/Communication.c patient/Media.c"),
    # Community health workers register patients, record observations and encounters, and
    # upload photos (Media) for screening cases, and book appointments for them.
    "cadre": Scopes.parse(
        "user/*.rs user/Patient.cu user/Observation.cu user/Encounter.cu user/Task.cu "
        "user/QuestionnaireResponse.cu user/Media.c user/Appointment.cu"
    ),
    "doctor": Scopes.parse("user/*.cruds"),
    "pharmacist": Scopes.parse(
        "user/*.rs user/MedicationRequest.u user/MedicationDispense.cud user/Task.cu"
    ),
    "admin": Scopes.parse("user/*.cruds"),
}
FHIR_USER_TYPES = ("Patient", "Practitioner", "RelatedPerson")
MAX_FAILURES = 5  # failures before the account is locked
MAX_USERNAME = 128
MAX_PASSWORD = 1024

_hasher = PasswordHasher()  # argon2id, library defaults (RFC 9106 second recommended option)


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def new_recovery_codes(n: int = 8) -> tuple[list[str], list[str]]:
    """(codes to show once, their hashes to store)."""
    codes = [f"{secrets.token_hex(3)}-{secrets.token_hex(3)}" for _ in range(n)]
    return codes, [digest(c) for c in codes]


@dataclass(frozen=True)
class Created:
    username: str
    totp_uri: str | None
    recovery_codes: list[str]


def create_user(
    store: AuthStore,
    username: str,
    password: str,
    *,
    role: str,
    fhir_user: str | None,
    email: str | None = None,
    totp: bool | None = None,
    issuer: str = "Hearth",
) -> Created:
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    if not username or len(username) > MAX_USERNAME:
        raise ValueError("a username is 1 to 128 characters")
    if len(password) < 10 or len(password) > MAX_PASSWORD:
        raise ValueError("a password is 10 to 1024 characters")
    if fhir_user is not None:
        kind, _, rid = fhir_user.partition("/")
        if kind not in FHIR_USER_TYPES or not rid:
            raise ValueError("fhirUser is Patient/<id>, Practitioner/<id> or RelatedPerson/<id>")
    if role in ("cadre", "doctor", "pharmacist") and not (fhir_user or "").startswith(
        "Practitioner/"
    ):
        raise ValueError(
            f"a {role} is a Practitioner (fhirUser Practitioner/<id>): the role comes from "
            "that Practitioner's PractitionerRole"
        )
    if store.user(username) is not None:
        raise ValueError(f"user {username!r} exists")
    with_totp = role in NEEDS_TOTP if totp is None else (totp or role in NEEDS_TOTP)
    secret = pyotp.random_base32() if with_totp else None
    codes, hashes = new_recovery_codes()
    store.add_user(
        username=username,
        password_hash=hash_password(password),
        fhir_user=fhir_user,
        role=role,
        email=email,
        totp_secret=secret,
        totp_last_step=None,
        recovery_codes=hashes,
        failed_count=0,
        locked_until=None,
        created=utcnow(),
    )
    uri = pyotp.TOTP(secret).provisioning_uri(name=username, issuer_name=issuer) if secret else None
    return Created(username, uri, codes)


class LoginFailed(Exception):
    """A login that did not succeed; the message is the same whatever the reason."""


GENERIC = "The user name, password or code is not right, or the account is locked for now."


def lock_times(now: datetime) -> list[datetime]:
    """When the account unlocks after failure MAX_FAILURES, MAX_FAILURES + 1, ...: the back-off
    doubles from one minute, capped at an hour (the last entry holds for every later one)."""
    return [now + timedelta(minutes=min(60, 2**i)) for i in range(7)]


def check_login(store: AuthStore, username: str, password: str, code: str) -> dict:
    """The user row after a good password and (where enrolled or required) a good TOTP or
    recovery code; else ``LoginFailed``.

    The attempt is counted as a failure *before* the password is checked, in one atomic UPDATE
    (``AuthStore.begin_attempt``), and only a good login clears the count: concurrent wrong
    passwords each count, and once MAX_FAILURES are counted the account is locked in that same
    statement, so no further attempt reaches the password check until the lock expires."""
    if not username or len(username) > MAX_USERNAME or len(password) > MAX_PASSWORD:
        raise LoginFailed(GENERIC)
    user = store.user(username)
    if user is None:
        _hasher_dummy(password)  # same work for unknown users: no timing oracle
        raise LoginFailed(GENERIC)
    now = utcnow()
    if store.begin_attempt(username, now, MAX_FAILURES, lock_times(now)) is None:
        raise LoginFailed(GENERIC)  # locked (or deleted meanwhile)
    try:
        _hasher.verify(user["password_hash"], password)
        ok = True
    except (VerificationError, InvalidHashError):
        ok = False
    if ok and user.get("active") is False:
        ok = False  # a deactivated account (the same answer: no oracle for its state)
    if ok:
        if user["totp_secret"]:
            ok = _second_factor(store, user, code.strip())
        elif user["role"] in NEEDS_TOTP:
            ok = False  # practitioners and admins cannot log in without an enrolled TOTP
    if not ok:
        raise LoginFailed(GENERIC)  # already counted by begin_attempt
    store.update_user(username, failed_count=0, locked_until=None, last_sign_in=now)
    return user


def _second_factor(store: AuthStore, user: dict, code: str) -> bool:
    if not code or len(code) > 32:
        return False
    if len(code) == 6 and code.isdigit():
        if user.get("totp_unreadable"):
            return False  # no key opens the seed (logged by the store); recovery codes still work
        totp = pyotp.TOTP(user["totp_secret"])
        now = time.time()
        for offset in (0, -1, 1):
            step = totp.timecode(now) + offset  # type: ignore[arg-type]
            if secrets.compare_digest(totp.generate_otp(step), code):
                return store.accept_totp_step(user["username"], step)  # replay → False
        return False
    return store.use_recovery_code(user["username"], digest(code))


_DUMMY = _hasher.hash("not a real password")


def _hasher_dummy(password: str) -> None:
    try:
        _hasher.verify(_DUMMY, password)
    except (VerificationError, InvalidHashError):
        pass


def set_password(store: AuthStore, username: str, password: str) -> None:
    if len(password) < 10 or len(password) > MAX_PASSWORD:
        raise ValueError("a password is 10 to 1024 characters")
    store.update_user(
        username, password_hash=hash_password(password), failed_count=0, locked_until=None
    )
