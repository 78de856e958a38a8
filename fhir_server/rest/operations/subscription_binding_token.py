"""$get-ws-binding-token (Subscriptions R5 Backport IG for R4,
OperationDefinition-backport-subscription-get-ws-binding-token): a token a websocket client sends
as ``bind-with-token <token>`` instead of an ``Authorization`` header, which browsers cannot set.

``POST [base]/Subscription/[id]/$get-ws-binding-token``, or ``POST [base]/Subscription/
$get-ws-binding-token`` with one or more ``id`` inputs. Each Subscription must be readable by the
caller (404 otherwise, as a read) and have a websocket channel. Output: ``token``,
``expiration`` (two minutes to bind), ``subscription`` (each id) and ``websocket-url``.
"""

from __future__ import annotations

from collections.abc import Callable

from fhir_server.rest.context import Context, FhirRequest, Reply
from fhir_server.rest.operations.spec import Operation, Permission
from fhir_server.rest.operations.subscription_watch import binding_reply
from resources.errors import Invalid, NotFound
from resources.storage.repository import Unit
from resources.storage.store import Stored
from resources.subscriptions import delivery

MAX_IDS = 20


def _reader(sub_id: str) -> Callable[[Unit], Stored]:
    return lambda u: u.read("Subscription", sub_id)


def run(ctx: Context, req: FhirRequest) -> Reply:
    ids = [req.res_id] if req.res_id else req.params.texts("id")
    if not ids:
        raise Invalid("name the Subscription: Subscription/[id]/$get-ws-binding-token or id")
    if len(ids) > MAX_IDS:
        raise Invalid(f"at most {MAX_IDS} Subscriptions per token", expression=["id"])
    for sub_id in ids:
        ctx.repo.read(_reader(sub_id))  # 404 unless the caller may read it
        reg = delivery.registration(ctx.repo, sub_id)
        if reg is None or reg.channel != "websocket":
            raise NotFound(f"Subscription/{sub_id} has no websocket channel")
    return binding_reply(ctx, req, ids)


OPERATION = Operation(
    name="get-ws-binding-token",
    definition="http://hl7.org/fhir/uv/subscriptions-backport/OperationDefinition/backport-subscription-get-ws-binding-token",
    levels=frozenset({"type", "instance"}),
    types=frozenset({"Subscription"}),
    handler=run,
    methods=frozenset({"POST"}),
    affects_state=True,
    permission=Permission.on_type("r"),
)
