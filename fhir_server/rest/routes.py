"""The one generic FHIR router: every resource type goes through the same handlers.

Each route parses the HTTP request into a ``FhirRequest`` (reading the body within the size
limit), runs the interaction in the thread pool, and renders its ``Reply``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.convertors import Convertor, register_url_convertor

from fhir_server.auth import gate
from fhir_server.rest.context import Context, FhirRequest, Reply
from fhir_server.rest.http import (
    binary_content,
    fhir_response,
    negotiate,
    prefer,
    query_pairs,
    read_body,
    read_form,
)
from fhir_server.rest.interactions import (
    capabilities,
    create,
    delete,
    history,
    patch,
    read,
    search,
    transaction,
    update,
    vread,
)
from fhir_server.rest.operations.parameters import Parameters
from fhir_server.rest.operations.registry import operations
from resources.errors import Invalid, MethodNotAllowed, NotFound
from resources.storage.store import ID_RE
from resources.validation import is_resource_type

Interaction = Callable[[Context, FhirRequest], Reply]


class OperationConvertor(Convertor):
    regex = r"\$[A-Za-z][A-Za-z0-9\-]*"

    def convert(self, value: str) -> str:
        return value[1:]

    def to_string(self, value: str) -> str:
        return f"${value}"


register_url_convertor("op", OperationConvertor())

router = APIRouter()


def _ctx(request: Request) -> Context:
    return request.app.state.context


async def _handle(
    request: Request,
    fn: Interaction,
    interaction: str,
    *,
    res_type: str | None = None,
    res_id: str | None = None,
    vid: str | None = None,
    body: bool = False,
    patch_body: bool = False,
    form_body: bool = False,
    optional_body: bool = False,
):  # type: ignore[no-untyped-def]
    ctx = _ctx(request)
    negotiate(request)
    auth = request.app.state.auth
    ip = request.client.host if request.client else None
    has_body = body or patch_body or form_body
    access = gate.LATER
    if has_body:  # the token is checked before the body is read
        access = await run_in_threadpool(
            gate.authenticate, ctx, auth, interaction, request.headers.get("authorization"), ip
        )
    if res_type is not None and not is_resource_type(res_type):
        raise NotFound(f"{res_type!r} is not a FHIR R4 resource type")
    if res_id is not None and not ID_RE.match(res_id):
        raise NotFound(f"{res_id!r} is not a valid FHIR id")
    parsed = None
    if body or patch_body:
        parsed = await read_body(
            request, ctx.settings.max_body_bytes, patch=patch_body, optional=optional_body
        )
    elif form_body:
        parsed = await read_form(request, ctx.settings.max_body_bytes)
    path = request.url.path.removeprefix("/fhir").lstrip("/")
    try:
        query = query_pairs(request)
    except Invalid as exc:  # answered after the token is checked, and audited like any 400
        query, fn = [], _refuse(exc)
    req = FhirRequest(
        method=request.method,
        path=path,
        query=query,
        headers={k.lower(): v for k, v in request.headers.items()},
        prefer=prefer(request),
        body=parsed,
        res_type=res_type,
        res_id=res_id,
        vid=vid,
    )
    reply = await run_in_threadpool(gate.run, ctx, auth, access, interaction, req, fn, ip)
    if res_type == "Binary" and interaction in ("read", "vread") and reply.status == 200:
        raw = binary_content(request, reply.body)
        if raw is not None:
            raw.headers.update({k: v for k, v in reply.headers.items() if k in KEPT_ON_RAW})
            return raw
    return fhir_response(request, reply.body, status=reply.status, headers=reply.headers)


KEPT_ON_RAW = ("ETag", "Last-Modified")


def _refuse(exc: Invalid) -> Interaction:
    def refuse(ctx: Context, req: FhirRequest) -> Reply:
        raise exc

    return refuse


def _operation(name: str, level: str, res_type: str | None) -> Interaction:
    """The interaction of an operation call, from its declaration (operations/spec.py): 404 for
    an operation, level or type not declared; once the caller is authorized, 405 with ``Allow``
    for a method not declared (FHIR R4 operations.html: GET only for operations that do not
    affect state), then its inputs are read once into ``req.params`` and its handler runs."""
    op = operations().get(name)
    if (
        op is None
        or level not in op.levels
        or (res_type is not None and op.types is not None and res_type not in op.types)
    ):
        where = f"{res_type} " if res_type else ""
        raise NotFound(f"operation ${name} is not supported at {where}{level} level")

    def call(ctx: Context, req: FhirRequest) -> Reply:
        handler = op.handler_for(req.method)
        if handler is None:
            why = " (it changes state)" if op.affects_state and req.method == "GET" else ""
            raise MethodNotAllowed(
                f"${op.name} does not take {req.method}{why}: use {' or '.join(op.allow)}",
                allow=op.allow,
            )
        params = Parameters.read(op.name, req.query, req.body, bare_resource=op.bare_resource)
        return handler(ctx, replace(req, params=params))

    return call


def _op_body(request: Request) -> bool:
    return request.method == "POST"


@router.get("/metadata")
async def metadata(request: Request):  # type: ignore[no-untyped-def]
    return await _handle(request, capabilities.capabilities, "capabilities")


@router.post("")
@router.post("/")
async def system_bundle(request: Request):  # type: ignore[no-untyped-def]
    return await _handle(request, transaction.transaction, "transaction", body=True)


@router.get("")
@router.get("/")
async def system_search(request: Request):  # type: ignore[no-untyped-def]
    return await _handle(request, search.system_search, "search-system")


@router.get("/_history")
async def system_history(request: Request):  # type: ignore[no-untyped-def]
    return await _handle(request, history.history, "history-system")


@router.api_route("/{op:op}", methods=["GET", "POST"])
async def system_operation(request: Request, op: str):  # type: ignore[no-untyped-def]
    return await _handle(
        request,
        _operation(op, "system", None),
        "operation",
        body=_op_body(request),
        optional_body=True,
    )


@router.get("/{res_type}")
async def type_search(request: Request, res_type: str):  # type: ignore[no-untyped-def]
    return await _handle(request, search.search, "search-type", res_type=res_type)


@router.post("/{res_type}/_search")
async def type_search_post(request: Request, res_type: str):  # type: ignore[no-untyped-def]
    return await _handle(
        request, search.search_post, "search-type", res_type=res_type, form_body=True
    )


@router.post("/{res_type}")
async def type_create(request: Request, res_type: str):  # type: ignore[no-untyped-def]
    return await _handle(request, create.create, "create", res_type=res_type, body=True)


@router.put("/{res_type}")
async def type_conditional_update(request: Request, res_type: str):  # type: ignore[no-untyped-def]
    return await _handle(
        request, update.conditional_update, "conditional-update", res_type=res_type, body=True
    )


@router.delete("/{res_type}")
async def type_conditional_delete(request: Request, res_type: str):  # type: ignore[no-untyped-def]
    return await _handle(
        request, delete.conditional_delete, "conditional-delete", res_type=res_type
    )


@router.get("/{res_type}/_history")
async def type_history(request: Request, res_type: str):  # type: ignore[no-untyped-def]
    return await _handle(request, history.history, "history-type", res_type=res_type)


@router.api_route("/{res_type}/{op:op}", methods=["GET", "POST"])
async def type_operation(request: Request, res_type: str, op: str):  # type: ignore[no-untyped-def]
    if not is_resource_type(res_type):
        raise NotFound(f"{res_type!r} is not a FHIR R4 resource type")
    fn = _operation(op, "type", res_type)
    return await _handle(
        request, fn, "operation", res_type=res_type, body=_op_body(request), optional_body=True
    )


@router.get("/{res_type}/{res_id}")
async def instance_read(request: Request, res_type: str, res_id: str):  # type: ignore[no-untyped-def]
    return await _handle(request, read.read, "read", res_type=res_type, res_id=res_id)


@router.put("/{res_type}/{res_id}")
async def instance_update(request: Request, res_type: str, res_id: str):  # type: ignore[no-untyped-def]
    return await _handle(
        request, update.update, "update", res_type=res_type, res_id=res_id, body=True
    )


@router.patch("/{res_type}/{res_id}")
async def instance_patch(request: Request, res_type: str, res_id: str):  # type: ignore[no-untyped-def]
    return await _handle(
        request, patch.patch, "patch", res_type=res_type, res_id=res_id, patch_body=True
    )


@router.delete("/{res_type}/{res_id}")
async def instance_delete(request: Request, res_type: str, res_id: str):  # type: ignore[no-untyped-def]
    return await _handle(request, delete.delete, "delete", res_type=res_type, res_id=res_id)


@router.post("/{res_type}/{res_id}")
async def instance_post(request: Request, res_type: str, res_id: str):  # type: ignore[no-untyped-def]
    raise MethodNotAllowed(
        f"POST is not allowed on {res_type}/{res_id}: use PUT to update, POST [type] to create"
    )


@router.api_route("/{res_type}/{res_id}/{op:op}", methods=["GET", "POST"])
async def instance_operation(request: Request, res_type: str, res_id: str, op: str):  # type: ignore[no-untyped-def]
    if not is_resource_type(res_type):
        raise NotFound(f"{res_type!r} is not a FHIR R4 resource type")
    fn = _operation(op, "instance", res_type)
    return await _handle(
        request,
        fn,
        "operation",
        res_type=res_type,
        res_id=res_id,
        body=_op_body(request),
        optional_body=True,
    )


@router.get("/{res_type}/{res_id}/_history")
async def instance_history(request: Request, res_type: str, res_id: str):  # type: ignore[no-untyped-def]
    return await _handle(
        request, history.history, "history-instance", res_type=res_type, res_id=res_id
    )


@router.get("/{res_type}/{res_id}/{target}")
async def compartment_search(request: Request, res_type: str, res_id: str, target: str):  # type: ignore[no-untyped-def]
    return await _handle(
        request, search.compartment_search, "search-compartment", res_type=res_type, res_id=res_id
    )


@router.get("/{res_type}/{res_id}/_history/{vid}")
async def instance_vread(request: Request, res_type: str, res_id: str, vid: str):  # type: ignore[no-untyped-def]
    return await _handle(request, vread.vread, "vread", res_type=res_type, res_id=res_id, vid=vid)
