"""Self-registration of patients (``HEARTH_SELF_REGISTRATION``): a form at ``/auth/register``
(name, birth date, e-mail, password) sends a single-use link that expires after a day; following
it creates the Patient and its account (role patient, fhirUser ``Patient/<id>``, user name the
e-mail address), audited. Nothing that can sign in exists before the link is followed.

The design follows the password reset (fhir_server/auth/account.py):

- The link carries the registration as a token signed with Hearth's key whose content (name,
  birth date, address, the password's argon2id hash) is encrypted with the secret keys
  (``HEARTH_SECRET_KEYS``): the e-mail and the access logs hold neither personal data, nor the
  password, nor a hash that could be attacked offline.
- Single use: once the account exists the link is refused ("used already"); two concurrent
  confirmations create one Patient (a conditional create on the registration identifier) and one
  account (the user name is the primary key).
- No account enumeration: the form's answer is the same whether the address is new or already
  has an account; an address that has one gets an e-mail saying so (pointing to the password
  reset) instead of a link.
- Each request counts as a sign-in attempt against the per-address and per-IP rate limits.
"""

from __future__ import annotations

import json
import logging
import re
from datetime import date
from urllib.parse import urlencode

import sqlalchemy as sa
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

from fhir_server.auth.audit_events import account_event, security_event
from fhir_server.auth.keys import secret_box
from fhir_server.auth.limits import Refused
from fhir_server.auth.service import AuthService
from fhir_server.auth.users import MAX_PASSWORD, hash_password, new_recovery_codes
from fhir_server.auth.web import (
    auth_service,
    client_ip,
    form_page,
    message,
    page,
    page_form,
    refused_page,
)
from resources import audit
from resources.auth.secret_box import SecretKeyError
from resources.storage.store import utcnow
from workflow import mail

log = logging.getLogger("hearth.auth")
router = APIRouter(include_in_schema=False)

REGISTER_TTL = 24 * 3600
IDENTIFIER_SYSTEM = "urn:hearth:self-registration"
MAX_NAME = 100
_EMAIL = re.compile(r"[^@\s]{1,64}@[^@\s]+\.[^@\s.]{2,}")
SENT = (
    "If this address can be registered, a link to finish creating your account is on its way "
    "to it. It works once, for 24 hours. If nothing arrives, check the address and your spam "
    "folder."
)
NOT_VALID = "This link expired or was used already. You can register again, or sign in."


def _enabled(request: Request) -> bool:
    return bool(auth_service(request).settings.self_registration)


def _off() -> HTMLResponse:
    return message("Not available", "This Hearth does not offer self-registration.", 404)


@router.get("/auth/register")
async def register_form(request: Request) -> HTMLResponse:
    if not _enabled(request):
        return _off()
    return form_page(request, "register.html", action="/auth/register", values={})


def _checked(form: dict[str, str]) -> tuple[dict[str, str], str | None]:
    """The registration's fields, cleaned, and what is wrong with them (None: nothing)."""
    values = {
        "given": " ".join(form.get("given", "").split())[:MAX_NAME],
        "family": " ".join(form.get("family", "").split())[:MAX_NAME],
        "birth_date": form.get("birth_date", "").strip()[:10],
        "email": form.get("email", "").strip().lower()[:320],
    }
    if not values["given"] or not values["family"]:
        return values, "Please give your first and last name."
    try:
        born = date.fromisoformat(values["birth_date"])
    except ValueError:
        return values, "Please give your birth date as year-month-day (for example 1980-04-23)."
    if born > date.today() or born.year < 1900:
        return values, "That birth date is not possible."
    if not _EMAIL.fullmatch(values["email"]):
        return values, "That e-mail address does not look right."
    password = form.get("password", "")
    if len(password) < 10 or len(password) > MAX_PASSWORD:
        return values, "A password is 10 to 1024 characters."
    return values, None


@router.post("/auth/register")
async def register(request: Request) -> HTMLResponse:
    if not _enabled(request):
        return _off()
    svc = auth_service(request)
    form = await page_form(request)
    if isinstance(form, HTMLResponse):
        return form
    values, error = _checked(form)
    try:  # each request may send an e-mail: the same limits as a sign-in
        svc.limits.password_attempt(client_ip(request), values["email"] or None)
        if error is not None:
            return form_page(
                request, "register.html", 400, action="/auth/register", values=values, error=error
            )
        hashed = await svc.limits.hashed(hash_password, form["password"])
    except Refused as exc:
        return refused_page(exc)
    await run_in_threadpool(_send, svc, values, hashed, client_ip(request))
    return message("Check your e-mail", SENT, 200)


