"""batch / transaction — FHIR R4 http.html#transaction: ``POST [base]`` with a Bundle.

The processing (ordering, id assignment, reference rewriting, atomicity) lives in
``resources.storage.transaction``; this module hands it the request and the HTTP status table.
"""

from __future__ import annotations

from fhir_server.rest.context import Context, FhirRequest, Reply
from fhir_server.rest.errors import status_of
from fhir_server.rest.interactions.search import search_bundle
from resources.errors import Invalid
from resources.storage import transaction as tx


def transaction(ctx: Context, req: FhirRequest) -> Reply:
    if not isinstance(req.body, dict):
        raise Invalid("POST [base] needs a batch or transaction Bundle")
    bundle = tx.process(
        ctx.repo,
        req.bundle if req.bundle is not None else req.body,  # parsed once, by gate.run
        base=ctx.base,
        search=lambda unit, res_type, query, base: search_bundle(ctx, unit, res_type, query),
        status_of=status_of,
        return_pref=req.prefer.get("return", "representation"),
    )
    return Reply(200, bundle)
