"""Read-your-writes with a read replica (``HEARTH_DATABASE_REPLICA_URL``): each request's
consistency token, in and out.

In: the LSN of the client's last write, from the ``X-Hearth-LSN`` request header or the
``hearth_lsn`` cookie (a malformed value is ignored). Out: after a request that wrote, the
primary's LSN past that write, as the ``X-Hearth-LSN`` response header and the ``hearth_lsn``
cookie (HttpOnly, SameSite=Lax). The repository reads from the replica only once it has replayed
that LSN (resources/storage/replica.py). Pure ASGI: the token lives in a context variable of the
request's task, which the thread pool running the interaction inherits.
"""

from __future__ import annotations

from http.cookies import SimpleCookie

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from resources.storage import replica

HEADER = "x-hearth-lsn"
COOKIE = "hearth_lsn"


def _given(scope: Scope) -> str | None:
    headers = dict(scope.get("headers") or [])
    header = replica.parse_lsn(headers.get(HEADER.encode(), b"").decode("latin-1"))
    cookie = None
    raw = headers.get(b"cookie")
    if raw:
        jar: SimpleCookie = SimpleCookie()
        try:
            jar.load(raw.decode("latin-1"))
        except Exception:  # noqa: BLE001 - a malformed Cookie header is not this module's error
            jar = SimpleCookie()
        if COOKIE in jar:
            cookie = replica.parse_lsn(jar[COOKIE].value)
    return replica.later(header, cookie)


class ReadYourWrites:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        consistency, token = replica.begin(_given(scope))

        async def send_with_lsn(message: Message) -> None:
            if message["type"] == "http.response.start" and consistency.wrote:
                lsn = consistency.wrote.encode()
                cookie = f"{COOKIE}={consistency.wrote}; Path=/; HttpOnly; SameSite=Lax"
                message = {
                    **message,
                    "headers": [
                        *message.get("headers", []),
                        (b"x-hearth-lsn", lsn),
                        (b"set-cookie", cookie.encode()),
                    ],
                }
            await send(message)

        try:
            await self.app(scope, receive, send_with_lsn)
        finally:
            replica.end(token)