def _send(svc: AuthService, values: dict[str, str], hashed: str, ip: str | None) -> None:
    email = values["email"]
    base = svc.settings.base_url
    if svc.store.email_taken(email):
        subject = "Your Hearth account"
        text = (
            "Someone asked to create a Hearth account for this e-mail address, but it has one "
            f"already. To sign in, open {base}/app/portal/ ; if you forgot your password, "
            f"ask for a new one at {base}/auth/reset .\n\n"
            "If it was not you, ignore this message: nothing was changed.\n"
        )
        detail = "address has an account already: told by e-mail"
    else:
        sealed = {
            "email": email,
            "given": values["given"],
            "family": values["family"],
            "birthDate": values["birth_date"],
            "pw": hashed,
        }
        token = svc.key.sign(
            {"purpose": "register", "data": secret_box(svc.settings).encrypt(json.dumps(sealed))},
            ttl=REGISTER_TTL,
        )
        link = f"{base}/auth/register/confirm?{urlencode({'token': token})}"
        subject = "Finish creating your Hearth account"
        text = (
            f"Hello {values['given']},\n\n"
            "To finish creating your Hearth patient account, open this link within 24 hours:\n"
            f"{link}\n\n"
            "The link works once. If it was not you, ignore this message: no account is "
            "created.\n"
        )
        detail = "verification link sent"
    try:
        mail.send(svc.settings.smtp(), email, subject, text)
    except mail.MailError as exc:
        log.error("registration e-mail not sent: %s", exc)
        detail += " (sending failed)"
    svc.audit(
        security_event(
            base=svc.settings.fhir_base,
            kind="register",
            success=True,
            client_id=None,
            username=email,
            ip=ip,
            detail=detail,
        )
    )


def _claims(svc: AuthService, value: str) -> dict | None:
    if not value or len(value) > 8192:
        return None
    signed = svc.key.verify(value, purpose="register")
    if signed is None:
        return None  # expired or forged
    try:
        claims = json.loads(secret_box(svc.settings).decrypt(str(signed.get("data", ""))))
    except (SecretKeyError, ValueError):
        return None  # sealed under a secret key this node does not have (any more)
    if not isinstance(claims, dict) or svc.store.email_taken(str(claims.get("email", ""))):
        return None  # used already (the account exists)
    return claims


@router.get("/auth/register/confirm")
async def confirm_form(request: Request) -> HTMLResponse:
    if not _enabled(request):
        return _off()
    value = request.query_params.get("token", "")
    claims = await run_in_threadpool(_claims, auth_service(request), value)
    if claims is None:
        return message("Link not valid", NOT_VALID, 400)
    return form_page(
        request,
        "register_confirm.html",
        action="/auth/register/confirm",
        token=value,
        email=claims["email"],
        person=f"{claims['given']} {claims['family']}",
    )


@router.post("/auth/register/confirm")
async def confirm(request: Request) -> HTMLResponse:
    if not _enabled(request):
        return _off()
    svc = auth_service(request)
    form = await page_form(request)
    if isinstance(form, HTMLResponse):
        return form
    try:
        svc.limits.password_attempt(client_ip(request), None)
    except Refused as exc:
        return refused_page(exc)
    made = await run_in_threadpool(
        _create, svc, request.app.state.context, form.get("token", ""), client_ip(request)
    )
    if made is None:
        return message("Link not valid", NOT_VALID, 400)
    return page("register_done.html", username=made, portal_url="/app/portal/")


def _create(svc: AuthService, ctx, value: str, ip: str | None) -> str | None:  # type: ignore[no-untyped-def]
    """Create the Patient and its account from a valid link; the user name, or None when the
    link is not valid (any more)."""
    claims = _claims(svc, value)
    if claims is None:
        return None
    email = claims["email"]
    body = {
        "resourceType": "Patient",
        "active": True,
        "identifier": [{"system": IDENTIFIER_SYSTEM, "value": email}],
        "name": [{"use": "official", "family": claims["family"], "given": [claims["given"]]}],
        "birthDate": claims["birthDate"],
        "telecom": [{"system": "email", "value": email}],
    }
    patient = ctx.repo.run(
        lambda u: (
            u.create(
                body, if_none_exist=[("identifier", f"{IDENTIFIER_SYSTEM}|{email}")]
            ).stored.res_id
        )
    )
    fhir_user = f"Patient/{patient}"
    _, hashes = new_recovery_codes()
    try:
        svc.store.add_user(
            username=email,
            password_hash=claims["pw"],
            fhir_user=fhir_user,
            role="patient",
            email=email,
            totp_secret=None,
            totp_last_step=None,
            recovery_codes=hashes,
            failed_count=0,
            locked_until=None,
            created=utcnow(),
        )
    except sa.exc.IntegrityError:
        return None  # a concurrent confirmation of the same link won
    event = account_event(
        base=svc.settings.fhir_base,
        action="self-register",
        client_id=None,
        username=email,
        fhir_user=fhir_user,
        target=email,
        target_fhir_user=fhir_user,
        detail={"ip": ip or ""},
    )
    ctx.repo.run(lambda u: audit.append(u.conn, event))  # in the chain before the answer
    return email
