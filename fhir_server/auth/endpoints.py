"""The authorization server's HTTP endpoints (SMART App Launch 2.2, RFC 6749/7636/7009/7662):
``/.well-known/smart-configuration``, ``/auth/authorize`` with the login and patient-picker
pages, ``/auth/token`` (authorization_code with PKCE S256, refresh_token, client_credentials),
``/auth/revoke``, ``/auth/introspect``, ``/auth/jwks``, password reset, and the admin API
(``/auth/clients``, ``/auth/launch``)."""

from __future__ import annotations

import hmac
import logging
import secrets
import time
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import urlencode

import pyotp
import segno
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.concurrency import run_in_threadpool

from fhir_server.auth import clients, mail
from fhir_server.auth.audit_events import security_event
from fhir_server.auth.errors import OAuthError
from fhir_server.auth.scopes import Scopes
from fhir_server.auth.service import AuthService
from fhir_server.auth.tokens import bearer_access, issue
from fhir_server.auth.users import (
    ROLE_SCOPES,
    LoginFailed,
    check_login,
    new_recovery_codes,
    set_password,
)
from fhir_server.context import Access
from resources.errors import FhirError, Forbidden
from resources.store import utcnow

log = logging.getLogger("hearth.auth")
router = APIRouter(include_in_schema=False)
_pages = Environment(
    loader=PackageLoader("fhir_server.auth", "templates"), autoescape=select_autoescape()
)
CODE_TTL = 60  # seconds an authorization code lives
LAUNCH_TTL = 300
PICK_TTL = 600
RESET_TTL = 1800
MAX_FORM = 16 * 1024  # bytes: bigger login/token forms are refused (413)
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
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
PAGE_HEADERS = {
    **NO_STORE,
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
    "frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}


def _svc(request: Request) -> AuthService:
    return request.app.state.auth


def _page(name: str, status: int = 200, **values: object) -> HTMLResponse:
    html = _pages.get_template(name).render(**values)
    return HTMLResponse(html, status_code=status, headers=PAGE_HEADERS)


def _message(heading: str, text: str, status: int) -> HTMLResponse:
    return _page("message.html", status, heading=heading, text=text, error=status >= 400)


async def _form(request: Request) -> dict[str, str]:
    """A url-encoded form within ``MAX_FORM`` bytes; one value per name."""
    body = await request.body()
    if len(body) > MAX_FORM:
        raise OAuthError("invalid_request", "the request is too large", 413)
    from urllib.parse import parse_qsl

    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, max_num_fields=50)
    except (UnicodeDecodeError, ValueError) as exc:
        raise OAuthError("invalid_request", "the form is not valid") from exc
    out: dict[str, str] = {}
    for k, v in pairs:
        if k in out:
            raise OAuthError("invalid_request", f"parameter {k!r} is repeated")
        out[k] = v
    return out


def _ip(request: Request) -> str | None:
    return request.client.host if request.client else None


# -- discovery ---------------------------------------------------------------------------------
@router.get("/fhir/.well-known/smart-configuration")
@router.get("/.well-known/smart-configuration")
async def smart_configuration(request: Request) -> JSONResponse:
    s = _svc(request).settings
    root = s.base_url
    return JSONResponse(
        {
            "issuer": s.fhir_base,
            "jwks_uri": f"{root}/auth/jwks",
            "authorization_endpoint": f"{root}/auth/authorize",
            "token_endpoint": f"{root}/auth/token",
            "revocation_endpoint": f"{root}/auth/revoke",
            "introspection_endpoint": f"{root}/auth/introspect",
            "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
            "token_endpoint_auth_methods_supported": [
                "client_secret_basic",
                "private_key_jwt",
            ],
            "token_endpoint_auth_signing_alg_values_supported": clients.ASSERTION_ALGS,
            "code_challenge_methods_supported": ["S256"],
            "response_types_supported": ["code"],
            "scopes_supported": [
                "openid",
                "fhirUser",
                "launch",
                "launch/patient",
                "offline_access",
                "online_access",
                "patient/*.cruds",
                "user/*.cruds",
                "system/*.cruds",
                "patient/*.read",
                "user/*.read",
                "system/*.read",
            ],
            "capabilities": [
                "launch-ehr",
                "launch-standalone",
                "client-public",
                "client-confidential-symmetric",
                "client-confidential-asymmetric",
                "sso-openid-connect",
                "context-ehr-patient",
                "context-ehr-encounter",
                "context-standalone-patient",
                "permission-offline",
                "permission-online",
                "permission-patient",
                "permission-user",
                "permission-v1",
                "permission-v2",
                "authorize-post",
            ],
        }
    )


