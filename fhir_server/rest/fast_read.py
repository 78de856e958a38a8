"""The FHIR read by id in the event loop: ``GET /fhir/[type]/[id]`` answered before Starlette's
middleware stack, FastAPI's routing and the thread pool, when nothing about the request needs
them.

The read by id is the request a FHIR server gets most; through the full stack it cost about
three times the work of the read itself (docs/performance.md: the ASGI stack, the thread-pool hop,
two round trips). Here, on PostgreSQL, one prepared statement on an async psycopg connection
(``resources/storage/point_read.py`` ``AsyncPointRead``) returns the bearer token's row and the
resource's row together, and the same decisions as the full path are made from them with the
same functions:

- the token: ``tokens.access_of`` (401, audited like ``gate.authenticate``'s, when it is missing,
  unknown, expired, revoked or for another server; nothing is cached);
- the permission: ``enforce.require`` (the scope's read permission; AuditEvents for
  administrators only);
- the current version: ``point_read.current_of`` (404 unknown, 410 deleted), ``ETag`` /
  ``Last-Modified``, ``If-None-Match`` / ``If-Modified-Since`` → 304 (``read.not_modified``);
- the audit record of every outcome, through the same background writer (``gate.access_event``);
- errors rendered by the app's own exception handlers, with the security headers.

What it does not answer goes to the full stack, untouched (nothing was read from the request
body, nothing sent): any query string (``_format``, ``_pretty``, ``_summary``, ``_elements``,
unknown parameters), an ``Accept`` that asks for XML, ``Binary`` (its own content negotiation),
a token with a patient context (the compartment and ``unreleased`` guard reads more than one
row), SQLite (no async reader).
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.types import Message, Receive, Scope, Send

from fhir_server.auth import enforce, gate
from fhir_server.auth.tokens import access_of, bearer_token
from fhir_server.rest.headers import assign_request_id, with_security
from fhir_server.rest.http import FHIR_JSON, negotiate_format, version_headers
from fhir_server.rest.interactions.read import not_modified
from resources.auth.store import digest
from resources.errors import FhirError, Forbidden, Unauthorized
from resources.storage.point_read import AsyncPointRead, current_of
from resources.storage.store import ID_RE
from resources.validation import is_resource_type

if TYPE_CHECKING:
    from fastapi import FastAPI

PREFIX = "/fhir/"
_CONTENT_TYPE = f"{FHIR_JSON}; charset=utf-8".encode()
_WANTED = {
    b"authorization": "authorization",
    b"accept": "accept",
    b"if-none-match": "if-none-match",
    b"if-modified-since": "if-modified-since",
}
AUDIT_TYPE = "AuditEvent"


def target_of(scope: Scope) -> tuple[str, str] | None:
    """``(type, id)`` of a plain ``GET /fhir/[type]/[id]`` this path answers, else None."""
    if scope["method"] != "GET" or scope.get("query_string") or scope.get("root_path"):
        return None
    path: str = scope["path"]
    if not path.startswith(PREFIX):
        return None
    res_type, sep, res_id = path[len(PREFIX) :].partition("/")
    if (
        not sep
        or res_type == "Binary"
        or not ID_RE.match(res_id)  # also: no further "/" (_history, $op, compartments)
        or not is_resource_type(res_type)
    ):
        return None
    return res_type, res_id


class FastRead:
    """The read by id of ``app`` (its ``state.context`` and ``state.auth``) on ``reader``."""

    def __init__(self, app: FastAPI, reader: AsyncPointRead) -> None:
        self.app = app
        self.reader = reader

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> bool:
        """Answer the request and return True, or return False having done nothing (the full
        stack answers it)."""
        target = target_of(scope)
        if target is None:
            return False
        headers: dict[str, str] = {}
        for name, value in scope["headers"]:
            key = _WANTED.get(name)
            if key is not None and key not in headers:  # the first, as Starlette's headers.get
                headers[key] = value.decode("latin-1")
        if negotiate_format(None, headers.get("accept", "")) != FHIR_JSON:
            return False
        state = self.app.state
        ctx, auth = state.context, state.auth
        res_type, res_id = target
        ip = scope["client"][0] if scope.get("client") else None
        try:
            token = bearer_token(headers.get("authorization"))
        except Unauthorized as exc:
            gate.audit_refused(ctx, auth, "read", ip, exc)
            await self._error(scope, receive, send, exc)
            return True
        try:
            token_row, row = await self.reader.row(digest(token), res_type, res_id)
            access = access_of(token_row, ctx.settings)
        except Unauthorized as exc:
            gate.audit_refused(ctx, auth, "read", ip, exc)
            await self._error(scope, receive, send, exc)
            return True
        except Exception as exc:  # the database: answered as the full path answers it, 503
            await self._error(scope, receive, send, exc)
            return True
        if access.patient is not None:
            return False  # the compartment guard: the full path (the row read here is dropped)
        what = [f"{res_type}/{res_id}"]
        try:
            enforce.require(access, res_type, enforce.PERM["read"])
            if res_type == AUDIT_TYPE and not access.is_admin:  # audit_event.require_admin
                raise Forbidden("AuditEvent resources are for administrators only")
            stored = current_of(res_type, res_id, row)
        except FhirError as exc:
            from fhir_server.rest.errors import status_of

            auth.audit(
                gate.access_event(
                    ctx, access, ip, interaction="read", status=status_of(exc), what=what,
                    detail=exc.diagnostics,
                )
            )  # fmt: skip
            await self._error(scope, receive, send, exc)
            return True
        status = (
            304
            if not_modified(stored, headers.get("if-none-match"), headers.get("if-modified-since"))
            else 200
        )
        auth.audit(gate.access_event(ctx, access, ip, interaction="read", status=status, what=what))
        raw = [
            (b"cache-control", b"no-store"),
            *((k.lower().encode(), v.encode()) for k, v in version_headers(stored).items()),
        ]
        body = b""
        if status == 200:
            body = stored.text.encode()
            raw += [(b"content-type", _CONTENT_TYPE), (b"content-length", b"%d" % len(body))]
        rid = assign_request_id(scope)
        await send(
            {"type": "http.response.start", "status": status, "headers": with_security(raw, rid)}
        )
        await send({"type": "http.response.body", "body": body})
        return True

    async def _error(self, scope: Scope, receive: Receive, send: Send, exc: Exception) -> None:
        """``exc`` answered by the app's own handler for it (OperationOutcome, status, headers,
        log line), with the security headers; a fault's handler logs it as a fault."""
        rid = assign_request_id(scope)
        handler = None
        for cls in type(exc).__mro__:
            handler = self.app.exception_handlers.get(cls)
            if handler is not None:
                break
        assert handler is not None  # errors.install registers one for Exception
        response = handler(Request(scope, receive), exc)
        if inspect.isawaitable(response):
            response = await response

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {
                    **message,
                    "headers": with_security(list(message.get("headers", [])), rid),
                }
            await send(message)

        await response(scope, receive, send_with_headers)
