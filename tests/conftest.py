"""Shared fixtures: every storage and API test runs on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest
from playwright.sync_api import Browser, sync_playwright

from tests.servers import database_url, start_server

BACKENDS = ["sqlite", "postgresql"]


@pytest.fixture(scope="session", params=BACKENDS)
def server(request, tmp_path_factory):  # type: ignore[no-untyped-def]
    """A running Hearth on a fresh database of each backend, shared by the session."""
    url, cleanup = database_url(request.param, tmp_path_factory.mktemp(request.param))
    running = start_server(
        request.param,
        url,
        max_body_bytes=8 * 1024 * 1024,
        # $import may fetch from the tests' own loopback file servers (tests/fhir_server/
        # test_bulk_import.py), and the client "import-tester" may import besides admins
        import_allowed_hosts="127.0.0.1",
        import_allow_http=True,
        import_clients="import-tester",
    )
    yield running
    running.stop()
    cleanup()


@pytest.fixture
def client(server):  # type: ignore[no-untyped-def]
    with httpx.Client(base_url=server.fhir, headers=server.headers, timeout=60) as c:
        yield c


@pytest.fixture(scope="session")
def _chromium() -> Iterator[tuple[Browser, asyncio.AbstractEventLoop | None]]:
    """Playwright's driver and Debian chromium, started once per test session (per xdist
    worker) by the first browser test, for all of them."""
    from tests.fhir_server.webapp.browser import CHROMIUM

    playwright = sync_playwright().start()
    browser = playwright.chromium.launch(
        executable_path=CHROMIUM, headless=True, args=["--no-sandbox"]
    )
    # Between two calls, Playwright's sync API leaves its event loop marked as the thread's
    # running loop. Outside the browser tests that mark is taken away (see `browser`), so that a
    # test of another module run in this process between two browser tests is not told that an
    # asyncio loop runs. Nothing runs on the loop while no Playwright call is being made.
    loop = asyncio._get_running_loop()
    asyncio._set_running_loop(None)
    yield browser, loop
    asyncio._set_running_loop(loop)
    browser.close()
    playwright.stop()


@pytest.fixture
def browser(_chromium) -> Iterator[Browser]:  # type: ignore[no-untyped-def]
    """The session's chromium; every context the test opens in it is closed after the test."""
    chromium, loop = _chromium
    asyncio._set_running_loop(loop)
    try:
        yield chromium
        for context in chromium.contexts:
            context.close()
    finally:
        asyncio._set_running_loop(None)


# DICOM: a Hearth with its Storage SCP on a free port, per backend (tests/dicom.py)
from tests.dicom import dicom_hearth  # noqa: E402, F401
