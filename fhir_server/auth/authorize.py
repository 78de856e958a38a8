"""The authorization endpoint (SMART App Launch 2.2, RFC 6749 4.1 with RFC 7636 PKCE S256):
checks the request, shows the login page and, for practitioners asking ``launch/patient``, the
patient picker; resolves EHR launch context; sends the one-time code to the redirect URI."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from fhir_server.auth.audit_events import security_event
from fhir_server.auth.errors import OAuthError
from fhir_server.auth.limits import Refused
from fhir_server.auth.roles import effective_role
from fhir_server.auth.scopes import Scopes
from fhir_server.auth.service import AuthService
from fhir_server.auth.users import (
    ROLE_SCOPES,
    LoginFailed,
    check_login,
)
from fhir_server.auth.web import (
    auth_service,
    client_ip,
    form_page,
    message,
    page_form,
    refused_page,
    small_form,
)
from resources.errors import FhirError
from resources.storage.store import utcnow

router = APIRouter(include_in_schema=False)

CODE_TTL = 60  # seconds an authorization code lives
PICK_TTL = 600
AUTH_PARAMS = (
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "aud",
    "code_challenge",
    "code_challenge_method",
    "launch",
    "nonce",
)


# -- authorize ----------------------------------------------------------------------------------
class _PageError(Exception):
    """An error shown to the user: the redirect URI cannot be trusted, so no redirect."""


class _RedirectError(Exception):
    def __init__(self, redirect_uri: str, state: str | None, error: str, description: str):
        self.url = _with_query(
            redirect_uri,
            {
                "error": error,
                "error_description": description,
                **({"state": state} if state else {}),
            },
        )


@dataclass
class AuthRequest:
    client: dict
    redirect_uri: str
    state: str | None
    scope: Scopes
    code_challenge: str
    nonce: str | None
    launch: dict | None
    params: list[tuple[str, str]]


def _with_query(uri: str, values: dict) -> str:
    return uri + ("&" if "?" in uri else "?") + urlencode(values)


def _parse_authorize(svc: AuthService, p: dict[str, str]) -> AuthRequest:
    if any(len(p.get(k, "")) > 2048 for k in AUTH_PARAMS):
        raise _PageError("The authorization request is too large.")
    client = svc.store.client(p.get("client_id", ""))
    if client is None:
        raise _PageError("The application is not registered with Hearth.")
    redirect_uri = p.get("redirect_uri", "")
    if redirect_uri not in client["redirect_uris"]:
        raise _PageError("The application's redirect address is not one it registered.")
    state = p.get("state")

    def fail(error: str, description: str) -> _RedirectError:
        return _RedirectError(redirect_uri, state, error, description)

    if p.get("response_type") != "code":
        raise fail("unsupported_response_type", "only response_type=code is supported")
    if p.get("code_challenge_method") != "S256" or not p.get("code_challenge"):
        raise fail("invalid_request", "PKCE is required: code_challenge with method S256")
    if not 43 <= len(p["code_challenge"]) <= 128:
        raise fail("invalid_request", "code_challenge is not an S256 challenge")
    if p.get("aud", "").rstrip("/") != svc.settings.fhir_base:
        raise fail(
            "invalid_request", f"aud must be this server's FHIR base {svc.settings.fhir_base}"
        )
    asked = Scopes.parse(p.get("scope", ""))
    scope = asked.narrowed(Scopes.parse(client["scope"]), contexts={"patient", "user"})
    if not scope.grants and not scope.has("openid"):
        raise fail("invalid_scope", "none of the requested scopes may be granted to this app")
    launch = None
    if p.get("launch"):
        found = svc.store.launch(p["launch"])
        if found is None or found[1] <= utcnow():
            raise fail("invalid_request", "the launch context is unknown or expired")
        launch = found[0]
    params = [(k, p[k]) for k in AUTH_PARAMS if k in p]
    return AuthRequest(
        client, redirect_uri, state, scope, p["code_challenge"], p.get("nonce"), launch, params
    )


def _login_page(request: Request, areq: AuthRequest, error: str | None = None, status=200):  # type: ignore[no-untyped-def]
    return form_page(
        request,
        "login.html",
        status,
        client_name=areq.client["name"],
        params=areq.params,
        action="/auth/login",
        reset_url="/auth/reset",
        register_url="/auth/register" if auth_service(request).settings.self_registration else None,
        error=error,
    )


@router.api_route("/auth/authorize", methods=["GET", "POST"])
async def authorize(request: Request) -> Response:
    if request.method == "POST":
        try:
            params = await small_form(request)
        except OAuthError as exc:
            return message("Sign-in request refused", exc.description, exc.status)
    else:
        params = dict(request.query_params)
    svc = auth_service(request)
    try:
        areq = await run_in_threadpool(_parse_authorize, svc, params)
    except _PageError as exc:
        return message("Sign-in request refused", str(exc), 400)
    except _RedirectError as exc:
        return RedirectResponse(exc.url, status_code=303)
    return _login_page(request, areq)


@router.post("/auth/login")
async def login(request: Request) -> Response:
    svc = auth_service(request)
    form = await page_form(request, "Sign-in refused")
    if isinstance(form, HTMLResponse):
        return form
    username = form.get("username", "")
    try:  # rate limits first: a refused attempt costs no lookup and no hashing
        svc.limits.password_attempt(client_ip(request), username)
    except Refused as exc:
        return refused_page(exc)
    try:
        areq = await run_in_threadpool(_parse_authorize, svc, form)
    except _PageError as exc:
        return message("Sign-in request refused", str(exc), 400)
    except _RedirectError as exc:
        return RedirectResponse(exc.url, status_code=303)
    try:
        user = await svc.limits.hashed(
            check_login, svc.store, username, form.get("password", ""), form.get("code", "")
        )
    except Refused as exc:
        return refused_page(exc)
    except LoginFailed as exc:
        await run_in_threadpool(
            svc.audit,
            security_event(
                base=svc.settings.fhir_base,
                kind="login",
                success=False,
                client_id=areq.client["client_id"],
                username=username[:128],
                ip=client_ip(request),
                detail="login failed",
            ),
        )
        return _login_page(request, areq, str(exc), 401)
    role = await run_in_threadpool(effective_role, request.app.state.context.repo, user)

    def login_event(success: bool, detail: str | None = None) -> dict:
        return security_event(
            base=svc.settings.fhir_base,
            kind="login",
            client_id=areq.client["client_id"],
            username=user["username"],
            fhir_user=user["fhir_user"],
            ip=client_ip(request),
            success=success,
            detail=detail,
        )

    if role is None:
        await run_in_threadpool(
            svc.audit,
            login_event(success=False, detail="no active PractitionerRole with a Hearth care role"),
        )
        return message("No role", NO_ROLE, 403)
    await run_in_threadpool(svc.audit, login_event(success=True))
    return await _after_login(request, svc, areq, {**user, "role": role})


NO_ROLE = (
    "Your account has no active role in Hearth: your Practitioner has no active PractitionerRole "
    "as cadre, doctor or pharmacist. Ask an administrator."
)


def _context(areq: AuthRequest, user: dict, own_patient: str | None) -> tuple[Scopes, dict]:
    """The granted scopes and launch context. A patient user is always pinned to their own
    patient (their Patient, or the patient of their RelatedPerson), whatever a launch says."""
    granted = areq.scope.narrowed(ROLE_SCOPES[user["role"]], contexts={"patient", "user"})
    context: dict = {"fhir_user": user["fhir_user"], "role": user["role"]}
    if areq.nonce:
        context["nonce"] = areq.nonce
    if user["role"] == "patient":
        if own_patient:
            context["patient"] = own_patient
    elif areq.launch:
        context.update({k: v for k, v in areq.launch.items() if k in ("patient", "encounter")})
        context["need_patient_banner"] = True
    return granted, context


def _own_patient(request: Request, user: dict) -> str | None:
    """The patient a patient-role user acts for: Patient/x itself, or RelatedPerson.patient."""
    kind, _, rid = (user["fhir_user"] or "").partition("/")
    if user["role"] != "patient" or not rid:
        return None
    if kind == "Patient":
        return rid
    if kind == "RelatedPerson":
        ctx = request.app.state.context
        try:
            related = ctx.repo.read(lambda u: u.read("RelatedPerson", rid)).content
        except FhirError:
            return None
        ref = (related.get("patient") or {}).get("reference", "")
        kind, _, pid = ref.rpartition("/")
        return pid if kind.endswith("Patient") and pid else None
    return None


async def _after_login(request: Request, svc: AuthService, areq: AuthRequest, user: dict):  # type: ignore[no-untyped-def]
    own = await run_in_threadpool(_own_patient, request, user)
    granted, context = _context(areq, user, own)
    if (
        "patient" not in context
        and Scopes.parse(" ".join(areq.scope.other)).has("launch/patient")
        and user["role"] != "patient"
    ):
        pending = svc.key.sign(
            {"purpose": "pick", "username": user["username"], "params": areq.params}, ttl=PICK_TTL
        )
        patients = await run_in_threadpool(_patients, request)
        return form_page(
            request,
            "pick.html",
            client_name=areq.client["name"],
            pending=pending,
            patients=patients,
            action="/auth/pick",
        )
    return await run_in_threadpool(_redirect_with_code, svc, areq, user, granted, context)


def _patients(request: Request) -> list[dict]:
    """The patients a practitioner may choose from (first 200 by name)."""
    from resources.search.engine import SearchRequest, run_search

    ctx = request.app.state.context
    bundle = ctx.repo.read(
        lambda u: run_search(
            u,
            SearchRequest(res_type="Patient", query=[("_count", "200"), ("_sort", "family")]),
            base=ctx.base,
        )
    )
    out = []
    for e in bundle.get("entry", []):
        r = e["resource"]
        name = (r.get("name") or [{}])[0]
        label = " ".join([*name.get("given", []), name.get("family", "")]).strip() or r["id"]
        if r.get("birthDate"):
            label += f" (born {r['birthDate']})"
        out.append({"id": r["id"], "label": label})
    return out


@router.post("/auth/pick")
async def pick(request: Request) -> Response:
    svc = auth_service(request)
    form = await page_form(request)
    if isinstance(form, HTMLResponse):
        return form
    claims = svc.key.verify(form.get("pending", ""), purpose="pick")
    if claims is None:
        return message("Sign-in expired", "Please start the sign-in again.", 400)
    try:
        areq = await run_in_threadpool(_parse_authorize, svc, dict(claims["params"]))
    except _PageError as exc:
        return message("Sign-in request refused", str(exc), 400)
    except _RedirectError as exc:
        return RedirectResponse(exc.url, status_code=303)
    user = await run_in_threadpool(svc.store.user, claims["username"])
    if user is not None and user.get("active") is False:
        return message("Sign-in refused", "This account is deactivated.", 403)
    if user is not None:
        role = await run_in_threadpool(effective_role, request.app.state.context.repo, user)
        if role is None:
            return message("No role", NO_ROLE, 403)
        user = {**user, "role": role}
    patient = form.get("patient", "")
    ctx = request.app.state.context
    exists = await run_in_threadpool(patient_exists, ctx, patient)
    if user is None or user["role"] == "patient" or not exists:
        return message("Request refused", "That patient is not known.", 400)
    granted, context = _context(areq, user, None)
    context["patient"] = patient
    return await run_in_threadpool(_redirect_with_code, svc, areq, user, granted, context)


def patient_exists(ctx, patient: str) -> bool:  # type: ignore[no-untyped-def]
    try:
        ctx.repo.read(lambda u: u.read("Patient", patient))
    except FhirError:
        return False
    return True


def _redirect_with_code(
    svc: AuthService, areq: AuthRequest, user: dict, granted: Scopes, context: dict
) -> Response:
    code = secrets.token_urlsafe(32)
    svc.store.add_code(
        code,
        client_id=areq.client["client_id"],
        username=user["username"],
        redirect_uri=areq.redirect_uri,
        scope=str(granted),
        code_challenge=areq.code_challenge,
        context=context,
        expires=utcnow() + timedelta(seconds=CODE_TTL),
    )
    values = {"code": code, **({"state": areq.state} if areq.state else {})}
    return RedirectResponse(_with_query(areq.redirect_uri, values), status_code=303)
