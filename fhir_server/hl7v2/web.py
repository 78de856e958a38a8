"""``POST /fhir/$hl7v2``: one HL7 v2 message (ER7) over HTTP, answered by its ACK (HL7 v2 over
HTTP: the body is the message, the response body the acknowledgment, status 200 whatever the
MSA code). Content types ``x-application/hl7-v2+er7``, ``application/hl7-v2`` or
``text/plain``. Needs a system-level SMART token whose scopes allow the writes the message maps
to (create, update and search of what its message type declares it writes, see
``mappings/hl7v2/registry.py``: e.g. ``system/*.cruds``); 401/403/413/415 are OperationOutcomes. Audited like ``POST /fhir``.

Enhanced mode (MSH-15 / MSH-16): the body is the acknowledgments asked for, one after the
other (the accept ACK, then the application ACK), ``X-HL7-Commit-Code`` the accept code
(CA / CE / CR); 204 with the headers only when none is asked for.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from fhir_server.auth import gate
from resources.errors import Forbidden, TooLarge, UnsupportedMediaType

router = APIRouter()

MEDIA_TYPES = {
    "x-application/hl7-v2+er7",
    "application/hl7-v2",
    "text/plain",
    "application/edi-hl7",
}


@router.post("/$hl7v2")
async def hl7v2(request: Request) -> Response:
    ctx = request.app.state.context
    auth = request.app.state.auth
    service = request.app.state.hl7v2
    access, ip = await gate.authenticate_operation(request)
    if access.patient is not None or not any(g.context == "system" for g in access.scopes.grants):
        auth.audit(
            gate.access_event(
                ctx,
                access,
                ip,
                interaction="operation",
                status=403,
                what=[],
                detail="$hl7v2 needs a system-level token",
            )
        )
        raise Forbidden("$hl7v2 needs a system-level token (SMART Backend Services, system/...)")
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype not in MEDIA_TYPES:
        raise UnsupportedMediaType(
            f"$hl7v2 takes an HL7 v2 message as x-application/hl7-v2+er7 or text/plain, not {ctype or 'no content type'}"
        )
    limit = ctx.settings.max_body_bytes
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise TooLarge(f"the message is over the limit of {limit} bytes")
    outcome = await run_in_threadpool(service.handle, bytes(body), access, ip)
    reply_type = ctype if ctype != "application/edi-hl7" else "x-application/hl7-v2+er7"
    sent = outcome.frames if outcome.frames is not None else [outcome.ack]
    headers = {"X-HL7-Ack-Code": outcome.code}
    if outcome.commit:  # enhanced mode (mappings/hl7v2/ack.py): the accept ACK's code
        headers["X-HL7-Commit-Code"] = outcome.commit
    if not sent:  # MSH-15 / MSH-16 asked for no acknowledgment
        return Response(status_code=204, headers=headers)
    return Response(
        content="".join(sent).encode("utf-8"),
        status_code=200,
        media_type=f"{reply_type}; charset=utf-8",
        headers=headers,
    )