@router.get("/auth/jwks")
async def jwks(request: Request) -> JSONResponse:
    return JSONResponse(_svc(request).key.jwks())


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
    return _page(
        "login.html",
        status,
        client_name=areq.client["name"],
        params=areq.params,
        action="/auth/login",
        reset_url="/auth/reset",
        error=error,
    )


@router.api_route("/auth/authorize", methods=["GET", "POST"])
async def authorize(request: Request) -> Response:
    if request.method == "POST":
        try:
            params = await _form(request)
        except OAuthError as exc:
            return _message("Sign-in request refused", exc.description, exc.status)
    else:
        params = dict(request.query_params)
    svc = _svc(request)
    try:
        areq = await run_in_threadpool(_parse_authorize, svc, params)
    except _PageError as exc:
        return _message("Sign-in request refused", str(exc), 400)
    except _RedirectError as exc:
        return RedirectResponse(exc.url, status_code=303)
    return _login_page(request, areq)


@router.post("/auth/login")
async def login(request: Request) -> Response:
    svc = _svc(request)
    try:
        form = await _form(request)
    except OAuthError as exc:
        return _message("Sign-in refused", exc.description, exc.status)
    try:
        areq = await run_in_threadpool(_parse_authorize, svc, form)
    except _PageError as exc:
        return _message("Sign-in request refused", str(exc), 400)
    except _RedirectError as exc:
        return RedirectResponse(exc.url, status_code=303)
    username = form.get("username", "")
    try:
        user = await run_in_threadpool(
            check_login, svc.store, username, form.get("password", ""), form.get("code", "")
        )
    except LoginFailed as exc:
        await run_in_threadpool(
            svc.audit,
            security_event(
                base=svc.settings.fhir_base,
                kind="login",
                success=False,
                client_id=areq.client["client_id"],
                username=username[:128],
                ip=_ip(request),
                detail="login failed",
            ),
        )
        return _login_page(request, areq, str(exc), 401)
    await run_in_threadpool(
        svc.audit,
        security_event(
            base=svc.settings.fhir_base,
            kind="login",
            success=True,
            client_id=areq.client["client_id"],
            username=user["username"],
            fhir_user=user["fhir_user"],
            ip=_ip(request),
        ),
    )
    return await _after_login(request, svc, areq, user)


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
        return _page(
            "pick.html",
            client_name=areq.client["name"],
            pending=pending,
            patients=patients,
            action="/auth/pick",
        )
    return await run_in_threadpool(_redirect_with_code, svc, areq, user, granted, context)


def _patients(request: Request) -> list[dict]:
    """The patients a practitioner may choose from (first 200 by name)."""
    from resources.searching import SearchRequest, run_search

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
    svc = _svc(request)
    try:
        form = await _form(request)
    except OAuthError as exc:
        return _message("Request refused", exc.description, exc.status)
    claims = svc.key.verify(form.get("pending", ""), purpose="pick")
    if claims is None:
        return _message("Sign-in expired", "Please start the sign-in again.", 400)
    try:
        areq = await run_in_threadpool(_parse_authorize, svc, dict(claims["params"]))
    except _PageError as exc:
        return _message("Sign-in request refused", str(exc), 400)
    except _RedirectError as exc:
        return RedirectResponse(exc.url, status_code=303)
    user = await run_in_threadpool(svc.store.user, claims["username"])
    patient = form.get("patient", "")
    ctx = request.app.state.context
    exists = await run_in_threadpool(_patient_exists, ctx, patient)
    if user is None or user["role"] == "patient" or not exists:
        return _message("Request refused", "That patient is not known.", 400)
    granted, context = _context(areq, user, None)
    context["patient"] = patient
    return await run_in_threadpool(_redirect_with_code, svc, areq, user, granted, context)


def _patient_exists(ctx, patient: str) -> bool:  # type: ignore[no-untyped-def]
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


# -- token ------------------------------------------------------------------------------------
def _oauth_error(exc: OAuthError) -> JSONResponse:
    headers = dict(NO_STORE)
    if exc.status == 401:
        headers["WWW-Authenticate"] = 'Basic realm="hearth"'
    return JSONResponse(exc.body(), status_code=exc.status, headers=headers)


@router.post("/auth/token")
async def token(request: Request) -> JSONResponse:
    svc = _svc(request)
    try:
        form = await _form(request)
        headers = {k.lower(): v for k, v in request.headers.items()}
        body = await run_in_threadpool(_token, svc, headers, form, _ip(request))
    except OAuthError as exc:
        return _oauth_error(exc)
    return JSONResponse(body, headers=NO_STORE)


