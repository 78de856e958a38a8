"""$watch — ``POST [base]/Subscription/$watch``: follow searches live over the websocket, for a
browser app (docs/subscriptions.md "Live views").

Inputs: ``criteria`` (1 to 5 strings, each an R4 search ``Type?params`` the caller may run).
For each, the caller's live Subscription (websocket channel, owned by the caller's security
filter, so it hears only what the caller may read) is reused or created
(``resources/subscriptions/live.py``: shared by criteria + owner filter, ``end`` an hour ahead,
expired ones deleted). The answer is the Backport IG's ``$get-ws-binding-token`` output:
``token`` (bind it with ``bind-with-token <token>`` on ``websocket-url`` within two minutes),
``expiration``, ``subscription`` (the ids, in the order of the criteria) and ``websocket-url``.

A patient may call it (``patient/Task.rs`` is enough for ``Task?…``): writing Subscription
resources is not needed, since the server writes them with the caller's own filter.
"""

from __future__ import annotations

import threading
import time

from fhir_server.auth import tokens
from fhir_server.auth.enforce import require, search_security
from fhir_server.rest.context import Context, FhirRequest, Reply
from fhir_server.rest.operations.spec import Operation, Permission
from resources.errors import Forbidden
from resources.storage.store import utcnow
from resources.subscriptions import live
from resources.subscriptions.outbox import parse_subscription

SWEEP_EVERY = 60.0  # seconds between sweeps of expired live Subscriptions, per process
_swept = [0.0]
_sweep_lock = threading.Lock()


def websocket_url(ctx: Context) -> str:
    base = ctx.settings.base_url
    return ("wss://" + base[8:] if base.startswith("https://") else "ws://" + base[7:]) + (
        "/websocket"
    )


def binding_reply(ctx: Context, req: FhirRequest, sub_ids: list[str]) -> Reply:
    """The $get-ws-binding-token answer for ``sub_ids`` (Backport IG output parameters)."""
    store = ctx.services["auth"].store
    token, expires = tokens.binding_token(
        store, ctx.settings, req.headers.get("authorization"), sub_ids
    )
    params = [
        {"name": "token", "valueString": token},
        {"name": "expiration", "valueDateTime": expires.isoformat(timespec="seconds")},
        *({"name": "subscription", "valueString": s} for s in sub_ids),
        {"name": "websocket-url", "valueUrl": websocket_url(ctx)},
    ]
    return Reply(200, {"resourceType": "Parameters", "parameter": params})


def _sweep(ctx: Context) -> None:
    now = time.monotonic()
    with _sweep_lock:
        if now - _swept[0] < SWEEP_EVERY:
            return
        _swept[0] = now
    live.sweep(ctx.services.get("repo", ctx.repo), utcnow())


def run(ctx: Context, req: FhirRequest) -> Reply:
    access = ctx.access
    if access is None or not req.headers.get("authorization"):
        raise Forbidden("$watch needs an access token")
    criteria = req.params.texts("criteria")
    for text in criteria:
        reg = parse_subscription({"criteria": text, "channel": {"type": "websocket"}})
        require(access, reg.res_type, "s")  # 403 unless the caller may run this search
    _sweep(ctx)
    own = ctx.repo.guarded(None, ctx.repo.on_commit, search_security(access, None))
    sub_ids = live.watch(own, criteria, utcnow())
    return binding_reply(ctx, req, sub_ids)


OPERATION = Operation(
    name="watch",
    definition="http://hearth.local/fhir/OperationDefinition/Subscription-watch",
    levels=frozenset({"type"}),
    types=frozenset({"Subscription"}),
    handler=run,
    methods=frozenset({"POST"}),
    affects_state=True,
    permission=Permission(
        self_checked=True, reason="search permission on each criteria's type (run above)"
    ),
)
