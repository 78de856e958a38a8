"""The admin API: client registration (administrators) and EHR launch contexts
(practitioners and system clients)."""

from __future__ import annotations

import secrets
from datetime import timedelta

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from fhir_server.auth import clients
from fhir_server.auth.authorize import patient_exists
from fhir_server.auth.tokens import bearer_access
from fhir_server.auth.web import NO_STORE, auth_service
from fhir_server.rest.context import Access
from resources.errors import Forbidden
from resources.storage.store import utcnow

router = APIRouter(include_in_schema=False)

LAUNCH_TTL = 300


# -- admin API --------------------------------------------------------------------------------
async def _admin(request: Request) -> Access:
    svc = auth_service(request)
    access = await run_in_threadpool(
        bearer_access, svc.store, svc.settings, request.headers.get("authorization")
    )
    if not access.is_admin:
        raise Forbidden("client registration is for administrators only")
    return access


@router.get("/auth/clients")
async def list_clients(request: Request) -> JSONResponse:
    await _admin(request)
    rows = await run_in_threadpool(auth_service(request).store.clients)
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
                auth_service(request).store,
                str(body.get("name", "")),
                str(body.get("kind", "")),
                scope=str(body.get("scope", "")),
                redirect_uris=list(body.get("redirect_uris") or []),
                jwks=body.get("jwks"),
                jwks_uri=str(body["jwks_uri"]) if body.get("jwks_uri") else None,
                settings=auth_service(request).settings,
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
    svc = auth_service(request)
    access = await run_in_threadpool(
        bearer_access, svc.store, svc.settings, request.headers.get("authorization")
    )
    if access.patient is not None or access.role == "patient":
        raise Forbidden("patients cannot create launch contexts")
    try:
        body = await request.json()
    except ValueError:
        body = None
    if not isinstance(body, dict) or not isinstance(body.get("patient"), str):
        return JSONResponse(
            {"error": "invalid_request", "error_description": "patient is required"}, 400
        )
    ctx = request.app.state.context
    if not await run_in_threadpool(patient_exists, ctx, body["patient"]):
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
