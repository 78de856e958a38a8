"""$events — replay a Subscription's stored events by number (Subscriptions R5 Backport IG for R4,
OperationDefinition-backport-subscription-events).

``GET [base]/Subscription/[id]/$events?eventsSinceNumber=N&eventsUntilNumber=M&content=C``
returns a ``history`` Bundle like a notification (``type`` ``query-event``): the SubscriptionStatus
with one ``notification-event`` per event from N to M (both inclusive; at most 100), then, with
``content=full-resource`` (the default), each event's resource as written; with ``id-only`` an
entry per event with its ``fullUrl`` and no resource. A receiver that missed events (it
de-duplicates on the event number) fetches them here. Without ``eventsSinceNumber`` it starts at
the oldest event kept; asked for an event the retention pruning deleted, it answers 410 (issue
``deleted``).

The caller needs read access to the Subscription; each resource is read through the caller's own
access, never the subscription owner's: a patient-context token gets only its compartment's
(others are left out, as is their event); a type the caller may search but not read (SMART ``s``
without ``r``) comes id-only; a type it may do neither with is left out.
"""

from __future__ import annotations

from fhir_server.auth.enforce import needs_compartment
from fhir_server.rest.context import Access, Context, FhirRequest, Reply
from fhir_server.rest.operations.spec import Operation, Permission
from fhir_server.runtime.subscriptions import id_only_entry, notification
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
    asked = req.params.integer("eventsSinceNumber", minimum=1)
    pruned = delivery.pruned_through(ctx.repo, sub_id)
    since = asked if asked is not None else pruned + 1
    until = req.params.integer("eventsUntilNumber", minimum=1)
    content = req.params.text("content") or "full-resource"
    if content not in ("empty", "id-only", "full-resource"):
        raise Invalid(
            f"content {content!r} is not one of empty, id-only, full-resource",
            expression=["content"],
        )
    if until is not None and until < since:
        raise Invalid(
            "eventsUntilNumber is below eventsSinceNumber", expression=["eventsUntilNumber"]
        )
    events = delivery.events_since(ctx.repo, sub_id, since - 1, MAX_EVENTS, until)
    # read after the events: pruning only moves forward, so a number above it was still there
    pruned = delivery.pruned_through(ctx.repo, sub_id)
    if asked is not None and asked <= pruned:
        raise delivery.pruned_error(sub_id, asked, pruned)
    access = ctx.access

    def visible(u: Unit) -> list[delivery.Event]:
        shown = []
        for event in events:
            if access is not None and not may_know(access, event.res_type):
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
        if content == "empty":
            continue
        full = content == "full-resource" and (access is None or may_read(access, event.res_type))
        if full and event.content is not None:
            entries.append(
                {
                    "fullUrl": f"{ctx.base}/{event.res_type}/{event.res_id}",
                    "resource": event.content,
                    "request": {"method": "PUT", "url": f"{event.res_type}/{event.res_id}"},
                    "response": {"status": "200"},
                }
            )
        else:
            entries.append(id_only_entry(ctx.base, event))
    bundle["entry"] += entries
    return Reply(200, bundle)


def may_know(access: Access, res_type: str) -> bool:
    """Whether ``access`` may learn that a resource of ``res_type`` changed: SMART ``s``
    (search: which resources exist) or ``r``."""
    return access.mode(res_type, "r") is not None or access.mode(res_type, "s") is not None


def may_read(access: Access, res_type: str) -> bool:
    """Whether ``access`` may have the content of an event's resource that its read guard let
    through (``u.vread``): SMART ``r`` on the type, reaching as far as the guard checked -- a
    read grant limited to the patient's compartment counts only when the guard checked that
    compartment (``needs_compartment``); otherwise the event stays id-only."""
    mode = access.mode(res_type, "r")
    return mode == "all" or (mode == "patient" and needs_compartment(access, res_type))


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
