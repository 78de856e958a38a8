"""What the benchmarks that measure a running Hearth share: a throwaway migrated database and a
`hearth serve` process on it (its own process group, a fresh data directory, no DICOM listener
unless asked), with a real system token, stopped and dropped afterwards."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import httpx

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from resources.storage.migrate import upgrade  # noqa: E402
from tests.servers import create_pg_database, drop_pg_database, free_port, system_token  # noqa: E402


@contextmanager
def database(backend: str = "postgresql") -> Iterator[str]:
    """The URL of a fresh database migrated to head; PostgreSQL ones are dropped afterwards."""
    if backend == "postgresql":
        name, url = create_pg_database()
    elif backend == "sqlite":
        name, url = "", f"sqlite:///{tempfile.mkdtemp(prefix='hearth-bench-')}/bench.db"
    else:
        raise ValueError(backend)
    try:
        upgrade(url)
        yield url
    finally:
        if name:
            drop_pg_database(name)


@dataclass
class Server:
    root: str  # http://127.0.0.1:PORT
    token: str  # a system/*.cruds access token
    env: dict[str, str]  # the environment it runs with (for a `hearth worker` beside it)
    proc: subprocess.Popen

    @property
    def fhir(self) -> str:
        return self.root + "/fhir"

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@contextmanager
def hearth(
    url: str, *, env: dict[str, str] | None = None, args: Sequence[str] = ()
) -> Iterator[Server]:
    """`hearth serve` on ``url``, answering; ``env`` adds or overrides HEARTH_* settings."""
    port = free_port()
    root = f"http://127.0.0.1:{port}"
    full = {
        **os.environ,
        "HEARTH_DATABASE_URL": url,
        "HEARTH_PORT": str(port),
        "HEARTH_BASE_URL": root,
        "HEARTH_DICOM_ENABLED": "false",
        "HEARTH_LOG_LEVEL": "warning",
        "HEARTH_DATA_DIR": tempfile.mkdtemp(prefix="hearth-bench-"),
        **(env or {}),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "fhir_server.cli", "serve", *args],
        env=full,
        start_new_session=True,
    )
    try:
        token = system_token(url, root)
        for _ in range(600):
            if proc.poll() is not None:
                raise RuntimeError(f"hearth serve exited with {proc.returncode}")
            try:
                if httpx.get(root + "/fhir/metadata", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        yield Server(root, token, full, proc)
    finally:
        stop(proc)


@contextmanager
def process(
    cmd: Sequence[str], env: dict[str, str], stdout: IO | None = None
) -> Iterator[subprocess.Popen]:
    """Another Hearth process (e.g. ``hearth worker``) in its own process group, stopped after;
    ``stdout`` (stderr too) goes to a file when given."""
    proc = subprocess.Popen(
        list(cmd),
        env=env,
        start_new_session=True,
        stdout=stdout,
        stderr=subprocess.STDOUT if stdout is not None else None,
    )
    try:
        yield proc
    finally:
        stop(proc)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