def _token(svc: AuthService, headers: dict, form: dict, ip: str | None) -> dict:
    client = clients.authenticate(svc.store, svc.token_url, headers, form)
    grant = form.get("grant_type")
    username: str | None
    if grant == "authorization_code":
        body, username = _code_grant(svc, client, form)
    elif grant == "refresh_token":
        body, username = _refresh_grant(svc, client, form)
    elif grant == "client_credentials":
        body, username = _client_credentials(svc, client, form), None
    else:
        raise OAuthError("unsupported_grant_type", f"grant_type {grant!r} is not supported")
    svc.audit(
        security_event(
            base=svc.settings.fhir_base,
            kind="token",
            success=True,
            client_id=client["client_id"],
            username=username,
            ip=ip,
            detail=f"{grant}: {body['scope']}",
        )
    )
    return body


def _code_grant(svc: AuthService, client: dict, form: dict) -> tuple[dict, str]:
    row, consumed = svc.store.take_code(form.get("code", ""))
    bad = OAuthError("invalid_grant", "the authorization code is not valid")
    if row is None:
        raise bad
    grant_id = row["code_hash"][:32]
    if not consumed:
        # A code used twice: revoke what the first use issued (RFC 6749 section 4.1.2).
        svc.store.revoke_grant(grant_id)
        raise OAuthError("invalid_grant", "the authorization code was already used")
    if row["expires"] <= utcnow():
        raise OAuthError("invalid_grant", "the authorization code expired")
    if row["client_id"] != client["client_id"]:
        raise bad
    if form.get("redirect_uri") != row["redirect_uri"]:
        raise OAuthError("invalid_grant", "redirect_uri does not match the authorization request")
    verifier = form.get("code_verifier", "")
    if not 43 <= len(verifier) <= 128 or not hmac.compare_digest(
        create_s256_code_challenge(verifier), row["code_challenge"]
    ):
        raise OAuthError("invalid_grant", "the PKCE code_verifier does not match")
    user = svc.store.user(row["username"])
    if user is None:
        raise bad
    scope = Scopes.parse(row["scope"])
    body = issue(
        svc.store,
        svc.settings,
        svc.key,
        client_id=client["client_id"],
        scope=scope,
        context=row["context"],
        username=row["username"],
        grant_id=grant_id,
    )
    return body, row["username"]


def _refresh_grant(svc: AuthService, client: dict, form: dict) -> tuple[dict, str | None]:
    refresh = form.get("refresh_token", "")
    row = svc.store.token(refresh) if refresh and len(refresh) <= 512 else None
    if (
        row is None
        or row.kind != "refresh"
        or row.revoked
        or row.expires <= utcnow()
        or row.client_id != client["client_id"]
    ):
        raise OAuthError("invalid_grant", "the refresh token is not valid")
    original = Scopes.parse(row.scope)
    scope = original
    if form.get("scope"):
        scope = Scopes.parse(form["scope"])
        if not scope.within(original):
            raise OAuthError("invalid_scope", "a refresh may not ask for more than was granted")
    body = issue(
        svc.store,
        svc.settings,
        svc.key,
        client_id=client["client_id"],
        scope=scope,
        context=row.context,
        username=row.username,
        grant_id=row.grant_id,
        with_refresh=False,
    )
    body["refresh_token"] = refresh
    return body, row.username


def _client_credentials(svc: AuthService, client: dict, form: dict) -> dict:
    if client["kind"] == "public":
        raise OAuthError("unauthorized_client", "public clients cannot use client_credentials")
    scope = Scopes.parse(form.get("scope", "")).narrowed(
        Scopes.parse(client["scope"]), contexts={"system"}
    )
    if not scope.grants:
        raise OAuthError("invalid_scope", "none of the requested system scopes may be granted")
    return issue(
        svc.store,
        svc.settings,
        None,
        client_id=client["client_id"],
        scope=scope,
        context={},
        with_refresh=False,
    )


# -- revocation and introspection -------------------------------------------------------------
@router.post("/auth/revoke")
async def revoke(request: Request) -> Response:
    """RFC 7009: always 200 for a token that is unknown or another client's."""
    svc = _svc(request)
    try:
        form = await _form(request)
        headers = {k.lower(): v for k, v in request.headers.items()}
        client = await run_in_threadpool(
            clients.authenticate, svc.store, svc.token_url, headers, form
        )
    except OAuthError as exc:
        return _oauth_error(exc)
    value = form.get("token", "")
    if value and len(value) <= 512:
        row = await run_in_threadpool(svc.store.token, value)
        if row is not None and row.client_id == client["client_id"]:
            if row.kind == "refresh":
                await run_in_threadpool(svc.store.revoke_grant, row.grant_id)
            else:
                await run_in_threadpool(svc.store.revoke, value)
    return Response(status_code=200, headers=NO_STORE)


