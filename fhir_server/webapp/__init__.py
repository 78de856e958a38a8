"""The clinicians' web app: static files (HTML, ES modules, CSS, an SVG icon) served by Hearth under ``/app/``.

The app is a SMART App Launch public client of Hearth's own authorization server (standalone
launch, code + PKCE S256; docs/webapp.md). Hearth only serves the files: a fixed set read from
``static/`` at start, each with a strict Content-Security-Policy (scripts, styles and fetches from
this origin only, images also from ``blob:`` URLs), so the page loads nothing from elsewhere.
"""

from __future__ import annotations

import re
from importlib import resources as package_files

from fastapi import APIRouter
from fastapi.responses import RedirectResponse, Response

from resources.errors import NotFound

CLIENT_ID = "hearth-webapp"  # the client id `make run` registers, with redirect BASE_URL/app/
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob:; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
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


def static_files() -> dict[str, bytes]:
    """The app's files by name (only plain names of the served types; nothing nested)."""
    folder = package_files.files(__name__).joinpath("static")
    return {f.name: f.read_bytes() for f in folder.iterdir() if f.is_file() and _NAME.match(f.name)}


def build_router() -> APIRouter:
    files = static_files()
    router = APIRouter(include_in_schema=False)

    def serve(name: str) -> Response:
        body = files.get(name)
        if body is None:
            raise NotFound(f"the web app has no file {name!r}")
        media = TYPES[name[name.rindex(".") :]]
        return Response(body, media_type=media, headers=HEADERS)

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
