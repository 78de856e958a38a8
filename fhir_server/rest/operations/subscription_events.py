"""$events — replay a Subscription's stored events by number (Subscriptions R5 Backport IG for R4,
OperationDefinition-backport-subscription-events).

``GET [base]/Subscription/[id]/$events?eventsSinceNumber=N&eventsUntilNumber=M&content=C``
returns a ``history`` Bundle like a notification (``type`` ``query-event``): the SubscriptionStatus
with one ``notification-event`` per event from N to M (both inclusive; at most 100), then, with
``content=full-resource`` (the default), each event's resource as written. A receiver that missed
events (it de-duplicates on the event number) fetches them here.

The caller needs read access to the Subscription; each resource is read through the caller's own
access (a patient-context token gets only its compartment's; others are left out, as is their
event), never the subscription owner's.
"""

from __future__ import annotations

from fhir_server.rest.context import Context, FhirRequest, Reply
from fhir_server.rest.operations.spec import Operation, Permission
from fhir_server.runtime.subscriptions import notification
from resources.errors import Gone, Invalid, NotFound
from resources.storage.repository import Unit
from resources.subscriptions import delivery

MAX_EVENTS = 100


def run(ctx: Context, req: FhirRequest) -> Reply:
    _, sub_id = req.instance()
    ctx.repo.read(lambda u: u.read("Subscription", sub_id))  # 404 unless the caller may read it
    reg = delivery.registration(ctx.repo, sub_id)
    if reg is None:
        raise NotFound(f"Subscription/{sub_id} has no registration (it was refused or deleted)")
    since = req.params.integer("eventsSinceNumber", minimum=1) or 1
    until = req.params.integer("eventsUntilNumber", minimum=1)
    content = req.params.text("content") or "full-resource"
    if content not in ("empty", "id-only", "full-resource"):
        raise Invalid(
            f"content {content!r} is not one of empty, id-only, full-resource",
            expression=["content"],
        )
    if until is not None and until < since:
        raise Invalid("eventsUntilNumber is below eventsSinceNumber", expression=["content"])
    events = delivery.events_since(ctx.repo, sub_id, since - 1, MAX_EVENTS, until)

    def visible(u: Unit) -> list[delivery.Event]:
        access = ctx.access
        shown = []
        for event in events:
            if access is not None and access.mode(event.res_type, "r") is None:
                continue
            try:
                u.vread(event.res_type, event.res_id, str(event.version))
            except (NotFound, Gone):
                continue
            shown.append(event)
        return shown

    shown = ctx.repo.read(visible)
    bundle = notification(ctx.base, reg, "query-event", None, reg.status)
    status = bundle["entry"][0]["resource"]
    entries = []
    for event in shown:
        status["parameter"].append(_event_parameter(ctx.base, event, content))
        if content == "full-resource" and event.content is not None:
            entries.append(
                {
                    "fullUrl": f"{ctx.base}/{event.res_type}/{event.res_id}",
                    "resource": event.content,
                    "request": {"method": "PUT", "url": f"{event.res_type}/{event.res_id}"},
                    "response": {"status": "200"},
                }
            )
    bundle["entry"] += entries
    return Reply(200, bundle)


def _event_parameter(base: str, event: delivery.Event, content: str) -> dict:
    from fhir_server.runtime.subscriptions import event_parameter

    part = event_parameter(base, event)
    if content == "empty":
        part["part"] = [p for p in part["part"] if p["name"] != "focus"]
    return part


OPERATION = Operation(
    name="events",
    definition="http://hl7.org/fhir/uv/subscriptions-backport/OperationDefinition/backport-subscription-events",
    levels=frozenset({"instance"}),
    types=frozenset({"Subscription"}),
    handler=run,
    methods=frozenset({"GET"}),
    permission=Permission.on_type("r"),
)
