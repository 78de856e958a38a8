"""A Hearth per backend that allows http rest-hooks on loopback, and a real ``hearth worker``
(subscriptions only) beside it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.servers import database_url, start_server

WORKER_ENV = {
    "HEARTH_SUBSCRIPTION_ALLOW_HTTP": "true",
    "HEARTH_SUBSCRIPTION_ENDPOINTS": "http://127.0.0.1:",
    "HEARTH_SUBSCRIPTION_POLL_SECONDS": "0.1",
    "HEARTH_SUBSCRIPTION_ERROR_AFTER": "2",
    "HEARTH_SUBSCRIPTION_MAX_BACKOFF_SECONDS": "1",
    "HEARTH_SUBSCRIPTION_TIMEOUT_SECONDS": "5",
}


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def hearth(request, tmp_path_factory):  # type: ignore[no-untyped-def]
    tmp = tmp_path_factory.mktemp(f"subs-{request.param}")
    url, cleanup = database_url(request.param, tmp)
    running = start_server(
        request.param,
        url,
        data_dir=tmp / "data",
        subscription_allow_http=True,
        subscription_endpoints="http://127.0.0.1:",
    )
    worker = start_worker(running, tmp / "data")
    yield running
    stop_worker(worker)
    running.stop()
    cleanup()


def start_worker(server, data_dir: Path, **extra_env: str) -> subprocess.Popen:  # type: ignore[no-untyped-def]
    env = {
        **os.environ,
        **WORKER_ENV,
        **extra_env,
        "HEARTH_DATABASE_URL": server.database_url,
        "HEARTH_BASE_URL": server.root,
        "HEARTH_DATA_DIR": str(data_dir),
    }
    hearth_cli = Path(sys.executable).with_name("hearth")
    return subprocess.Popen(
        [str(hearth_cli), "worker", "--no-ai", "--interval", "3600"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip


def stop_worker(worker: subprocess.Popen) -> None:
    worker.terminate()
    try:
        worker.wait(30)
    except subprocess.TimeoutExpired:
        worker.kill()
        worker.wait(10)


@pytest.fixture
def fhir(hearth):  # type: ignore[no-untyped-def]
    with httpx.Client(base_url=hearth.fhir, headers=hearth.headers, timeout=60) as c:
        yield c
