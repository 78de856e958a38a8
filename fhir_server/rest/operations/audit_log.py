"""$audit-log — read Hearth's tamper-evident audit log (administrators only).

``GET [base]/$audit-log?after=SEQ&_count=N`` returns a Bundle (``collection``) of the AuditEvents
recorded after sequence number ``after``, in chain order, with a ``next`` link to the following
page. The log lives in its own append-only, hash-chained table (docs/security.md), not among the
FHIR resources, so it is read here rather than by ``AuditEvent`` search. Reading it is audited
like every other request.
"""

from __future__ import annotations

from fhir_server.rest.context import Context, FhirRequest, Reply
from fhir_server.rest.operations.spec import ADMIN, Operation
from resources import audit
from resources.storage.store import instant

MAX_PAGE = 1000


def run(ctx: Context, req: FhirRequest) -> Reply:
    after = req.params.integer("after") or 0
    count = min(req.params.integer("_count") or 100, MAX_PAGE)
    rows = audit.page(ctx.repo.engine, after=after, limit=count)
    base = f"{ctx.base}/$audit-log"
    links = [{"relation": "self", "url": f"{base}?after={after}&_count={count}"}]
    if len(rows) == count:
        links.append({"relation": "next", "url": f"{base}?after={rows[-1][0]}&_count={count}"})
    entries = [
        {
            "fullUrl": f"{base}?after={seq - 1}&_count=1",
            "resource": {**event, "id": f"audit-{seq}"},
        }
        for seq, _recorded, event in rows
    ]
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "timestamp": instant(rows[-1][1]) if rows else None,
        "link": links,
        "entry": entries,
    }
    return Reply(200, {k: v for k, v in bundle.items() if v not in (None, [])})


OPERATION = Operation(
    name="audit-log",
    definition="http://hearth.local/fhir/OperationDefinition/audit-log",
    levels=frozenset({"system"}),
    handler=run,
    methods=frozenset({"GET"}),
    permission=ADMIN,
)
