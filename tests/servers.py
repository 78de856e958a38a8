"""Real Hearth servers for tests: a throwaway database per backend, migrated with Alembic, and
uvicorn serving the app on a free loopback port in a background thread."""

from __future__ import annotations

import os
import socket
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import psycopg
import uvicorn

from fhir_server.auth.clients import register
from fhir_server.auth.tokens import operator_token
from fhir_server.runtime.app import create_app
from fhir_server.runtime.settings import Settings
from resources.auth.store import AuthStore
from resources.storage.db import create_engine
from resources.storage.migrate import upgrade

PG_ADMIN = os.environ.get("HEARTH_TEST_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/postgres")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def create_pg_database() -> tuple[str, str]:
    """CREATE a uniquely named database; returns (name, url). Fails loudly if PG is down."""
    name = f"hearth_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN.rsplit("/", 1)[0]
    return name, f"{base}/{name}"


def drop_pg_database(name: str) -> None:
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def database_url(backend: str, tmp: Path) -> tuple[str, object]:
    """(url, cleanup) for a fresh, migrated database of ``backend``."""
    if backend == "sqlite":
        url = f"sqlite:///{tmp / f'hearth-{uuid.uuid4().hex[:8]}.db'}"
        cleanup = lambda: None  # noqa: E731
    elif backend == "postgresql":
        name, url = create_pg_database()
        cleanup = lambda: drop_pg_database(name)  # noqa: E731
    else:
        raise ValueError(backend)
    upgrade(url)
    return url, cleanup


def system_token(url: str, root: str, scope: str = "system/*.cruds") -> str:
    """A real access token for a backend client registered in the database at ``url``, issued
    the way `hearth token` issues one (the server validates it like any other)."""
    engine = create_engine(url)
    try:
        store = AuthStore(engine)
        client_id, _ = register(
            store, f"test-operator-{uuid.uuid4().hex[:6]}", "confidential-symmetric", scope=scope
        )
        settings = Settings(database_url=url, base_url=root)
        return operator_token(store, settings, client_id, scope)["access_token"]
    finally:
        engine.dispose()


@dataclass
class RunningServer:
    backend: str
    database_url: str
    root: str
    server: uvicorn.Server
    thread: threading.Thread
    token: str = ""
    settings: Settings | None = None  # what the server runs with (its data_dir, its keys)

    @property
    def fhir(self) -> str:
        return f"{self.root}/fhir"

    @property
    def headers(self) -> dict[str, str]:
        """Authorization for an operator (system/*.cruds) token."""
        return {"Authorization": f"Bearer {self.token}"}

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def start_server(backend: str, url: str, **overrides: object) -> RunningServer:
    # DICOM: no listener unless a test asks for one (on a free port); files in a temp folder.
    overrides.setdefault("dicom_enabled", False)
    overrides.setdefault("data_dir", tempfile.mkdtemp(prefix="hearth-data-"))
    # The whole suite signs in from 127.0.0.1: rate limits that do not get in its way (their
    # own tests, tests/security/test_login_limits.py, start servers with small ones).
    for name in ("login_rate_per_ip", "login_rate_per_account"):
        overrides.setdefault(name, 100_000)
    for name in ("client_rate_per_ip", "client_rate_per_client"):
        overrides.setdefault(name, 100_000)
    overrides.setdefault("password_check_concurrency", 8)
    port = free_port()
    root = f"http://127.0.0.1:{port}"
    # base_url may be overridden: nodes of one deployment share its public address
    settings = Settings(**{"database_url": url, "base_url": root, "port": port, **overrides})  # type: ignore[arg-type]
    config = uvicorn.Config(
        create_app(settings), host="127.0.0.1", port=port, log_level="warning", access_log=False
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 90  # a loaded machine: the app's first import is slow
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError(f"Hearth test server on {backend} did not start")
        time.sleep(0.02)
    return RunningServer(
        backend, url, root, server, thread, system_token(url, root), settings=settings
    )
