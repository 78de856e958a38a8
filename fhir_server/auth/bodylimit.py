"""The size limit of every ``/auth/*`` request body, enforced before the body is read.

An ASGI middleware: a ``Content-Length`` over the limit is answered 413 at once, without reading
a byte of the body; a body without one (chunked) is read chunk by chunk and refused as soon as
it passes the limit, so memory never holds more than the limit. The 413 closes the connection
(``Connection: close``): what the client still sends is never read. A body within the limit is
handed to the endpoint unchanged.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fhir_server.auth.web import MAX_FORM

MAX_JSON = 64 * 1024  # bytes: /auth/clients and /auth/launch take JSON (a client's JWKS)
JSON_PATHS = ("/auth/clients", "/auth/launch")


def limit_of(path: str) -> int:
    return MAX_JSON if path.rstrip("/") in JSON_PATHS else MAX_FORM


class AuthBodyLimit:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/auth/"):
            await self.app(scope, receive, send)
            return
        limit = limit_of(scope["path"])
        length = None
        for name, value in scope["headers"]:
            if name == b"content-length":
                length = value
        if length is not None:
            try:
                declared = int(length)
            except ValueError:
                await _refuse(send, 400, "the Content-Length is not a number")
                return
            if declared > limit:
                await _refuse(send, 413, f"the request body is larger than {limit} bytes")
                return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body = message.get("body", b"")
            size += len(body)
            if size > limit:
                await _refuse(send, 413, f"the request body is larger than {limit} bytes")
                return
            chunks.append(body)
            if not message.get("more_body", False):
                break
        buffered: Message | None = {"type": "http.request", "body": b"".join(chunks)}

        async def replay() -> Message:
            nonlocal buffered
            if buffered is not None:
                message, buffered = buffered, None
                return message
            return await receive()

        await self.app(scope, replay, send)


async def _refuse(send: Send, status: int, description: str) -> None:
    import orjson

    body = orjson.dumps({"error": "invalid_request", "error_description": description})
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"cache-control", b"no-store"),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
