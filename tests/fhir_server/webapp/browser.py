"""What the browser tests share: chromium's place, the two viewports, screenshots, watching a page
for errors and for requests to other origins, and signing in.

Signing in, two ways:
- `sign_in` / `app_sign_in`: the whole journey a person makes (the app's button, Hearth's login
  page, the app's own code + PKCE exchange). The tests about signing in use it, and each role's
  first sign-in to a server does.
- `signed_in`: for the portal's tests that are about something else. The token comes from
  Hearth's own authorization and token endpoints (the login form posted over HTTP with a PKCE
  challenge, the code exchanged with its verifier), and is put into the tab's session storage
  the way the portal keeps it: the storage a real sign-in of the same role on the same server
  left, with this user's token response in place of that one's. The portal then resumes the
  session as it does on every reload."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from fhir_server.webapp import CLIENT_ID, PORTAL_CLIENT_ID, portal_files
from tests.fhir_server.auth.smart import User, code_of, exchange, login, pkce, store_of
from tests.servers import RunningServer, database_url, start_server

# Each expectation waits for the server's answer; under a loaded CI machine (the suite runs in
# parallel) a step's completion can take several seconds, so wait up to 30 s, not 5 s.
expect.set_options(timeout=30_000)

CHROMIUM = "/usr/bin/chromium"  # installed by `make chromium`; never `playwright install`
ARTEFACTS = Path(__file__).resolve().parents[3] / "test-artefacts" / "webapp"
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}

# The portal's sign-in buttons and scopes (portal/src/main.jsx, smart.js) by who signs in, and
# what shows once they are in.
PORTAL_BUTTON = {
    "patient": "Sign in",
    "cadre": "Sign in as a community health worker",
    "staff": "Sign in as a doctor or administrator",
}
PORTAL_SCOPE = {
    "patient": "openid fhirUser patient/*.cruds",
    "cadre": "openid fhirUser user/*.cruds",
    "staff": "openid fhirUser user/*.cruds",
}
PORTAL_HOME = {"patient": "Needs your attention", "cadre": "Find a patient"}


def device(viewport: str = "desktop") -> dict[str, Any]:
    """The context options of a desktop browser or of a phone (touch, mobile viewport)."""
    phone = viewport == "phone"
    return {"viewport": PHONE if phone else DESKTOP, "is_mobile": phone, "has_touch": phone}


def shot(page: Page, name: str) -> None:
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTEFACTS / f"{name}.png"), full_page=True)


def fits(page: Page) -> bool:
    """No sideways scrolling: the page is as wide as the viewport."""
    return bool(page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"))


def watch(
    page: Page,
    errors: list[str],
    *,
    console: bool = True,
    outside: list[str] | None = None,
    allowed: tuple[str, ...] = (),
) -> Page:
    """Collect the page's script errors (and console errors) into ``errors``, and each request to
    another origin than those ``allowed`` into ``outside``."""
    page.on("pageerror", lambda e: errors.append(str(e)))
    if console:
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    if outside is not None:
        page.on("request", lambda r: None if r.url.startswith(allowed) else outside.append(r.url))
    return page


def register_public_client(server, name: str, scope: str, path: str, client_id: str) -> None:  # type: ignore[no-untyped-def]
    """What `make run` does for the portal and the app (scripts/portal-client.sh,
    webapp-client.sh): their public client, redirecting to ``path`` of this server."""
    from fhir_server.auth.clients import register

    store = store_of(server)
    try:
        register(
            store,
            name,
            "public",
            scope=scope,
            redirect_uris=[f"{server.root}{path}"],
            client_id=client_id,
        )
    finally:
        store.engine.dispose()


def register_portal(server) -> None:  # type: ignore[no-untyped-def]
    register_public_client(
        server,
        "Hearth patient portal",
        "openid fhirUser patient/*.cruds user/*.cruds",
        "/app/portal/",
        PORTAL_CLIENT_ID,
    )


def register_app(server) -> None:  # type: ignore[no-untyped-def]
    register_public_client(
        server, "Hearth web app", "openid fhirUser user/*.cruds", "/app/", CLIENT_ID
    )


@contextmanager
def browser_hearth(
    tmp: Path, prepare: Callable[[str], object] | None = None, **settings: object
) -> Iterator[RunningServer]:
    """Hearth on SQLite in ``tmp`` (its files under tmp/data) with the portal's and the
    clinicians' app's clients, for a browser test module; ``prepare(database_url)`` runs before it
    starts. The portal must be built."""
    assert portal_files() is not None, "the patient portal is not built: run `make webapp`"
    url, cleanup = database_url("sqlite", tmp)
    if prepare is not None:
        prepare(url)
    running = start_server("sqlite", url, data_dir=tmp / "data", **settings)
    running.data_dir = tmp / "data"  # type: ignore[attr-defined]
    try:
        register_portal(running)
        register_app(running)
        yield running
    finally:
        running.stop()
        cleanup()


@pytest.fixture(scope="module")
def own_hearth(tmp_path_factory) -> Iterator[RunningServer]:  # type: ignore[no-untyped-def]
    """A Hearth of the test module's own (``hearth = own_hearth`` in the module), for the modules
    whose tests run the AI worker: `hearth worker --once` works through every job waiting on its
    server, and here waits only what this module's tests left."""
    with browser_hearth(tmp_path_factory.mktemp("hearth")) as running:
        yield running


