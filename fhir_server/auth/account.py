"""Account pages: password reset by a one-time e-mailed link, and turning TOTP on (QR code)."""

from __future__ import annotations

import hmac
import logging
import time
from urllib.parse import urlencode

import pyotp
import segno
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

from fhir_server.auth import mail
from fhir_server.auth.audit_events import security_event
from fhir_server.auth.limits import Refused
from fhir_server.auth.service import AuthService
from fhir_server.auth.users import (
    LoginFailed,
    check_login,
    new_recovery_codes,
    set_password,
)
from fhir_server.auth.web import (
    auth_service,
    client_ip,
    form_page,
    message,
    page,
    page_form,
    refused_page,
)

log = logging.getLogger("hearth.auth")
router = APIRouter(include_in_schema=False)

RESET_TTL = 1800


# -- password reset --------------------------------------------------------------------------
@router.get("/auth/reset")
async def reset_form(request: Request) -> HTMLResponse:
    return form_page(request, "reset.html", action="/auth/reset")


@router.post("/auth/reset")
async def reset_request(request: Request) -> HTMLResponse:
    svc = auth_service(request)
    form = await page_form(request)
    if isinstance(form, HTMLResponse):
        return form
    username = form.get("username", "")[:128]
    try:  # each request may send an e-mail: the same limits as a sign-in
        svc.limits.password_attempt(client_ip(request), username)
    except Refused as exc:
        return refused_page(exc)
    await run_in_threadpool(_send_reset, svc, username, client_ip(request))
    return message(
        "Check your e-mail",
        "If the account exists and has an e-mail address, a reset link is on its way. "
        "It works once, for 30 minutes.",
        200,
    )


def _fingerprint(user: dict) -> str:
    """Changes with the password, so a reset link works only until the password changes."""
    import hashlib

    return hashlib.sha256(user["password_hash"].encode()).hexdigest()[:32]


def _send_reset(svc: AuthService, username: str, ip: str | None) -> None:
    user = svc.store.user(username)
    if user is None or not user["email"]:
        return
    link_token = svc.key.sign(
        {"purpose": "reset", "username": username, "fp": _fingerprint(user)}, ttl=RESET_TTL
    )
    link = f"{svc.settings.base_url}/auth/reset/confirm?{urlencode({'token': link_token})}"
    try:
        mail.send(
            svc.settings,
            user["email"],
            "Reset your Hearth password",
            f"Someone asked to reset the Hearth password of {username}.\n\n"
            f"To choose a new password, open this link within 30 minutes:\n{link}\n\n"
            "If it was not you, ignore this message.\n",
        )
    except (OSError, RuntimeError) as exc:
        log.error("password reset e-mail for %s not sent: %s", username, type(exc).__name__)
    svc.audit(
        security_event(
            base=svc.settings.fhir_base,
            kind="password-reset",
            success=True,
            client_id=None,
            username=username,
            ip=ip,
            detail="reset link sent",
        )
    )


def _reset_claims(svc: AuthService, token_value: str) -> dict | None:
    claims = svc.key.verify(token_value, purpose="reset")
    if claims is None:
        return None
    user = svc.store.user(claims["username"])
    if user is None or _fingerprint(user) != claims.get("fp"):
        return None  # used already (the password changed) or the user is gone
    return claims


@router.get("/auth/reset/confirm")
async def reset_confirm_form(request: Request) -> HTMLResponse:
    value = request.query_params.get("token", "")
    if await run_in_threadpool(_reset_claims, auth_service(request), value) is None:
        return message("Link not valid", "This reset link expired or was used already.", 400)
    return form_page(request, "reset_confirm.html", action="/auth/reset/confirm", token=value)


@router.post("/auth/reset/confirm")
async def reset_confirm(request: Request) -> HTMLResponse:
    svc = auth_service(request)
    form = await page_form(request)
    if isinstance(form, HTMLResponse):
        return form
    try:
        svc.limits.password_attempt(client_ip(request), None)
    except Refused as exc:
        return refused_page(exc)
    claims = await run_in_threadpool(_reset_claims, svc, form.get("token", ""))
    if claims is None:
        return message("Link not valid", "This reset link expired or was used already.", 400)
    try:
        await svc.limits.hashed(
            set_password, svc.store, claims["username"], form.get("password", "")
        )
    except Refused as exc:
        return refused_page(exc)
    except ValueError as exc:
        return form_page(
            request,
            "reset_confirm.html",
            400,
            action="/auth/reset/confirm",
            token=form["token"],
            error=str(exc),
        )
    return message("Password changed", "You can sign in with your new password now.", 200)


# -- TOTP enrolment (optional for patients; staff are enrolled when created) -----------------
ENROL_TTL = 600


@router.get("/auth/account/totp")
async def enrol_form(request: Request) -> HTMLResponse:
    return form_page(request, "enrol.html", action="/auth/account/totp")


@router.post("/auth/account/totp")
async def enrol_start(request: Request) -> HTMLResponse:
    svc = auth_service(request)
    form = await page_form(request)
    if isinstance(form, HTMLResponse):
        return form
    username = form.get("username", "")
    try:
        svc.limits.password_attempt(client_ip(request), username)
        user = await svc.limits.hashed(
            check_login, svc.store, username, form.get("password", ""), ""
        )
    except Refused as exc:
        return refused_page(exc)
    except LoginFailed as exc:
        return form_page(request, "enrol.html", 401, action="/auth/account/totp", error=str(exc))
    if user["totp_secret"]:
        return message("Already on", "This account has an authenticator already.", 400)
    secret = pyotp.random_base32()
    uri = pyotp.TOTP(secret).provisioning_uri(name=user["username"], issuer_name="Hearth")
    pending = svc.key.sign(
        {"purpose": "enrol", "username": user["username"], "secret": secret}, ttl=ENROL_TTL
    )
    return _enrol_confirm(request, secret, uri, pending)


def _enrol_confirm(
    request: Request, secret: str, uri: str, pending: str, error: str | None = None
) -> HTMLResponse:
    svg = segno.make(uri, error="m").svg_inline(scale=4, title="Authenticator QR code")
    return form_page(
        request,
        "enrol_confirm.html",
        400 if error else 200,
        qr_svg=svg,
        secret=secret,
        pending=pending,
        action="/auth/account/totp/confirm",
        error=error,
    )


@router.post("/auth/account/totp/confirm")
async def enrol_confirm(request: Request) -> HTMLResponse:
    svc = auth_service(request)
    form = await page_form(request)
    if isinstance(form, HTMLResponse):
        return form
    claims = svc.key.verify(form.get("pending", ""), purpose="enrol")
    if claims is None:
        return message("Set-up expired", "Please start again.", 400)
    totp = pyotp.TOTP(claims["secret"])
    code = form.get("code", "").strip()
    now = totp.timecode(time.time())  # type: ignore[arg-type]
    matched = [
        t for t in (now, now - 1, now + 1) if hmac.compare_digest(totp.generate_otp(t), code)
    ]
    if not matched:
        uri = totp.provisioning_uri(name=claims["username"], issuer_name="Hearth")
        return _enrol_confirm(
            request, claims["secret"], uri, form["pending"], "That code is not right."
        )
    codes, hashes = new_recovery_codes()
    done = await run_in_threadpool(
        svc.store.enrol_totp, claims["username"], claims["secret"], matched[0], hashes
    )
    if not done:
        return message("Already on", "This account has an authenticator already.", 400)
    return page("enrol_done.html", codes=codes)
