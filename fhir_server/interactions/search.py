"""search — FHIR R4 http.html#search and search.html: ``GET [base]/[type]?params``,
``POST [base]/[type]/_search`` (form-encoded parameters), and system search ``GET [base]?_type=``.

The criteria are compiled to SQL in ``resources.search``; paging and the searchset Bundle are
built in ``resources.searching``.
"""

from __future__ import annotations

from fhir_server.context import Context, FhirRequest, Reply
from resources.errors import NotSupported
from resources.repository import Unit
from resources.searching import SearchRequest, run_search


def search_bundle(
    ctx: Context, unit: Unit, res_type: str, query: list[tuple[str, str]], *, strict: bool = False
) -> dict:
    req = SearchRequest.parse(
        res_type,
        query,
        default_count=ctx.settings.default_page_size,
        max_count=ctx.settings.max_page_size,
        strict=strict,
    )
    return run_search(unit, req, base=ctx.base, path=res_type)


def search(ctx: Context, req: FhirRequest) -> Reply:
    strict = req.prefer.get("handling") == "strict"
    bundle = ctx.repo.read(lambda u: search_bundle(ctx, u, req.res_type, req.query, strict=strict))
    return Reply(200, bundle)


def search_post(ctx: Context, req: FhirRequest) -> Reply:
    """``POST [type]/_search``: parameters in the form body and/or the URL."""
    form = req.body if isinstance(req.body, list) else []
    return search(ctx, FhirRequest(**{**req.__dict__, "query": [*req.query, *form]}))


def system_search(ctx: Context, req: FhirRequest) -> Reply:
    raise NotSupported("system-level search (GET [base]?_type=...) is not supported yet")