def log_in(page: Page, user: User) -> None:
    """Hearth's login page: user name, password and, for staff, the authenticator code."""
    page.get_by_label("User name").fill(user.username)
    page.get_by_label("Password").fill(user.password)
    if user.totp is not None:
        page.get_by_label("Authenticator code or recovery code").fill(user.totp.now())
    page.get_by_role("button", name="Sign in").click()


# The session storage a real sign-in left, by (server, who signed in): see `signed_in`.
_SIGNED_IN: dict[tuple[str, str], dict[str, str]] = {}


def signed_in_home(page: Page, who: str) -> None:
    """Wait for the portal's first screen after signing in."""
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()
    if who in PORTAL_HOME:
        expect(page.get_by_role("heading", name=PORTAL_HOME[who])).to_be_visible()


def sign_in(page: Page, root: str, user: User, who: str = "patient") -> None:
    """The portal's whole sign-in journey, as ``who`` (patient, cadre, staff): the button, Hearth's
    login page, back to the portal with the code, which the portal exchanges itself."""
    page.goto(f"{root}/app/portal/")
    page.get_by_role("button", name=PORTAL_BUTTON[who], exact=True).click()
    log_in(page, user)
    signed_in_home(page, who)
    assert "code=" not in page.url
    _SIGNED_IN[(root, who)] = page.evaluate("() => ({ ...sessionStorage })")


def portal_token(server, user: User, who: str) -> dict:  # type: ignore[no-untyped-def]
    """The portal's token response for ``user`` from Hearth's authorization and token endpoints
    (the login form posted over HTTP; authorization code with PKCE S256)."""
    redirect = {"redirect_uri": f"{server.root}/app/portal/"}
    verifier, challenge = pkce()
    answer = login(
        server, PORTAL_CLIENT_ID, user, PORTAL_SCOPE[who], challenge=challenge, extra=redirect
    )
    token = exchange(server, PORTAL_CLIENT_ID, code_of(answer), verifier, **redirect)
    assert token.status_code == 200, token.text
    return token.json()


def signed_in(page: Page, server, user: User, who: str = "patient") -> None:  # type: ignore[no-untyped-def]
    """``user`` signed in to the portal as ``who``, for a test about what comes after: the token
    from Hearth's endpoints in the session storage of this server's last real sign-in of the same
    kind (the first time, the real sign-in itself)."""
    kept = _SIGNED_IN.get((server.root, who))
    if kept is None:
        sign_in(page, server.root, user, who)
        return
    token = portal_token(server, user, who)
    storage = {}
    for key, value in kept.items():
        try:
            state = json.loads(value)
        except ValueError:
            state = None
        if isinstance(state, dict) and "tokenResponse" in state:
            state["tokenResponse"] = token
            if "expiresAt" in state:
                state["expiresAt"] = int(time.time()) + int(token["expires_in"])
            value = json.dumps(state)
        storage[key] = value
    assert any("tokenResponse" in v for v in storage.values()), kept
    page.goto(f"{server.fhir}/.well-known/smart-configuration")  # the origin, no app
    page.evaluate(
        "s => Object.entries(s).forEach(([k, v]) => sessionStorage.setItem(k, v))", storage
    )
    page.goto(f"{server.root}/app/portal/")
    signed_in_home(page, who)


def app_sign_in(page: Page, root: str, user: User, heading: str) -> None:
    """The clinicians' app's whole sign-in journey, up to the role's worklist (``heading``)."""
    page.goto(f"{root}/app/")
    page.get_by_role("button", name="Sign in").click()
    log_in(page, user)
    expect(page.get_by_role("heading", name=heading)).to_be_visible()
    assert "code=" not in page.url
