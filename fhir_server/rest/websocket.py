"""The R4 websocket channel (subscription.html#channels): a client opens ``/websocket`` with its
access token (``Authorization: Bearer``), sends ``bind <subscription id>`` and gets
``bound <id>``; from then on every event of that Subscription committed after the bind arrives
as ``ping <id>`` (the client then reads what changed, with its own access). Several
subscriptions may be bound on one connection.

Browsers cannot set ``Authorization`` on a websocket, so a connection without it is accepted too,
and takes only the Backport IG's ``bind-with-token <token>`` (the token from
``$get-ws-binding-token`` or ``$watch``, valid two minutes). Such a binding gets Backport
notification Bundles as JSON text: a ``handshake`` at once, an ``event-notification`` per event
(id-only: the SubscriptionStatus with the event's number and focus, no resource content; the app
reads what changed with its own access), and a ``heartbeat`` every ``HEARTBEAT_SECONDS``. The
connection closes when the access token that asked for the binding token expires, when a bound
Subscription is deleted (a live view that ended), or after ``BIND_SECONDS`` with nothing bound.

A bind needs read access to the Subscription (the same guard as a read: a row the token may not
see answers ``error <id> not found``) and a Subscription whose channel is ``websocket``. Events
are the outbox rows the write path recorded (``resources/subscriptions/outbox.py``), read every
``HEARTH_SUBSCRIPTION_POLL_SECONDS`` (not under ``MIN_POLL_SECONDS``), so any API process serves
any subscription.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import replace
from datetime import UTC, datetime

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from starlette.concurrency import run_in_threadpool

from fhir_server.auth import enforce
from fhir_server.auth.tokens import bearer_access, binding
from fhir_server.rest.context import Access, Context, FhirRequest
from fhir_server.runtime.subscriptions import notification
from resources.errors import FhirError
from resources.subscriptions import delivery

log = logging.getLogger(__name__)
router = APIRouter()
HEARTBEAT_SECONDS = 30.0
# Each connection reads the outbox of its bound subscriptions this often at most (the setting's
# default, 0.05 s, is for the worker): a page a quarter of a second late is still live, and a
# hundred open worklists stay a few hundred primary-key reads a second.
MIN_POLL_SECONDS = 0.25
BIND_SECONDS = 30.0
# A Subscription bound with a token that ends (deleted, or swept when its live view ran out) closes
# its socket within this many seconds, not at the next heartbeat: the app asks for a new one.
ENDED_CHECK_SECONDS = 2.0
ENDED = 4000  # close code: a bound Subscription is gone (the app asks for a new one)


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


def _bind_token(ctx: Context, token: str) -> tuple[dict[str, delivery.Reg], datetime] | None:
    """The registrations a binding token names (all websocket ones), and when to close."""
    found = binding(ctx.services["auth"].store, ctx.settings, token)
    if found is None:
        return None
    sub_ids, until = found
    regs = {}
    for sub_id in sub_ids:
        reg = delivery.registration(ctx.repo, sub_id)
        if reg is None or reg.channel != "websocket":
            return None
        regs[sub_id] = reg
    return regs, until


@router.websocket("/websocket")
async def websocket(ws: WebSocket) -> None:
    ctx: Context = ws.app.state.context
    auth = ws.app.state.auth
    header = ws.headers.get("authorization")
    access: Access | None = None
    if header is not None:
        try:
            access = await run_in_threadpool(bearer_access, auth.store, ctx.settings, header)
        except FhirError as exc:
            await ws.close(code=1008, reason=exc.diagnostics[:120])
            return
    await ws.accept()
    bound: dict[str, int] = {}  # subscription id -> the newest event number sent ("ping <id>")
    bundles: dict[str, delivery.Reg] = {}  # bound with a token: Backport notification Bundles
    poll = max(ctx.settings.subscription_poll_seconds, MIN_POLL_SECONDS)
    close_at: list[datetime | None] = [None]
    base = ctx.base

    async def send_bundle(reg: delivery.Reg, kind: str, event: delivery.Event | None) -> None:
        await ws.send_text(json.dumps(notification(base, reg, kind, event, reg.status)))

    async def commands() -> None:
        while True:
            text = (await ws.receive_text()).strip()
            verb, _, arg = text.partition(" ")
            arg = arg.strip()
            if verb == "bind-with-token" and arg:
                found = await run_in_threadpool(_bind_token, ctx, arg)
                if found is None:
                    await ws.send_text("error bind-with-token: the token is not valid")
                    continue
                regs, until = found
                close_at[0] = until if close_at[0] is None else min(until, close_at[0])
                for sub_id, reg in regs.items():
                    bundles[sub_id] = reg
                    bound[sub_id] = reg.last_seq
                    await send_bundle(reg, "handshake", None)
                continue
            if verb != "bind" or not arg:
                await ws.send_text(f"error {text[:80]} unknown command (bind <id>)")
                continue
            start = None if access is None else await run_in_threadpool(_bind, ctx, access, arg)
            if start is None:
                await ws.send_text(f"error {arg} not found")
                continue
            bound[arg] = start
            await ws.send_text(f"bound {arg}")

    async def pings() -> None:
        beat = 0.0
        waited = 0.0
        checked = 0.0
        while True:
            await asyncio.sleep(poll)
            waited += poll
            beat += poll
            checked += poll
            if not bound and waited >= BIND_SECONDS:
                await ws.close(code=1008, reason="nothing bound")
                return
            if close_at[0] is not None and datetime.now(UTC) >= close_at[0]:
                await ws.close(code=1008, reason="the access token expired")
                return
            for sub_id, sent in list(bound.items()):
                events = await run_in_threadpool(delivery.events_since, ctx.repo, sub_id, sent, 100)
                for event in events:
                    reg = bundles.get(sub_id)
                    if reg is None:
                        await ws.send_text(f"ping {sub_id}")
                    else:
                        await send_bundle(reg, "event-notification", replace(event, content=None))
                    bound[sub_id] = event.seq
            heartbeat = beat >= HEARTBEAT_SECONDS
            if bundles and (heartbeat or checked >= ENDED_CHECK_SECONDS):
                checked = 0.0
                for sub_id in list(bundles):
                    reg = await run_in_threadpool(delivery.registration, ctx.repo, sub_id)
                    if reg is None:
                        await ws.close(code=ENDED, reason=f"Subscription/{sub_id} ended")
                        return
                    bundles[sub_id] = reg
                    if heartbeat:
                        await send_bundle(reg, "heartbeat", None)
                if heartbeat:
                    beat = 0.0

    tasks = [asyncio.create_task(commands()), asyncio.create_task(pings())]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            failure = task.exception()
            if failure is not None and not isinstance(failure, WebSocketDisconnect):
                log.warning("websocket closed: %s", type(failure).__name__)
    finally:
        for task in tasks:
            task.cancel()
