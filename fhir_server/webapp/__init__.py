"""The web apps Hearth serves: the clinicians' app (static files: HTML, ES modules, CSS, an SVG
icon) under ``/app/``, and the patient portal under ``/app/portal/`` (built from ``portal/`` with
Vite + Preact by ``make webapp`` into ``portal/dist/``, which git ignores).

Each is a SMART App Launch public client of Hearth's own authorization server (standalone
launch, code + PKCE S256; docs/webapp.md). Hearth only serves the files: a fixed set read at
start, each with a strict Content-Security-Policy (scripts, styles and fetches from this origin
only, images also from ``blob:`` URLs, frames only ``blob:`` ones: the report preview
the app itself made), so the page loads nothing from elsewhere. ``connect-src`` also names the
server's own websocket origin (``ws(s)://`` + the host of ``HEARTH_BASE_URL``, where the live
views' ``/websocket`` is): CSP Level 3 lets ``'self'`` cover it, older browsers need it named.
"""

from __future__ import annotations

import logging
import re
from importlib import resources as package_files

from fastapi import APIRouter
from fastapi.responses import RedirectResponse, Response

from resources.errors import NotFound

CLIENT_ID = "hearth-webapp"  # the client id `make run` registers, with redirect BASE_URL/app/
PORTAL_CLIENT_ID = "hearth-portal"  # the patient portal's, with redirect BASE_URL/app/portal/
NOT_BUILT = "the patient portal is not built: run `make webapp` (npm ci && npm run build)"
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob:; "
    "frame-src blob:; connect-src 'self'; form-action 'self'; base-uri 'none'; "
    "frame-ancestors 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}
TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
_NAME = re.compile(r"^[a-z][a-z0-9-]*\.(html|js|css|svg)$")
log = logging.getLogger("hearth.webapp")


def static_files() -> dict[str, bytes]:
    """The app's files by name (only plain names of the served types; nothing nested)."""
    folder = package_files.files(__name__).joinpath("static")
    return {f.name: f.read_bytes() for f in folder.iterdir() if f.is_file() and _NAME.match(f.name)}


def portal_files() -> dict[str, bytes] | None:
    """The built patient portal's files by name (``portal/dist/``, as Vite writes them: plain
    names, no folders); None when it has not been built."""
    folder = package_files.files(__name__).joinpath("portal", "dist")
    if not folder.is_dir() or not folder.joinpath("index.html").is_file():
        return None
    return {f.name: f.read_bytes() for f in folder.iterdir() if f.is_file() and _NAME.match(f.name)}


def websocket_origin(base_url: str) -> str:
    """``ws://host:port`` (``wss://`` for https) of a server root URL."""
    scheme, _, rest = base_url.partition("://")
    host = rest.split("/", 1)[0]
    return f"{'wss' if scheme == 'https' else 'ws'}://{host}"


def headers_for(base_url: str | None) -> dict[str, str]:
    """The files' headers; with ``base_url``, its websocket origin added to ``connect-src``."""
    if not base_url:
        return HEADERS
    csp = CSP.replace("connect-src 'self'", f"connect-src 'self' {websocket_origin(base_url)}")
    return {**HEADERS, "Content-Security-Policy": csp}


def _respond(files: dict[str, bytes], name: str, what: str, headers: dict[str, str]) -> Response:
    body = files.get(name)
    if body is None:
        raise NotFound(f"the {what} has no file {name!r}")
    media = TYPES[name[name.rindex(".") :]]
    return Response(body, media_type=media, headers=headers)


def build_router(base_url: str | None = None) -> APIRouter:
    headers = headers_for(base_url)
    files = static_files()
    portal = portal_files()
    if portal is None:
        log.warning("%s; /app/portal/ answers 404 until then", NOT_BUILT)
    router = APIRouter(include_in_schema=False)

    def serve(name: str) -> Response:
        return _respond(files, name, "web app", headers)

    def serve_portal(name: str) -> Response:
        if portal is None:
            raise NotFound(NOT_BUILT)
        return _respond(portal, name, "patient portal", headers)

    @router.get("/app/portal")
    async def portal_root() -> RedirectResponse:
        return RedirectResponse("/app/portal/", status_code=308)

    @router.get("/app/portal/")
    async def portal_index() -> Response:
        return serve_portal("index.html")

    @router.get("/app/portal/{name}")
    async def portal_asset(name: str) -> Response:
        return serve_portal(name)

    @router.get("/app")
    async def app_root() -> RedirectResponse:
        return RedirectResponse("/app/", status_code=308)

    @router.get("/app/")
    async def index() -> Response:
        return serve("index.html")

    @router.get("/app/{name}")
    async def asset(name: str) -> Response:
        return serve(name)

    return router
