"""Issuing and checking tokens. Access and refresh tokens are opaque random strings stored only
as sha256 hashes, so revocation and introspection take effect at once; the id_token is a JWT
signed with Hearth's key (OpenID Connect Core 1.0, with SMART's ``fhirUser`` claim).

Checking a bearer token is one primary-key lookup; the resulting ``Access`` is what every
interaction is authorized against.
"""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta

from fhir_server.auth.keys import SigningKey
from fhir_server.auth.scopes import Scopes
from fhir_server.rest.context import Access
from fhir_server.runtime.settings import Settings
from resources.auth.store import AuthStore, TokenRow
from resources.errors import Unauthorized
from resources.storage.store import utcnow

ACCESS_TTL = 3600
OFFLINE_TTL = 90 * 24 * 3600  # offline_access refresh tokens
ONLINE_TTL = 12 * 3600  # online_access refresh tokens: a working day's session
ID_TOKEN_TTL = 3600
MAX_TOKEN = 512  # longer bearer values are refused before any lookup


def issue(
    store: AuthStore,
    settings: Settings,
    key: SigningKey | None,
    *,
    client_id: str,
    scope: Scopes,
    context: dict,
    username: str | None = None,
    grant_id: str | None = None,
    with_refresh: bool = True,
    audience: str | None = None,
) -> dict:
    """Store a new access token (and a refresh token when the scope asks for one); returns the
    token response (SMART: ``patient``/``encounter`` context, ``id_token``)."""
    now = utcnow()
    grant_id = grant_id or secrets.token_hex(16)
    access = secrets.token_urlsafe(32)
    store.add_token(
        access,
        kind="access",
        client_id=client_id,
        username=username,
        scope=str(scope),
        context=context,
        audience=audience or settings.fhir_base,
        expires=now + timedelta(seconds=ACCESS_TTL),
        grant_id=grant_id,
        created=now,
    )
    body: dict = {
        "access_token": access,
        "token_type": "Bearer",
        "expires_in": ACCESS_TTL,
        "scope": str(scope),
    }
    for name in ("patient", "encounter"):
        if context.get(name):
            body[name] = context[name]
    if context.get("need_patient_banner") is not None:
        body["need_patient_banner"] = context["need_patient_banner"]
    refresh_ttl = (
        OFFLINE_TTL
        if scope.has("offline_access")
        else ONLINE_TTL
        if scope.has("online_access")
        else 0
    )
    if with_refresh and refresh_ttl and username is not None:
        refresh = secrets.token_urlsafe(32)
        store.add_token(
            refresh,
            kind="refresh",
            client_id=client_id,
            username=username,
            scope=str(scope),
            context=context,
            audience=audience or settings.fhir_base,
            expires=now + timedelta(seconds=refresh_ttl),
            grant_id=grant_id,
            created=now,
        )
        body["refresh_token"] = refresh
    if key is not None and scope.has("openid") and username is not None:
        claims = {
            "iss": settings.fhir_base,
            "sub": username,
            "aud": client_id,
            "purpose": "id_token",
        }
        if scope.has("fhirUser") and context.get("fhir_user"):
            claims["fhirUser"] = f"{settings.fhir_base}/{context['fhir_user']}"
        if scope.has("fhirUser") and context.get("role"):  # the care role: the web app's worklist
            claims["hearth_role"] = context["role"]
        if context.get("nonce"):
            claims["nonce"] = context["nonce"]
        body["id_token"] = key.sign(claims, ttl=ID_TOKEN_TTL)
    return body


def bearer_access(store: AuthStore, settings: Settings, authorization: str | None) -> Access:
    """The ``Access`` of a request's ``Authorization: Bearer`` token, or 401."""
    return access_of(store.token(bearer_token(authorization)), settings)


def bearer_token(authorization: str | None) -> str:
    """The token of an ``Authorization: Bearer`` header, or 401 (before any lookup)."""
    if not authorization:
        raise Unauthorized("this endpoint needs an access token (Authorization: Bearer ...)")
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or len(token) > MAX_TOKEN:
        raise Unauthorized("the Authorization header must be 'Bearer <access token>'")
    return token


def access_of(row: TokenRow | None, settings: Settings) -> Access:
    """The ``Access`` a looked-up token row grants, or 401 when there is none or it is not a
    live access token for this server (the one decision, whichever path looked the row up)."""
    if (
        row is None
        or row.kind != "access"
        or row.revoked
        or row.expires <= utcnow()
        or row.audience != settings.fhir_base
    ):
        raise Unauthorized(
            "the access token is not valid (unknown, expired, revoked or not for this server)"
        )
    ctx = row.context
    return Access(
        client_id=row.client_id,
        scopes=Scopes.parse(row.scope),
        username=row.username,
        role=ctx.get("role"),
        fhir_user=ctx.get("fhir_user"),
        patient=ctx.get("patient"),
        encounter=ctx.get("encounter"),
    )


def operator_token(
    store: AuthStore, settings: Settings, client_id: str, scope: str, *, patient: str | None = None
) -> dict:
    """A token for a registered client, issued by an operator with database access (``hearth
    token``): never more than the client's registered scope."""
    client = store.client(client_id)
    if client is None:
        raise ValueError(f"no client {client_id!r}: create one with `hearth clients create`")
    granted = Scopes.parse(scope).narrowed(Scopes.parse(client["scope"]))
    if not granted.grants:
        raise ValueError(f"client {client_id!r} may not have any of {scope!r}")
    context = {"patient": patient} if patient else {}
    return issue(
        store,
        settings,
        None,
        client_id=client_id,
        scope=granted,
        context=context,
        with_refresh=False,
    )


# -- websocket binding tokens (Subscriptions Backport IG, $get-ws-binding-token) ---------------
BINDING_KIND = "ws-binding"
BINDING_TTL = 120  # seconds to open the websocket and bind; the connection then lives on


def binding_token(
    store: AuthStore, settings: Settings, authorization: str | None, sub_ids: list[str]
) -> tuple[str, datetime]:
    """A one-off token that lets a websocket bind ``sub_ids`` (a browser cannot set
    ``Authorization`` on a websocket). Stored hashed like an access token, in the same grant (a
    revoked grant revokes it), valid ``BINDING_TTL`` seconds; the connection it binds ends when
    the access token that asked for it expires. Returns (token, expiry)."""
    bearer_access(store, settings, authorization)  # 401 unless the asking token is valid
    token = authorization.partition(" ")[2].strip() if authorization else ""
    row = store.token(token)
    if row is None:  # revoked between the two lookups
        raise Unauthorized("the access token is not valid")
    now = utcnow()
    binding = secrets.token_urlsafe(32)
    expires = now + timedelta(seconds=BINDING_TTL)
    store.add_token(
        binding,
        kind=BINDING_KIND,
        client_id=row.client_id,
        username=row.username,
        scope=row.scope,
        context={"subscriptions": list(sub_ids), "until": row.expires.isoformat()},
        audience=settings.fhir_base,
        expires=expires,
        grant_id=row.grant_id,
        created=now,
    )
    return binding, expires


def binding(store: AuthStore, settings: Settings, token: str) -> tuple[list[str], datetime] | None:
    """(subscription ids, when the connection must end) of a valid binding token, else None."""
    if not token or len(token) > MAX_TOKEN:
        return None
    row = store.token(token)
    if (
        row is None
        or row.kind != BINDING_KIND
        or row.revoked
        or row.expires <= utcnow()
        or row.audience != settings.fhir_base
    ):
        return None
    until = datetime.fromisoformat(str(row.context.get("until")))
    return [str(s) for s in row.context.get("subscriptions") or []], until
