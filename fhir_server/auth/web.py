"""What the auth endpoints share: the Jinja2 pages (autoescaped, no external assets, strict
headers), small url-encoded forms, the forms' CSRF tokens, and the request's AuthService.

CSRF (OWASP "signed double-submit cookie"): a page with a form sets a random ``hearth_csrf``
cookie (HttpOnly, SameSite=Lax, path /auth) once per browser session and puts into the form a
token signed with Hearth's key that is bound to that cookie (its sha256) and expires after two
hours. A POST is accepted only with the cookie and a valid token bound to it: another site can
make a browser post a form, but cannot read or set the cookie, nor sign a token for it.
"""

from __future__ import annotations

import hmac
import secrets

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, PackageLoader, select_autoescape

from fhir_server.auth.errors import OAuthError
from fhir_server.auth.limits import Refused
from fhir_server.auth.service import AuthService
from resources.auth.store import digest

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


CSRF_COOKIE = "hearth_csrf"
CSRF_FIELD = "csrf"
CSRF_TTL = 2 * 3600
_COOKIE_MAX = 64


def form_page(request: Request, name: str, status: int = 200, **values: object) -> HTMLResponse:
    """A page with a form: carries a CSRF token bound to the browser's ``hearth_csrf`` cookie
    (set here when the browser has none)."""
    cookie = request.cookies.get(CSRF_COOKIE) or ""
    fresh = not (0 < len(cookie) <= _COOKIE_MAX)
    if fresh:
        cookie = secrets.token_urlsafe(32)
    token = auth_service(request).key.sign(
        {"purpose": "csrf", "bind": digest(cookie)}, ttl=CSRF_TTL
    )
    response = page(name, status, csrf=token, **values)
    if fresh:
        response.set_cookie(
            CSRF_COOKIE,
            cookie,
            httponly=True,
            samesite="lax",
            secure=request.url.scheme == "https",
            path="/auth",
        )
    return response


def csrf_ok(request: Request, form: dict[str, str]) -> bool:
    """Whether a POSTed form carries a valid CSRF token bound to the browser's cookie."""
    cookie = request.cookies.get(CSRF_COOKIE) or ""
    token = form.get(CSRF_FIELD, "")
    if not (0 < len(cookie) <= _COOKIE_MAX) or not token or len(token) > 2048:
        return False
    claims = auth_service(request).key.verify(token, purpose="csrf")
    return claims is not None and hmac.compare_digest(str(claims.get("bind")), digest(cookie))


def csrf_refused() -> HTMLResponse:
    return message(
        "Form expired",
        "This form has expired or was not sent from a Hearth page (its security token is "
        "missing or not valid). Go back, reload the page and try again.",
        403,
    )


async def page_form(
    request: Request, refused: str = "Request refused"
) -> dict[str, str] | HTMLResponse:
    """The form POSTed from a Hearth page, or the page that refuses it: too large or malformed
    (its status, headed ``refused``), or without a valid CSRF token (403)."""
    try:
        form = await small_form(request)
    except OAuthError as exc:
        return message(refused, exc.description, exc.status)
    return form if csrf_ok(request, form) else csrf_refused()


def refused_page(exc: Refused) -> HTMLResponse:
    """The page of an attempt refused by a rate limit (429) or busy hashing (503)."""
    response = message("Please wait", exc.description, exc.status)
    response.headers.update(exc.headers)
    return response


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
