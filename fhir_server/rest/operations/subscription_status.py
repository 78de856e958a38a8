"""$status — a Subscription's status (Subscriptions R5 Backport IG for R4,
OperationDefinition-backport-subscription-status).

``GET [base]/Subscription/[id]/$status`` returns a ``searchset`` Bundle with one R4
SubscriptionStatus (a ``Parameters`` with the Backport profile): the subscription, its topic, its
status, ``type`` ``query-status``, ``events-since-subscription-start`` (the newest event number)
and, while it fails, ``error``. The caller needs read access to the Subscription (a row it may not
see is 404, like a read).
"""

from __future__ import annotations

from fhir_server.rest.context import Context, FhirRequest, Reply
from fhir_server.rest.operations.spec import Operation, Permission
from fhir_server.runtime.subscriptions import status_parameters
from resources.errors import NotFound
from resources.subscriptions import delivery


def run(ctx: Context, req: FhirRequest) -> Reply:
    _, sub_id = req.instance()
    stored = ctx.repo.read(lambda u: u.read("Subscription", sub_id))
    reg = delivery.registration(ctx.repo, sub_id)
    if reg is None:
        raise NotFound(f"Subscription/{sub_id} has no registration (it was refused or deleted)")
    status = status_parameters(ctx.base, reg, "query-status", None, reg.status)
    error = (stored.content or {}).get("error")
    if error:
        status["parameter"].append({"name": "error", "valueCodeableConcept": {"text": error}})
    bundle = {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": 1,
        "entry": [
            {
                "fullUrl": f"{ctx.base}/Subscription/{sub_id}/$status",
                "resource": status,
                "search": {"mode": "match"},
            }
        ],
    }
    return Reply(200, bundle)


OPERATION = Operation(
    name="status",
    definition="http://hl7.org/fhir/uv/subscriptions-backport/OperationDefinition/backport-subscription-status",
    levels=frozenset({"instance"}),
    types=frozenset({"Subscription"}),
    handler=run,
    permission=Permission.on_type("r"),
)