@router.post("/auth/introspect")
async def introspect(request: Request) -> JSONResponse:
    """RFC 7662 (SMART token-introspection): callers authenticate as a confidential client or
    with a valid bearer token."""
    svc = _svc(request)
    try:
        form = await _form(request)
    except OAuthError as exc:
        return _oauth_error(exc)
    headers = {k.lower(): v for k, v in request.headers.items()}
    try:
        if headers.get("authorization", "").lower().startswith("bearer "):
            await run_in_threadpool(
                bearer_access, svc.store, svc.settings, headers["authorization"]
            )
        else:
            client = await run_in_threadpool(
                clients.authenticate, svc.store, svc.token_url, headers, form
            )
            if client["kind"] == "public":
                raise OAuthError("invalid_client", "public clients may not introspect", 401)
    except OAuthError as exc:
        return _oauth_error(exc)
    except FhirError:
        return _oauth_error(OAuthError("invalid_client", "the bearer token is not valid", 401))
    value = form.get("token", "")
    row = await run_in_threadpool(svc.store.token, value) if 0 < len(value) <= 512 else None
    if row is None or row.revoked or row.expires <= utcnow():
        return JSONResponse({"active": False}, headers=NO_STORE)
    body: dict = {
        "active": True,
        "scope": row.scope,
        "client_id": row.client_id,
        "exp": int(row.expires.timestamp()),
        "token_type": "Bearer" if row.kind == "access" else "refresh_token",
        "aud": row.audience,
        "iss": svc.settings.fhir_base,
    }
    if row.username:
        body["sub"] = row.username
    for name in ("patient", "encounter"):
        if row.context.get(name):
            body[name] = row.context[name]
    if row.context.get("fhir_user"):
        body["fhirUser"] = f"{svc.settings.fhir_base}/{row.context['fhir_user']}"
    return JSONResponse(body, headers=NO_STORE)


# -- password reset --------------------------------------------------------------------------
@router.get("/auth/reset")
async def reset_form(request: Request) -> HTMLResponse:
    return _page("reset.html", action="/auth/reset")


