"""Security headers on every HTTP response: FHIR, auth, DICOMweb, the web app, errors.

``X-Content-Type-Options: nosniff`` (no browser reads a JSON or DICOM body as HTML or script),
``X-Request-ID`` (the id log lines name), ``Referrer-Policy: no-referrer`` (URLs carry ids and search parameters), ``X-Frame-Options: DENY``
and, where a response has none of its own, ``Content-Security-Policy: default-src 'none';
frame-ancestors 'none'``: an API response is never a page, so if a browser renders one it may
load nothing. Pages that set their own policy (the login pages, the web app, the API docs) keep
it. The middleware is pure ASGI; the 500 answer, which Starlette renders outside every
middleware, adds ``SECURITY_HEADERS`` itself (``fhir_server/rest/errors.py``).
"""

from __future__ import annotations

import base64
import hashlib
import re
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
}
_RAW = [(k.lower().encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]
_REQUEST_ID = re.compile(rb"^[A-Za-z0-9._-]{1,64}$")


def request_id(scope: Scope) -> str:
    """The id of the request (``X-Request-ID``): the caller's when it is a plain token (a proxy's
    id), else one made here. Log lines name it; the response carries it."""
    return scope.get("state", {}).get("request_id", "-")


def assign_request_id(scope: Scope) -> str:
    """Give the request its id (``request_id``): the caller's ``X-Request-ID`` when it is a plain
    token, else a new one."""
    given = b""
    for name, value in scope.get("headers") or ():
        if name == b"x-request-id":
            given = value
    rid = given.decode() if _REQUEST_ID.match(given) else uuid.uuid4().hex[:16]
    scope.setdefault("state", {})["request_id"] = rid
    return rid


def with_security(headers: list[tuple[bytes, bytes]], rid: str) -> list[tuple[bytes, bytes]]:
    """``headers`` (raw ASGI pairs) with the security headers and ``X-Request-ID`` each added
    where the response has none of its own."""
    present = {name.lower() for name, _ in headers}
    headers += [(k, v) for k, v in _RAW if k not in present]
    if b"x-request-id" not in present:
        headers.append((b"x-request-id", rid.encode()))
    return headers


class SecurityHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = assign_request_id(scope)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = with_security(list(message.get("headers", [])), rid)
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def docs_csp(html: str) -> str:
    """The Content-Security-Policy of FastAPI's Swagger UI page (``HEARTH_API_DOCS``): its
    script and stylesheet from the CDN it names, its one inline script by hash, fetches of the
    OpenAPI document from this origin only."""
    hashes = [
        "'sha256-" + base64.b64encode(hashlib.sha256(body.encode()).digest()).decode() + "'"
        for body in re.findall(r"<script>(.*?)</script>", html, re.S)
    ]
    return (
        "default-src 'none'; "
        f"script-src https://cdn.jsdelivr.net {' '.join(hashes)}; "
        "style-src https://cdn.jsdelivr.net 'unsafe-inline'; img-src https://fastapi.tiangolo.com data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )
