"""Client registration and client authentication at the token endpoint: public clients (PKCE
only), ``client_secret_basic`` (confidential-symmetric) and ``private_key_jwt`` (confidential-
asymmetric: a JWT assertion signed RS384 or ES384 with a key from the client's registered JWKS,
SMART client-confidential-asymmetric and backend-services). The keys are registered by value
(a JWKS) or by JWK Set URL (stored as ``{"jwks_uri": url}``, fetched by fhir_server/auth/jwks_url.py
from the registered URL only)."""

from __future__ import annotations

import base64
import binascii
import secrets
import time
from datetime import UTC, datetime
from urllib.parse import unquote

import orjson
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from joserfc.jws import JWSRegistry, extract_compact

from fhir_server.auth import jwks_url
from fhir_server.auth.errors import OAuthError
from fhir_server.auth.scopes import Scopes
from fhir_server.runtime.settings import Settings
from resources.auth.store import AuthStore, digest
from resources.storage.store import utcnow

KINDS = ("public", "confidential-symmetric", "confidential-asymmetric")
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ASSERTION_ALGS = ["RS384", "ES384"]
MAX_ASSERTION_LIFETIME = 300  # SMART: exp no more than five minutes in the future


def register(
    store: AuthStore,
    name: str,
    kind: str,
    *,
    scope: str,
    redirect_uris: list[str] | None = None,
    jwks: dict | None = None,
    client_id: str | None = None,
    jwks_uri: str | None = None,
    settings: Settings | None = None,
) -> tuple[str, str | None]:
    """Register a client; returns (client_id, secret shown once or None). A confidential-
    asymmetric client gives its public keys by value (``jwks``) or by JWK Set URL (``jwks_uri``,
    on a host ``settings`` allow)."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}")
    if jwks_uri is not None:
        if kind != "confidential-asymmetric" or jwks:
            raise ValueError("a JWKS URL is for a confidential-asymmetric client without --jwks")
        if settings is None:
            raise ValueError("JWKS URLs are not enabled here")
        problem = jwks_url.url_problem(settings, jwks_uri)
        if problem is not None:
            raise ValueError(problem)
        jwks = {"jwks_uri": jwks_uri}
    elif kind == "confidential-asymmetric":
        if not jwks or not isinstance(jwks.get("keys"), list):
            raise ValueError("a confidential-asymmetric client needs a JWKS with its public keys")
        if "jwks_uri" in jwks:  # that member marks a client registered by URL
            raise ValueError(
                "give a JWKS URL as the JWKS URL (--jwks-url, jwks_uri), not in a JWKS"
            )
        try:
            public = KeySet.import_key_set(jwks)  # type: ignore[arg-type]
        except (JoseError, ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"the JWKS is not usable: {exc}") from exc
        if any(k.is_private for k in public.keys):
            raise ValueError("register public keys only: the JWKS holds a private key")
    uris = redirect_uris or []
    for uri in uris:
        if not uri.startswith(("https://", "http://127.0.0.1", "http://localhost")):
            raise ValueError(f"redirect URI {uri!r} must be https (or http on loopback)")
    if kind != "confidential-asymmetric" and not uris and kind == "public":
        raise ValueError("a public client needs at least one redirect URI")
    if not Scopes.parse(scope).grants and not Scopes.parse(scope).other:
        raise ValueError("the client's scope allows nothing")
    client_id = client_id or secrets.token_urlsafe(16)
    secret = secrets.token_urlsafe(32) if kind == "confidential-symmetric" else None
    store.add_client(
        client_id=client_id,
        name=name,
        kind=kind,
        secret_hash=digest(secret) if secret else None,
        jwks=jwks if kind == "confidential-asymmetric" else None,
        redirect_uris=uris,
        scope=scope,
        created=utcnow(),
    )
    return client_id, secret


def authenticate(
    store: AuthStore,
    token_url: str,
    headers: dict,
    form: dict,
    settings: Settings | None = None,
) -> dict:
    """The client making this token/revocation/introspection request, authenticated
    (``settings``: where a client's registered JWKS URL may be fetched from)."""
    auth = headers.get("authorization", "")
    if auth.lower().startswith("basic "):
        try:
            raw = base64.b64decode(auth[6:].strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError) as exc:
            raise OAuthError("invalid_client", "malformed Basic credentials", 401) from exc
        cid, _, secret = raw.partition(":")
        client = store.client(unquote(cid))
        if (
            client is None
            or client["kind"] != "confidential-symmetric"
            or not secrets.compare_digest(client["secret_hash"] or "", digest(unquote(secret)))
        ):
            raise OAuthError("invalid_client", "client authentication failed", 401)
        return client
    if form.get("client_assertion_type") == ASSERTION_TYPE:
        return _assertion(store, token_url, form.get("client_assertion", ""), settings)
    client = store.client(form.get("client_id", ""))
    if client is None:
        raise OAuthError("invalid_client", "unknown client", 401)
    if client["kind"] != "public":
        raise OAuthError("invalid_client", "this client must authenticate", 401)
    return client


def claimed_id(headers: dict, form: dict) -> str | None:
    """The client id a request *claims* (Basic user, assertion ``iss`` unverified, or
    ``client_id``), for rate limiting before any credential is checked."""
    auth = headers.get("authorization", "")
    if auth.lower().startswith("basic "):
        try:
            raw = base64.b64decode(auth[6:].strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None
        return unquote(raw.partition(":")[0]) or None
    if form.get("client_assertion_type") == ASSERTION_TYPE:
        try:
            claims = orjson.loads(
                extract_compact(
                    form.get("client_assertion", "").encode(), registry=_REGISTRY
                ).payload
            )
        except (JoseError, ValueError):
            return None
        iss = claims.get("iss") if isinstance(claims, dict) else None
        return iss if isinstance(iss, str) else None
    return form.get("client_id") or None


def _assertion(store: AuthStore, token_url: str, assertion: str, settings: Settings | None) -> dict:
    fail = OAuthError("invalid_client", "the client assertion is not valid", 401)
    if not assertion or len(assertion) > 8192:
        raise fail
    try:  # read iss from the unverified token: the client must be known to pick its keys
        obj = extract_compact(assertion.encode(), registry=_REGISTRY)
        header, claims = dict(obj.headers()), orjson.loads(obj.payload)
    except (JoseError, ValueError):
        raise fail from None
    if not isinstance(claims, dict):
        raise fail
    iss, sub = claims.get("iss"), claims.get("sub")
    if not iss or iss != sub:
        raise fail
    client = store.client(str(iss))
    if client is None or client["kind"] != "confidential-asymmetric":
        raise fail
    registered = client["jwks"] or {}
    uri = registered.get("jwks_uri")
    if isinstance(uri, str):
        token = _by_url(assertion, header, uri, settings)
    else:
        token = _verified(assertion, header, registered)
    c = token.claims
    now = time.time()
    aud = c.get("aud")
    auds = aud if isinstance(aud, list) else [aud]
    if token_url not in auds:
        raise OAuthError("invalid_client", "the assertion's aud is not this token endpoint", 401)
    exp = c.get("exp")
    if not isinstance(exp, int | float) or exp < now or exp > now + MAX_ASSERTION_LIFETIME + 30:
        raise OAuthError("invalid_client", "the assertion is expired or lives too long", 401)
    jti = c.get("jti")
    if not isinstance(jti, str) or not jti or len(jti) > 200:
        raise fail
    if not store.claim_jti(client["client_id"], jti, datetime.fromtimestamp(exp, UTC)):
        raise OAuthError("invalid_client", "the assertion's jti was used before", 401)
    return client


def _by_url(assertion: str, header: dict, uri: str, settings: Settings | None) -> jwt.Token:
    """The assertion verified with a key of the set at the client's registered JWKS URL: a
    ``jku`` in the header must be that URL (SMART); an unknown ``kid`` re-fetches the set once
    (the client may have rotated its keys)."""
    if "jku" in header and header["jku"] != uri:
        raise OAuthError(
            "invalid_client", "the assertion's jku is not the client's registered JWKS URL", 401
        )
    if settings is None:
        raise OAuthError("invalid_client", "JWKS URLs are not enabled here", 401)
    kid = header.get("kid")
    try:
        doc = jwks_url.CACHE.get(settings, uri)
        if kid is not None and not any(
            isinstance(k, dict) and k.get("kid") == kid for k in doc["keys"]
        ):
            doc = jwks_url.CACHE.get(settings, uri, refresh=True)
    except jwks_url.JwksFetchError as exc:
        raise OAuthError(
            "invalid_client", f"the client's registered key set is not available: {exc}", 401
        ) from exc
    return _verified(assertion, header, doc)


# RFC 7515 section 4: a header parameter the recipient does not know is ignored, unless the
# header lists it in ``crit``. joserfc's default registry refuses unknown names, so assertions
# are read with a registry that does not (``strict_check_header=False``); ``crit`` is checked
# here: Hearth implements no JWS extension, so any ``crit`` is refused (section 4.1.11).
_REGISTRY = JWSRegistry(algorithms=ASSERTION_ALGS, strict_check_header=False)
_REGISTRY.max_header_length = 4096  # joserfc's 512 is too small for a header with x5c or jwk
_KTY = {"RS384": "RSA", "ES384": "EC"}


def _verified(assertion: str, header: dict, jwks: dict) -> jwt.Token:
    """The assertion verified with a key of the client's *registered* JWKS (SMART Backend
    Services): picked by ``kid`` when the header names one (else each key of the algorithm's
    type is tried). ``jku``, ``x5u``, ``jwk`` and ``x5c`` never choose a key: nothing is fetched
    from a URL the assertion names, and a key it carries is not trusted."""
    alg = header.get("alg")
    if alg not in ASSERTION_ALGS:
        raise OAuthError("invalid_client", "the assertion must be signed RS384 or ES384", 401)
    if "crit" in header:
        raise OAuthError(
            "invalid_client",
            "the assertion's header lists critical extensions (crit) Hearth does not "
            f"understand: {header['crit']!r}",
            401,
        )
    kid = header.get("kid")
    try:
        keys = KeySet.import_key_set(jwks).keys  # type: ignore[arg-type]
    except (JoseError, ValueError, KeyError, TypeError):
        keys = []
    candidates = [
        k
        for k in keys
        if k.key_type == _KTY[alg]
        and (kid is None or k.kid == kid)
        and k.get("alg") in (None, alg)
        and k.get("use") in (None, "sig")
    ]
    if not candidates:
        raise OAuthError(
            "invalid_client",
            f"no key of the client's registered JWKS matches the assertion (kid {kid!r}, {alg})",
            401,
        )
    for key in candidates:
        try:
            return jwt.decode(assertion, key, algorithms=[alg], registry=_REGISTRY)
        except (JoseError, ValueError):
            continue
    raise OAuthError("invalid_client", "the assertion signature does not verify", 401)
