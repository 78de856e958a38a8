"""$resend — push a Subscription's stored events to its endpoint again, from a number on.

``POST [base]/Subscription/[id]/$resend`` with ``eventsSinceNumber`` (a Parameters body or the
query): the worker sends that event and every later one again, in order, as ordinary
``event-notification``s with their original numbers (receivers de-duplicate on the number, so a
receiver that lost events gets them back and one that did not sees repeats it may drop). It is
the push counterpart of ``$events`` (Backport IG), for rest-hook and email Subscriptions; a
websocket client replays with ``$events``. Answers Parameters ``resend-from`` and
``events-since-subscription-start``.

The caller needs update access to ``Subscription`` and read access to this one (404 otherwise,
as a read); what is sent is what the Subscription's owner may read, as for any notification.
"""

from __future__ import annotations

from fhir_server.rest.context import Context, FhirRequest, Reply
from fhir_server.rest.operations.spec import Operation, Permission
from resources.errors import Invalid, NotFound
from resources.subscriptions import delivery


def run(ctx: Context, req: FhirRequest) -> Reply:
    _, sub_id = req.instance()
    ctx.repo.read(lambda u: u.read("Subscription", sub_id))  # 404 unless the caller may read it
    reg = delivery.registration(ctx.repo, sub_id)
    if reg is None:
        raise NotFound(f"Subscription/{sub_id} has no registration (it was refused or deleted)")
    if reg.channel == "websocket":
        raise Invalid(
            "a websocket Subscription has no endpoint to push to: replay with $events",
            expression=["Subscription.channel.type"],
        )
    since = req.params.integer("eventsSinceNumber", minimum=1)
    if since is None:
        raise Invalid("eventsSinceNumber is required", expression=["eventsSinceNumber"])
    last = delivery.resend(ctx.repo, sub_id, since)
    if last is None:
        raise NotFound(f"Subscription/{sub_id} has no registration (it was refused or deleted)")
    if since > last:
        raise Invalid(
            f"eventsSinceNumber {since} is above the newest event number ({last})",
            expression=["eventsSinceNumber"],
        )
    return Reply(
        200,
        {
            "resourceType": "Parameters",
            "parameter": [
                {"name": "resend-from", "valueString": str(since)},
                {"name": "events-since-subscription-start", "valueString": str(last)},
            ],
        },
    )


OPERATION = Operation(
    name="resend",
    definition="http://hearth.local/fhir/OperationDefinition/subscription-resend",
    levels=frozenset({"instance"}),
    types=frozenset({"Subscription"}),
    handler=run,
    methods=frozenset({"POST"}),
    affects_state=True,
    permission=Permission.on_type("u"),
)
