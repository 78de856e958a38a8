"""Shared fixtures: every storage and API test runs on SQLite and on PostgreSQL."""

from __future__ import annotations

import httpx
import pytest

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


# DICOM: a Hearth with its Storage SCP on a free port, per backend (tests/dicom.py)
from tests.dicom import dicom_hearth  # noqa: E402, F401
