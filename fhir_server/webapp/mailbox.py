"""The development mailbox over HTTP, for administrators: ``GET /dev/mailbox`` (every message
the development SMTP sink kept, newest first), ``GET /dev/mailbox/{id}`` (one message with its
text) and ``GET /dev/mailbox/{id}/attachments/{n}`` (an attachment's bytes, e.g. the signed
report PDF). 404 unless ``HEARTH_DEV_MAILBOX`` is set (fhir_server/runtime/mailsink.py); a
valid token of an administrator is needed, as the mail holds patients' reports."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from fhir_server.auth.tokens import bearer_access
from fhir_server.runtime import mailsink
from resources.errors import Forbidden, NotFound

router = APIRouter(include_in_schema=False)
NO_STORE = {"Cache-Control": "no-store"}


async def _folder(request: Request) -> Path:
    settings = request.app.state.context.settings
    if settings.dev_mailbox is None:
        raise NotFound("no development mailbox here (HEARTH_DEV_MAILBOX is not set)")
    access = await run_in_threadpool(
        bearer_access,
        request.app.state.auth.store,
        settings,
        request.headers.get("authorization"),
    )
    if not access.is_admin:
        raise Forbidden("the development mailbox is for administrators only")
    return Path(settings.dev_mailbox)


@router.get("/dev/mailbox")
async def list_messages(request: Request) -> JSONResponse:
    folder = await _folder(request)
    return JSONResponse(await run_in_threadpool(mailsink.messages, folder), headers=NO_STORE)


async def _message(request: Request, key: str):  # type: ignore[no-untyped-def]
    folder = await _folder(request)
    found = await run_in_threadpool(mailsink.message, folder, key)
    if found is None:
        raise NotFound(f"no message {key!r} in the development mailbox")
    return found


@router.get("/dev/mailbox/{key}")
async def read_message(request: Request, key: str) -> JSONResponse:
    summary, _ = await _message(request, key)
    return JSONResponse(summary, headers=NO_STORE)


@router.get("/dev/mailbox/{key}/attachments/{index}")
async def read_attachment(request: Request, key: str, index: int) -> Response:
    _, msg = await _message(request, key)
    part = mailsink.attachment(msg, index)
    if part is None:
        raise NotFound(f"message {key!r} has no attachment {index}")
    filename, content_type, data = part
    safe = "".join(c for c in filename if c.isalnum() or c in "._-") or "attachment"
    return Response(
        data,
        media_type=content_type,
        headers={
            **NO_STORE,
            "Content-Disposition": f'attachment; filename="{safe}"',
            "X-Content-Type-Options": "nosniff",
        },
    )
