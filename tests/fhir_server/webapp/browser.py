"""What the browser tests share: chromium's place, the two viewports, screenshots, watching a page
for errors and for requests to other origins, the Hearth a module starts, and signing in.

Signing in is always the whole journey a person makes (`sign_in` for the portal, `app_sign_in`
for the clinicians' app: the app's button, Hearth's login page, the app's own code + PKCE
exchange). A shortcut through the token endpoint into the portal's session storage was measured
(bench/browser_tests.py at commit 466af92): 1.12 s against the journey's 1.17 s, the
server's argon2 check and the portal's load being most of both; not worth a test that signs in
differently from a person."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from fhir_server.webapp import CLIENT_ID, PORTAL_CLIENT_ID, portal_files
from tests.fhir_server.auth.smart import User, store_of
from tests.servers import RunningServer, database_url, start_server

# Each expectation waits for the server's answer; under a loaded CI machine (the suite runs in
# parallel) a step's completion can take several seconds, so wait up to 30 s, not 5 s.
expect.set_options(timeout=30_000)

CHROMIUM = "/usr/bin/chromium"  # installed by `make chromium`; never `playwright install`
ARTEFACTS = Path(__file__).resolve().parents[3] / "test-artefacts" / "webapp"
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}

# The portal's sign-in buttons (portal/src/main.jsx) by who signs in, and what shows once they
# are in.
PORTAL_BUTTON = {
    "patient": "Sign in",
    "cadre": "Sign in as a community health worker",
    "staff": "Sign in as a doctor or administrator",
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


def app_sign_in(page: Page, root: str, user: User, heading: str) -> None:
    """The clinicians' app's whole sign-in journey, up to the role's worklist (``heading``)."""
    page.goto(f"{root}/app/")
    page.get_by_role("button", name="Sign in").click()
    log_in(page, user)
    expect(page.get_by_role("heading", name=heading)).to_be_visible()
    assert "code=" not in page.url
