"""The gate every FHIR request passes: the bearer token becomes an ``Access`` (401 when missing
or bad), the interaction is authorized (403), the interaction runs with the request's guarded
Context, and the outcome is audited — writes inside their own transaction, everything else
right after."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from urllib.parse import urlencode

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from fhir_server.auth import enforce
from fhir_server.auth.audit_events import rest_event
from fhir_server.auth.service import AuthService
from fhir_server.auth.tokens import bearer_access
from fhir_server.rest.context import Access, Context, FhirRequest, Reply
from resources import audit
from resources.errors import FhirError
from resources.storage.db import unavailable
from resources.storage.repository import Unit
from resources.storage.transaction import parse_bundle

OPEN = frozenset({"capabilities"})


def authenticate(
    ctx: Context, auth: AuthService, interaction: str, authorization: str | None, ip: str | None
) -> Access | None:
    """The caller's Access (None for the open interactions); 401, audited, when the bearer token
    is missing or not valid. Runs before the request body is read."""
    if interaction in OPEN:
        return None
    try:
        return bearer_access(auth.store, ctx.settings, authorization)
    except FhirError as exc:
        audit_refused(ctx, auth, interaction, ip, exc)
        raise


def audit_refused(
    ctx: Context, auth: AuthService, interaction: str, ip: str | None, exc: FhirError
) -> None:
    """The audit record of a request refused for its token (401): no caller is known."""
    auth.audit(
        rest_event(
            base=ctx.base,
            interaction=interaction,
            status=401,
            client_id=None,
            username=None,
            fhir_user=None,
            patient=None,
            ip=ip,
            what=[],
            detail=exc.diagnostics,
        )
    )


def access_event(
    ctx: Context,
    access: Access,
    ip: str | None,
    *,
    interaction: str,
    status: int,
    what: list[str],
    query: str | None = None,
    detail: str | None = None,
) -> dict:
    """The audit event of one interaction by an authenticated caller."""
    return rest_event(
        base=ctx.base,
        interaction=interaction,
        status=status,
        client_id=access.client_id,
        username=access.username,
        fhir_user=access.fhir_user,
        patient=access.patient,
        ip=ip,
        what=what,
        query=query,
        detail=detail,
    )


async def authenticate_operation(request: Request) -> tuple[Access, str | None]:
    """The caller's Access and address for an operation endpoint outside the generic FHIR
    routes (``$hl7v2``, the Bulk Data status and files); 401, audited, without a valid token."""
    ctx, auth = request.app.state.context, request.app.state.auth
    ip = request.client.host if request.client else None
    access = await run_in_threadpool(
        authenticate, ctx, auth, "operation", request.headers.get("authorization"), ip
    )
    assert access is not None
    return access, ip


LATER = object()  # ``run`` checks the token itself (requests without a body: one thread hop)


def run(
    ctx: Context,
    auth: AuthService,
    access: Access | None | object,
    interaction: str,
    req: FhirRequest,
    fn: Callable[[Context, FhirRequest], Reply],
    ip: str | None,
) -> Reply:
    if access is LATER:
        access = authenticate(ctx, auth, interaction, req.headers.get("authorization"), ip)
    if access is None:
        return fn(ctx, req)
    assert isinstance(access, Access)
    audited = False

    def event(status: int, what: list[str], detail: str | None = None) -> dict:
        assert access is not None
        query = urlencode(req.query) if interaction.startswith("search") else None
        if interaction == "operation":  # which operation, with its parameters (e.g. $export)
            query = req.path + (f"?{urlencode(req.query)}" if req.query else "")
        return access_event(
            ctx,
            access,
            ip,
            interaction=interaction,
            status=status,
            what=what,
            query=query,
            detail=detail,
        )

    def on_commit(unit: Unit) -> None:
        nonlocal audited
        if unit.written:
            audit.append(unit.conn, event(200, [s.ref for s in unit.written]))
            audited = True

    target = [f"{req.res_type}/{req.res_id}"] if req.res_type and req.res_id else []
    try:
        if interaction == "transaction" and req.bundle is None:
            # parsed once: the authorization checks these entries, the interaction runs them
            req = replace(req, bundle=parse_bundle(req.body))
        rctx = enforce.authorize(ctx, access, interaction, req, on_commit)
        reply = fn(rctx, req)
    except FhirError as exc:
        from fhir_server.rest.errors import status_of

        auth.audit(event(status_of(exc), target, exc.diagnostics))
        raise
    except Exception as exc:
        if unavailable(exc):
            auth.audit(event(503, target, "database unavailable"))
        else:
            auth.audit(event(500, target, "server fault"))  # outcome 8; details in the log
        raise
    if not audited:
        auth.audit(event(reply.status, target + list(reply.audit_what), reply.audit_detail))
    return reply
