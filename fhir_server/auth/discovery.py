"""SMART discovery: ``/.well-known/smart-configuration`` (also under the FHIR base) and the
JWKS of Hearth's signing key."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from fhir_server.auth import clients
from fhir_server.auth.web import auth_service

router = APIRouter(include_in_schema=False)


# -- discovery ---------------------------------------------------------------------------------
@router.get("/fhir/.well-known/smart-configuration")
@router.get("/.well-known/smart-configuration")
async def smart_configuration(request: Request) -> JSONResponse:
    s = auth_service(request).settings
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
    return JSONResponse(auth_service(request).key.jwks())