@router.post("/auth/reset")
async def reset_request(request: Request) -> HTMLResponse:
    svc = _svc(request)
    try:
        form = await _form(request)
    except OAuthError as exc:
        return _message("Request refused", exc.description, exc.status)
    username = form.get("username", "")[:128]
    await run_in_threadpool(_send_reset, svc, username, _ip(request))
    return _message(
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
        log.error("password reset e-mail for %s not sent: %s", username, exc)
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
    if await run_in_threadpool(_reset_claims, _svc(request), value) is None:
        return _message("Link not valid", "This reset link expired or was used already.", 400)
    return _page("reset_confirm.html", action="/auth/reset/confirm", token=value)


@router.post("/auth/reset/confirm")
async def reset_confirm(request: Request) -> HTMLResponse:
    svc = _svc(request)
    try:
        form = await _form(request)
    except OAuthError as exc:
        return _message("Request refused", exc.description, exc.status)
    claims = await run_in_threadpool(_reset_claims, svc, form.get("token", ""))
    if claims is None:
        return _message("Link not valid", "This reset link expired or was used already.", 400)
    try:
        await run_in_threadpool(
            set_password, svc.store, claims["username"], form.get("password", "")
        )
    except ValueError as exc:
        return _page(
            "reset_confirm.html",
            400,
            action="/auth/reset/confirm",
            token=form["token"],
            error=str(exc),
        )
    return _message("Password changed", "You can sign in with your new password now.", 200)


# -- TOTP enrolment (optional for patients; staff are enrolled when created) -----------------
ENROL_TTL = 600


@router.get("/auth/account/totp")
async def enrol_form(request: Request) -> HTMLResponse:
    return _page("enrol.html", action="/auth/account/totp")


@router.post("/auth/account/totp")
async def enrol_start(request: Request) -> HTMLResponse:
    svc = _svc(request)
    try:
        form = await _form(request)
    except OAuthError as exc:
        return _message("Request refused", exc.description, exc.status)
    username = form.get("username", "")
    try:
        user = await run_in_threadpool(
            check_login, svc.store, username, form.get("password", ""), ""
        )
    except LoginFailed as exc:
        return _page("enrol.html", 401, action="/auth/account/totp", error=str(exc))
    if user["totp_secret"]:
        return _message("Already on", "This account has an authenticator already.", 400)
    secret = pyotp.random_base32()
    uri = pyotp.TOTP(secret).provisioning_uri(name=user["username"], issuer_name="Hearth")
    pending = svc.key.sign(
        {"purpose": "enrol", "username": user["username"], "secret": secret}, ttl=ENROL_TTL
    )
    return _enrol_confirm(secret, uri, pending)


def _enrol_confirm(secret: str, uri: str, pending: str, error: str | None = None) -> HTMLResponse:
    svg = segno.make(uri, error="m").svg_inline(scale=4, title="Authenticator QR code")
    return _page(
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
    svc = _svc(request)
    try:
        form = await _form(request)
    except OAuthError as exc:
        return _message("Request refused", exc.description, exc.status)
    claims = svc.key.verify(form.get("pending", ""), purpose="enrol")
    if claims is None:
        return _message("Set-up expired", "Please start again.", 400)
    totp = pyotp.TOTP(claims["secret"])
    code = form.get("code", "").strip()
    now = totp.timecode(time.time())  # type: ignore[arg-type]
    matched = [
        t for t in (now, now - 1, now + 1) if hmac.compare_digest(totp.generate_otp(t), code)
    ]
    if not matched:
        uri = totp.provisioning_uri(name=claims["username"], issuer_name="Hearth")
        return _enrol_confirm(claims["secret"], uri, form["pending"], "That code is not right.")
    codes, hashes = new_recovery_codes()
    done = await run_in_threadpool(
        svc.store.enrol_totp, claims["username"], claims["secret"], matched[0], hashes
    )
    if not done:
        return _message("Already on", "This account has an authenticator already.", 400)
    return _page("enrol_done.html", codes=codes)


# -- admin API --------------------------------------------------------------------------------
async def _admin(request: Request) -> Access:
    svc = _svc(request)
    access = await run_in_threadpool(
        bearer_access, svc.store, svc.settings, request.headers.get("authorization")
    )
    if not access.is_admin:
        raise Forbidden("client registration is for administrators only")
    return access


@router.get("/auth/clients")
async def list_clients(request: Request) -> JSONResponse:
    await _admin(request)
    rows = await run_in_threadpool(_svc(request).store.clients)
    return JSONResponse([_public_client(r) for r in rows])


def _public_client(row: dict) -> dict:
    return {
        "client_id": row["client_id"],
        "name": row["name"],
        "kind": row["kind"],
        "scope": row["scope"],
        "redirect_uris": row["redirect_uris"],
        "created": row["created"].isoformat(),
    }


@router.post("/auth/clients")
async def create_client(request: Request) -> JSONResponse:
    await _admin(request)
    try:
        body = await request.json()
        if not isinstance(body, dict):
            raise ValueError("the body must be a JSON object")
        client_id, secret = await run_in_threadpool(
            lambda: clients.register(
                _svc(request).store,
                str(body.get("name", "")),
                str(body.get("kind", "")),
                scope=str(body.get("scope", "")),
                redirect_uris=list(body.get("redirect_uris") or []),
                jwks=body.get("jwks"),
            )
        )
    except ValueError as exc:
        return JSONResponse(
            {"error": "invalid_client_metadata", "error_description": str(exc)}, 400
        )
    out = {"client_id": client_id}
    if secret:
        out["client_secret"] = secret
    return JSONResponse(out, status_code=201, headers=NO_STORE)


@router.post("/auth/launch")
async def create_launch(request: Request) -> JSONResponse:
    """EHR launch: the EHR (a practitioner's or a system token) records the context an app is
    launched with; the app passes the returned ``launch`` to /auth/authorize."""
    svc = _svc(request)
    access = await run_in_threadpool(
        bearer_access, svc.store, svc.settings, request.headers.get("authorization")
    )
    if access.patient is not None or access.role == "patient":
        raise Forbidden("patients cannot create launch contexts")
    body = await request.json()
    if not isinstance(body, dict) or not isinstance(body.get("patient"), str):
        return JSONResponse(
            {"error": "invalid_request", "error_description": "patient is required"}, 400
        )
    ctx = request.app.state.context
    if not await run_in_threadpool(_patient_exists, ctx, body["patient"]):
        return JSONResponse(
            {"error": "invalid_request", "error_description": "unknown patient"}, 400
        )
    context = {"patient": body["patient"]}
    if isinstance(body.get("encounter"), str):
        context["encounter"] = body["encounter"]
    launch = secrets.token_urlsafe(24)
    await run_in_threadpool(
        svc.store.add_launch, launch, context, utcnow() + timedelta(seconds=LAUNCH_TTL)
    )
    return JSONResponse({"launch": launch}, status_code=201, headers=NO_STORE)
