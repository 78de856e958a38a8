"""The token endpoint (``authorization_code`` with PKCE, ``refresh_token``,
``client_credentials``), revocation (RFC 7009) and introspection (RFC 7662)."""

from __future__ import annotations

import hmac

from authlib.oauth2.rfc7636 import create_s256_code_challenge
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from fhir_server.auth import clients
from fhir_server.auth.audit_events import security_event
from fhir_server.auth.errors import OAuthError
from fhir_server.auth.limits import Refused
from fhir_server.auth.roles import effective_role
from fhir_server.auth.scopes import Scopes, invalid_data_scopes
from fhir_server.auth.service import AuthService
from fhir_server.auth.tokens import bearer_access, issue
from fhir_server.auth.users import ROLE_SCOPES
from fhir_server.auth.web import NO_STORE, auth_service, client_ip, small_form
from resources.errors import FhirError
from resources.storage.repository import Repository
from resources.storage.store import utcnow
from resources.validation import is_resource_type

router = APIRouter(include_in_schema=False)


# -- token ------------------------------------------------------------------------------------
def _refused(exc: Refused) -> JSONResponse:
    body = {"error": "temporarily_unavailable", "error_description": exc.description}
    return JSONResponse(body, status_code=exc.status, headers={**NO_STORE, **exc.headers})


def _limit(svc: AuthService, request: Request, headers: dict, form: dict) -> None:
    """Rate limits per client address and claimed client id, before any credential check."""
    svc.limits.client_attempt(client_ip(request), clients.claimed_id(headers, form))


def _oauth_error(exc: OAuthError) -> JSONResponse:
    headers = dict(NO_STORE)
    if exc.status == 401:
        headers["WWW-Authenticate"] = 'Basic realm="hearth"'
    return JSONResponse(exc.body(), status_code=exc.status, headers=headers)


@router.post("/auth/token")
async def token(request: Request) -> JSONResponse:
    svc = auth_service(request)
    try:
        form = await small_form(request)
        headers = {k.lower(): v for k, v in request.headers.items()}
        _limit(svc, request, headers, form)
        repo = request.app.state.context.repo
        body = await run_in_threadpool(_token, svc, headers, form, client_ip(request), repo)
    except OAuthError as exc:
        return _oauth_error(exc)
    except Refused as exc:
        return _refused(exc)
    return JSONResponse(body, headers=NO_STORE)


def _token(svc: AuthService, headers: dict, form: dict, ip: str | None, repo: Repository) -> dict:
    client = clients.authenticate(svc.store, svc.token_url, headers, form, svc.settings)
    grant = form.get("grant_type")
    username: str | None
    if grant == "authorization_code":
        body, username = _code_grant(svc, client, form)
    elif grant == "refresh_token":
        body, username = _refresh_grant(svc, client, form, repo)
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
    if user is None or user.get("active") is False:  # deactivated since the code was issued
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
    _unless_deactivated(svc, row["username"], grant_id)
    return body, row["username"]


def _unless_deactivated(svc: AuthService, username: str, grant_id: str) -> None:
    """A deactivation that raced this token issue: revoke what was just issued."""
    if not svc.store.still_active(username):
        svc.store.revoke_grant(grant_id)
        raise OAuthError("invalid_grant", "the account is deactivated")


def _refresh_grant(
    svc: AuthService, client: dict, form: dict, repo: Repository
) -> tuple[dict, str | None]:
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
    context = row.context
    if row.username is not None:  # the role is decided again: PractitionerRoles may have changed
        user = svc.store.user(row.username)
        active = user is not None and user.get("active") is not False
        role = effective_role(repo, user) if user is not None and active else None
        if role is None:
            raise OAuthError("invalid_grant", "the account has no role any more")
        scope = scope.narrowed(ROLE_SCOPES[role], contexts={"patient", "user"})
        context = {**context, "role": role}
    body = issue(
        svc.store,
        svc.settings,
        svc.key,
        client_id=client["client_id"],
        scope=scope,
        context=context,
        username=row.username,
        grant_id=row.grant_id,
        with_refresh=False,
    )
    if row.username is not None:
        _unless_deactivated(svc, row.username, row.grant_id)
    body["refresh_token"] = refresh
    return body, row.username


def _client_credentials(svc: AuthService, client: dict, form: dict) -> dict:
    if client["kind"] == "public":
        raise OAuthError("unauthorized_client", "public clients cannot use client_credentials")
    invalid = invalid_data_scopes(form.get("scope", ""), is_resource_type)
    if invalid:
        raise OAuthError("invalid_scope", f"unknown or malformed scope: {invalid[0]}")
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
    svc = auth_service(request)
    try:
        form = await small_form(request)
        headers = {k.lower(): v for k, v in request.headers.items()}
        _limit(svc, request, headers, form)
        client = await run_in_threadpool(
            clients.authenticate, svc.store, svc.token_url, headers, form, svc.settings
        )
    except OAuthError as exc:
        return _oauth_error(exc)
    except Refused as exc:
        return _refused(exc)
    value = form.get("token", "")
    if value and len(value) <= 512:
        row = await run_in_threadpool(svc.store.token, value)
        if row is not None and row.client_id == client["client_id"]:
            if row.kind == "refresh":
                await run_in_threadpool(svc.store.revoke_grant, row.grant_id)
            else:
                await run_in_threadpool(svc.store.revoke, value)
            svc.audit(
                security_event(
                    base=svc.settings.fhir_base,
                    kind="revoke",
                    success=True,
                    client_id=client["client_id"],
                    username=row.username,
                    ip=client_ip(request),
                    detail=f"{row.kind} token revoked",
                )
            )
    return Response(status_code=200, headers=NO_STORE)


@router.post("/auth/introspect")
async def introspect(request: Request) -> JSONResponse:
    """RFC 7662 (SMART token-introspection): callers authenticate as a confidential client or
    with a valid bearer token."""
    svc = auth_service(request)
    try:
        form = await small_form(request)
    except OAuthError as exc:
        return _oauth_error(exc)
    headers = {k.lower(): v for k, v in request.headers.items()}
    try:
        _limit(svc, request, headers, form)
    except Refused as exc:
        return _refused(exc)
    try:
        if headers.get("authorization", "").lower().startswith("bearer "):
            await run_in_threadpool(
                bearer_access, svc.store, svc.settings, headers["authorization"]
            )
        else:
            client = await run_in_threadpool(
                clients.authenticate, svc.store, svc.token_url, headers, form, svc.settings
            )
            if client["kind"] == "public":
                raise OAuthError("invalid_client", "public clients may not introspect", 401)
    except OAuthError as exc:
        return _oauth_error(exc)
    except FhirError:
        return _oauth_error(OAuthError("invalid_client", "the bearer token is not valid", 401))
    value = form.get("token", "")
    row = await run_in_threadpool(svc.store.token, value) if 0 < len(value) <= 512 else None
    # a websocket binding token (tokens.BINDING_KIND) is no OAuth token: never active here
    if (
        row is None
        or row.kind not in ("access", "refresh")
        or row.revoked
        or row.expires <= utcnow()
    ):
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
