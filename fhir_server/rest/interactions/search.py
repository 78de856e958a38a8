"""search — FHIR R4 http.html#search and search.html: ``GET [base]/[type]?params``,
``POST [base]/[type]/_search`` (form-encoded parameters), system search ``GET [base]?_type=``,
and compartment search ``GET [base]/Patient/[id]/[type]?params``.

The criteria are compiled to SQL in ``resources.search``; sort, paging, includes and the
searchset Bundle are built in ``resources.search.engine``.
"""

from __future__ import annotations

from fhir_server.auth.enforce import search_security
from fhir_server.rest.context import Context, FhirRequest, Reply
from fhir_server.rest.interactions import audit_event
from resources.errors import NotFound
from resources.search.compartments import compartment_types
from resources.search.engine import SearchRequest, run_search
from resources.storage.repository import Unit
from resources.validation import is_resource_type


def search_bundle(
    ctx: Context,
    unit: Unit,
    res_type: str | None,
    query: list[tuple[str, str]],
    *,
    strict: bool = False,
    path: str | None = None,
    compartment: tuple[str, str] | None = None,
    raw: bool = False,
) -> dict:
    """Run one search inside ``unit`` (also used for GET entries of batches/transactions).
    ``raw``: the Bundle may carry stored resources as ``orjson.Fragment``s (their JSON text,
    not decoded), for a reply that is only dumped by orjson."""
    audit_event.require_admin(ctx, res_type)
    req = SearchRequest(
        res_type=res_type,
        query=query,
        default_count=ctx.settings.default_page_size,
        max_count=ctx.settings.max_page_size,
        strict=strict,
        compartment=compartment,
        path=path if path is not None else (res_type or ""),
        slow_ms=ctx.settings.slow_query_ms,
        security=search_security(ctx.access, res_type),
        raw=raw,
    )
    return run_search(unit, req, base=ctx.base)


def _run(ctx: Context, req: FhirRequest, res_type: str | None, **kw) -> Reply:  # type: ignore[no-untyped-def]
    strict = req.prefer.get("handling") == "strict"
    query = list(req.query)
    # The reply is only dumped (fhir_response): stored resources go out as the database holds
    # them, except under _pretty, whose indentation orjson applies to decoded JSON only.
    raw = not any(k == "_pretty" and v.lower() == "true" for k, v in query)
    bundle = ctx.repo.read(
        lambda u: search_bundle(
            ctx, u, res_type, query, strict=strict, path=req.path, raw=raw, **kw
        )
    )
    return Reply(200, bundle)


def search(ctx: Context, req: FhirRequest) -> Reply:
    return _run(ctx, req, req.res_type)


def search_post(ctx: Context, req: FhirRequest) -> Reply:
    """``POST [type]/_search``: parameters in the form body and/or the URL."""
    form = req.body if isinstance(req.body, list) else []
    merged = FhirRequest(**{**req.__dict__, "query": [*req.query, *form], "path": req.res_type})
    return _run(ctx, merged, req.res_type)


def system_search(ctx: Context, req: FhirRequest) -> Reply:
    """``GET [base]?_type=A,B&...``: search across types (common parameters only)."""
    return _run(ctx, req, None)


def compartment_search(ctx: Context, req: FhirRequest) -> Reply:
    """``GET [base]/Patient/[id]/[type]``: the type's members of that patient's compartment."""
    comp_type, comp_id, target = req.path.split("/")[:3]
    if comp_type not in compartment_types():
        raise NotFound(f"{comp_type} compartments are not supported (only Patient and Encounter)")
    if not is_resource_type(target):
        raise NotFound(f"{target!r} is not a FHIR R4 resource type")
    return _run(ctx, req, target, compartment=(comp_type, comp_id))
