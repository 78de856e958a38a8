"""What the auth endpoints share: the Jinja2 pages (autoescaped, no external assets, strict
headers), small url-encoded forms, and the request's AuthService."""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, PackageLoader, select_autoescape

from fhir_server.auth.errors import OAuthError
from fhir_server.auth.service import AuthService

MAX_FORM = 16 * 1024  # bytes: bigger login/token forms are refused (413)
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
PAGE_HEADERS = {
    **NO_STORE,
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
    "frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}
_pages = Environment(
    loader=PackageLoader("fhir_server.auth", "templates"), autoescape=select_autoescape()
)


def auth_service(request: Request) -> AuthService:
    return request.app.state.auth


def page(name: str, status: int = 200, **values: object) -> HTMLResponse:
    html = _pages.get_template(name).render(**values)
    return HTMLResponse(html, status_code=status, headers=PAGE_HEADERS)


def message(heading: str, text: str, status: int) -> HTMLResponse:
    return page("message.html", status, heading=heading, text=text, error=status >= 400)


async def small_form(request: Request) -> dict[str, str]:
    """A url-encoded form within ``MAX_FORM`` bytes; one value per name."""
    body = await request.body()
    if len(body) > MAX_FORM:
        raise OAuthError("invalid_request", "the request is too large", 413)
    from urllib.parse import parse_qsl

    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, max_num_fields=50)
    except (UnicodeDecodeError, ValueError) as exc:
        raise OAuthError("invalid_request", "the form is not valid") from exc
    out: dict[str, str] = {}
    for k, v in pairs:
        if k in out:
            raise OAuthError("invalid_request", f"parameter {k!r} is repeated")
        out[k] = v
    return out


def client_ip(request: Request) -> str | None:
    return request.client.host if request.client else None
