"""The Hearth the patient portal's browser tests share: one for the test session, with the portal
registered as a client (modules that need a server of their own define their own `hearth`). The
browser is the session's (`browser`, tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fhir_server.webapp.browser import browser_hearth
from tests.servers import RunningServer


@pytest.fixture(scope="session")
def hearth(tmp_path_factory) -> Iterator[RunningServer]:  # type: ignore[no-untyped-def]
    """Hearth on SQLite with the portal's and the app's clients, for the session."""
    with browser_hearth(tmp_path_factory.mktemp("portal")) as running:
        yield running
