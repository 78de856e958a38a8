"""The R4 websocket channel (subscription.html#channels): a client opens ``/websocket`` with its
access token (``Authorization: Bearer``), sends ``bind <subscription id>`` and gets
``bound <id>``; from then on every event of that Subscription committed after the bind arrives
as ``ping <id>`` (the client then reads what changed, with its own access). Several
subscriptions may be bound on one connection.

A bind needs read access to the Subscription (the same guard as a read: a row the token may not
see answers ``error <id> not found``) and a Subscription whose channel is ``websocket``. Events
are the outbox rows the write path recorded (``resources/subscriptions/outbox.py``), read every
``HEARTH_SUBSCRIPTION_POLL_SECONDS``, so any API process serves any subscription.
"""

from __future__ import annotations

import asyncio
import logging

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from starlette.concurrency import run_in_threadpool

from fhir_server.auth import enforce
from fhir_server.auth.tokens import bearer_access
from fhir_server.rest.context import Access, Context, FhirRequest
from resources.errors import FhirError
from resources.subscriptions import delivery

log = logging.getLogger(__name__)
router = APIRouter()


def _bind(ctx: Context, access: Access, sub_id: str) -> int | None:
    """The newest event number of ``sub_id`` when ``access`` may bind to it, else None."""
    req = FhirRequest(
        method="GET", path=f"Subscription/{sub_id}", res_type="Subscription", res_id=sub_id
    )
    try:
        guarded = enforce.authorize(ctx, access, "read", req)  # the checks of a read
        guarded.repo.read(lambda u: u.read("Subscription", sub_id))
    except FhirError:
        return None
    reg = delivery.registration(ctx.repo, sub_id)
    if reg is None or reg.channel != "websocket":
        return None
    return reg.last_seq


@router.websocket("/websocket")
async def websocket(ws: WebSocket) -> None:
    ctx: Context = ws.app.state.context
    auth = ws.app.state.auth
    try:
        access = await run_in_threadpool(
            bearer_access, auth.store, ctx.settings, ws.headers.get("authorization")
        )
    except FhirError as exc:
        await ws.close(code=1008, reason=exc.diagnostics[:120])
        return
    await ws.accept()
    bound: dict[str, int] = {}  # subscription id -> the newest event number sent
    poll = ctx.settings.subscription_poll_seconds

    async def commands() -> None:
        while True:
            text = (await ws.receive_text()).strip()
            verb, _, arg = text.partition(" ")
            sub_id = arg.strip()
            if verb != "bind" or not sub_id:
                await ws.send_text(f"error {text[:80]} unknown command (bind <id>)")
                continue
            start = await run_in_threadpool(_bind, ctx, access, sub_id)
            if start is None:
                await ws.send_text(f"error {sub_id} not found")
                continue
            bound[sub_id] = start
            await ws.send_text(f"bound {sub_id}")

    async def pings() -> None:
        while True:
            await asyncio.sleep(poll)
            for sub_id, sent in list(bound.items()):
                events = await run_in_threadpool(delivery.events_since, ctx.repo, sub_id, sent, 100)
                for event in events:
                    await ws.send_text(f"ping {sub_id}")
                    bound[sub_id] = event.seq

    tasks = [asyncio.create_task(commands()), asyncio.create_task(pings())]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for task in done:
            failure = task.exception()
            if failure is not None and not isinstance(failure, WebSocketDisconnect):
                log.warning("websocket closed: %s", type(failure).__name__)
    finally:
        for task in tasks:
            task.cancel()
